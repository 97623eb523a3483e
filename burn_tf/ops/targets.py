"""Soft targets made from scores, as log-probabilities without gradient to what made them:
DINO's centred and sharpened softmax (:func:`centered_log_probs`) and SwAV's Sinkhorn–Knopp
equipartition (:func:`sinkhorn_log_assignment`). BURN's target variants compare the student
with them through :func:`burn_tf.losses.distillation.kl_to_target`; SwAV's codes feed
:func:`burn_tf.losses.swapped.swapped_prediction_loss`.
"""

from __future__ import annotations

import tensorflow as tf


def centered_log_probs(logits, center, temperature: float):
    """log softmax((logits − center)/T_target): DINO's centred and sharpened target. The
    centre (an EMA of the batch-mean logits, kept by the caller) stops one class from
    dominating; a temperature below the student's keeps the target from going flat."""
    return tf.nn.log_softmax((logits - tf.stop_gradient(center)) / temperature, axis=-1)


def sinkhorn_log_assignment(scores, epsilon: float = 0.05, iterations: int = 3):
    """log Q of SwAV's Sinkhorn–Knopp equipartition, without gradient.

    Q ∝ exp(scores/ε) rescaled ``iterations`` times so that every class receives B/C of
    the batch's mass and every image 1 (rows of exp(log Q) sum to 1). Computed in the log
    domain: raw logits / 0.05 overflow exp() in float32.
    """
    scores = tf.stop_gradient(tf.cast(scores, tf.float32))
    batch = tf.cast(tf.shape(scores)[0], tf.float32)
    classes = tf.cast(tf.shape(scores)[1], tf.float32)
    log_q = scores / epsilon
    log_q -= tf.reduce_logsumexp(log_q)
    for _ in range(iterations):
        log_q -= tf.reduce_logsumexp(log_q, axis=0, keepdims=True) + tf.math.log(classes)
        log_q -= tf.reduce_logsumexp(log_q, axis=1, keepdims=True) + tf.math.log(batch)
    return tf.stop_gradient(log_q + tf.math.log(batch))
