"""Collapse diagnostics the methods log every step, as pure functions of tensors: the
entropy of the batch-mean softmax (a target collapsing onto one class), H(p̄) and E[H(p)]
of log-probability targets (telling a one-class collapse from a flat one), the argmax
agreement of two heads, and the spread of normalised features (SimSiam's collapse watch).
BURN's optional entropy bonus also adds H(p̄) to its loss.
"""

from __future__ import annotations

import tensorflow as tf


def batch_mean_entropy(logits, temperature: float = 1.0):
    """Entropy (nats) of the batch-mean of softmax(logits/T): → 0 when the target collapses
    onto one class, log(C) when the batch spreads evenly."""
    p = tf.reduce_mean(tf.nn.softmax(logits / temperature, axis=-1), axis=0)
    return -tf.reduce_sum(p * tf.math.log(p + 1e-12))


def entropy_of_mean(log_probs):
    """H(p̄) in nats: the entropy of the batch-mean distribution (0 when every image is sent
    to the same class, log C when the batch spreads evenly)."""
    p = tf.reduce_mean(tf.exp(log_probs), axis=0)
    return -tf.reduce_sum(p * tf.math.log(p + 1e-12))


def mean_entropy(log_probs):
    """E[H(p)] in nats: the mean per-image entropy (0 for one-hot targets, log C for uniform
    ones). H(p̄) − E[H(p)] is the mutual information between image and pseudo-class, which
    is 0 both when every image gets the same one-hot target and the same flat one."""
    return tf.reduce_mean(-tf.reduce_sum(tf.exp(log_probs) * log_probs, axis=-1))


def argmax_agreement(logits_a, logits_b):
    """Fraction of rows whose argmax is the same in both."""
    return tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits_a, -1), tf.argmax(logits_b, -1)), tf.float32))


def normalized_feature_std(features):
    """Standard deviation over the batch of the L2-normalised features, averaged over the
    dimensions (SimSiam's collapse watch): 0 when every image maps to one direction,
    ≈ 1/√d for spread features."""
    z = tf.math.l2_normalize(features, axis=-1, epsilon=1e-12)
    return tf.reduce_mean(tf.math.reduce_std(z, axis=0))
