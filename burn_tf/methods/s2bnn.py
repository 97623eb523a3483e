"""S2-BNN: a binary network distils a *frozen* FP network including its head (Shen et al.,
CVPR 2021) — BURN's fixed-target baseline (BURN paper Tables 1–4, temperature 0.2).

    loss = KL(softmax(t̂/T) ‖ softmax(ŝ/T)),   t = frozen teacher head(h_ζ(x)),  s = l_φ(k_φ(x))

t̂, ŝ are t and s L2-normalised (``normalize: true``): in S2-BNN's released code both
networks are MoCo query encoders whose output is ``q = normalize(encoder_q(x))``, and the
loss is ``DistributionLoss(student_q / moco_t, teacher_q / moco_t)`` with ``moco_t`` 0.2
(szq0214/S2-BNN ``Distillation_only/step1/main_moco.py``, ``moco/builder_teacher.py``) —
the soft cross-entropy to the teacher's softmax, which is this KL plus the (constant)
teacher entropy. Both see the same view (``images[0]``); with ``symmetric: true`` the
student sees one view and the teacher the other, as BURN's released code does.

The teacher given to :class:`S2BNN` already outputs its head's logits (pretraining builds
it with ``build_teacher(..., include_head=True)``, or from a burn_tf export with the head
saved beside it).

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
    # L2-normalise both outputs before the temperature (S2-BNN's MoCo q; see the docstring).
    normalize: bool = True

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

    def head_outputs(self, views, training) -> tuple[tf.Tensor, tf.Tensor]:
        """(teacher logits, student logits) of the views, paired image by image (the
        teacher's of the other view with ``symmetric``), normalised if configured."""
        images = views[0] if len(views) == 1 else tf.concat(views, axis=0)
        target_logits = self.teacher_features(images)
        student_logits = self.student_classifier(self.student_backbone(images, training=training), training=training)
        if len(views) == 2:
            target_logits = tf.roll(target_logits, shift=tf.shape(views[0])[0], axis=0)
        if self.config.normalize:
            target_logits = tf.math.l2_normalize(target_logits, axis=-1)
            student_logits = tf.math.l2_normalize(student_logits, axis=-1)
        return target_logits, student_logits

    def compute_losses(self, views, labels=None, training=True) -> dict:
        target_logits, student_logits = self.head_outputs(views, training)
        kl = losses.kl_divergence(target_logits, student_logits, self.config.temperature)
        return {"loss": kl, "kl": kl,
                "target_entropy": losses.batch_mean_entropy(target_logits, self.config.temperature)}
