"""Supervised pretraining: cross-entropy on the labels through a classifier on the backbone —
BURN's "Supervised Pre." row (Tables 1–4), the upper reference every unsupervised method is
read against, and the way to train a supervised FP teacher for ``supervised_kl``.

    loss = CE(y, classifier(backbone(x)))

One augmented view per image; the dataset yields ``(view, label)``. The classifier is a
single linear layer on the pooled feature (torchvision's ``fc``, ReActNet-A's ``fc``); it
is exported beside the backbone as ``classifier.keras``, so a supervised FP run loads as a
teacher *with its head* (``teacher.weights: <run>/stage1/backbone``).

    model = Supervised(backbone, Supervised.Config(num_classes=10))
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from burn_tf.losses import classification
from burn_tf.methods.base import MethodConfig, PretrainMethod
from burn_tf.methods.registry import register
from burn_tf.models.heads import build_head
from burn_tf.schema import check_range


@dataclasses.dataclass
class SupervisedConfig(MethodConfig):
    name: str = "supervised"
    # Fashion-MNIST's 10 classes; every label must lie in [0, num_classes).
    num_classes: int = 10

    def __post_init__(self):
        check_range("method", "num_classes", self.num_classes, 2)


def check_labels(labels, num_classes: int, method: str):
    """``labels`` as int64 after checking each lies in [0, num_classes): an unlabelled
    example (label −1 from a source without labels) fails the step, naming why."""
    labels = tf.cast(labels, tf.int64)
    checks = [
        tf.debugging.assert_non_negative(
            labels, message=f"{method}: a label is -1 (an unlabelled example); this method needs labelled data"),
        tf.debugging.assert_less(
            labels, tf.constant(num_classes, tf.int64),
            message=f"{method}: a label is >= method.num_classes={num_classes}"),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(labels)


def top1_accuracy(labels, logits):
    return tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, axis=-1), labels), tf.float32))


@register
class Supervised(PretrainMethod):
    method_name = "supervised"
    Config = SupervisedConfig
    num_views = 1
    needs_labels = True
    loss_terms = ("cross_entropy", "accuracy")

    def __init__(self, backbone: tf.keras.Model, config: SupervisedConfig | None = None,
                 accumulation_steps: int = 1, **kwargs):
        super().__init__(backbone, config, accumulation_steps=accumulation_steps, **kwargs)
        self.classifier = self.add_head("classifier", build_head("dense", self.feature_dim, self.config.num_classes,
                                                                 "classifier"))

    def compute_losses(self, views, labels, training=True) -> dict:
        labels = check_labels(labels, self.config.num_classes, self.method_name)
        logits = self.classifier(self.backbone(views[0], training=training), training=training)
        ce = classification.cross_entropy(labels, logits)
        return {"loss": ce, "cross_entropy": ce, "accuracy": top1_accuracy(labels, logits)}
