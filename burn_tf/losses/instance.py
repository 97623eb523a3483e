"""NPID's non-parametric instance discrimination (Wu et al., CVPR 2018), as pure functions
of tensors: each image's feature must pick its own row of a memory bank, against the whole
bank (:func:`instance_logits`) or K sampled rows (:func:`sampled_instance_logits`), and the
mean cross-entropy of either; or NPID's noise-contrastive estimation against K sampled rows
with a normaliser Z estimated once (:func:`nce_loss`, :func:`estimate_nce_normaliser`:
lemniscate.pytorch ``lib/NCEAverage.py``, ``lib/NCECriterion.py``). The bank is the method's
state; its update rule is :func:`burn_tf.ops.memory.memory_bank_rows`.

>>> loss = instance_discrimination_loss(features, bank, index, temperature=0.1)
"""

from __future__ import annotations

import tensorflow as tf


def instance_logits(features, bank, index, temperature: float = 0.1, negative_index=None):
    """NPID's non-parametric softmax logits (Wu et al. 2018, Eq. 2) and the target column.

    ``features`` [B, D] and the bank's rows are L2-normalised. With ``negative_index`` None
    the logits are against every bank row ([B, N], target = ``index``: the full softmax,
    CLD's CIFAR setting ``--nce-k 0``); with ``negative_index`` [B, K] they are
    [positive, K sampled negatives] ([B, 1 + K], target 0: NPID's sampled approximation in
    its InfoNCE form, :func:`sampled_instance_logits`). Returns (logits / T, target).
    """
    features = tf.convert_to_tensor(features)
    if negative_index is None:
        bank = tf.stop_gradient(tf.cast(bank, features.dtype))
        return tf.matmul(features, bank, transpose_b=True) / temperature, tf.cast(index, tf.int64)
    return sampled_instance_logits(features, tf.gather(bank, index), tf.gather(bank, negative_index), temperature)


def sampled_instance_logits(features, positive_rows, negative_rows, temperature: float = 0.1):
    """[f·v_i, f·v_n1 … f·v_nK] / T and target 0, from the rows already read: the positive
    bank row [B, D] and the K negative rows [B, K, D] of each image (no gradient to them)."""
    features = tf.convert_to_tensor(features)
    positive_rows = tf.stop_gradient(tf.cast(positive_rows, features.dtype))
    negative_rows = tf.stop_gradient(tf.cast(negative_rows, features.dtype))
    positive = tf.reduce_sum(features * positive_rows, axis=-1, keepdims=True)
    negatives = tf.einsum("bd,bkd->bk", features, negative_rows)
    logits = tf.concat([positive, negatives], axis=1) / temperature
    return logits, tf.zeros(tf.shape(features)[:1], tf.int64)


def instance_discrimination_loss(features, bank, index, temperature: float = 0.1, negative_index=None):
    """Mean cross-entropy of :func:`instance_logits`: each image must pick its own bank row."""
    return _mean_cross_entropy(*instance_logits(features, bank, index, temperature, negative_index))


def sampled_instance_loss(features, positive_rows, negative_rows, temperature: float = 0.1):
    """Mean cross-entropy of :func:`sampled_instance_logits` (the positive is column 0)."""
    return _mean_cross_entropy(*sampled_instance_logits(features, positive_rows, negative_rows, temperature))


NCE_EPS = 1e-7  # lemniscate lib/NCECriterion.py eps


def _nce_scores(features, positive_rows, negative_rows, temperature):
    """exp(f·v / T) for [positive, negatives] ([B, 1 + K]); no gradient to the bank rows."""
    logits, _ = sampled_instance_logits(features, positive_rows, negative_rows, temperature)
    return tf.exp(logits)


def estimate_nce_normaliser(features, positive_rows, negative_rows, temperature: float, dataset_size: int):
    """NPID's Z, estimated once from the first batch (lemniscate ``NCEAverage.py`` l. 31-34):
    the mean of exp(f·v/T) over the batch's positive and sampled rows, times the number of
    bank rows N (a Monte-Carlo estimate of Σ_j exp(f·v_j/T)). A constant: no gradient."""
    scores = _nce_scores(features, positive_rows, negative_rows, temperature)
    return tf.stop_gradient(tf.reduce_mean(scores) * float(dataset_size))


def nce_loss(features, positive_rows, negative_rows, temperature: float, normaliser, dataset_size: int):
    """NPID's NCE loss (Wu et al. 2018, Eq. 6; lemniscate ``NCECriterion.py``): with
    P(i|f) = exp(f·v_i/T)/Z and the uniform noise P_n = 1/N, each image's positive row must
    be told from noise, h = P/(P + K·P_n), and each of its K negative rows told as noise:
    −[Σ_b log h(pos_b) + Σ_{b,k} log(1 − h(neg_bk))] / B (eps 1e-7 in the denominators, as
    the reference). ``normaliser`` Z is a constant (:func:`estimate_nce_normaliser`)."""
    scores = _nce_scores(features, positive_rows, negative_rows, temperature)
    probability = scores / tf.cast(normaliser, scores.dtype)
    k = tf.cast(tf.shape(negative_rows)[1], scores.dtype)
    noise = k / float(dataset_size)
    positive = tf.math.log(probability[:, 0] / (probability[:, 0] + noise + NCE_EPS))
    negative = tf.math.log(noise / (probability[:, 1:] + noise + NCE_EPS))
    batch = tf.cast(tf.shape(features)[0], scores.dtype)
    return -(tf.reduce_sum(positive) + tf.reduce_sum(negative)) / batch


def _mean_cross_entropy(logits, target):
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=target, logits=logits))
