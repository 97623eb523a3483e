"""The method: :class:`PretrainMethod`, the ``keras.Model`` every pretraining method
subclasses (directly or through :mod:`~burn_tf.methods.distillation` or
:mod:`~burn_tf.methods.momentum`), and :class:`MethodConfig`, the keys every method's config
has. The base owns the training loop (``train_step``/``test_step``), metrics,
``global_step``, gradient accumulation, per-replica loss scaling, gradient norms per
variable group, ``build_all`` and the checkpoint contents; a method declares its heads and
state once (``add_head``, ``add_state``) and supplies its hooks (``compute_losses`` and the
others: the table in docs/adding_a_method.md). What a step writes under ``tf.distribute``
goes through :mod:`burn_tf.distribute`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import tensorflow as tf

from burn_tf.callbacks import ProgressLines, StepScalarLogger
from burn_tf.distribute import mean_over_replicas, run_if, sum_over_replicas
from burn_tf.models.reactnet import transfer_stage1_to_stage2
from burn_tf.optim import current_learning_rate


@dataclasses.dataclass
class MethodConfig:
    """Keys every method has; a method's ``Config`` subclasses it."""

    name: str = ""


@dataclasses.dataclass(frozen=True)
class MethodPart:
    """A network or variable a method declared: checkpointed under its name, its trainable
    variables one gradient group when ``trainable``, saved beside the backbone as
    ``<exported>.keras`` when ``exported`` is a file stem."""

    module: object
    trainable: bool = False
    exported: str | None = None


class PretrainMethod(tf.keras.Model):
    """Base of every pretraining method; its hooks: docs/adding_a_method.md."""

    method_name: ClassVar[str] = ""
    Config: ClassVar[type] = MethodConfig
    num_views: ClassVar[int] = 2
    needs_labels: ClassVar[bool] = False
    needs_teacher: ClassVar[bool] = False
    # True: batches end with each image's dataset index, passed as compute_losses(index=).
    needs_index: ClassVar[bool] = False
    # Scalars compute_losses returns besides "loss" (created as metrics up front: Keras
    # metrics cannot be created inside a traced train_step).
    loss_terms: ClassVar[tuple[str, ...]] = ()
    # True: a jointly trained target that can collapse; CollapseWatcher's metrics are logged.
    moving_target: ClassVar[bool] = False
    # The backbone's checkpoint key and gradient group.
    backbone_key: ClassVar[str] = "backbone"

    def __init__(self, backbone: tf.keras.Model, config=None, accumulation_steps: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.config = config if config is not None else self.Config()
        self.backbone = backbone
        # Every declared network and state variable by name, in declaration order.
        self._parts: dict[str, MethodPart] = {}
        self._add_part(self.backbone_key, MethodPart(backbone, trainable=True))
        self.input_size = int(backbone.inputs[0].shape[1])
        self.feature_dim = int(backbone.outputs[0].shape[-1])
        # Counts batches seen (not optimizer applies): schedules (λ, τ) are functions of it,
        # and it is checkpointed so a resumed run continues the same curves.
        # ONLY_FIRST_REPLICA: every replica adds 1; a MirroredStrategy keeps one of them.
        self.global_step = tf.Variable(0, trainable=False, dtype=tf.int64, name="global_step",
                                       aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        if int(accumulation_steps) < 1:
            raise ValueError(f"accumulation_steps must be >= 1, got {accumulation_steps}")
        self.accumulation_steps = int(accumulation_steps)
        self._accumulators = None
        self._trackers = None
        # Where callbacks that write per-step records put them (pretraining sets the stage
        # directory; None in a notebook unless the user sets it).
        self.log_dir = None
        # Resuming in the middle of an epoch: the batch of that epoch fit() starts at.
        self.resume_at_batch = 0
        # Every logged value is already equal on all replicas (global means, see train_step):
        # report the first replica's, not Keras' default sum over replicas.
        self.distribute_reduction_method = "first"

    # ------------------------------------------------------------------ declarations
    def add_head(self, name: str, network: tf.keras.Model, trainable: bool = True,
                 exported: bool | str = True) -> tf.keras.Model:
        """Declares ``network`` (returned): checkpointed as ``name``; its trainable variables
        are the gradient group ``name`` when ``trainable``; saved beside the backbone as
        ``<name>.keras`` when ``exported`` is True, as ``<exported>.keras`` when it is a
        string. The checkpoint key and the file stem are a run directory's format: keep them."""
        stem = (name if exported is True else exported) or None
        return self._add_part(name, MethodPart(network, trainable=trainable, exported=stem))

    def add_state(self, name: str, variable: tf.Variable) -> tf.Variable:
        """Declares ``variable`` (returned): checkpointed as ``name``, neither trained nor
        exported (a queue, a memory bank, a centre)."""
        return self._add_part(name, MethodPart(variable))

    def _add_part(self, name: str, part: MethodPart):
        if name in self._parts:
            raise ValueError(f"{type(self).__name__}: a part named {name!r} is declared twice")
        self._parts[name] = part
        return part.module

    # ------------------------------------------------------------------ hooks
    @classmethod
    def num_views_for(cls, config) -> int:
        """Views per batch this method needs with ``config`` (default: ``num_views``)."""
        return cls.num_views

    @property
    def views_needed(self) -> int:
        return type(self).num_views_for(self.config)

    @classmethod
    def view_sizes_for(cls, config, input_size: int) -> list[int]:
        """Image size of each view with ``config`` at ``input_size`` (multi-crop methods
        override); a ``views`` entry without ``image_size`` gets its view's."""
        return [input_size] * cls.num_views_for(config)

    def view_sizes(self) -> list[int]:
        """Image size of each view."""
        return type(self).view_sizes_for(self.config, self.input_size)

    def compute_losses(self, views: list, labels, training: bool = True) -> dict:
        raise NotImplementedError(f"{type(self).__name__} must implement compute_losses")

    def trainable_groups(self) -> dict[str, list[tf.Variable]]:
        return {name: part.module.trainable_variables for name, part in self._parts.items() if part.trainable}

    def checkpoint_modules(self) -> dict:
        return {name: part.module for name, part in self._parts.items()}

    def callbacks(self, total_steps: int, log_dir=None, *, progress: bool = True, progress_prefix: str | None = None,
                  lines_per_epoch: int = 10) -> list:
        """The callbacks ``model.fit`` needs to train this method and to show it, the same that
        ``python -m burn_tf.pretrain`` uses (it adds only the run directory's checkpoints,
        history and TensorBoard): the method's own (:meth:`method_callbacks`), a
        :class:`~burn_tf.callbacks.StepScalarLogger` (every step's values in its ``records``;
        ``steps.jsonl`` and TensorBoard in ``log_dir``, default the model's ``log_dir``) and,
        with ``progress``, :class:`~burn_tf.callbacks.ProgressLines` (``lines_per_epoch`` lines
        per epoch with the time left, prefixed ``progress_prefix``, default the model's name;
        under ``fit(verbose=2)`` or 0: with ``verbose=1`` Keras' bar shows instead)."""
        shown = [StepScalarLogger(log_dir)]
        if progress:
            prefix = self.name if progress_prefix is None else progress_prefix
            shown.append(ProgressLines(lines_per_epoch=lines_per_epoch, prefix=prefix))
        return [*self.method_callbacks(total_steps), *shown]

    def method_callbacks(self, total_steps: int) -> list:
        return []

    def after_update(self) -> None:
        """Runs after every optimizer update (inside the traced step)."""

    def exported_heads(self) -> dict[str, tf.keras.Model]:
        return {part.exported: part.module for part in self._parts.values() if part.exported}

    def extra_logs(self) -> dict:
        return {}

    def init_from_previous_stage(self, previous: PretrainMethod) -> None:
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
        a lower-rank tensor is the label batch (for a ``needs_index`` method: the last one
        is the index, see :meth:`batch_index`)."""
        flat = tf.nest.flatten(data)
        views = [t for t in flat if t.shape.rank == 4]
        others = [t for t in flat if t.shape.rank != 4]
        if self.needs_index:
            others = others[:-1]
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

    def batch_index(self, data) -> dict:
        """``{"index": …}`` — the keyword arguments that carry the dataset index to
        ``compute_losses`` — for a ``needs_index`` method (the element's last non-image
        tensor); ``{}`` for the others."""
        if not self.needs_index:
            return {}
        others = [t for t in tf.nest.flatten(data) if t.shape.rank != 4]
        if not others:
            raise ValueError(
                f"{type(self).__name__} needs each image's dataset index: the dataset must yield "
                "(views..., [labels,] index) (multi_view_dataset(with_index=True))"
            )
        return {"index": others[-1]}

    def example_batch(self, batch_size: int = 2) -> tuple[list, tf.Tensor | None]:
        """Zeros shaped like a real batch: builds every variable through the real code path."""
        views = [tf.zeros((batch_size, s, s, 3)) for s in self.view_sizes()]
        labels = tf.zeros((batch_size,), tf.int64) if self.needs_labels else None
        return views, labels

    def build_all(self) -> None:
        """Creates every variable (networks, metrics, optimizer slots, accumulators) before a
        checkpoint restore, a stage transfer or a distributed step, so all find the same
        objects and none is created inside ``train_step``."""
        index = {"index": tf.range(2, dtype=tf.int64)} if self.needs_index else {}
        self.compute_losses(*self.example_batch(), training=False, **index)
        self.metrics  # noqa: B018 - creates the trackers
        variables = self.train_variables()
        if self.optimizer is not None:
            self.optimizer.build(variables)
        if self.accumulation_steps > 1 and self._accumulators is None:
            # Sums of gradients already summed over replicas: equal on every replica, kept
            # per device (ON_READ: no communication to add to them).
            self._accumulators = [
                tf.Variable(tf.zeros_like(v), trainable=False, name=f"accumulated_grad_{i}",
                            synchronization=tf.VariableSynchronization.ON_READ,
                            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
                for i, v in enumerate(variables)
            ]

    def _maybe_load_initial_counters_from_ckpt(self, steps_per_epoch, initial_epoch):
        # Keras' hook for where fit() starts (epoch, batch of that epoch): a run resumed from a
        # step checkpoint continues its epoch at the next batch, not at the epoch's start.
        epoch, batch = super()._maybe_load_initial_counters_from_ckpt(steps_per_epoch, initial_epoch)
        return epoch, batch or self.resume_at_batch

    def compile(self, optimizer="adam", **kwargs):
        super().compile(optimizer=optimizer, **kwargs)
        self.build_all()

    def checkpoint_parts(self) -> dict:
        """Everything of the method a checkpoint holds (the caller adds the optimizer)."""
        parts = {**self.checkpoint_modules(), "global_step": self.global_step}
        if self._accumulators is not None:
            parts["accumulated_gradients"] = list(self._accumulators)
        return parts

    @property
    def loss_scaling(self) -> bool:
        """True when the optimizer scales the loss (mixed_float16 training)."""
        return isinstance(self.optimizer, tf.keras.mixed_precision.LossScaleOptimizer)

    def _apply_now(self, grads, variables) -> None:
        # The gradients are already summed over replicas (train_step).
        self.optimizer.apply_gradients(zip(grads, variables), skip_gradients_aggregation=True)
        self.after_update()

    def _apply(self, grads, variables) -> None:
        if self.accumulation_steps == 1:
            self._apply_now(grads, variables)
            return
        if self._accumulators is None:
            raise RuntimeError(f"{type(self).__name__}: call compile() or build_all() before training")
        for acc, g in zip(self._accumulators, grads):
            acc.assign_add(g)

        def apply():
            # The mean of the k accumulated gradients: the step of one k-times larger batch.
            k = float(self.accumulation_steps)
            self._apply_now([acc.read_value() / k for acc in self._accumulators], variables)
            for acc in self._accumulators:
                acc.assign(tf.zeros_like(acc))

        run_if((self.global_step + 1) % self.accumulation_steps == 0, apply)

    def train_step(self, data):
        views, labels = self.parse_batch(data)
        index = self.batch_index(data)
        groups = self.trainable_groups()
        variables = [v for group in groups.values() for v in group]
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            terms = self.compute_losses(views, labels, training=True, **index)
            # The replica's mean loss ÷ replicas, gradients summed over replicas below: the
            # gradient of the global batch's mean (equal shares; see burn_tf.distribute).
            scaled = tf.cast(terms["loss"], tf.float32) / replicas
            if self.loss_scaling:
                scaled = self.optimizer.get_scaled_loss(scaled)
        grads = tape.gradient(scaled, variables)
        grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]
        if self.loss_scaling:
            grads = self.optimizer.get_unscaled_gradients(grads)
        grads = sum_over_replicas(grads)
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
        # Under a strategy: the mean over replicas (grad norms are equal on all of them).
        # After the gradient all-reduce (control dependency): collectives must be launched in
        # the same order on every replica.
        with tf.control_dependencies(grads):
            step_values = mean_over_replicas({n: tf.identity(terms[n]) for n in self._trackers})
        logs.update({f"{name}_step": v for name, v in step_values.items()})
        logs.update({k: tf.identity(v) for k, v in self.extra_logs().items()})
        logs["lr"] = current_learning_rate(
            self.optimizer.inner_optimizer if self.loss_scaling else self.optimizer)
        return logs

    def test_step(self, data):
        views, labels = self.parse_batch(data)
        terms = self.compute_losses(views, labels, training=False, **self.batch_index(data))
        self.metrics  # noqa: B018
        names = ["loss", *self.loss_terms]
        for name in names:
            self._trackers[name].update_state(terms[name])
        return {name: self._trackers[name].result() for name in names}
