"""Supervised KL-div: a binary network matches the softmax of a frozen FP network that was
trained *with labels* — the recipe of ReActNet (Liu et al., ECCV 2020, "distributional
loss") and Real-to-Binary that BURN's Fig. 2(a) draws as "Supervised KL div." and S2-BNN
turned unsupervised.

    loss = KL(softmax(f(x)) ‖ softmax(b_φ(x)))  [+ ce_weight · CE(y, b_φ(x))]

ReActNet's ``DistributionLoss`` (liuzechun/ReActNet ``utils/KD_loss.py``) is the soft
cross-entropy −Σ softmax(teacher)·log softmax(student) at temperature 1, the KL plus the
constant teacher entropy, and is ReActNet's only loss (``ce_weight: 0``). b_φ is the
student's backbone with a linear classifier to the teacher's classes.

The teacher f here: an FP ResNet-18 (small-input stem) trained by burn_tf's ``supervised``
method on the same Fashion-MNIST labels, loaded with its classifier from its export
(``teacher.weights: <run>/stage1/backbone``; see ``configs/supervised_kl.yaml``). Why not
the shipped EfficientNet-Lite0: its head is ImageNet's 1000 classes, so its softmax on a
Fashion-MNIST image is not a distribution over this task's classes — distilling it is
S2-BNN at T = 1 (``s2bnn.yaml`` already covers that teacher). ReActNet's teacher is a
ResNet-34 trained with the labels of the student's own task.

Labels are needed (``needs_labels``) because the method is supervised end to end; the
step also logs the student's and the teacher's top-1 on them, which shows at once whether
the teacher really is a classifier for these labels.

    model = SupervisedKL(supervised_teacher_with_head, student_backbone, SupervisedKL.Config())
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from burn_tf.losses import classification, distillation
from burn_tf.methods.registry import register
from burn_tf.methods.s2bnn import S2BNN, S2BNNConfig
from burn_tf.methods.supervised import check_labels, top1_accuracy
from burn_tf.schema import check_range


@dataclasses.dataclass
class SupervisedKLConfig(S2BNNConfig):
    name: str = "supervised_kl"
    # ReActNet's DistributionLoss: plain softmaxes (T = 1), raw logits, a linear classifier.
    temperature: float = 1.0
    head: str = "dense"
    normalize: bool = False
    # Weight of a cross-entropy term on the labels beside the KL (ReActNet: 0, KL only).
    ce_weight: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        check_range("method", "ce_weight", self.ce_weight, 0)


@register
class SupervisedKL(S2BNN):
    method_name = "supervised_kl"
    Config = SupervisedKLConfig
    needs_labels = True
    loss_terms = ("kl", "cross_entropy", "accuracy", "teacher_accuracy")

    def compute_losses(self, views, labels, training=True) -> dict:
        labels = check_labels(labels, self.teacher_dim, self.method_name)
        labels = tf.concat([labels] * len(views), axis=0)  # one copy per view (symmetric)
        target_logits, student_logits = self.head_outputs(views, training)
        kl = distillation.kl_divergence(target_logits, student_logits, self.config.temperature)
        ce = classification.cross_entropy(labels, student_logits)
        return {"loss": kl + self.config.ce_weight * ce, "kl": kl, "cross_entropy": ce,
                "accuracy": top1_accuracy(labels, student_logits),
                "teacher_accuracy": top1_accuracy(labels, target_logits)}
