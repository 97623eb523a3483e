"""Clustering: NMI ≈ 1 on well-separated blobs, ≈ 0 on noise; the evaluator's table/PNG."""

import json

import numpy as np
import pytest

from burn_tf.evaluate.cluster import (
    cluster,
    cluster_features,
    format_result,
    knn_affinity,
    spectral_clustering,
    spherical_kmeans_plusplus,
)


def blobs(n_per, k, dim, spread, seed=0):
    """k directions on the sphere, points scattered around each (cosine clusters)."""
    rng = np.random.default_rng(seed)
    directions = np.linalg.qr(rng.standard_normal((dim, dim)))[0][:k]
    labels = np.repeat(np.arange(k), n_per)
    features = directions[labels] + rng.standard_normal((n_per * k, dim)) * spread
    features *= rng.uniform(0.5, 3.0, (n_per * k, 1))  # scale must not matter
    return features.astype(np.float32), labels


@pytest.mark.parametrize("n_per", [50, 400])  # 400 × 4 > 1500: the sparse eigsh path
def test_separated_blobs_nmi_near_one(n_per):
    x, y = blobs(n_per, 4, 16, 0.08)
    rows = cluster_features(x, y, n_clusters=[4], n_init=3)
    for row in rows:
        assert row["nmi"] > 0.97 and row["ari"] > 0.97 and row["purity"] > 0.98, row


def test_noise_nmi_near_zero():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((400, 16)).astype(np.float32)
    y = rng.integers(0, 4, 400)
    for row in cluster_features(x, y, n_clusters=[4, 8], n_init=2):
        assert row["nmi"] < 0.1 and abs(row["ari"]) < 0.05, row


def test_spherical_kmeans_objective_and_centroids():
    x, _ = blobs(30, 3, 8, 0.05, seed=2)
    labels, centroids, objective = spherical_kmeans_plusplus(x, 3, n_init=2)
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, rtol=1e-5)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    assert objective == pytest.approx(np.sum(1 - np.sum(xn * centroids[labels], axis=1)), rel=1e-4)
    _, _, worse = spherical_kmeans_plusplus(x, 1)
    assert objective < worse


def test_affinity_graph_is_symmetric_knn_without_self():
    x, _ = blobs(20, 2, 6, 0.1, seed=3)
    w = knn_affinity(x, n_neighbors=5)
    assert (abs(w - w.T)).max() < 1e-6
    assert w.diagonal().max() == 0
    assert (np.diff(w.indptr) >= 5).all()


def test_bad_input():
    x, y = blobs(5, 2, 4, 0.1)
    with pytest.raises(ValueError, match="n_clusters=11"):
        cluster_features(x, y, n_clusters=[11])
    with pytest.raises(ValueError, match="1 class"):
        cluster_features(x, np.zeros_like(y), n_clusters=[2])
    with pytest.raises(ValueError, match="unknown clustering method"):
        cluster_features(x, y, n_clusters=[2], methods=["dbscan"])
    with pytest.raises(ValueError, match="NaN"):
        spectral_clustering(np.full_like(x, np.nan), 2)


def test_evaluator_table_and_png(tmp_path, fashion_splits, pixel_backbone):
    x, y = fashion_splits["test"]
    model = pixel_backbone(pool=4)
    data = ((x[:10], y[:10]), (x[:600], y[:600]))
    result = cluster(model, data=data, out_dir=tmp_path, n_clusters=[5, 10, 20], n_init=2)
    assert [(r["groups"], r["method"]) for r in result["rows"]] == [
        (g, m) for g in (5, 10, 20) for m in ("spherical_kmeans", "spectral")]
    # Pixel features of Fashion-MNIST cluster far better than chance (NMI of random ≈ 0.01).
    assert all(r["nmi"] > 0.3 for r in result["rows"]), result["rows"]
    assert (tmp_path / "cluster.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "cluster.json").read_text())["num_samples"] == 600
    assert "spectral" in format_result(result)
