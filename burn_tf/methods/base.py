"""What every pretraining method shares: :class:`PretrainMethod` and two middle layers.

A method is one ``keras.Model`` subclass in one file. The base owns the training loop
(``train_step``/``test_step``), metric tracking, ``global_step``, gradient accumulation,
per-replica loss scaling, gradient norms per variable group, building every variable
(``build_all``) and what goes into a checkpoint. The method supplies only its hooks:

=============================  =========================================================
hook                           what the method returns / does
=============================  =========================================================
``compute_losses(views,        a dict of scalars that contains ``"loss"``; every other
labels, training)``            key is logged (declare them in ``loss_terms``), as the
                               epoch's running mean ``<name>`` and this batch's value
                               ``<name>_step``
``trainable_groups()``         ``{group name: [variables]}``; one gradient norm is logged
                               per group (``grad_norm_<group>``)
``checkpoint_modules()``       ``{name: network or variable}`` saved with the run
``callbacks(total_steps)``     Keras callbacks the method needs (BURN: λ(t))
``after_update()``             runs after each optimizer update (EMA targets, queues)
``init_from_previous_stage``   stage 2 from stage 1 (default: the backbone by layer name,
``(previous)``                 every other network of ``checkpoint_modules`` as is)
``exported_heads()``           ``{file stem: network}`` saved beside the backbone
``extra_logs()``               scalars to log that are not running means (BURN: λ)
=============================  =========================================================

Class attributes: ``method_name`` (the YAML ``method.name``), ``Config`` (the method's own
dataclass), ``num_views`` (or ``num_views_for(config)``), ``needs_labels``,
``needs_teacher``. A registry (:mod:`burn_tf.methods.registry`) maps the name to the class.

Middle layers: :class:`DistillationMethod` (a frozen FP teacher: resized input,
``stop_gradient``, BatchNorm in inference mode — BURN, S2-BNN, supervised KL-div) and
:class:`MomentumMethod` (online/target pairs updated by an EMA whose τ follows a cosine
from ``tau_start`` to ``tau_end`` — BYOL, MoCo v2, InfoMin, CLD).

The dataset yields ``(view_1, …, view_N)`` batches of images, optionally followed by an
integer label batch (``needs_labels``); a single image batch is one view.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import tensorflow as tf

from burn_tf.callbacks import MomentumScheduler
from burn_tf.models.reactnet import transfer_stage1_to_stage2
from burn_tf.optim import current_learning_rate


@dataclasses.dataclass
class MethodConfig:
    """Keys every method has; a method's ``Config`` subclasses it."""

    name: str = ""


class PretrainMethod(tf.keras.Model):
    """Base of every pretraining method; see the module docstring for the hooks."""

    method_name: ClassVar[str] = ""
    Config: ClassVar[type] = MethodConfig
    num_views: ClassVar[int] = 2
    needs_labels: ClassVar[bool] = False
    needs_teacher: ClassVar[bool] = False
    # Scalars compute_losses returns besides "loss" (created as metrics up front: Keras
    # metrics cannot be created inside a traced train_step).
    loss_terms: ClassVar[tuple[str, ...]] = ()

    def __init__(self, backbone: tf.keras.Model, config=None, accumulation_steps: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.config = config if config is not None else self.Config()
        self.backbone = backbone
        self.input_size = int(backbone.inputs[0].shape[1])
        self.feature_dim = int(backbone.outputs[0].shape[-1])
        # Counts batches seen (not optimizer applies): schedules (λ, τ) are functions of it,
        # and it is checkpointed so a resumed run continues the same curves.
        self.global_step = tf.Variable(0, trainable=False, dtype=tf.int64, name="global_step")
        if int(accumulation_steps) < 1:
            raise ValueError(f"accumulation_steps must be >= 1, got {accumulation_steps}")
        self.accumulation_steps = int(accumulation_steps)
        self._accumulators = None
        self._trackers = None

    # ------------------------------------------------------------------ hooks
    @classmethod
    def num_views_for(cls, config) -> int:
        """Views per batch this method needs with ``config`` (default: ``num_views``)."""
        return cls.num_views

    @property
    def views_needed(self) -> int:
        return type(self).num_views_for(self.config)

    def view_sizes(self) -> list[int]:
        """Image size of each view (multi-crop methods override)."""
        return [self.input_size] * self.views_needed

    def compute_losses(self, views: list, labels, training: bool = True) -> dict:
        raise NotImplementedError(f"{type(self).__name__} must implement compute_losses")

    def trainable_groups(self) -> dict[str, list[tf.Variable]]:
        return {"backbone": self.backbone.trainable_variables}

    def checkpoint_modules(self) -> dict:
        return {"backbone": self.backbone}

    def callbacks(self, total_steps: int) -> list:
        return []

    def after_update(self) -> None:
        """Runs after every optimizer update (inside the traced step)."""

    def exported_heads(self) -> dict[str, tf.keras.Model]:
        return {}

    def extra_logs(self) -> dict:
        return {}

    def init_from_previous_stage(self, previous: "PretrainMethod") -> None:
        """Stage 2 starts from stage 1: the backbone by layer name (every binary conv must
        receive weights), every other network in ``checkpoint_modules`` as is."""
        theirs = previous.checkpoint_modules()
        for name, module in self.checkpoint_modules().items():
            if module is self.backbone:
                transfer_stage1_to_stage2(theirs[name], module)
            elif isinstance(module, tf.keras.Model):
                module.set_weights(theirs[name].get_weights())
            elif isinstance(module, tf.Variable) and module.trainable:
                module.assign(theirs[name])

    # ------------------------------------------------------------------ shared machinery
    def call(self, images, training=False):
        """The backbone's features (what the exported backbone computes)."""
        return self.backbone(images, training=training)

    def train_variables(self) -> list[tf.Variable]:
        return [v for group in self.trainable_groups().values() for v in group]

    def _metric_names(self) -> list[str]:
        return ["loss", *self.loss_terms, *(f"grad_norm_{g}" for g in self.trainable_groups())]

    @property
    def metrics(self):
        if self._trackers is None:
            self._trackers = {n: tf.keras.metrics.Mean(name=n) for n in self._metric_names()}
        return list(self._trackers.values())

    def parse_batch(self, data) -> tuple[list, tf.Tensor | None]:
        """``(views, labels)`` from a dataset element: rank-4 tensors are views (in order),
        a lower-rank tensor is the label batch."""
        flat = tf.nest.flatten(data)
        views = [t for t in flat if t.shape.rank == 4]
        others = [t for t in flat if t.shape.rank != 4]
        n = self.views_needed
        if len(views) < n:
            names = ", ".join(f"view{i + 1}" for i in range(n))
            raise ValueError(
                f"{type(self).__name__} needs batches of {n} view(s) ({names}), got {len(views)}"
            )
        labels = others[0] if others else None
        if self.needs_labels and labels is None:
            raise ValueError(
                f"{type(self).__name__} needs labels: the dataset must yield (views..., labels)"
            )
        return views[:n], labels

    def example_batch(self, batch_size: int = 2) -> tuple[list, tf.Tensor | None]:
        """Zeros shaped like a real batch: builds every variable through the real code path."""
        views = [tf.zeros((batch_size, s, s, 3)) for s in self.view_sizes()]
        labels = tf.zeros((batch_size,), tf.int64) if self.needs_labels else None
        return views, labels

    def build_all(self) -> None:
        """Creates every variable (networks, metrics, optimizer slots, accumulators) before a
        checkpoint restore, a stage transfer or a distributed step, so all find the same
        objects and none is created inside ``train_step``."""
        self.compute_losses(*self.example_batch(), training=False)
        self.metrics  # noqa: B018 - creates the trackers
        variables = self.train_variables()
        if self.optimizer is not None:
            self.optimizer.build(variables)
        if self.accumulation_steps > 1 and self._accumulators is None:
            self._accumulators = [
                tf.Variable(tf.zeros_like(v), trainable=False, name=f"accumulated_grad_{i}")
                for i, v in enumerate(variables)
            ]

    def compile(self, optimizer="adam", **kwargs):
        super().compile(optimizer=optimizer, **kwargs)
        self.build_all()

    def checkpoint_parts(self) -> dict:
        """Everything of the method a checkpoint holds (the caller adds the optimizer)."""
        parts = {**self.checkpoint_modules(), "global_step": self.global_step}
        if self._accumulators is not None:
            parts["accumulated_gradients"] = list(self._accumulators)
        return parts

    def _apply(self, grads, variables) -> None:
        if self.accumulation_steps == 1:
            self.optimizer.apply_gradients(zip(grads, variables))
            self.after_update()
            return
        if self._accumulators is None:
            raise RuntimeError(f"{type(self).__name__}: call compile() or build_all() before training")
        for acc, g in zip(self._accumulators, grads):
            acc.assign_add(g)

        def apply():
            # The mean of the k accumulated gradients: the step of one k-times larger batch.
            self.optimizer.apply_gradients(
                zip([acc / self.accumulation_steps for acc in self._accumulators], variables)
            )
            for acc in self._accumulators:
                acc.assign(tf.zeros_like(acc))
            self.after_update()
            return tf.constant(True)

        tf.cond((self.global_step + 1) % self.accumulation_steps == 0, apply, lambda: tf.constant(False))

    def train_step(self, data):
        views, labels = self.parse_batch(data)
        groups = self.trainable_groups()
        variables = [v for group in groups.values() for v in group]
        with tf.GradientTape() as tape:
            terms = self.compute_losses(views, labels, training=True)
            # Keras sums gradients over replicas; scale so the update is the global mean.
            scaled = terms["loss"] / tf.distribute.get_strategy().num_replicas_in_sync
        grads = tape.gradient(scaled, variables)
        grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]
        start = 0
        for group_name, group in groups.items():
            terms[f"grad_norm_{group_name}"] = tf.linalg.global_norm(grads[start:start + len(group)])
            start += len(group)
        self._apply(grads, variables)
        self.global_step.assign_add(1)
        self.metrics  # noqa: B018
        for name, tracker in self._trackers.items():
            tracker.update_state(terms[name])
        logs = {name: tracker.result() for name, tracker in self._trackers.items()}
        # This batch's own values beside the epoch's running means: a spike or a collapse
        # shows at its step, not smoothed over the epoch (callbacks see them per batch).
        logs.update({f"{name}_step": tf.identity(terms[name]) for name in self._trackers})
        logs.update({k: tf.identity(v) for k, v in self.extra_logs().items()})
        logs["lr"] = current_learning_rate(self.optimizer)
        return logs

    def test_step(self, data):
        views, labels = self.parse_batch(data)
        terms = self.compute_losses(views, labels, training=False)
        self.metrics  # noqa: B018
        names = ["loss", *self.loss_terms]
        for name in names:
            self._trackers[name].update_state(terms[name])
        return {name: self._trackers[name].result() for name in names}


class DistillationMethod(PretrainMethod):
    """A binary (or FP) student learns from a frozen FP teacher.

    The teacher is frozen in one place: never trained, called with ``training=False`` so
    its BatchNorm keeps its statistics, its output behind ``stop_gradient``, its input
    resized from the student's view when the two sizes differ.
    """

    needs_teacher = True
    # True: the teacher is built with its own head and outputs logits (S2-BNN).
    teacher_includes_head: ClassVar[bool] = False

    def __init__(self, teacher_backbone: tf.keras.Model, student_backbone: tf.keras.Model, config=None,
                 accumulation_steps: int = 1, **kwargs):
        super().__init__(student_backbone, config, accumulation_steps=accumulation_steps, **kwargs)
        self.teacher_backbone = teacher_backbone
        self.teacher_backbone.trainable = False
        self.teacher_dim = int(teacher_backbone.outputs[0].shape[-1])
        self.teacher_input_size = int(teacher_backbone.inputs[0].shape[1])

    @property
    def student_backbone(self) -> tf.keras.Model:
        return self.backbone

    @property
    def student_input_size(self) -> int:
        return self.input_size

    @property
    def student_dim(self) -> int:
        return self.feature_dim

    def teacher_features(self, images):
        if self.teacher_input_size != self.input_size:
            images = tf.image.resize(images, (self.teacher_input_size, self.teacher_input_size))
        return tf.stop_gradient(self.teacher_backbone(images, training=False))

    def trainable_groups(self):
        return {"student_backbone": self.backbone.trainable_variables}

    def checkpoint_modules(self):
        return {"student_backbone": self.backbone}


class MomentumMethod(PretrainMethod):
    """Online networks and their EMA targets: target ← τ·target + (1 − τ)·online.

    A method calls :meth:`add_momentum_pair` for each online network (backbone, projector…);
    the target is a non-trainable copy. The EMA updates *weights* (trainable variables),
    not BatchNorm statistics, which the target computes itself (solo-learn's
    ``MomentumUpdater``). τ follows :func:`cosine_momentum` of ``global_step`` from
    ``config.tau_start`` to ``config.tau_end``, set by
    :class:`burn_tf.callbacks.MomentumScheduler` (τ(t) of :func:`burn_tf.losses.cosine_momentum`).
    """

    def __init__(self, backbone: tf.keras.Model, config=None, accumulation_steps: int = 1, **kwargs):
        super().__init__(backbone, config, accumulation_steps=accumulation_steps, **kwargs)
        # (checkpoint key, online, target); the key is stable across stages.
        self.momentum_pairs: list[tuple[str, tf.keras.Model, tf.keras.Model]] = []
        self.tau = tf.Variable(float(self.config.tau_start), trainable=False, dtype=tf.float32, name="tau")

    def add_momentum_pair(self, online: tf.keras.Model, key: str | None = None) -> tf.keras.Model:
        """A frozen copy of ``online`` (same weights) that follows it by EMA; returns it.
        ``key`` names it in checkpoints (default ``momentum_<online's role>``)."""
        key = key or ("momentum_backbone" if online is self.backbone else f"momentum_{online.name}")
        target = tf.keras.models.clone_model(online)
        target._name = f"momentum_{online.name}"
        target.set_weights(online.get_weights())
        target.trainable = False
        self.momentum_pairs.append((key, online, target))
        return target

    def after_update(self) -> None:
        tau = self.tau
        for _, online, target in self.momentum_pairs:
            for w_online, w_target in zip(online.trainable_weights, _ema_weights(target, online)):
                w_target.assign(tau * w_target + (1.0 - tau) * w_online)

    def callbacks(self, total_steps: int) -> list:
        return [MomentumScheduler(total_steps, self.config.tau_start, self.config.tau_end)]

    def extra_logs(self) -> dict:
        return {"tau": self.tau}

    def checkpoint_modules(self) -> dict:
        modules = super().checkpoint_modules()
        for key, _, target in self.momentum_pairs:
            modules[key] = target
        return modules


def _ema_weights(target: tf.keras.Model, online: tf.keras.Model) -> list[tf.Variable]:
    """The target's counterparts of ``online.trainable_weights`` (same layer and name order;
    the target is frozen, so its own ``trainable_weights`` is empty)."""
    by_name = {}
    for layer_online, layer_target in zip(online.layers, target.layers):
        for w_o, w_t in zip(layer_online.weights, layer_target.weights):
            by_name[id(w_o)] = w_t
    return [by_name[id(w)] for w in online.trainable_weights]
