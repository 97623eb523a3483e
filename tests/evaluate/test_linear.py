"""Linear evaluation: right answers on real Fashion-MNIST (pixels well above chance, noise
at chance), the frozen backbone stays frozen, clear errors, and the CLI end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from burn_tf.evaluate import linear as L
from burn_tf.evaluate.linear import linear
from burn_tf.saved_backbone import BackboneFormatError, save_backbone

REPO = Path(__file__).resolve().parents[2]


def test_pixels_well_above_chance_noise_at_chance(tmp_path, fashion, pixel_backbone, noise_backbone):
    x_tr, y_tr, x_te, y_te = fashion(2000, 1000)
    args = dict(data=(x_tr, y_tr, x_te, y_te), epochs=10, milestones=(6, 8))
    pixels = linear(pixel_backbone(), out_dir=tmp_path, **args)
    print(f"\npixel features, Fashion-MNIST 2000→1000, 10 epochs lr 30: top-1 "
          f"{pixels['top1']:.4f}, top-5 {pixels['top5']:.4f}")
    assert pixels["top1"] > 0.70 and pixels["top5"] > 0.95
    assert pixels["num_train"] == 2000 and pixels["num_test"] == 1000
    assert pixels["protocol"]["lr"] == 30.0 and pixels["protocol"]["weight_decay"] == 0.0
    saved = json.loads((tmp_path / "linear.json").read_text())
    assert saved["top1"] == pytest.approx(pixels["top1"])
    noise = linear(noise_backbone(), **args)
    print(f"noise features: top-1 {noise['top1']:.4f}")
    assert noise["top1"] < 0.17
    assert "linear evaluation" in L.format_result(pixels)


def test_default_data_and_train_subset(pixel_backbone):
    result = linear(pixel_backbone(), epochs=4, lr=1.0, milestones=(), train_subset=500,
                    test_subset=300, batch_size=128)
    assert result["data"] == "fashion_mnist"
    assert result["num_train"] == 500 and result["num_test"] == 300
    assert result["top1"] > 0.4  # chance is 0.1


def test_augment_path_keeps_backbone_frozen(fashion):
    x_tr, y_tr, x_te, y_te = fashion(300, 200)
    inputs = tf.keras.Input((28, 28, 3))
    h = tf.keras.layers.Conv2D(8, 3, strides=2)(inputs)
    h = tf.keras.layers.BatchNormalization()(h)
    model = tf.keras.Model(inputs, tf.keras.layers.GlobalAveragePooling2D()(h), name="bn_net")
    before = [w.copy() for w in model.get_weights()]  # includes BN moving statistics
    result = linear(model, data=(x_tr, y_tr, x_te, y_te), epochs=2, milestones=(1,),
                    lr=1.0, augment=True, batch_size=64)
    assert 0.0 <= result["top1"] <= 1.0 and result["protocol"]["augment"] is True
    assert len(result["train_loss"]) == 2
    assert model.trainable
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_bad_inputs(tmp_path, fashion, pixel_backbone):
    x_tr, y_tr, x_te, y_te = fashion(100, 50)
    model = pixel_backbone()
    with pytest.raises(ValueError, match="at least 2"):
        linear(model, data=(x_tr, np.zeros_like(y_tr), x_te, y_te), epochs=1)
    with pytest.raises(ValueError, match="100 images but 99 labels"):
        linear(model, data=(x_tr, y_tr[:99], x_te, y_te), epochs=1)
    with pytest.raises(ValueError, match="train images are 28×28×1 but test images are 32×32×1"):
        linear(model, data=(x_tr, y_tr, np.zeros((50, 32, 32), np.uint8), y_te), epochs=1)
    with pytest.raises(ValueError, match="does not match the backbone"):
        linear(model, data=(x_tr, y_tr, x_te, y_te), epochs=1, image_size=32)
    with pytest.raises(ValueError, match=r"\[N,H,W\] or \[N,H,W,1\|3\]"):
        linear(model, data=(x_tr[..., None].repeat(2, -1), y_tr, x_te, y_te), epochs=1)
    with pytest.raises(ValueError, match="unknown data"):
        linear(model, data="cifar10", epochs=1)
    not_a_model = tmp_path / "weights.keras"
    not_a_model.write_text("not a model")
    with pytest.raises(BackboneFormatError):
        linear(str(not_a_model), epochs=1)
    inputs = tf.keras.Input((28, 28, 3))
    maps = tf.keras.Model(inputs, tf.keras.layers.Conv2D(4, 3)(inputs))  # [B,H,W,C] output
    with pytest.raises(BackboneFormatError, match="pooled feature"):
        linear(maps, epochs=1)


def test_cli_writes_json_and_prints_it_last(tmp_path, tiny_reactnet):
    path = save_backbone(tiny_reactnet(), tmp_path / "backbone")
    out = tmp_path / "eval"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "burn_tf.evaluate", "linear", "--backbone", str(path),
         "--out", str(out), "--set", "epochs=1", "--set", "train_subset=500",
         "--set", "test_subset=500", "--json"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    saved = json.loads((out / "linear.json").read_text())
    assert last["top1"] == pytest.approx(saved["top1"])
    assert last["task"] == "linear" and last["num_train"] == 500
    assert last["backbone"]["architecture"] == "reactnet_a"
    assert 0.0 <= last["top1"] <= last["top5"] <= 1.0
    assert "top1 %" in proc.stdout


@pytest.mark.parametrize("multi", [False, True])
def test_fit_or_raise_traces_the_train_step_once(multi):
    """Optimizer variables made inside the first traced step make TensorFlow trace it twice
    (measured on semisup's ReActNet-A fine-tuning: 15 s + 17 s): fit_or_raise creates them
    first, for a plain optimizer and for each optimizer of a tfa MultiOptimizer."""
    import tensorflow_addons as tfa

    from burn_tf.evaluate.probe import fit_or_raise

    inputs = tf.keras.Input((6,))
    body, head = tf.keras.layers.Dense(4, name="body"), tf.keras.layers.Dense(3, name="head")
    model = tf.keras.Model(inputs, head(body(inputs)))
    if multi:
        optimizer = tfa.optimizers.MultiOptimizer([(tf.keras.optimizers.SGD(0.1, momentum=0.9), body),
                                                   (tf.keras.optimizers.Adam(0.01), head)])
    else:
        optimizer = tf.keras.optimizers.SGD(0.1, momentum=0.9)
    model.compile(optimizer=optimizer, loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    data = tf.data.Dataset.from_tensor_slices((rng.normal(size=(40, 6)).astype("float32"),
                                               rng.integers(0, 3, 40))).batch(16)
    before = [w.numpy().copy() for w in model.trainable_weights]
    losses = fit_or_raise(model, data, 2, "probe")
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert model.train_function.experimental_get_tracing_count() == 1
    assert all(np.any(w.numpy() != b) for w, b in zip(model.trainable_weights, before))  # every part trained
