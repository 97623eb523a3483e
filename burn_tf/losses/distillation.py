"""Distillation losses: a student's logits and features against a frozen teacher's (BURN,
S2-BNN, supervised KL-div), as pure functions of tensors.

- :func:`kl_divergence` — KL between the temperature softmaxes of teacher and student
  (no T² factor, as BURN's released code); :func:`kl_to_target` — the same against a
  target already given as log-probabilities (a centred or Sinkhorn target of
  :mod:`burn_tf.ops.targets`).
- :func:`feature_similarity` — BURN's L_FS (cosine) and its Table-6 alternatives
  (:data:`FEATURE_SIMILARITIES`).
- :func:`burn_loss` — Eq. 4, (1 − λ)·L_KL + λ·L_FS; λ(t) is :func:`burn_tf.ops.schedules.lambda_at`.

>>> kl = kl_divergence(teacher_logits, student_logits, temperature=0.2)
>>> fs = feature_similarity(teacher_vectors, student_vectors, kind="cosine")
"""

from __future__ import annotations

import tensorflow as tf

FEATURE_SIMILARITIES = ("cosine", "l1", "l2", "normalized_mse")


def kl_divergence(teacher_logits, student_logits, temperature: float = 0.2):
    """KL(softmax(teacher/T) ‖ softmax(student/T)), summed over classes, mean over the batch.

    No T² factor, as in the released BURN code (Alg. 1 line 24).
    """
    return kl_to_target(tf.nn.log_softmax(teacher_logits / temperature, axis=-1), student_logits, temperature)


def kl_to_target(target_log_probs, student_logits, temperature: float = 0.2):
    """KL(p ‖ softmax(student/T)) for a target given as log-probabilities (a centred and
    sharpened softmax, a Sinkhorn assignment …), summed over classes, mean over the batch."""
    student_log_p = tf.nn.log_softmax(student_logits / temperature, axis=-1)
    per_example = tf.reduce_sum(tf.exp(target_log_probs) * (target_log_probs - student_log_p), axis=-1)
    return tf.reduce_mean(per_example)


def feature_similarity(v1, v2, kind: str = "cosine"):
    """L_FS between two batches of vectors, mean over the batch.

    cosine: 1 − ⟨v1, v2⟩ / (‖v1‖‖v2‖) (BURN, bounded); l1: ‖v1 − v2‖₁; l2: ‖v1 − v2‖₂
    (Table 6 — unbounded, the paper shows their gradients explode); normalized_mse:
    ‖v1/‖v1‖ − v2/‖v2‖‖² = 2(1 − cos), the released code's form of the cosine term.
    """
    if kind in ("cosine", "normalized_mse"):
        cos = tf.reduce_sum(tf.math.l2_normalize(v1, -1, 1e-12) * tf.math.l2_normalize(v2, -1, 1e-12), -1)
        return tf.reduce_mean((1.0 - cos) * (2.0 if kind == "normalized_mse" else 1.0))
    if kind == "l1":
        return tf.reduce_mean(tf.reduce_sum(tf.abs(v1 - v2), axis=-1))
    if kind == "l2":
        # sqrt has an infinite derivative at 0; the epsilon keeps identical vectors finite.
        return tf.reduce_mean(tf.sqrt(tf.reduce_sum(tf.square(v1 - v2), axis=-1) + 1e-12))
    raise ValueError(f"feature similarity {kind!r} is not one of {FEATURE_SIMILARITIES}")


def burn_loss(kl, fs, lam):
    """Eq. 4: (1 − λ)·L_KL + λ·L_FS."""
    return (1.0 - lam) * kl + lam * fs
