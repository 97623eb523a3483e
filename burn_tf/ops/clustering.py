"""Clustering of a batch's features in TensorFlow, as pure functions: k-means as CLD's
released code (Euclidean, plain-mean centroids that stay differentiable) or spherical (the
CLD supplement's), its initial rows (first rows or farthest points) and spectral grouping
(k-means on the rows of the normalised affinity's top eigenvectors). :func:`group_features`
gives the (labels, centroids) that :func:`burn_tf.losses.groups.cross_level_group_loss`
compares features with. These run inside a training step on one batch, for a fixed
number of rounds; the evaluation's clustering of a whole data set, run to convergence and
scored by NMI, is :mod:`burn_tf.evaluate.cluster`.

>>> labels, centroids = kmeans(features, num_groups=128, iterations=5)
"""

from __future__ import annotations

import tensorflow as tf

GROUPINGS = ("kmeans", "spectral")
# Centroids: CLD's code (plain means, differentiable) or the supplement's (unit, constant).
CENTROIDS = ("mean", "unit")
KMEANS_INITS = ("first_rows", "farthest")


def kmeans(features, num_groups: int, iterations: int = 5, centroids: str = "mean", init: str = "first_rows"):
    """K-means of the rows of ``features`` into ``num_groups``, ``iterations`` rounds (5 in
    CLD's CIFAR scripts). Returns (labels [N] int64 of the last assignment, centroids [K, D]).

    ``centroids="mean"`` (default) is CLD's released ``spectral_clustering.KMeans``: each
    row goes to the nearest centroid (Euclidean), each centroid becomes the plain mean of
    its rows (``scatter_add_`` / count, a count of 1 for an empty group, so its centroid is
    zero), and the centroids stay functions of the live features: the loss back-propagates
    through them (labels are argmins: no gradient). ``centroids="unit"`` is the CLD
    supplement's spherical k-means (§3, Eq. 1): largest cosine, normalised means, an empty
    group keeps its centroid, no gradient at all (labels and centroids constants).

    ``init="first_rows"`` starts from the first K rows (CLD's ``c = x[:K, :]``; every replica
    sees the same global batch, so the result is deterministic); ``init="farthest"`` from
    :func:`farthest_point_rows`, which cannot put two initial centroids in one group."""
    if centroids not in CENTROIDS:
        raise ValueError(f"centroids {centroids!r} is not one of {CENTROIDS}")
    x = tf.cast(features, tf.float32)
    if centroids == "unit":
        x = tf.math.l2_normalize(tf.stop_gradient(x), axis=-1, epsilon=1e-12)
    centres = tf.gather(x, initial_rows(tf.stop_gradient(x), num_groups, init))
    labels = tf.zeros(tf.shape(x)[:1], tf.int64)
    for _ in range(iterations):
        if centroids == "unit":
            scores = tf.matmul(x, centres, transpose_b=True)
        else:  # argmin ||x − c||² = argmax 2x·c − ||c||²
            scores = 2.0 * tf.matmul(x, centres, transpose_b=True) - tf.reduce_sum(tf.square(centres), -1)[None]
        labels = tf.argmax(tf.stop_gradient(scores), axis=-1)
        centres = group_centroids(x, labels, num_groups, centroids, centres)
    return labels, centres


def spherical_kmeans(features, num_groups: int, iterations: int = 5, init: str = "first_rows"):
    """The CLD supplement's spherical k-means: :func:`kmeans` with ``centroids="unit"``."""
    return kmeans(features, num_groups, iterations, centroids="unit", init=init)


def initial_rows(x, count: int, init: str = "first_rows"):
    """Row indices of the initial centroids: the first ``count`` rows (repeating when ``x``
    has fewer) or :func:`farthest_point_rows`."""
    if init not in KMEANS_INITS:
        raise ValueError(f"init {init!r} is not one of {KMEANS_INITS}")
    if init == "first_rows":
        return tf.range(count) % tf.shape(x)[0]
    return farthest_point_rows(tf.math.l2_normalize(x, axis=-1, epsilon=1e-12), count)


def farthest_point_rows(x, count: int):
    """``count`` row indices of unit rows ``x``: the first row, then repeatedly the row
    least similar (cosine) to every row chosen so far (k-means++ without the sampling).
    With fewer distinct rows than ``count``, rows repeat."""
    def body(i, chosen, closest):
        row = tf.cast(tf.argmin(closest), tf.int32)
        chosen = tf.tensor_scatter_nd_update(chosen, [[i]], [row])
        return i + 1, chosen, tf.maximum(closest, tf.linalg.matvec(x, x[row]))

    closest = tf.fill(tf.shape(x)[:1], -2.0)  # below any cosine: the first pick is row 0
    _, chosen, _ = tf.while_loop(lambda i, *_: i < count, body,
                                 (tf.constant(0), tf.zeros((count,), tf.int32), closest))
    return chosen


def group_centroids(x, labels, num_groups: int, centroids: str = "mean", previous=None):
    """Each group's centroid: the plain mean of its rows (``"mean"``; an empty group's is
    zero, as CLD's count of 1 gives; differentiable in ``x``) or their normalised mean
    (``"unit"``; an empty group keeps ``previous``)."""
    sums = tf.math.unsorted_segment_sum(x, labels, num_groups)
    counts = tf.math.unsorted_segment_sum(tf.ones_like(labels, x.dtype), labels, num_groups)
    if centroids == "mean":
        return sums / tf.maximum(counts, 1.0)[:, None]
    return tf.where(counts[:, None] > 0, tf.math.l2_normalize(sums, axis=-1, epsilon=1e-12), previous)


def spectral_embedding(features, num_eigenvectors: int):
    """Rows of the top ``num_eigenvectors`` eigenvectors of the normalised affinity
    D^−½ W D^−½ (Ng–Jordan–Weiss; Yu & Shi 2003), each row L2-normalised (CLD supplement §3).
    W = |cos(f_i, f_j)| with a zero diagonal, as CLD's ``embeddings_to_cosine_similarity``
    (non-negative degrees). The top eigenvectors of D^−½WD^−½ are the bottom ones of the
    normalised Laplacian L = I − D^−½WD^−½ (the supplement's "k largest eigenvalues of L"
    means these). No gradient."""
    x = tf.math.l2_normalize(tf.stop_gradient(tf.cast(features, tf.float32)), axis=-1, epsilon=1e-12)
    w = tf.abs(tf.matmul(x, x, transpose_b=True))
    w = tf.linalg.set_diag(w, tf.zeros(tf.shape(w)[:1]))
    inv_sqrt_degree = tf.math.rsqrt(tf.reduce_sum(w, axis=1) + 1e-12)
    affinity = w * inv_sqrt_degree[:, None] * inv_sqrt_degree[None, :]
    _, vectors = tf.linalg.eigh(affinity)  # ascending eigenvalues
    top = vectors[:, -num_eigenvectors:]
    return tf.math.l2_normalize(top, axis=-1, epsilon=1e-12)


def spectral_grouping(features, num_groups: int, iterations: int = 5, centroids: str = "mean",
                      init: str = "first_rows"):
    """Spectral grouping (CLD supplement §3; ``spectral_clustering.spectral_clustering``):
    :func:`kmeans` on the rows of the top ``num_groups`` eigenvectors of the normalised
    affinity (no gradient: it only decides the labels), then each group's centroid in
    *feature* space, which CLD's group loss compares features with — the plain mean of its
    rows, differentiable, as CLD's ``scatter_add_`` (``"mean"``), or the normalised mean
    without gradient (``"unit"``). The embedding is the NJW one of
    :func:`spectral_embedding` (rows normalised), not CLD's ``kway_normcuts`` scaling.
    Returns (labels [N], centroids [K, D])."""
    labels, _ = kmeans(spectral_embedding(features, num_groups), num_groups, iterations, "unit", init)
    x = tf.cast(features, tf.float32)
    if centroids == "unit":
        x = tf.math.l2_normalize(tf.stop_gradient(x), axis=-1, epsilon=1e-12)
    fallback = tf.gather(x, tf.range(num_groups) % tf.shape(x)[0])
    return labels, group_centroids(x, labels, num_groups, centroids, fallback)


def group_features(features, num_groups: int, grouping: str = "kmeans", iterations: int = 5,
                   centroids: str = "mean", init: str = "first_rows"):
    """(labels, centroids) of ``features`` by ``grouping`` (one of :data:`GROUPINGS`);
    ``centroids`` and ``init`` as :func:`kmeans`."""
    if grouping == "kmeans":
        return kmeans(features, num_groups, iterations, centroids, init)
    if grouping == "spectral":
        return spectral_grouping(features, num_groups, iterations, centroids, init)
    raise ValueError(f"grouping {grouping!r} is not one of {GROUPINGS}")
