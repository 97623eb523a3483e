"""burn_tf.ops.clustering: k-means as CLD's code and spherical, spectral grouping, against
hand-computed and direct NumPy cases."""

import numpy as np
import pytest
import tensorflow as tf

from burn_tf.ops import clustering


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
