"""burn_tf.losses.clustering (and the Sinkhorn it reuses) against hand-computed and direct
NumPy cases."""

import numpy as np
import pytest
import tensorflow as tf

from burn_tf import losses
from burn_tf.losses import clustering


def log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def separated_points(rng, groups=3, per_group=6, dim=5, spread=0.05):
    """Points around ``groups`` orthogonal directions, shuffled; returns (points, truth)."""
    centres = np.eye(dim)[:groups]
    truth = np.repeat(np.arange(groups), per_group)
    points = unit(centres[truth] + spread * rng.standard_normal((len(truth), dim)))
    order = rng.permutation(len(truth))
    return points[order].astype(np.float32), truth[order]


def same_partition(labels, truth):
    """True when ``labels`` groups the rows exactly as ``truth`` does (up to renaming)."""
    pairs = {(int(a), int(b)) for a, b in zip(labels, truth)}
    return len(pairs) == len(set(truth)) == len({a for a, _ in pairs})


def test_sinkhorn_rows_and_columns_sum_to_their_marginals(rng):
    scores = rng.standard_normal((12, 4)).astype(np.float32)
    q = np.exp(losses.sinkhorn_log_assignment(scores, epsilon=0.05, iterations=3).numpy())
    # The last normalisation is over rows: each image's code sums to 1 exactly.
    np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-5)
    # Columns (prototypes) approach B/K = 3 with more iterations (equipartition).
    q_long = np.exp(losses.sinkhorn_log_assignment(scores, epsilon=0.05, iterations=200).numpy())
    np.testing.assert_allclose(q_long.sum(axis=0), 3.0, rtol=1e-3)
    assert np.abs(q.sum(axis=0) - 3.0).max() > np.abs(q_long.sum(axis=0) - 3.0).max()


def test_swapped_prediction_is_the_mean_cross_entropy_of_every_other_view(rng):
    scores = [rng.standard_normal((5, 4)).astype(np.float32) for _ in range(3)]
    codes = [log_softmax(rng.standard_normal((5, 4))).astype(np.float32) for _ in range(2)]
    got = float(clustering.swapped_prediction_loss(codes, scores, temperature=0.1))
    terms = [-(np.exp(codes[i]) * log_softmax(scores[v] / 0.1)).sum(axis=1).mean()
             for i in range(2) for v in range(3) if v != i]
    assert got == pytest.approx(np.mean(terms), rel=1e-5)
    with pytest.raises(ValueError, match="views"):
        clustering.swapped_prediction_loss(codes, scores[:1])


def test_instance_discrimination_full_bank_and_sampled_negatives(rng):
    features = unit(rng.standard_normal((3, 4))).astype(np.float32)
    bank = unit(rng.standard_normal((6, 4))).astype(np.float32)
    index = np.array([4, 0, 2])
    full = float(clustering.instance_discrimination_loss(features, bank, index, temperature=0.1))
    expected = -log_softmax(features @ bank.T / 0.1)[np.arange(3), index].mean()
    assert full == pytest.approx(expected, rel=1e-5)
    negatives = np.array([[1, 2], [5, 5], [3, 1]])
    sampled = float(clustering.instance_discrimination_loss(features, bank, index, 0.1, negatives))
    logits = np.stack([np.concatenate([[features[b] @ bank[index[b]]], bank[negatives[b]] @ features[b]])
                       for b in range(3)]) / 0.1
    assert sampled == pytest.approx(-log_softmax(logits)[:, 0].mean(), rel=1e-5)
    from_rows = float(clustering.sampled_instance_loss(features, bank[index], bank[negatives], 0.1))
    assert from_rows == pytest.approx(sampled, rel=1e-6)


def test_memory_bank_update_mixes_by_momentum_and_renormalises():
    old = np.array([[1.0, 0.0], [0.6, 0.8]], np.float32)
    new = np.array([[0.0, 1.0], [0.6, 0.8]], np.float32)
    rows = clustering.memory_bank_rows(old, new, momentum=0.5).numpy()
    np.testing.assert_allclose(rows[0], [2 ** -0.5, 2 ** -0.5], rtol=1e-6)  # 0.5·(1,0)+0.5·(0,1), unit
    np.testing.assert_allclose(rows[1], [0.6, 0.8], rtol=1e-6)  # same direction stays put
    np.testing.assert_allclose(clustering.memory_bank_rows(old, new, momentum=1.0).numpy(), old)


@pytest.mark.parametrize("grouping", clustering.GROUPINGS)
def test_grouping_recovers_clearly_separated_groups(grouping, rng):
    points, truth = separated_points(rng)
    labels, centroids = clustering.group_features(points, 3, grouping, iterations=5, centroids="unit",
                                                  init="farthest")
    assert same_partition(labels.numpy(), truth)
    # Each centroid is the unit mean of its group's rows.
    for k in np.unique(labels.numpy()):
        np.testing.assert_allclose(centroids.numpy()[k], unit(points[labels.numpy() == k].sum(0)), atol=1e-5)


def test_spherical_kmeans_keeps_the_centroid_of_an_empty_group():
    points = np.array([[1.0, 0.0], [1.0, 0.01], [0.99, 0.0]], np.float32)
    # Initial centroids: the first two rows, nearly equal; one group may empty out.
    labels, centroids = clustering.spherical_kmeans(points, 2, iterations=3, init="farthest")
    assert np.all(np.isfinite(centroids.numpy()))
    np.testing.assert_allclose(np.linalg.norm(centroids.numpy(), axis=1), 1.0, rtol=1e-5)
    assert set(labels.numpy()) <= {0, 1}


def test_spectral_embedding_spans_the_top_eigenvectors_of_the_normalised_affinity(rng):
    points, _ = separated_points(rng, groups=2, per_group=4)
    w = np.abs(points @ points.T)
    np.fill_diagonal(w, 0.0)
    d = 1.0 / np.sqrt(w.sum(1))
    affinity = w * d[:, None] * d[None, :]
    values, vectors = np.linalg.eigh(affinity)
    embedding = clustering.spectral_embedding(points, 2).numpy()
    assert values[-2] > 0.5 > values[-3]  # two groups: a well separated top-2 eigenspace
    # NumPy's top 2 eigenvectors, rows normalised, up to a rotation within their span (eigh's
    # signs): the Gram matrix of the rows does not depend on it.
    top = unit(vectors[:, -2:])
    np.testing.assert_allclose(embedding @ embedding.T, top @ top.T, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, rtol=1e-5)


def test_cross_level_group_loss_pairs_each_view_with_the_other_views_groups(rng):
    a = unit(rng.standard_normal((4, 3))).astype(np.float32)
    b = unit(rng.standard_normal((4, 3))).astype(np.float32)
    labels_a, labels_b = np.array([0, 1, 1, 0]), np.array([1, 1, 0, 0])
    centroids_a = unit(rng.standard_normal((2, 3))).astype(np.float32)
    centroids_b = unit(rng.standard_normal((2, 3))).astype(np.float32)
    got = float(clustering.cross_level_group_loss(a, b, (labels_a, centroids_a), (labels_b, centroids_b), 0.2))
    ce_a = -log_softmax(a @ centroids_b.T / 0.2)[np.arange(4), labels_b].mean()
    ce_b = -log_softmax(b @ centroids_a.T / 0.2)[np.arange(4), labels_a].mean()
    assert got == pytest.approx((ce_a + ce_b) / 2, rel=1e-5)


@pytest.mark.parametrize("grouping", clustering.GROUPINGS)
def test_unit_centroids_send_no_gradient(grouping, rng):
    points = tf.constant(separated_points(rng)[0])
    with tf.GradientTape() as tape:
        tape.watch(points)
        _, centroids = clustering.group_features(points, 3, grouping, centroids="unit")
        total = tf.reduce_sum(centroids)
    assert tape.gradient(total, points) is None


def test_kmeans_as_clds_code_first_rows_euclidean_plain_means(rng):
    # CLD spectral_clustering.KMeans: c = x[:K]; cl = argmin ||x − c||²; c = scatter_add_/count
    # (count 1 for an empty group: a zero centroid).
    x = rng.standard_normal((10, 3)).astype(np.float32)
    c = x[:4].copy()
    for _ in range(3):
        cl = ((x[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)
        counts = np.maximum(np.bincount(cl, minlength=4), 1)
        c = np.stack([x[cl == k].sum(0) for k in range(4)]) / counts[:, None]
    labels, centroids = clustering.kmeans(x, 4, iterations=3)
    np.testing.assert_array_equal(labels.numpy(), cl)
    np.testing.assert_allclose(centroids.numpy(), c, atol=1e-5)
    # Two equal first rows: every row joins group 0 (ties go to the first), group 1 stays
    # empty with a zero centroid, as CLD's count of 1 gives.
    labels, centroids = clustering.kmeans(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32), 2, 2)
    assert labels.numpy().tolist() == [0, 0, 0]
    np.testing.assert_allclose(centroids.numpy(), [[2 / 3, 1 / 3], [0.0, 0.0]], atol=1e-6)


def test_cross_level_loss_backpropagates_through_mean_centroids(rng):
    # CLD's loss differentiates through the centroids (plain means of the live features):
    # the gradient equals a hand-built version with the centroids as one-hot means of the
    # same labels, and differs from the gradient with the centroids held constant.
    a = tf.constant(unit(rng.standard_normal((8, 3))).astype(np.float32))
    b = tf.constant(unit(rng.standard_normal((8, 3))).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([a, b])
        groups_a, groups_b = clustering.kmeans(a, 3), clustering.kmeans(b, 3)
        loss = clustering.cross_level_group_loss(a, b, groups_a, groups_b, 0.2)

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
