"""BURN: a binary network learns from a frozen FP feature extractor plus a jointly trained
FP classifier — the moving target (Kim & Choi, CVPR 2022, Alg. 1, Eq. 1–4).

    h_ζ  teacher_backbone     FP, self-supervised, frozen (BatchNorm in inference mode)
    g_θ  teacher_classifier   FP, randomly initialised, trained jointly with the student
    k_φ  student_backbone     binary ReActNet-A
    l_φ  student_classifier   FP head of the student

    loss = (1 − λ(t))·KL(p_target ‖ softmax(l/T)) + λ(t)·L_FS,   p_target = softmax(g/T)

L_FS never sends gradient into g_θ (paper Sec. 3.2: it "bypasses" the classifier): on
features it does not touch g_θ, on head outputs the teacher side is behind stop_gradient.

The released code's computation is a set of options (``head_width`` 2000,
``similarity_on: head``, ``feature_similarity: normalized_mse``, ``symmetric``,
``student_pre_fc``, ``head_init: released``, ``teacher_classifier_batch_stats``):
``configs/burn_paper.yaml`` is the paper's recipe built from them.

Collapse: g_θ and l_φ trained on the KL alone can agree on one class (KL and H(p̄) → 0
together). Options against it, each a config key, each keeping g_θ trained: ``target``
``centered`` (DINO centring + sharpening) or ``sinkhorn`` (SwAV equipartition, g_θ fitted
to it); ``teacher_classifier_lr_multiplier``; ``entropy_bonus`` (−α·H(p̄)); ``bounded_logits``
(L2-normalised bottleneck, weight-normalised last layer); ``kl_warmup_fraction`` or the
``heaviside`` λ schedule (L_FS alone first). Every step logs H(p̄), E[H(p)], their difference
(mutual information image ↔ pseudo-class), head agreement and the student's feature spread;
:class:`~burn_tf.callbacks.CollapseWatcher` warns with the step (by the config's
:class:`~burn_tf.callbacks.CollapseCriterion`).

Usage in a notebook::

    model = BURN(teacher_backbone, student_backbone, BURN.Config())
    model.compile(optimizer=tf.keras.optimizers.Adam(3e-4))
    model.fit(two_view_dataset, epochs=10, callbacks=model.callbacks(10 * steps_per_epoch))

The dataset yields ``(view1, view2)`` batches (or single image batches when
``symmetric=False``; extra views are ignored). ``model(images)`` returns the student's
features. Training loop, accumulation, metrics and checkpoint contents are the shared
:class:`~burn_tf.methods.base.PretrainMethod`'s; this file adds the heads and Eq. 4.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from burn_tf.callbacks import CollapseCriterion, CollapseWatcher, ScheduledValue
from burn_tf.distribute import (
    gather_from_replicas,
    mean_over_replicas,
    replica_shared_variable,
)
from burn_tf.losses import distillation
from burn_tf.methods.base import MethodConfig
from burn_tf.methods.distillation import DistillationMethod
from burn_tf.methods.registry import register
from burn_tf.models.heads import CosineDense, L2Normalize, build_head
from burn_tf.ops import diagnostics, schedules, targets
from burn_tf.schema import check_choice, check_range

TARGETS = ("softmax", "centered", "sinkhorn")
HEAD_INITS = ("keras", "released")
PRE_FC = "pre_fc"  # the name suffix of the student's pre-fc layer (student_pre_fc)


@dataclasses.dataclass
class BURNConfig(MethodConfig):
    """BURN (paper Eq. 4), the released code's choices and the anti-collapse options."""

    name: str = "burn"
    # Heads g_θ (teacher side) and l_φ (student side): "mlp" = Linear→BN→ReLU→Linear with
    # hidden and output width head_width (released code, 2000); "dense" = one linear layer.
    head: str = "mlp"
    head_width: int = 2000
    temperature: float = 0.2
    feature_similarity: str = "cosine"  # cosine | l1 | l2 (Table 6) | normalized_mse (released code)
    # Where L_FS compares the networks: backbone "features" (the paper, Eq. 2: a learnable
    # linear projection of the student feature to the teacher's width) or "head" outputs
    # (released code; the teacher side is behind stop_gradient, so g_θ gets no L_FS gradient).
    similarity_on: str = "features"
    # Released code: student(v1)↔teacher(v2) + student(v2)↔teacher(v1). Off: Alg. 1, both
    # networks see the same view.
    symmetric: bool = True
    # The paper's moving target. False freezes g_θ at its random init (released code's
    # behaviour, kept as an ablation).
    train_teacher_classifier: bool = True
    # g_θ's BatchNorm normalises by each batch even when g_θ is frozen (the released code's
    # frozen neck stays in train mode: burn.py:42-43 freezes parameters, not the mode). Off:
    # a frozen g_θ uses its moving averages, which stay at their init (mean 0, variance 1).
    # A trained g_θ always normalises by the batch.
    teacher_classifier_batch_stats: bool = False
    # Released code: the student backbone ends in pool → Linear(1024, 1024) → ReLU before its
    # 2000-wide neck (ReActnet(use_mlp=True), models/backbones/reactnet.py:437-455). Here that
    # layer is the first of l_φ (the exported backbone stays the pooled feature).
    student_pre_fc: bool = False
    # "keras": Glorot-uniform kernels, zero biases. "released": the necks' Linear layers
    # kaiming_init(fan_in, relu, normal), zero biases (models/burn.py:74-76, necks.py:10-18);
    # the pre-fc keeps PyTorch's nn.Linear default U(±1/√fan_in) for kernel and bias.
    head_init: str = "keras"
    # cosine (Eq. 3) | constant (end) | step (start, then end at T/2) | heaviside (Table 7
    # literally: 1, then 0 at T/2)
    lambda_schedule: str = "cosine"
    lambda_start: float = 0.9
    lambda_end: float = 0.7
    # Table 5 ④: stage 2 starts g_θ from stage 1 (True) or from a fresh random init.
    teacher_classifier_from_stage1: bool = True
    # --- anti-collapse options (all off by default: the paper's method) ---
    # The student's target: "softmax" softmax(g/T) (paper); "centered" softmax((g − c)/T_t),
    # c an EMA (center_momentum) of the batch-mean logits, T_t = target_temperature (DINO);
    # "sinkhorn" SwAV's equipartitioned assignment of g (ε, iterations), no gradient through
    # it, and g_θ trained towards it with the same KL.
    target: str = "softmax"
    target_temperature: float = 0.1
    center_momentum: float = 0.9
    sinkhorn_epsilon: float = 0.05
    sinkhorn_iterations: int = 3
    # g_θ's steps scaled by this factor (after the optimizer's update: exact for Adam,
    # whose step does not scale with the gradient).
    teacher_classifier_lr_multiplier: float = 1.0
    # α of a −α·H(p̄) term on g_θ's batch-mean target (MSN's mean-entropy maximisation).
    entropy_bonus: float = 0.0
    # Heads end in an L2-normalised bottleneck and a weight-normalised linear layer, so
    # logits are cosines in [−1, 1] (DINO head).
    bounded_logits: bool = False
    bottleneck_dim: int = 256
    # The KL term's weight ramps linearly 0 → 1 over this fraction of the stage's steps.
    kl_warmup_fraction: float = 0.0
    # CollapseCriterion: collapsed once H(p̄) < fraction·log C or KL < floor (for patience
    # steps in a row, CollapseWatcher).
    collapse_entropy_fraction: float = 0.5
    collapse_kl_floor: float = 1e-3
    collapse_patience: int = 20

    def __post_init__(self):
        check_choice("method", "head", self.head, ("mlp", "dense"))
        check_choice("method", "feature_similarity", self.feature_similarity, distillation.FEATURE_SIMILARITIES)
        check_choice("method", "similarity_on", self.similarity_on, ("head", "features"))
        check_choice("method", "lambda_schedule", self.lambda_schedule, schedules.LAMBDA_SCHEDULES)
        check_choice("method", "target", self.target, TARGETS)
        check_choice("method", "head_init", self.head_init, HEAD_INITS)
        check_range("method", "temperature", self.temperature, 0, low_open=True)
        check_range("method", "target_temperature", self.target_temperature, 0, low_open=True)
        check_range("method", "head_width", self.head_width, 2)
        check_range("method", "bottleneck_dim", self.bottleneck_dim, 1)
        check_range("method", "lambda_start", self.lambda_start, 0.0, 1.0)
        check_range("method", "lambda_end", self.lambda_end, 0.0, 1.0)
        check_range("method", "center_momentum", self.center_momentum, 0.0, 1.0)
        check_range("method", "sinkhorn_epsilon", self.sinkhorn_epsilon, 0, low_open=True)
        check_range("method", "sinkhorn_iterations", self.sinkhorn_iterations, 1)
        check_range("method", "teacher_classifier_lr_multiplier", self.teacher_classifier_lr_multiplier, 0,
                    low_open=True)
        check_range("method", "entropy_bonus", self.entropy_bonus, 0.0)
        check_range("method", "kl_warmup_fraction", self.kl_warmup_fraction, 0.0, 1.0)
        check_range("method", "collapse_entropy_fraction", self.collapse_entropy_fraction, 0.0, 1.0)
        check_range("method", "collapse_kl_floor", self.collapse_kl_floor, 0.0)
        check_range("method", "collapse_patience", self.collapse_patience, 1)
        if not self.train_teacher_classifier and (
                self.target == "sinkhorn" or self.teacher_classifier_lr_multiplier != 1.0 or self.entropy_bonus):
            raise ValueError("method: target=sinkhorn, teacher_classifier_lr_multiplier and entropy_bonus "
                             "train g_θ; they need train_teacher_classifier=true")


def build_classifier(cfg: BURNConfig, input_dim: int, name: str, pre_fc: bool = False) -> tf.keras.Model:
    """g_θ or l_φ: :func:`build_head`, or with ``bounded_logits`` the same trunk ending in an
    L2-normalised bottleneck and a :class:`CosineDense` layer; ``pre_fc`` puts a
    Linear(input_dim, input_dim) → ReLU first (the released student's ``use_mlp``). Its
    Dense layers are initialised as ``cfg.head_init`` says."""
    head_name = f"{name}_head" if pre_fc else name
    if not cfg.bounded_logits:
        head = build_head(cfg.head, input_dim, cfg.head_width, head_name)
    else:
        trunk = build_head(cfg.head, input_dim, cfg.bottleneck_dim, f"{name}_trunk", hidden=cfg.head_width)
        x = L2Normalize(name=f"{name}_l2")(trunk.output)
        head = tf.keras.Model(trunk.input, CosineDense(cfg.head_width, name=f"{name}_cosine")(x), name=head_name)
    if pre_fc:
        inputs = tf.keras.Input((input_dim,), name=f"{name}_input")
        x = tf.keras.layers.Dense(input_dim, activation="relu", name=f"{name}_{PRE_FC}")(inputs)
        head = tf.keras.Model(inputs, head(x), name=name)
    if cfg.head_init == "released":
        initialize_as_released(head)
    return head


def initialize_as_released(model: tf.keras.Model) -> None:
    """Re-draws every Dense layer of ``model`` (nested models too) as naver-ai/burn does:
    mmcv ``kaiming_init(mode="fan_in", nonlinearity="relu")`` — N(0, 2/fan_in), bias 0 — for
    the necks; the pre-fc keeps torch ``nn.Linear``'s default, U(±1/√fan_in) for kernel and
    bias. (Batch-normalised hidden layers do not care; the last layer's scale sets how sharp
    softmax(g/T) starts: √2 × Glorot's spread at 2000 → 2000.)"""
    for layer in model.layers:
        if isinstance(layer, tf.keras.Model):
            initialize_as_released(layer)
            continue
        if not isinstance(layer, tf.keras.layers.Dense):
            continue
        fan_in = int(layer.kernel.shape[0])
        if layer.name.endswith(PRE_FC):
            bound = fan_in ** -0.5
            layer.kernel.assign(tf.random.uniform(layer.kernel.shape, -bound, bound))
            if layer.bias is not None:
                layer.bias.assign(tf.random.uniform(layer.bias.shape, -bound, bound))
            continue
        layer.kernel.assign(tf.random.normal(layer.kernel.shape, stddev=(2.0 / fan_in) ** 0.5))
        if layer.bias is not None:
            layer.bias.assign(tf.zeros_like(layer.bias))


@register
class BURN(DistillationMethod):
    """The BURN pretraining model; ``compute_losses`` is Eq. 4 for one batch."""

    method_name = "burn"
    Config = BURNConfig
    moving_target = True
    # Scalars logged besides "loss" (running mean <name> and per-batch <name>_step).
    loss_terms = ("kl", "fs", "target_entropy", "target_mean_entropy", "target_mutual_information",
                  "head_agreement", "student_feature_std")

    def __init__(self, teacher_backbone: tf.keras.Model, student_backbone: tf.keras.Model,
                 config: BURNConfig | None = None, accumulation_steps: int = 1, **kwargs):
        super().__init__(teacher_backbone, student_backbone, config, accumulation_steps=accumulation_steps,
                         **kwargs)
        cfg = self.config
        self.teacher_classifier = build_classifier(cfg, self.teacher_dim, "teacher_classifier")
        # Keras runs a non-trainable layer's BatchNorm in inference mode whatever `training`
        # says: batch statistics need the flag on. A frozen g_θ is still left out of the
        # gradient groups (add_head below) and behind stop_gradient (compute_losses).
        self.teacher_classifier.trainable = cfg.train_teacher_classifier or cfg.teacher_classifier_batch_stats
        self.student_classifier = build_classifier(cfg, self.student_dim, "student_classifier",
                                                   pre_fc=cfg.student_pre_fc)
        self.student_projection = None
        if cfg.similarity_on == "features":
            # The FP and binary features differ in width (e.g. 2048 vs 1024): a learnable
            # linear map of the student feature makes them comparable.
            inputs = tf.keras.Input((self.student_dim,))
            self.student_projection = tf.keras.Model(
                inputs, tf.keras.layers.Dense(self.teacher_dim, use_bias=False, name="fc")(inputs),
                name="student_projection",
            )
        # Declared in the order of the gradient groups (the optimizer's slots follow it), after
        # all three are built (their random initialisation keeps its order).
        self.add_head("student_classifier", self.student_classifier, exported="classifier")
        if self.student_projection is not None:
            self.add_head("student_projection", self.student_projection, exported=False)
        self.add_head("teacher_classifier", self.teacher_classifier, trainable=cfg.train_teacher_classifier,
                      exported=False)
        self.lambda_value = tf.Variable(cfg.lambda_start, trainable=False, dtype=tf.float32, name="lambda")
        self.kl_weight = tf.Variable(1.0, trainable=False, dtype=tf.float32, name="kl_weight")
        # Written in replica context with the global batch's mean (equal on every replica).
        self.target_center = replica_shared_variable(tf.zeros((cfg.head_width,)), "target_center")
        if cfg.target == "centered":
            self.add_state("target_center", self.target_center)
        if cfg.target == "sinkhorn":
            self.loss_terms = (*type(self).loss_terms, "target_fit")
        # g_θ before the last update, for teacher_classifier_lr_multiplier (see after_update).
        self._theta_before = None
        if cfg.teacher_classifier_lr_multiplier != 1.0:
            self._theta_before = [tf.Variable(v, trainable=False, name=f"theta_before_{i}")
                                  for i, v in enumerate(self.teacher_classifier.trainable_variables)]

    # ------------------------------------------------------------------ hooks
    def init_from_previous_stage(self, previous: BURN) -> None:
        """Alg. 1 line 13 (Table 5 ④): φ and θ from stage 1; θ stays at its fresh random
        init when ``teacher_classifier_from_stage1`` is off."""
        fresh = self.teacher_classifier.get_weights()
        super().init_from_previous_stage(previous)
        if not self.config.teacher_classifier_from_stage1:
            self.teacher_classifier.set_weights(fresh)
        if self.config.target == "centered":
            self.target_center.assign(previous.target_center)

    def method_callbacks(self, total_steps: int) -> list:
        cfg = self.config
        callbacks = [ScheduledValue(
            self.lambda_value,
            lambda step: schedules.lambda_at(step, total_steps, cfg.lambda_start, cfg.lambda_end, cfg.lambda_schedule),
            "lambda", total_steps)]
        warmup_steps = int(round(cfg.kl_warmup_fraction * total_steps))
        if warmup_steps > 0:
            callbacks.append(ScheduledValue(self.kl_weight, lambda step: schedules.kl_warmup_weight(step, warmup_steps),
                                            "kl_weight", total_steps))
        callbacks.append(CollapseWatcher(cfg.head_width, CollapseCriterion.of(cfg), cfg.collapse_patience))
        if self._theta_before is not None:
            # After a restore or a stage transfer has set θ: the snapshot starts from it.
            callbacks.append(tf.keras.callbacks.LambdaCallback(
                on_train_begin=lambda logs: self.snapshot_teacher_classifier()))
        return callbacks

    def snapshot_teacher_classifier(self) -> None:
        for before, v in zip(self._theta_before, self.teacher_classifier.trainable_variables):
            before.assign(v)

    def after_update(self) -> None:
        """θ ← θ_before + m·(θ − θ_before): g_θ's step scaled by the lr multiplier m. (Scaling
        g_θ's *gradient* would not do it: Adam's step is invariant to the gradient's scale.)"""
        if self._theta_before is None:
            return
        m = self.config.teacher_classifier_lr_multiplier
        for before, v in zip(self._theta_before, self.teacher_classifier.trainable_variables):
            v.assign(before + m * (v - before))
            before.assign(v)

    def extra_logs(self) -> dict:
        return {"lambda": self.lambda_value, "kl_weight": self.kl_weight}

    def target_log_probs(self, teacher_logits, training: bool, after=()):
        """log p_target per image (the distribution the student's KL matches).

        Under a strategy both batch-level targets use the *global* batch, so N replicas
        compute what one device does: the centre moves by the mean over every replica's
        images, and Sinkhorn equipartitions the gathered logits of every replica (it is
        equivariant to the order of the rows) and each replica keeps its own rows.
        ``after``: tensors whose collectives (synchronized BatchNorm) must come first on
        every replica (collectives run in the same order everywhere)."""
        cfg = self.config
        if cfg.target == "centered":
            log_p = targets.centered_log_probs(teacher_logits, self.target_center, cfg.target_temperature)
            if training:
                with tf.control_dependencies(list(after)):
                    batch_mean = mean_over_replicas(
                        {"mean": tf.stop_gradient(tf.reduce_mean(teacher_logits, axis=0))})["mean"]
                self.target_center.assign(cfg.center_momentum * self.target_center
                                          + (1.0 - cfg.center_momentum) * batch_mean)
            return log_p
        if cfg.target == "sinkhorn":
            with tf.control_dependencies(list(after)):
                every_replica = gather_from_replicas(tf.stop_gradient(teacher_logits))
            log_q = targets.sinkhorn_log_assignment(every_replica, cfg.sinkhorn_epsilon, cfg.sinkhorn_iterations)
            rows = tf.shape(teacher_logits)[0]
            replica = tf.distribute.get_replica_context()
            first = rows * (replica.replica_id_in_sync_group if replica is not None else 0)
            return log_q[first:first + rows]  # each row a distribution (log-sum-exp 0)
        return tf.nn.log_softmax(teacher_logits / cfg.temperature, axis=-1)

    def compute_losses(self, views, labels=None, training=True) -> dict:
        """Eq. 4 for a batch, plus the collapse diagnostics (see ``loss_terms``)."""
        cfg = self.config
        images = self.stacked_views(views)
        teacher_feat = self.teacher_features(images)
        student_feat = self.student_backbone(images, training=training)
        teacher_logits = self.teacher_classifier(
            teacher_feat, training=training and (cfg.train_teacher_classifier or cfg.teacher_classifier_batch_stats)
        )
        if not cfg.train_teacher_classifier:
            teacher_logits = tf.stop_gradient(teacher_logits)
        student_logits = self.student_classifier(student_feat, training=training)
        # L_FS bypasses g_θ (Sec. 3.2): on head outputs the teacher side is a constant.
        teacher_sim = tf.stop_gradient(teacher_logits) if cfg.similarity_on == "head" else teacher_feat
        student_sim = (
            student_logits if cfg.similarity_on == "head"
            else self.student_projection(student_feat, training=training)
        )
        # Student(v1) against teacher(v2) and student(v2) against teacher(v1): the mean over
        # the 2B pairs averages the released code's two summed terms.
        teacher_logits = self.other_view(teacher_logits, views)
        teacher_sim = self.other_view(teacher_sim, views)
        target_log_p = self.target_log_probs(teacher_logits, training, after=[student_logits, student_sim])
        kl = distillation.kl_to_target(target_log_p, student_logits, cfg.temperature)
        fs = distillation.feature_similarity(teacher_sim, student_sim, cfg.feature_similarity)
        loss = distillation.burn_loss(self.kl_weight * kl, fs, self.lambda_value)
        terms = {}
        if cfg.target == "sinkhorn":
            # g_θ is trained towards the equipartitioned assignment of its own outputs.
            terms["target_fit"] = distillation.kl_to_target(target_log_p, teacher_logits, cfg.temperature)
            loss += (1.0 - self.lambda_value) * self.kl_weight * terms["target_fit"]
        if cfg.entropy_bonus:
            own = target_log_p if cfg.target == "centered" else tf.nn.log_softmax(teacher_logits / cfg.temperature)
            loss -= cfg.entropy_bonus * diagnostics.entropy_of_mean(own)
        h_mean = diagnostics.entropy_of_mean(target_log_p)
        mean_h = diagnostics.mean_entropy(target_log_p)
        return {
            "loss": loss,
            "kl": kl,
            "fs": fs,
            "target_entropy": h_mean,
            "target_mean_entropy": mean_h,
            "target_mutual_information": h_mean - mean_h,
            "head_agreement": diagnostics.argmax_agreement(target_log_p, student_logits),
            "student_feature_std": diagnostics.normalized_feature_std(student_feat),
            **terms,
        }

