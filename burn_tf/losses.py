"""Losses as pure functions of tensors (no model state), each tested on its own.

>>> kl = kl_divergence(teacher_logits, student_logits, temperature=0.2)
>>> fs = feature_similarity(teacher_vectors, student_vectors, kind="cosine")
"""

from __future__ import annotations

import math

import tensorflow as tf

FEATURE_SIMILARITIES = ("cosine", "l1", "l2")
LAMBDA_SCHEDULES = ("cosine", "constant", "step")


def kl_divergence(teacher_logits, student_logits, temperature: float = 0.2):
    """KL(softmax(teacher/T) ‖ softmax(student/T)), summed over classes, mean over the batch.

    No T² factor, as in the released BURN code (Alg. 1 line 24).
    """
    teacher_log_p = tf.nn.log_softmax(teacher_logits / temperature, axis=-1)
    student_log_p = tf.nn.log_softmax(student_logits / temperature, axis=-1)
    per_example = tf.reduce_sum(tf.exp(teacher_log_p) * (teacher_log_p - student_log_p), axis=-1)
    return tf.reduce_mean(per_example)


def feature_similarity(v1, v2, kind: str = "cosine"):
    """L_FS between two batches of vectors, mean over the batch.

    cosine: 1 − ⟨v1, v2⟩ / (‖v1‖‖v2‖) (BURN, bounded); l1: ‖v1 − v2‖₁; l2: ‖v1 − v2‖₂
    (Table 6 — unbounded, the paper shows their gradients explode).
    """
    if kind == "cosine":
        cos = tf.reduce_sum(tf.math.l2_normalize(v1, -1, 1e-12) * tf.math.l2_normalize(v2, -1, 1e-12), -1)
        return tf.reduce_mean(1.0 - cos)
    if kind == "l1":
        return tf.reduce_mean(tf.reduce_sum(tf.abs(v1 - v2), axis=-1))
    if kind == "l2":
        # sqrt has an infinite derivative at 0; the epsilon keeps identical vectors finite.
        return tf.reduce_mean(tf.sqrt(tf.reduce_sum(tf.square(v1 - v2), axis=-1) + 1e-12))
    raise ValueError(f"feature similarity {kind!r} is not one of {FEATURE_SIMILARITIES}")


def burn_loss(kl, fs, lam):
    """Eq. 4: (1 − λ)·L_KL + λ·L_FS."""
    return (1.0 - lam) * kl + lam * fs


def lambda_at(step, total_steps, start: float = 0.9, end: float = 0.7, schedule: str = "cosine"):
    """λ(t) of Eq. 3 (cosine from ``start`` to ``end``) or a Table-7 alternative.

    constant: ``end`` throughout (the paper's 0.7); step: ``start`` until T/2, then ``end``
    (the shifted, reflected Heaviside of Table 7).
    """
    t = min(max(float(step), 0.0), float(total_steps))
    if schedule == "cosine":
        return end - (end - start) * (math.cos(math.pi * t / total_steps) + 1.0) / 2.0
    if schedule == "constant":
        return end
    if schedule == "step":
        return start if t < total_steps / 2 else end
    raise ValueError(f"lambda schedule {schedule!r} is not one of {LAMBDA_SCHEDULES}")


def batch_mean_entropy(logits, temperature: float = 1.0):
    """Entropy (nats) of the batch-mean of softmax(logits/T): → 0 when the target collapses
    onto one class, log(C) when the batch spreads evenly."""
    p = tf.reduce_mean(tf.nn.softmax(logits / temperature, axis=-1), axis=0)
    return -tf.reduce_sum(p * tf.math.log(p + 1e-12))


def cross_entropy(labels, logits):
    """Mean sparse softmax cross-entropy (supervised pretraining and probes)."""
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def cosine_momentum(step, total_steps: int, start: float, end: float) -> float:
    """τ(t) = end − (end − start)·(cos(πt/T) + 1)/2 (BYOL): ``start`` at t=0, ``end`` at T."""
    t = min(max(float(step), 0.0), float(max(total_steps, 1)))
    return end - (end - start) * (math.cos(math.pi * t / max(total_steps, 1)) + 1.0) / 2.0
