"""Semi-supervised fine-tuning (the label subsets are tested in test_data.py): the grid
picks its best on the held-out split; fine-tuning learns (lr 0 does not); the caller's
backbone is restored; a tiny binary ReActNet-A fine-tunes under MultiOptimizer."""

import json

import numpy as np
import pytest
import tensorflow as tf

from burn_tf.evaluate import semisup as S
from burn_tf.evaluate.semisup import semisup


def mlp_backbone():
    inputs = tf.keras.Input((28, 28, 3))
    x = tf.keras.layers.Flatten()(tf.keras.layers.AveragePooling2D(2)(inputs))
    dense = tf.keras.layers.Dense(64, activation="relu",
                                  kernel_initializer=tf.keras.initializers.GlorotUniform(seed=0))
    return tf.keras.Model(inputs, dense(x), name="mlp")


def test_grid_learns_picks_best_on_holdout_and_restores_backbone(tmp_path):
    model = mlp_backbone()
    before = [w.copy() for w in model.get_weights()]
    result = semisup(
        model, fractions=[0.1], epochs=3, milestones=[2], backbone_lrs=[0.0, 0.1, 0.1],
        head_multipliers=[1], train_subset=2000, test_subset=1000, batch_size=32,
        augment=False, out_dir=tmp_path,
    )
    r = result["fractions"]["10%"]
    grid = r["grid"]
    print(f"\nMLP backbone, 200 labels, 3 epochs: holdout top-1 per config "
          f"{[round(g['holdout_top1'], 3) for g in grid]}, test top-1 {r['top1']:.4f}, "
          f"top-5 {r['top5']:.4f}")
    assert r["num_labelled"] == 200 and r["per_class"] == 20
    assert result["num_holdout"] == 200
    # lr 0 trains nothing: the head stays at its N(0, 0.01) initialisation → chance
    assert grid[0]["holdout_top1"] < 0.2
    # the optimizers are reset between configurations: identical runs, identical results
    assert grid[1]["final_loss"] == pytest.approx(grid[2]["final_loss"], rel=1e-5)
    assert grid[1]["holdout_top1"] == pytest.approx(grid[2]["holdout_top1"])
    assert r["best"] == max(grid, key=lambda g: g["holdout_top1"])
    assert r["best"]["backbone_lr"] == 0.1 and r["best"]["head_lr"] == pytest.approx(0.1)
    assert r["top1"] > 0.4 and r["top5"] > r["top1"]
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert json.loads((tmp_path / "semisup.json").read_text())["fractions"]["10%"]["top1"] == r["top1"]
    assert "semi-supervised" in S.format_result(result)


def test_tiny_binary_reactnet_one_epoch_2x1_grid(tiny_reactnet):
    model = tiny_reactnet()
    before = [w.copy() for w in model.get_weights()]
    result = semisup(
        model, fractions=[0.1], epochs=1, backbone_lrs=[0.01, 0.001], head_multipliers=[10],
        train_subset=300, test_subset=100, batch_size=16,
    )
    r = result["fractions"]["10%"]
    assert [g["backbone_lr"] for g in r["grid"]] == [0.01, 0.001]
    assert all(not g["diverged"] and np.isfinite(g["final_loss"]) for g in r["grid"])
    assert 0.0 <= r["top1"] <= r["top5"] <= 1.0
    assert result["protocol"]["weight_decay"] == 5e-4 and result["protocol"]["gamma"] == 0.2
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_bad_inputs():
    model = mlp_backbone()
    with pytest.raises(ValueError, match="must not be empty"):
        semisup(model, backbone_lrs=[])
    with pytest.raises(ValueError, match="1 available examples, fewer than the 2"):
        # 5 train images per class: an 80% held-out split leaves 1, a 50% subset needs 2
        semisup(model, fractions=[0.5], holdout_fraction=0.8, train_subset=50, epochs=1)
    with pytest.raises(ValueError, match="at least 2"):
        x = np.zeros((20, 28, 28), np.uint8)
        semisup(model, data=(x, np.zeros(20, int), x, np.zeros(20, int)), epochs=1)


def test_under_a_strategy_fine_tunes_on_its_replicas_as_without():
    """``strategy="mirrored"`` (here one CPU: one replica) builds the fine-tuned copy, the
    head and both optimizers in the strategy's scope and trains the same: grid losses and
    accuracies equal the run without a strategy. (The MLP: a ReActNet-A's train step takes
    ~1 min to trace here, and the binary network is fine-tuned in the test above.)"""
    model = mlp_backbone()
    before = [w.copy() for w in model.get_weights()]
    common = dict(fractions=[0.1], epochs=2, backbone_lrs=[0.1], head_multipliers=[1],
                  train_subset=500, test_subset=200, batch_size=32, augment=True)
    plain = semisup(model, **common)["fractions"]["10%"]
    mirrored = semisup(model, strategy="mirrored", **common)
    assert mirrored["protocol"]["strategy"] == "mirrored"
    r = mirrored["fractions"]["10%"]
    assert r["grid"][0]["final_loss"] == pytest.approx(plain["grid"][0]["final_loss"], rel=1e-5)
    assert (r["grid"][0]["holdout_top1"], r["top1"], r["top5"]) == pytest.approx(
        (plain["grid"][0]["holdout_top1"], plain["top1"], plain["top5"]), abs=1e-6)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    tuner = S.FineTuner(model, 10, 28, momentum=0.9, weight_decay=5e-4, seed=0, strategy=strategy)
    assert tuner.model.distribute_strategy is strategy
    assert all(isinstance(v, tf.distribute.DistributedValues) for v in tuner.model.trainable_variables)
