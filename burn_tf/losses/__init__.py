"""Losses as pure functions of tensors (no model state), each tested on its own.

This module holds the distillation losses (BURN, S2-BNN, supervised) and the schedules;
each family of self-supervised losses has its own submodule, imported by the methods that
use it (``from burn_tf.losses import contrastive``): ``contrastive`` (NT-Xent, InfoNCE with
a queue, BYOL), ``clustering`` (Sinkhorn/SwAV, NPID memory bank, CLD grouping).

>>> kl = kl_divergence(teacher_logits, student_logits, temperature=0.2)
>>> fs = feature_similarity(teacher_vectors, student_vectors, kind="cosine")
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

FEATURE_SIMILARITIES = ("cosine", "l1", "l2", "normalized_mse")
# step: ``start`` then ``end`` at T/2 (burn_tf's earlier reading); heaviside: the paper's
# literal Table-7 H(−t + T/2), i.e. λ = 1 (L_FS alone) until T/2, then 0 (KL alone).
LAMBDA_SCHEDULES = ("cosine", "constant", "step", "heaviside")


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


def lambda_at(step, total_steps, start: float = 0.9, end: float = 0.7, schedule: str = "cosine"):
    """λ(t) of Eq. 3 (cosine from ``start`` to ``end``) or a Table-7 alternative.

    constant: ``end`` throughout (the paper's 0.7); step: ``start`` until T/2, then ``end``;
    heaviside: the paper's literal H(−t + T/2) of Table 7 — 1 until T/2, then 0 (``start``
    and ``end`` are ignored).
    """
    t = min(max(float(step), 0.0), float(total_steps))
    if schedule == "cosine":
        return end - (end - start) * (math.cos(math.pi * t / total_steps) + 1.0) / 2.0
    if schedule == "constant":
        return end
    if schedule == "step":
        return start if t < total_steps / 2 else end
    if schedule == "heaviside":
        return 1.0 if t < total_steps / 2 else 0.0
    raise ValueError(f"lambda schedule {schedule!r} is not one of {LAMBDA_SCHEDULES}")


def batch_mean_entropy(logits, temperature: float = 1.0):
    """Entropy (nats) of the batch-mean of softmax(logits/T): → 0 when the target collapses
    onto one class, log(C) when the batch spreads evenly."""
    p = tf.reduce_mean(tf.nn.softmax(logits / temperature, axis=-1), axis=0)
    return -tf.reduce_sum(p * tf.math.log(p + 1e-12))


def kl_warmup_weight(step, warmup_steps: int) -> float:
    """Weight of the KL term during a linear warm-up: (t + 1)/W for t < W, then 1 (W = 0:
    always 1). Keeps the KL's large early gradients from swamping L_FS's."""
    if warmup_steps <= 0:
        return 1.0
    return min((max(float(step), 0.0) + 1.0) / float(warmup_steps), 1.0)


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


def ema_distance_simulation(runs: int = 10, dim: int = 100, iterations: int = 100, lr: float = 4.8,
                            tau: float = 0.99, seed: int = 0) -> dict:
    """Eq. 5 (paper Fig. 5): a *Backbone* vector takes random steps η·Δn, Δn ~ N(0, I), and a
    *Target* follows it by EMA τ; both start at the same random values. Returns the L2
    distance between them after each iteration, for the full-precision vectors ("fp") and
    their signs ("binary"), as arrays of shape (runs, iterations)."""
    rng = np.random.default_rng(seed)
    fp = np.zeros((runs, iterations))
    binary = np.zeros((runs, iterations))
    for r in range(runs):
        backbone = rng.standard_normal(dim)
        target = backbone.copy()
        for i in range(iterations):
            backbone = backbone + lr * rng.standard_normal(dim)
            target = tau * target + (1.0 - tau) * backbone
            fp[r, i] = np.linalg.norm(backbone - target)
            binary[r, i] = np.linalg.norm(np.sign(backbone) - np.sign(target))
    return {"fp": fp, "binary": binary}


def cross_entropy(labels, logits):
    """Mean sparse softmax cross-entropy (supervised pretraining and probes)."""
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def cosine_momentum(step, total_steps: int, start: float, end: float) -> float:
    """τ(t) = end − (end − start)·(cos(πt/T) + 1)/2 (BYOL): ``start`` at t=0, ``end`` at T."""
    t = min(max(float(step), 0.0), float(max(total_steps, 1)))
    return end - (end - start) * (math.cos(math.pi * t / max(total_steps, 1)) + 1.0) / 2.0
