"""S2-BNN: a binary network distils a *frozen* FP network including its head (Shen et al.,
CVPR 2021) — BURN's fixed-target baseline (BURN paper Tables 1–4, temperature 0.2).

    loss = KL(softmax(t/T) ‖ softmax(l_φ(k_φ(x))/T)),   t = frozen teacher head(h_ζ(x))

The teacher given to :class:`S2BNN` already outputs its head's logits (pretraining builds
it with ``build_teacher(..., include_head=True)``). With ``symmetric: true`` the student
sees one view and the teacher the other, as BURN's released code does.

    model = S2BNN(teacher_with_head, student_backbone, S2BNN.Config())
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from burn_tf import losses
from burn_tf.methods.base import DistillationMethod, MethodConfig
from burn_tf.methods.registry import register
from burn_tf.models.heads import build_head
from burn_tf.schema import check_choice, check_range


@dataclasses.dataclass
class S2BNNConfig(MethodConfig):
    name: str = "s2bnn"
    temperature: float = 0.2
    # The student's classifier l_φ: "dense" or "mlp" (hidden width head_hidden) to the
    # teacher head's width.
    head: str = "mlp"
    head_hidden: int = 2000
    symmetric: bool = False

    def __post_init__(self):
        check_choice("method", "head", self.head, ("mlp", "dense"))
        check_range("method", "temperature", self.temperature, 0, low_open=True)
        check_range("method", "head_hidden", self.head_hidden, 1)


@register
class S2BNN(DistillationMethod):
    method_name = "s2bnn"
    Config = S2BNNConfig
    loss_terms = ("kl", "target_entropy")
    teacher_includes_head = True

    def __init__(self, teacher_with_head: tf.keras.Model, student_backbone: tf.keras.Model,
                 config: S2BNNConfig | None = None, accumulation_steps: int = 1, **kwargs):
        super().__init__(teacher_with_head, student_backbone, config, accumulation_steps=accumulation_steps,
                         **kwargs)
        cfg = self.config
        self.student_classifier = build_head(cfg.head, self.student_dim, self.teacher_dim, "student_classifier",
                                             hidden=cfg.head_hidden)

    @classmethod
    def num_views_for(cls, config) -> int:
        return 2 if config.symmetric else 1

    def trainable_groups(self):
        return {"student_backbone": self.student_backbone.trainable_variables,
                "student_classifier": self.student_classifier.trainable_variables}

    def checkpoint_modules(self):
        return {"student_backbone": self.student_backbone, "student_classifier": self.student_classifier}

    def exported_heads(self):
        return {"classifier": self.student_classifier}

    def compute_losses(self, views, labels=None, training=True) -> dict:
        images = views[0] if len(views) == 1 else tf.concat(views, axis=0)
        target_logits = self.teacher_features(images)
        student_logits = self.student_classifier(self.student_backbone(images, training=training), training=training)
        if len(views) == 2:
            target_logits = tf.roll(target_logits, shift=tf.shape(views[0])[0], axis=0)
        kl = losses.kl_divergence(target_logits, student_logits, self.config.temperature)
        return {"loss": kl, "kl": kl,
                "target_entropy": losses.batch_mean_entropy(target_logits, self.config.temperature)}
