"""Layer-wise linear probes: stem + 13 block accuracies for a tiny ReActNet-A, PNG written; the
seed-002 SGD protocol and its ~9,000-d pooling."""

import json

import numpy as np
import pytest
import tensorflow as tf

from burn_tf.evaluate.layerwise import (
    default_layers,
    format_result,
    layerwise,
    logistic_regression_probe,
    pooled_layer_model,
)
from burn_tf.models.larq_zoo import build_zoo_student

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def data(fashion):
    x_train, y_train, x_test, y_test = fashion(400, 200)
    return (x_train, y_train), (x_test, y_test)


def test_stem_and_thirteen_blocks_of_tiny_reactnet(data, tmp_path, tiny_reactnet):
    tf.keras.utils.set_random_seed(0)
    model = tiny_reactnet(blocks=13)
    result = layerwise(model, data=data, out_dir=tmp_path, max_iter=200)
    assert len(result["accuracy"]) == 14 and result["protocol"]["protocol"] == "fast"
    assert result["layers"] == ["stem_bn"] + [f"block_{i:02d}_out" for i in range(1, 14)]
    assert [r["dim"] for r in result["rows"]] == [4 * c // 32 for c in
                                                   [32, 64, 128, 128, 256, 256] + [512] * 6 + [1024, 1024]]
    # Random binary features of Fashion-MNIST still carry signal: the probes beat chance
    # (0.1), the early blocks clearly (deep random binary blocks scramble more).
    assert all(0.1 < a <= 1.0 for a in result["accuracy"]), result["accuracy"]
    assert result["accuracy"][0] > 0.3 and result["best_top1"] > 0.35, result["accuracy"]
    png = tmp_path / "layerwise.png"
    assert png.read_bytes()[:8] == PNG_MAGIC
    from matplotlib.image import imread

    assert imread(png).shape[0] > 100
    assert json.loads((tmp_path / "layerwise.json").read_text())["best_layer"] == result["best_layer"]
    assert "block_13_out" in format_result(result)


def test_seed_protocol_sgd_probes_and_scene_pooling(data, tmp_path, tiny_reactnet):
    tf.keras.utils.set_random_seed(0)
    # 4 blocks (all 13 are probed in the test above): each layerwise call traces a model with
    # one output per block.
    model = tiny_reactnet(blocks=4)
    # lr 30 (the seed's) is for features of a trained net; a random one's are large: lr 3e-2 for
    # these 4 blocks (13 blocks' features, norms ~30, took 2e-3; at 2e-3 these probes barely move).
    result = layerwise(model, data=data, protocol="seed", epochs=10, lr=3e-2, milestones=(6, 8),
                       probe_batch_size=32, out_dir=tmp_path)
    p = result["protocol"]
    assert p["protocol"] == "seed" and "seed 002" in p["source"] and p["lr"] == 3e-2
    assert p["pooling"] == "global" and p["momentum"] == 0.9 and p["weight_decay"] == 0.0
    assert len(p["train_loss"]) == 10 and p["train_loss"][-1] < p["train_loss"][0]
    assert result["layers"] == ["stem_bn"] + [f"block_{i:02d}_out" for i in range(1, 5)]
    assert len(result["rows"]) == 5
    assert all(0.0 <= r["top1"] <= r["top5"] <= 1.0 for r in result["rows"])
    assert result["best_top1"] == max(result["accuracy"]) > 0.3, result["accuracy"]  # chance 0.1
    assert result["rows"][result["best_block"]]["layer"] == result["best_layer"]
    # Places/VOC pool each block to ~9,000 dims (capped at the map): stem 16×16×4 → 16×16 grid.
    scene = {"name": "voc_like", "x_train": data[0][0], "y_train": data[0][1],
             "x_test": data[1][0], "y_test": data[1][1]}
    probe_model, _ = pooled_layer_model(model, None, pool_dim=9000)
    dims = [int(o.shape[-1]) for o in probe_model.outputs]
    assert dims[0] == 16 * 16 * 4 and dims[-1] == 4 * 4 * 32  # block_04: 4×4×32 map, grid 17 capped at 4
    assert dims[1] == 16 * 16 * 8  # block_01: 16×16×8, grid 34 capped at 16
    small = layerwise(model, data=scene, protocol="seed", epochs=1, layers=["block_04_out"],
                      num_train=100, num_test=50)
    assert small["protocol"]["lr"] == 3.0 and small["protocol"]["pooling"] == "grid to ~9000 dims"
    assert small["rows"][0]["dim"] == 4 * 4 * 32
    default = layerwise(model, data=data, protocol="seed", epochs=1, layers=["block_04_out"],
                        num_train=100, num_test=50)
    assert default["protocol"]["lr"] == 30.0 and default["protocol"]["milestones"] == [60, 80]
    with pytest.raises(ValueError, match="protocol must be one of"):
        layerwise(model, data=data, protocol="paper")


def test_any_backbone_with_named_layers(data):
    inputs = tf.keras.Input((28, 28, 3))
    h1 = tf.keras.layers.Conv2D(8, 3, activation="relu", name="conv_a")(inputs)
    h2 = tf.keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv_b")(h1)
    model = tf.keras.Model(inputs, tf.keras.layers.GlobalAveragePooling2D(name="gap")(h2))
    result = layerwise(model, data=data, layers=["conv_a", "conv_b", "gap"], max_iter=200)
    assert result["layers"] == ["conv_a", "conv_b", "gap"]
    assert [r["dim"] for r in result["rows"]] == [8, 8, 8]
    assert result["plot"] is None  # no out_dir, no plot
    with pytest.raises(ValueError, match="no ReActNet-A block outputs"):
        pooled_layer_model(model)
    with pytest.raises(ValueError, match="no layer 'conv_z'"):
        pooled_layer_model(model, ["conv_a", "conv_z"])
    one_class = ((data[0][0], np.zeros_like(data[0][1])), data[1])
    with pytest.raises(ValueError, match="1 class"):
        layerwise(model, data=one_class, layers=["gap"])


def test_a_larq_zoo_student_is_probed_at_the_end_of_each_resolution(data):
    # QuickNet at 32 px: stem 16, 8; each transition's 2x2 stride-1 max-pool (−1) then its
    # stride-2 blur-pool conv; the last map (1 px) is the ReLU before the pool.
    model = build_zoo_student("QuickNet", 32, stage=2)
    layers = default_layers(model)
    assert [model.get_layer(n).output.shape[1] for n in layers] == [16, 8, 7, 4, 3, 2, 1]
    assert layers[-1] == "relu_features" and len(set(layers)) == len(layers)
    result = layerwise(model, data=data, max_iter=100)
    assert result["layers"] == layers and all(0.0 <= r["top1"] <= 1.0 for r in result["rows"])


def test_linear_probe_separable_and_noise():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    separable = np.eye(3)[y] * 5 + rng.standard_normal((300, 3)) * 0.1
    assert logistic_regression_probe(separable[:200], y[:200], separable[200:], y[200:])["top1"] == 1.0
    noise = rng.standard_normal((300, 5))
    assert logistic_regression_probe(noise[:200], y[:200], noise[200:], y[200:])["top1"] < 0.6
