"""Weighted kNN (InstDisc/InvP): exact against a brute-force reference, chunk-invariant,
well above chance on Fashion-MNIST pixels, and the evaluator end to end."""

import json

import numpy as np
import pytest
import tensorflow as tf

from burn_tf.evaluate.knn import cosine_topk, knn, knn_accuracy, weighted_knn
from burn_tf.saved_backbone import BackboneFormatError, save_backbone


def reference_knn(train, train_labels, query, k, temperature, num_classes):
    """InstDisc's kNN written out in float64 numpy, one query at a time."""
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    query = query / np.linalg.norm(query, axis=1, keepdims=True)
    scores = np.zeros((len(query), num_classes))
    for i, q in enumerate(query):
        sims = train @ q
        top = np.argsort(-sims, kind="stable")[:k]
        for j in top:
            scores[i, train_labels[j]] += np.exp(sims[j] / temperature)
    return scores.argmax(axis=1), scores


@pytest.mark.parametrize("k,temperature", [(20, 0.07), (1, 0.07), (50, 0.5)])
def test_matches_bruteforce_reference(k, temperature):
    rng = np.random.default_rng(k)
    train = rng.standard_normal((400, 24)).astype(np.float32)
    labels = rng.integers(0, 7, 400)
    query = rng.standard_normal((90, 24)).astype(np.float32)
    pred, scores = weighted_knn(train, labels, query, k=k, temperature=temperature)
    ref_pred, ref_scores = reference_knn(train, labels, query, k, temperature, 7)
    assert pred.dtype == np.int64 and scores.shape == (90, 7)
    np.testing.assert_array_equal(pred, ref_pred)
    np.testing.assert_allclose(scores, ref_scores, rtol=2e-4)


def test_chunked_equals_unchunked():
    rng = np.random.default_rng(1)
    train = rng.standard_normal((300, 16)).astype(np.float32)
    labels = rng.integers(0, 5, 300)
    query = rng.standard_normal((101, 16)).astype(np.float32)
    p_all, s_all = weighted_knn(train, labels, query, k=30, chunk_size=10_000)
    for chunk in (1, 7, 64):
        p, s = weighted_knn(train, labels, query, k=30, chunk_size=chunk)
        np.testing.assert_array_equal(p, p_all)
        np.testing.assert_allclose(s, s_all, rtol=1e-5)


def test_cosine_topk_sorted_and_scale_invariant():
    rng = np.random.default_rng(2)
    bank = rng.standard_normal((50, 8)).astype(np.float32)
    query = rng.standard_normal((5, 8)).astype(np.float32)
    sims, idx = cosine_topk(query, bank, 10)
    assert np.all(np.diff(sims, axis=1) <= 0)
    _, idx_scaled = cosine_topk(query * 3.0, bank * 0.1, 10)
    np.testing.assert_array_equal(idx, idx_scaled)


def test_fashion_mnist_pixels_well_above_chance(fashion):
    x_train, y_train, x_test, y_test = fashion(2000, 500)
    f_train = x_train.reshape(len(x_train), -1).astype(np.float32)
    f_test = x_test.reshape(len(x_test), -1).astype(np.float32)
    acc = knn_accuracy(f_train, y_train, f_test, y_test, k=200, temperature=0.07)
    assert acc["top1"] > 0.65, acc  # chance is 0.10; pixel kNN reaches ~0.75 at this size
    assert acc["top5"] > acc["top1"]


def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(3)
    train = rng.standard_normal((30, 8)).astype(np.float32)
    labels = rng.integers(0, 3, 30)
    with pytest.raises(ValueError, match="larger than the bank"):
        weighted_knn(train, labels, train[:2], k=31)
    with pytest.raises(ValueError, match="8-d"):
        weighted_knn(train, labels, rng.standard_normal((2, 9)), k=5)
    with pytest.raises(ValueError, match="train labels"):
        weighted_knn(train, labels[:-1], train[:2], k=5)
    with pytest.raises(ValueError, match="NaN"):
        weighted_knn(np.full_like(train, np.nan), labels, train[:2], k=5)
    with pytest.raises(ValueError, match="temperature"):
        weighted_knn(train, labels, train[:2], k=5, temperature=0)


def test_evaluator_end_to_end_from_exported_path(tmp_path, fashion, tiny_reactnet):
    x_train, y_train, x_test, y_test = fashion(300, 100)
    data = ((x_train, y_train), (x_test, y_test))  # the keras.datasets layout
    path = save_backbone(tiny_reactnet(), tmp_path / "backbone")
    result = knn(str(path), data=data, out_dir=tmp_path / "eval", k=20)
    assert 0.0 <= result["top1"] <= result["top5"] <= 1.0
    assert result["num_train"] == 300 and result["num_test"] == 100
    written = json.loads((tmp_path / "eval" / "knn.json").read_text())
    assert written["top1"] == result["top1"]
    from burn_tf.evaluate.knn import format_result

    assert "top1" in format_result(result)


def test_evaluator_rejects_bad_input(tmp_path, fashion, tiny_reactnet):
    x_train, y_train, x_test, y_test = fashion(60, 20)
    model = tiny_reactnet()
    with pytest.raises(ValueError, match="1 class"):
        knn(model, data=((x_train, np.zeros_like(y_train)), (x_test, y_test)), k=5)
    with pytest.raises(ValueError, match="larger than the bank"):
        knn(model, data=((x_train, y_train), (x_test, y_test)), k=61)
    with pytest.raises(ValueError, match="data set"):
        knn(model, data="cifar10", k=5)
    inputs = tf.keras.Input((32, 32, 3))
    not_pooled = tf.keras.Model(inputs, tf.keras.layers.Conv2D(4, 3)(inputs))
    with pytest.raises(BackboneFormatError, match="pooled feature"):
        knn(not_pooled, data=((x_train, y_train), (x_test, y_test)), k=5)
    grey = tf.keras.Input((32, 32, 1))
    grey_model = tf.keras.Model(grey, tf.keras.layers.GlobalAveragePooling2D()(grey))
    with pytest.raises(ValueError, match="1-channel"):
        knn(grey_model, data=((x_train, y_train), (x_test, y_test)), k=5)
    with pytest.raises(ValueError, match="does not match"):
        knn(model, data=((x_train, y_train), (x_test, y_test)), k=5, image_size=28)
