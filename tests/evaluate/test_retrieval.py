"""Retrieval: precision@k against a hand-computed case; the evaluator writes the grid PNG."""

import json

import numpy as np
import pytest

from burn_tf.evaluate.metrics import precision_at_k
from burn_tf.evaluate.retrieval import format_result, retrieval, retrieve


def test_precision_at_k_hand_computed():
    bank = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [-1, 0]], np.float32)
    bank_labels = np.array([0, 0, 1, 1, 2])
    queries = np.array([[1, 0.05], [0, 2]], np.float32)
    query_labels = np.array([0, 2])
    _, neighbours = retrieve(queries, bank, 5)
    # Query 0 ranks the bank 0, 1, 3, 2, 4 (labels 0 0 1 1 2); query 1 ranks 2, 3, 1, 0, 4.
    np.testing.assert_array_equal(neighbours, [[0, 1, 3, 2, 4], [2, 3, 1, 0, 4]])
    p = precision_at_k(query_labels, bank_labels, neighbours, ks=(1, 2, 3, 4, 5))
    assert p["precision@1"] == pytest.approx((1 + 0) / 2)
    assert p["precision@2"] == pytest.approx((1 + 0) / 2)
    assert p["precision@3"] == pytest.approx((2 / 3 + 0) / 2)
    assert p["precision@4"] == pytest.approx((2 / 4 + 0) / 2)
    assert p["precision@5"] == pytest.approx((2 / 5 + 1 / 5) / 2)
    assert p["hit@1"] == 0.5 and p["hit@4"] == 0.5 and p["hit@5"] == 1.0


def test_bad_input():
    bank = np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError, match="larger than the bank"):
        retrieve(bank, bank, 4)
    with pytest.raises(ValueError, match="only 2 neighbours"):
        precision_at_k([0, 1, 2], [0, 1, 2], np.zeros((3, 2), int), ks=(5,))


def test_evaluator_writes_grid(tmp_path, fashion_splits, pixel_backbone):
    (x_train, y_train), (x_test, y_test) = fashion_splits["train"], fashion_splits["test"]
    model = pixel_backbone()
    data = (x_train[:2000], y_train[:2000], x_test, y_test)  # the linear evaluator's layout
    result = retrieval(model, data=data, out_dir=tmp_path, num_queries=200, grid_queries=4, grid_k=6)
    assert result["num_queries"] == 200 and result["num_bank"] == 2000
    assert 0.6 < result["precision@1"] <= 1.0  # pixel retrieval on Fashion-MNIST, chance 0.1
    assert result["precision@20"] <= result["precision@1"] + 0.05
    assert result["hit@20"] >= result["hit@1"]
    from matplotlib.image import imread

    grid = imread(tmp_path / "retrieval.png")
    assert grid.shape[1] > grid.shape[0]  # 4 rows × 7 columns
    assert json.loads((tmp_path / "retrieval.json").read_text())["precision@1"] == result["precision@1"]
    assert "precision@k" in format_result(result)
