"""burn_tf.losses.groups (CLD's cross-level group loss) against direct NumPy and hand-built
TensorFlow computations."""

import numpy as np
import pytest
import tensorflow as tf

from burn_tf.losses import groups
from burn_tf.ops import clustering


def log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_cross_level_group_loss_pairs_each_view_with_the_other_views_groups(rng):
    a = unit(rng.standard_normal((4, 3))).astype(np.float32)
    b = unit(rng.standard_normal((4, 3))).astype(np.float32)
    labels_a, labels_b = np.array([0, 1, 1, 0]), np.array([1, 1, 0, 0])
    centroids_a = unit(rng.standard_normal((2, 3))).astype(np.float32)
    centroids_b = unit(rng.standard_normal((2, 3))).astype(np.float32)
    got = float(groups.cross_level_group_loss(a, b, (labels_a, centroids_a), (labels_b, centroids_b), 0.2))
    ce_a = -log_softmax(a @ centroids_b.T / 0.2)[np.arange(4), labels_b].mean()
    ce_b = -log_softmax(b @ centroids_a.T / 0.2)[np.arange(4), labels_a].mean()
    assert got == pytest.approx((ce_a + ce_b) / 2, rel=1e-5)


def test_cross_level_loss_backpropagates_through_mean_centroids(rng):
    # CLD's loss differentiates through the centroids (plain means of the live features):
    # the gradient equals a hand-built version with the centroids as one-hot means of the
    # same labels, and differs from the gradient with the centroids held constant.
    a = tf.constant(unit(rng.standard_normal((8, 3))).astype(np.float32))
    b = tf.constant(unit(rng.standard_normal((8, 3))).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([a, b])
        groups_a, groups_b = clustering.kmeans(a, 3), clustering.kmeans(b, 3)
        loss = groups.cross_level_group_loss(a, b, groups_a, groups_b, 0.2)

        def by_hand(x, labels):
            one_hot = tf.one_hot(labels, 3)
            return tf.matmul(one_hot, x, transpose_a=True) / tf.maximum(tf.reduce_sum(one_hot, 0), 1.0)[:, None]

        def ce(features, labels, centroids):
            return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels, tf.matmul(features, centroids, transpose_b=True) / 0.2))

        la, lb = groups_a[0], groups_b[0]
        expected = (ce(a, lb, by_hand(b, lb)) + ce(b, la, by_hand(a, la))) / 2
        held = (ce(a, lb, tf.stop_gradient(by_hand(b, lb))) + ce(b, la, tf.stop_gradient(by_hand(a, la)))) / 2
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    got, want, without = (tape.gradient(t, b).numpy() for t in (loss, expected, held))
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.abs(got - without).max() > 1e-2  # the centroids' share of the gradient
