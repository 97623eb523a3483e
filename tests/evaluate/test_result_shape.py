"""Every evaluator returns one result shape: ``task``, ``data``, ``backbone`` (name, feature
size, input size), ``protocol`` (naming its source and settings) and ``seconds``, beside its
own metrics; the shape is :func:`burn_tf.evaluate.common.evaluator_result`'s."""

import importlib

import numpy as np
import pytest
import tensorflow as tf
from shape_helpers import check_result_shape

from burn_tf import evaluate
from burn_tf.evaluate.common import COMMON_KEYS, evaluator_result
from burn_tf.saved_backbone import save_backbone

# Each evaluator on a tiny budget (seconds each): keyword arguments beside the backbone.
TINY_RUNS = {
    "knn": dict(num_train=200, num_test=50, k=10),
    "linear": dict(epochs=1, train_subset=200, test_subset=50, milestones=()),
    "layerwise": dict(num_train=200, num_test=50, max_iter=20, layers=["conv_1", "conv_2"]),
    "tsne": dict(num_classes=3, per_class=10, max_iter=250, perplexity=5),
    "cluster": dict(n_clusters=[3], methods=["spherical_kmeans"], num_samples=60, n_init=1),
    "retrieval": dict(num_queries=20, num_bank=100, ks=[1, 5]),
    "svm": dict(n_train=60, n_test=30, costs=[1.0], folds=2, shots=[1], samples=1, pooling="global"),
    "semisup": dict(fractions=[0.1], epochs=1, backbone_lrs=[0.01], head_multipliers=[1],
                    train_subset=200, test_subset=50, batch_size=32, augment=False),
    "transfer": dict(data="digits", epochs=1, milestones=[], train_subset=200, test_subset=50),
}


@pytest.fixture(scope="module")
def small_cnn_path(tmp_path_factory):
    """An exported two-conv feature extractor at 32 px (cheap to load and trace)."""
    inputs = tf.keras.Input((32, 32, 3))
    x = tf.keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv_1")(inputs)
    x = tf.keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv_2")(x)
    model = tf.keras.Model(inputs, tf.keras.layers.GlobalAveragePooling2D()(x), name="small_cnn")
    return save_backbone(model, tmp_path_factory.mktemp("shape") / "backbone")


@pytest.mark.parametrize("task", sorted(TINY_RUNS))
def test_every_evaluator_returns_the_common_keys(task, small_cnn_path, tmp_path):
    evaluator = getattr(importlib.import_module(evaluate.TASKS[task]), task)
    result = evaluator(str(small_cnn_path), out_dir=tmp_path, **TINY_RUNS[task])
    check_result_shape(task, result, tmp_path, small_cnn_path)


def test_every_task_is_checked():
    # detect's shape: tests/evaluate/test_detect.py::test_short_real_run_through_the_cli
    # (one short detector training is enough for the suite).
    assert set(TINY_RUNS) | {"detect"} == set(evaluate.TASKS)


def test_a_protocol_without_its_source_is_refused():
    backbone = {"name": "b", "feature_dim": 4, "input_size": 32}
    with pytest.raises(ValueError, match="protocol.*source"):
        evaluator_result("knn", data="d", backbone=backbone, protocol={"k": 200}, seconds=1.0)
    with pytest.raises(ValueError, match="backbone.*feature_dim"):
        evaluator_result("knn", data="d", backbone={"name": "b"}, protocol={"source": "s"}, seconds=1.0)
    result = evaluator_result("knn", data="d", backbone=backbone, protocol={"source": "s"},
                              seconds=np.float64(1.23456), top1=0.5)
    assert list(result)[:5] == list(COMMON_KEYS) and result["top1"] == 0.5 and result["seconds"] == 1.23
