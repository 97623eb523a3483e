"""The supervised loss: softmax cross-entropy of logits against integer class labels (the
supervised pretraining baseline and the label term of supervised KL-div), as a pure function
of tensors."""

from __future__ import annotations

import tensorflow as tf


def cross_entropy(labels, logits):
    """Mean sparse softmax cross-entropy (supervised pretraining and probes)."""
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
