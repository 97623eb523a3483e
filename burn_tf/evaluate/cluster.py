"""Clustering of backbone features (CLD supplement §3, seed 003): spherical k-means and
spectral clustering, scored against the true classes by NMI and ARI over a range of group
numbers.

* **Spherical k-means** — minimises Σᵢ (1 − cos(fᵢ, u_c(i))) with hard assignments, solved
  by EM: assign each L2-normalised feature to the centroid of largest cosine, then set each
  centroid to the normalised sum of its members. scikit-learn has no spherical k-means
  (its ``KMeans`` is Euclidean), so :func:`spherical_kmeans_plusplus` is written here in numpy
  (k-means++-style seeding on cosine distance, ``n_init`` restarts, the best objective kept;
  an emptied cluster is re-seeded with the worst-fitting point).
* **Spectral** (Shi & Malik / Ng–Jordan–Weiss, as the seed describes): an affinity graph
  ``w_ij = max(cos(f_i, f_j), 0)`` restricted to each point's ``n_neighbors`` cosine nearest
  neighbours (symmetrised by max; the seed's dense all-pairs graph does not fit 60k points),
  the normalised Laplacian ``L = D^-½ (D − W) D^-½``, the eigenvectors of its k *smallest*
  eigenvalues (= the k largest of ``D^-½ W D^-½``; the seed's "k largest eigenvalues of L"
  means these), rows normalised, then EM clustering of the rows (the spherical k-means
  above). scikit-learn's ``SpectralClustering`` is not used because it skips the row
  normalisation (its embedding is ``D^-½``-scaled instead), i.e. it is not this recipe.
  Eigenvectors come from ``scipy.sparse.linalg.eigsh``.

Scores: NMI (``sklearn.metrics.normalized_mutual_info_score``), ARI
(``adjusted_rand_score``) and purity (fraction of items in their cluster's majority class,
:func:`burn_tf.evaluate.metrics.purity`).
The CLD table A.1 reports the kNN accuracy of networks *trained* with each clustering at
each group number; evaluating a fixed backbone cannot retrain, so this evaluator reports
how well each method's groups recover the classes at each group number instead.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from burn_tf.evaluate import common
from burn_tf.evaluate.data import (
    check_labels,
    data_name,
    load_labelled_data,
    random_subset,
)
from burn_tf.evaluate.features import (
    check_features,
    embed_timed,
    l2_normalize,
    resolve_input_size,
)
from burn_tf.evaluate.metrics import purity
from burn_tf.evaluate.neighbours import cosine_topk
from burn_tf.evaluate.plots import save_png
from burn_tf.evaluate.threads import limit_blas_threads
from burn_tf.progress import Progress

METHODS = ("spherical_kmeans", "spectral")
PROTOCOL_SOURCE = ("CLD (seed 003) supplement section 3: spherical k-means and spectral clustering "
                   "(normalised Laplacian, Ng-Jordan-Weiss) of the features at several group numbers; "
                   "scored by NMI / ARI / purity against the classes (the seed retrains per group "
                   "number, a fixed backbone cannot)")


# ------------------------------------------------------------------ spherical k-means


def _check_features(features, n_clusters: int) -> np.ndarray:
    x = check_features(features)
    if not 1 <= int(n_clusters) <= len(x):
        raise ValueError(f"n_clusters={n_clusters} must be between 1 and the number of items ({len(x)})")
    return x


def _seed_centroids(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding with the cosine distance 1 − cos."""
    centroids = [x[rng.integers(len(x))]]
    best = x @ centroids[0]
    for _ in range(1, k):
        dist = np.clip(1.0 - best, 0.0, None).astype(np.float64)
        total = dist.sum()
        i = rng.choice(len(x), p=dist / total) if total > 0 else rng.integers(len(x))
        centroids.append(x[i])
        best = np.maximum(best, x @ x[i])
    return np.stack(centroids)


def spherical_kmeans_plusplus(
    features,
    n_clusters: int,
    *,
    n_init: int = 5,
    max_iter: int = 100,
    tol: float = 1e-7,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Spherical k-means (EM on the cosine) → (labels [N], unit centroids [k, D], objective).

    The objective is Σᵢ (1 − cos(fᵢ, u_c(i))); k-means++ seeding on the cosine distance, run
    to convergence, the best of ``n_init`` seeded runs kept. Not CLD's in-batch grouping
    (:func:`burn_tf.ops.clustering.spherical_kmeans`: TensorFlow, first-rows start, a
    fixed 5 rounds inside the training step).
    """
    from scipy import sparse

    x = l2_normalize(_check_features(features, n_clusters))
    k = int(n_clusters)
    rng = np.random.default_rng(seed)
    best = (None, None, np.inf)
    for _ in range(max(1, int(n_init))):
        centroids = _seed_centroids(x, k, rng)
        previous = np.inf
        for _ in range(max_iter):
            sims = x @ centroids.T                          # E step: hard assignment
            labels = np.argmax(sims, axis=1)
            fit = sims[np.arange(len(x)), labels]
            objective = float(np.sum(1.0 - fit, dtype=np.float64))
            members = sparse.csr_matrix(                    # M step: normalised member sums
                (np.ones(len(x), np.float32), (labels, np.arange(len(x)))), shape=(k, len(x)))
            sums = np.asarray(members @ x)
            counts = np.bincount(labels, minlength=k)
            for j in np.flatnonzero(counts == 0):           # re-seed empty clusters
                worst = int(np.argmin(fit))
                sums[j] = x[worst]
                fit[worst] = np.inf
            centroids = l2_normalize(sums)
            if previous - objective <= tol * max(1.0, abs(objective)):
                break
            previous = objective
        sims = x @ centroids.T
        labels = np.argmax(sims, axis=1)
        objective = float(np.sum(1.0 - sims[np.arange(len(x)), labels], dtype=np.float64))
        if objective < best[2]:
            best = (labels.astype(np.int64), centroids, objective)
    return best


# -------------------------------------------------------------------------- spectral


def knn_affinity(features, n_neighbors: int = 10, chunk_size: int | None = None):
    """Sparse symmetric affinity: w_ij = max(cos, 0) between kNN pairs (max-symmetrised)."""
    from scipy import sparse

    x = np.asarray(features, np.float32)
    n = len(x)
    m = int(min(n_neighbors, n - 1))
    if m < 1:
        raise ValueError(f"spectral clustering needs at least 2 items, got {n}")
    sims, index = cosine_topk(x, x, m + 1, chunk_size=chunk_size)
    # Drop each point itself (not necessarily in column 0 when there are duplicates).
    not_self = index != np.arange(n)[:, None]
    keep = np.cumsum(not_self, axis=1) <= m
    mask = not_self & keep
    rows = np.repeat(np.arange(n), mask.sum(axis=1))
    w = sparse.csr_matrix((np.clip(sims[mask], 0.0, None), (rows, index[mask])), shape=(n, n))
    return w.maximum(w.T).tocsr()


def spectral_embedding_njw(affinity, n_components: int, seed: int = 0) -> np.ndarray:
    """Rows of the top eigenvectors of D^-½ W D^-½ (= bottom of the normalised Laplacian),
    L2-normalised per row (Ng–Jordan–Weiss)."""
    from scipy import sparse
    from scipy.sparse.linalg import eigsh

    n = affinity.shape[0]
    degree = np.asarray(affinity.sum(axis=1)).ravel()
    d_inv_sqrt = 1.0 / np.sqrt(np.maximum(degree, 1e-12))
    m = sparse.diags(d_inv_sqrt) @ affinity @ sparse.diags(d_inv_sqrt)
    k = int(n_components)
    if n <= 1500 or k >= n - 1:
        _, vectors = np.linalg.eigh(m.toarray())
        vectors = vectors[:, ::-1][:, :k]
    else:
        v0 = np.random.default_rng(seed).uniform(-1, 1, n)
        _, vectors = eigsh(m.astype(np.float64), k=k, which="LA", v0=v0, tol=1e-6)
        vectors = vectors[:, ::-1]
    return l2_normalize(vectors.astype(np.float32))


def spectral_clustering(
    features,
    n_clusters: int,
    *,
    n_neighbors: int = 10,
    n_init: int = 5,
    seed: int = 0,
    chunk_size: int | None = None,
) -> np.ndarray:
    """Spectral clustering of features (see module docstring) → labels [N]."""
    x = _check_features(features, n_clusters)
    affinity = knn_affinity(x, n_neighbors, chunk_size)
    embedding = spectral_embedding_njw(affinity, n_clusters, seed)
    labels, _, _ = spherical_kmeans_plusplus(embedding, n_clusters, n_init=n_init, seed=seed)
    return labels


# --------------------------------------------------------------------------- scoring


def cluster_features(
    features,
    labels,
    n_clusters: Sequence[int] = (5, 10, 20, 50),
    methods: Sequence[str] = METHODS,
    *,
    n_neighbors: int = 10,
    n_init: int = 5,
    seed: int = 0,
    blas_threads: int | None = 1,
) -> list[dict]:
    """Clusters ``features`` with each method at each group number → rows of
    ``{"groups", "method", "nmi", "ari", "purity", "seconds"}``. ``blas_threads``: see
    :func:`~burn_tf.evaluate.threads.limit_blas_threads`."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    labels = np.asarray(labels)
    x = np.asarray(features, np.float32)
    if len(labels) != len(x):
        raise ValueError(f"{len(x)} features but {len(labels)} labels")
    check_labels(labels, "labels", min_classes=2)
    if isinstance(n_clusters, int):
        n_clusters = [n_clusters]
    if isinstance(methods, str):
        methods = [methods]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown clustering method(s) {unknown}; valid: {', '.join(METHODS)}")
    for k in n_clusters:
        _check_features(x, k)
    rows = []
    meter = Progress("cluster", len(n_clusters) * len(methods), "clusterings")
    for k in n_clusters:
        for method in methods:
            start = time.perf_counter()
            with limit_blas_threads(blas_threads):
                if method == "spherical_kmeans":
                    pred = spherical_kmeans_plusplus(x, k, n_init=n_init, seed=seed)[0]
                else:
                    pred = spectral_clustering(x, k, n_neighbors=n_neighbors, n_init=n_init, seed=seed)
            rows.append({
                "groups": int(k),
                "method": method,
                "nmi": float(normalized_mutual_info_score(labels, pred)),
                "ari": float(adjusted_rand_score(labels, pred)),
                "purity": purity(labels, pred),
                "seconds": round(time.perf_counter() - start, 3),
            })
            meter.advance(note=f"{method}, {k} groups")
    return rows


def plot_cluster(rows: list[dict], path, title: str = "") -> str:
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullLocator

    fig = Figure(figsize=(6, 3.8), dpi=110)
    ax = fig.add_subplot(111)
    for method, color in zip(METHODS, ("tab:blue", "tab:orange")):
        sel = [r for r in rows if r["method"] == method]
        if not sel:
            continue
        groups = [r["groups"] for r in sel]
        ax.plot(groups, [r["nmi"] for r in sel], "o-", color=color, label=f"{method} NMI")
        ax.plot(groups, [r["ari"] for r in sel], "s--", color=color, alpha=0.6, label=f"{method} ARI")
    ax.set_xscale("log")
    groups = sorted({r["groups"] for r in rows})
    ax.set_xticks(groups)
    ax.set_xticklabels([str(g) for g in groups])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("number of groups")
    ax.set_ylabel("score")
    ax.set_ylim(0, 1)
    ax.set_title(title or "clustering vs group number", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_png(fig, path)


def cluster(
    backbone,
    *,
    data="fashion_mnist",
    out_dir=None,
    n_clusters: Sequence[int] = (5, 10, 20, 50),
    methods: Sequence[str] = METHODS,
    split: str = "test",
    num_samples: int | None = None,
    n_neighbors: int = 10,
    n_init: int = 5,
    batch_size: int = 256,
    image_size: int | None = None,
    seed: int = 0,
    blas_threads: int | None = 1,
) -> dict:
    """NMI / ARI / purity of spherical k-means and spectral clustering of backbone features
    at each group number (default 5, 10, 20, 50: ½×, 1×, 2×, 5× the 10 classes), on the
    ``split`` (default: the 10k test images; ``num_samples`` takes a random subset).
    Writes ``cluster.json`` and ``cluster.png`` (scores vs group number) to ``out_dir``.
    ``blas_threads``: see :func:`~burn_tf.evaluate.threads.limit_blas_threads`.
    """
    started = time.perf_counter()
    model, meta = common.resolve_backbone(backbone)
    size = resolve_input_size(model, image_size)
    images, labels = random_subset(*load_labelled_data(data).split(split), num_samples, seed)
    check_labels(labels, f"{split} labels", min_classes=2)
    (features,), extract_seconds = embed_timed(model, (images,), size, batch_size, "cluster features")
    rows = cluster_features(features, labels, n_clusters, methods, n_neighbors=n_neighbors,
                            n_init=n_init, seed=seed, blas_threads=blas_threads)
    plot = None
    if out_dir is not None:
        plot = plot_cluster(rows, Path(out_dir) / "cluster.png", f"clustering — {model.name} ({len(labels)} images)")
    result = common.evaluator_result(
        "cluster",
        data=data_name(data),
        backbone=common.backbone_info(backbone, model, meta, input_size=size),
        protocol={"source": PROTOCOL_SOURCE,
                  "n_clusters": [int(k) for k in ([n_clusters] if isinstance(n_clusters, int) else n_clusters)],
                  "methods": [methods] if isinstance(methods, str) else list(methods),
                  "split": split, "num_samples": num_samples, "n_neighbors": int(n_neighbors),
                  "n_init": int(n_init), "seed": int(seed), "input_size": size},
        seconds=time.perf_counter() - started,
        split=split,
        num_samples=int(len(labels)),
        num_classes=int(len(np.unique(labels))),
        n_neighbors=int(n_neighbors),
        rows=rows,
        extract_seconds=round(extract_seconds, 3),
        plot=plot,
    )
    common.write_results(out_dir, "cluster", result)
    return result


def format_result(result: dict) -> str:
    text = (f"clustering ({result['backbone']['name']}, {result['data']}, "
            f"{result.get('num_samples')} images, {result.get('num_classes')} classes)\n")
    text += common.format_table(result["rows"], ["groups", "method", "nmi", "ari", "purity", "seconds"])
    if result.get("plot"):
        text += f"\nplot: {result['plot']}"
    return text
