"""Clustering and memory-bank losses as pure functions: SwAV's swapped prediction, NPID's
non-parametric instance discrimination with a memory bank, CLD's grouping (k-means as
CLD's released code or spherical, spectral grouping) and its cross-level group loss.

The Sinkhorn–Knopp equipartition SwAV uses is :func:`burn_tf.losses.sinkhorn_log_assignment`.
State (the bank, SwAV's queue) belongs to the methods; these functions only compute.

>>> loss = swapped_prediction_loss(log_q, scores, temperature=0.1)
>>> labels, centroids = kmeans(features, num_groups=128, iterations=5)
"""

from __future__ import annotations

import tensorflow as tf

GROUPINGS = ("kmeans", "spectral")
# Centroids: CLD's code (plain means, differentiable) or the supplement's (unit, constant).
CENTROIDS = ("mean", "unit")
KMEANS_INITS = ("first_rows", "farthest")


def swapped_prediction_loss(log_assignments: list, scores: list, temperature: float = 0.1):
    """SwAV's swapped prediction (Caron et al. 2020, Eq. 1–2; swav ``main_swav.py``).

    ``log_assignments[i]`` is log Q of view ``i`` (the first views: SwAV's two large crops),
    ``scores[v]`` are view ``v``'s prototype scores ⟨z, c⟩. Every other view predicts each
    assignment: mean over (i, v ≠ i) of the cross-entropy −Σ_k q_ik log softmax(s_v/T)_k,
    averaged over the batch — SwAV's loss as written (cross-entropy, not KL).
    """
    if len(scores) < 2 or not 1 <= len(log_assignments) <= len(scores):
        raise ValueError(f"swapped prediction needs >= 2 views and 1..{len(scores)} assignments, "
                         f"got {len(scores)} views and {len(log_assignments)} assignments")
    total = 0.0
    terms = 0
    for i, log_q in enumerate(log_assignments):
        q = tf.exp(tf.stop_gradient(log_q))
        for v, s in enumerate(scores):
            if v == i:
                continue
            log_p = tf.nn.log_softmax(s / temperature, axis=-1)
            total += -tf.reduce_mean(tf.reduce_sum(q * log_p, axis=-1))
            terms += 1
    return total / terms


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


def _mean_cross_entropy(logits, target):
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=target, logits=logits))


def memory_bank_rows(old_rows, features, momentum: float = 0.5):
    """NPID's bank update (Wu et al. 2018 §3.2; lemniscate ``LinearAverage``):
    v ← normalise(m·v + (1 − m)·f), no gradient."""
    mixed = momentum * tf.cast(old_rows, tf.float32) + (1.0 - momentum) * tf.stop_gradient(tf.cast(features, tf.float32))
    return tf.math.l2_normalize(mixed, axis=-1, epsilon=1e-12)


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


def cross_level_group_loss(features_a, features_b, groups_a, groups_b, temperature: float = 0.2):
    """CLD's cross-level instance–group discrimination (Wang et al. 2021, Eq. 5;
    ``train_cifar_npid_cld.py``): view a's group features must pick, among the centroids
    of view b's groups, the group view b's copy of the image fell in, and vice versa —
    CE(f_a·C_bᵀ/T, y_b) and CE(f_b·C_aᵀ/T, y_a), averaged. ``groups_x`` = (labels,
    centroids) of view x; features are L2-normalised rows. The gradient reaches the
    features through the centroids too when they are functions of them (``kmeans``'s
    ``centroids="mean"``, as CLD's code); the grouping decides what is constant."""
    def one_way(features, groups):
        labels, centroids = groups
        logits = tf.matmul(features, centroids, transpose_b=True) / temperature
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))

    return (one_way(features_a, groups_b) + one_way(features_b, groups_a)) / 2.0
