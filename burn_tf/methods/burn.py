"""BURN: a binary network learns from a frozen FP feature extractor plus a jointly trained
FP classifier — the moving target (Kim & Choi, CVPR 2022, Alg. 1, Eq. 1–4).

    h_ζ  teacher_backbone     FP, self-supervised, frozen (BatchNorm in inference mode)
    g_θ  teacher_classifier   FP, randomly initialised, trained jointly with the student
    k_φ  student_backbone     binary ReActNet-A
    l_φ  student_classifier   FP head of the student

    loss = (1 − λ(t))·KL(softmax(g/T) ‖ softmax(l/T)) + λ(t)·L_FS

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

from burn_tf import losses
from burn_tf.callbacks import LambdaScheduler
from burn_tf.methods.base import DistillationMethod, MethodConfig
from burn_tf.methods.registry import register
from burn_tf.models.heads import build_head
from burn_tf.schema import check_choice, check_range


@dataclasses.dataclass
class BURNConfig(MethodConfig):
    """BURN (paper Eq. 4) and the released code's choices as options."""

    name: str = "burn"
    # Heads g_θ (teacher side) and l_φ (student side): "mlp" = Linear→BN→ReLU→Linear with
    # hidden and output width head_width (released code, 2000); "dense" = one linear layer.
    head: str = "mlp"
    head_width: int = 2000
    temperature: float = 0.2
    feature_similarity: str = "cosine"  # cosine | l1 | l2 (Table 6)
    # Where L_FS compares the networks: "head" outputs (released code; same width) or
    # backbone "features" (paper's wording; a learnable linear projection of the student
    # feature to the teacher's width).
    similarity_on: str = "head"
    # Released code: student(v1)↔teacher(v2) + student(v2)↔teacher(v1). Off: Alg. 1, both
    # networks see the same view.
    symmetric: bool = True
    # The paper's moving target. False freezes g_θ at its random init (released code's
    # behaviour, kept as an ablation).
    train_teacher_classifier: bool = True
    lambda_schedule: str = "cosine"  # cosine (Eq. 3) | constant | step (Table 7)
    lambda_start: float = 0.9
    lambda_end: float = 0.7

    def __post_init__(self):
        check_choice("method", "head", self.head, ("mlp", "dense"))
        check_choice("method", "feature_similarity", self.feature_similarity, losses.FEATURE_SIMILARITIES)
        check_choice("method", "similarity_on", self.similarity_on, ("head", "features"))
        check_choice("method", "lambda_schedule", self.lambda_schedule, losses.LAMBDA_SCHEDULES)
        check_range("method", "temperature", self.temperature, 0, low_open=True)
        check_range("method", "head_width", self.head_width, 1)
        check_range("method", "lambda_start", self.lambda_start, 0.0, 1.0)
        check_range("method", "lambda_end", self.lambda_end, 0.0, 1.0)


@register
class BURN(DistillationMethod):
    """The BURN pretraining model; ``compute_losses`` is Eq. 4 for one batch."""

    method_name = "burn"
    Config = BURNConfig
    loss_terms = ("kl", "fs", "target_entropy")

    def __init__(self, teacher_backbone: tf.keras.Model, student_backbone: tf.keras.Model,
                 config: BURNConfig | None = None, accumulation_steps: int = 1, **kwargs):
        super().__init__(teacher_backbone, student_backbone, config, accumulation_steps=accumulation_steps,
                         **kwargs)
        cfg = self.config
        self.teacher_classifier = build_head(cfg.head, self.teacher_dim, cfg.head_width, "teacher_classifier")
        self.teacher_classifier.trainable = cfg.train_teacher_classifier
        self.student_classifier = build_head(cfg.head, self.student_dim, cfg.head_width, "student_classifier")
        self.student_projection = None
        if cfg.similarity_on == "features":
            # The FP and binary features differ in width (e.g. 2048 vs 1024): a learnable
            # linear map of the student feature makes them comparable.
            inputs = tf.keras.Input((self.student_dim,))
            self.student_projection = tf.keras.Model(
                inputs, tf.keras.layers.Dense(self.teacher_dim, use_bias=False, name="fc")(inputs),
                name="student_projection",
            )
        self.lambda_value = tf.Variable(cfg.lambda_start, trainable=False, dtype=tf.float32, name="lambda")

    @classmethod
    def num_views_for(cls, config) -> int:
        return 2 if config.symmetric else 1

    # ------------------------------------------------------------------ hooks
    def trainable_groups(self) -> dict[str, list[tf.Variable]]:
        groups = {
            "student_backbone": self.student_backbone.trainable_variables,
            "student_classifier": self.student_classifier.trainable_variables,
        }
        if self.student_projection is not None:
            groups["student_projection"] = self.student_projection.trainable_variables
        if self.config.train_teacher_classifier:
            groups["teacher_classifier"] = self.teacher_classifier.trainable_variables
        return groups

    def checkpoint_modules(self) -> dict:
        modules = {"student_backbone": self.student_backbone, "student_classifier": self.student_classifier,
                   "teacher_classifier": self.teacher_classifier}
        if self.student_projection is not None:
            modules["student_projection"] = self.student_projection
        return modules

    def callbacks(self, total_steps: int) -> list:
        cfg = self.config
        return [LambdaScheduler(total_steps, cfg.lambda_start, cfg.lambda_end, cfg.lambda_schedule)]

    def extra_logs(self) -> dict:
        return {"lambda": self.lambda_value}

    def exported_heads(self) -> dict[str, tf.keras.Model]:
        return {"classifier": self.student_classifier}

    def compute_losses(self, views, labels=None, training=True) -> dict:
        """Eq. 4 for a batch: {loss, kl, fs, target_entropy}; differentiable w.r.t. θ and φ."""
        cfg = self.config
        # Both views in one call: one larger batch is faster than two on every device.
        images = views[0] if len(views) == 1 else tf.concat(views, axis=0)
        teacher_feat = self.teacher_features(images)
        student_feat = self.student_backbone(images, training=training)
        teacher_logits = self.teacher_classifier(
            teacher_feat, training=training and cfg.train_teacher_classifier
        )
        if not cfg.train_teacher_classifier:
            teacher_logits = tf.stop_gradient(teacher_logits)
        student_logits = self.student_classifier(student_feat, training=training)
        teacher_sim = teacher_logits if cfg.similarity_on == "head" else teacher_feat
        student_sim = (
            student_logits if cfg.similarity_on == "head"
            else self.student_projection(student_feat, training=training)
        )
        if len(views) == 2:
            # Pair student(v1) with teacher(v2) and student(v2) with teacher(v1): swap halves.
            # The mean over the 2B pairs averages the released code's two summed terms.
            teacher_logits = tf.roll(teacher_logits, shift=tf.shape(views[0])[0], axis=0)
            teacher_sim = tf.roll(teacher_sim, shift=tf.shape(views[0])[0], axis=0)
        kl = losses.kl_divergence(teacher_logits, student_logits, cfg.temperature)
        fs = losses.feature_similarity(teacher_sim, student_sim, cfg.feature_similarity)
        return {
            "loss": losses.burn_loss(kl, fs, self.lambda_value),
            "kl": kl,
            "fs": fs,
            "target_entropy": losses.batch_mean_entropy(teacher_logits, cfg.temperature),
        }
