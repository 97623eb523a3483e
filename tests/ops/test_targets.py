"""burn_tf.ops.targets: the centred target by hand, Sinkhorn–Knopp against SwAV's own (NumPy)."""

import math

import numpy as np
import tensorflow as tf

from burn_tf.ops import targets


def test_centered_log_probs_by_hand():
    logits = np.array([[2.0, 0.0], [1.0, 1.0]], np.float32)
    center = np.array([1.0, 0.0], np.float32)
    got = np.exp(targets.centered_log_probs(logits, center, 0.5).numpy())
    # row 1: (1, 0)/0.5 = (2, 0) → softmax; row 2: (0, 1)/0.5 = (0, 2)
    e = math.exp(2.0)
    np.testing.assert_allclose(got, [[e / (e + 1), 1 / (e + 1)], [1 / (e + 1), e / (e + 1)]], rtol=1e-5)


def _swav_sinkhorn(scores, eps, iters):
    """SwAV's distributed_sinkhorn (single process) in numpy float64."""
    q = np.exp(scores / eps).T
    q /= q.sum()
    k, b = q.shape
    for _ in range(iters):
        q /= q.sum(axis=1, keepdims=True)
        q /= k
        q /= q.sum(axis=0, keepdims=True)
        q /= b
    return (q * b).T


def test_sinkhorn_matches_swav_and_equipartitions_without_gradient():
    rng = np.random.default_rng(0)
    scores = rng.uniform(-1, 1, (16, 8)).astype(np.float32)
    scores[:, 0] += 0.5  # one class preferred by every image
    log_q = targets.sinkhorn_log_assignment(scores, 0.05, 3)
    q = np.exp(log_q.numpy())
    np.testing.assert_allclose(q, _swav_sinkhorn(scores.astype(np.float64), 0.05, 3), rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-5)
    # the preferred class gets about its share B/C = 2, not the whole batch
    assert q[:, 0].sum() < 3.0
    # raw logits / 0.05 would overflow exp() outside the log domain
    assert np.isfinite(targets.sinkhorn_log_assignment(scores * 100, 0.05, 3).numpy()).all()
    x = tf.Variable(scores)
    with tf.GradientTape() as tape:
        out = tf.reduce_sum(targets.sinkhorn_log_assignment(x, 0.05, 3))
    assert tape.gradient(out, x) is None


def test_sinkhorn_rows_and_columns_sum_to_their_marginals(rng):
    scores = rng.standard_normal((12, 4)).astype(np.float32)
    q = np.exp(targets.sinkhorn_log_assignment(scores, epsilon=0.05, iterations=3).numpy())
    # The last normalisation is over rows: each image's code sums to 1 exactly.
    np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-5)
    # Columns (prototypes) approach B/K = 3 with more iterations (equipartition).
    q_long = np.exp(targets.sinkhorn_log_assignment(scores, epsilon=0.05, iterations=200).numpy())
    np.testing.assert_allclose(q_long.sum(axis=0), 3.0, rtol=1e-3)
    assert np.abs(q.sum(axis=0) - 3.0).max() > np.abs(q_long.sum(axis=0) - 3.0).max()
