"""SVM classification (AP itself is tested in test_metrics.py, the cost sweep and few-shot sampling
in test_svm_classifiers.py): VOC targets, the pooled features, and the evaluator on real
Fashion-MNIST (single-label as one-hot, and multi-label composites): pixels well above chance,
noise at it."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from burn_tf.evaluate import svm as V
from burn_tf.evaluate.svm import svm
from burn_tf.saved_backbone import save_backbone


def randconv_backbone(size):
    """Fixed random filters + global max pool: translation invariant."""
    inputs = tf.keras.Input((size, size, 3))
    h = tf.keras.layers.Conv2D(
        128, 7, activation="relu", bias_initializer=tf.keras.initializers.Constant(-1.0),
        kernel_initializer=tf.keras.initializers.RandomNormal(seed=0))(inputs)
    return tf.keras.Model(inputs, tf.keras.layers.GlobalMaxPooling2D()(h), name="randconv")


@pytest.fixture
def fashion_one_hot(fashion):
    """``fashion_one_hot(n_train, n_test)``: single-label Fashion-MNIST as multi-hot rows."""

    def first(n_train, n_test):
        x, y, xt, yt = fashion(n_train, n_test)
        eye = np.eye(10, dtype=np.int64)
        return x, eye[y], xt, eye[yt]

    return first


def test_voc_targets():
    t = V.voc_targets(tf.constant([14, 14, 2, 7]), tf.constant([14, 2])).numpy()
    expected = np.zeros(20, int)
    expected[[14, 2]] = 1
    expected[7] = -1  # only a difficult cat
    assert t.tolist() == expected.tolist()
    only_difficult = V.voc_targets(tf.constant([3]), tf.zeros([0], tf.int64)).numpy()
    assert only_difficult[3] == -1 and (np.delete(only_difficult, 3) == 0).all()


def test_grid_pooling_to_4096_from_the_last_feature_map(tiny_reactnet):
    from burn_tf.evaluate.features import GridAveragePooling
    from burn_tf.models.reactnet import ReActNetConfig, reactnet_a

    # ReActNet-A at full width and 64 px: a 2×2×1024 last map → 4,096-d, no rebuild.
    full = reactnet_a(ReActNetConfig(stage=2, input_size=64, width_multiplier=1.0))
    model, size, info = V.svm_features_model(full, {}, pooling="grid", feature_dim=4096,
                                             pooling_grid=None, image_size=None)
    assert (size, info["grid"], info["feature_map"], info["feature_dim"]) == (64, 2, [2, 2, 1024], 4096)
    assert not info["rebuilt_at_input_size"]
    images = np.random.default_rng(0).random((2, 64, 64, 3)).astype(np.float32)
    pooled = model(images, training=False).numpy()
    maps = tf.keras.Model(full.inputs, full.get_layer("block_13_out").output)(images, training=False).numpy()
    assert pooled.shape == (2, 4096)
    np.testing.assert_allclose(pooled[:, :1024], maps[:, 0, 0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pooled[:, 3072:], maps[:, 1, 1], rtol=1e-5, atol=1e-5)
    # The mean of the 4 cells is the global pooled output.
    np.testing.assert_allclose(pooled.reshape(2, 4, 1024).mean(1), full(images, training=False).numpy(),
                               rtol=1e-4, atol=1e-5)
    # Width 0.125 at 32 px ends in a 1×1×128 map: the grid for 4,096 is 6×6 (128·36 = 4,608),
    # so the backbone is rebuilt at 6 × 32 px with its weights, and global pooling is kept apart.
    small = tiny_reactnet(32, blocks=13)
    model, size, info = V.svm_features_model(small, {}, pooling="grid", feature_dim=4096,
                                             pooling_grid=None, image_size=None)
    assert (info["grid"], size, info["feature_map"][:2], info["rebuilt_at_input_size"]) == (6, 192, [6, 6], True)
    assert model.outputs[0].shape[-1] == 6 * 6 * 128
    _, size, info = V.svm_features_model(small, {}, pooling="global", feature_dim=4096,
                                         pooling_grid=None, image_size=None)
    assert (size, info["feature_dim"]) == (32, 128)
    with pytest.raises(ValueError, match="smaller than the 2×2 pooling grid"):
        V.svm_features_model(small, {}, pooling="grid", feature_dim=4096, pooling_grid=2, image_size=32)
    # Uneven bins follow AdaptiveAvgPool2d: a 3-wide axis in 2 bins → [0, 2) and [1, 3).
    x = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1)
    np.testing.assert_allclose(GridAveragePooling(2)(x).numpy(), [[2.0, 3.0, 5.0, 6.0]])


def test_pixels_on_fashion_mnist_one_hot_and_noise(tmp_path, fashion_one_hot, pixel_backbone,
                                                   noise_backbone):
    data = fashion_one_hot(1000, 1000)
    costs = [0.01, 0.1, 1.0, 10.0]
    # 2-fold cost sweeps (3 is the default): the same choice here in half the LIBLINEAR fits.
    pixels = svm(pixel_backbone(28), data=data, costs=costs, folds=2, shots=[1, 8], samples=2,
                 out_dir=tmp_path)
    full, few = pixels["full"], pixels["fewshot"]
    print(f"\npixel features, Fashion-MNIST one-hot 1000→1000: full mAP {full['map']:.4f} "
          f"(VOC07 11-point {full['map_voc07']:.4f}); k=1 {few['1']['mean']:.4f} ± "
          f"{few['1']['std']:.4f}, k=8 {few['8']['mean']:.4f} ± {few['8']['std']:.4f}")
    assert full["map"] > 0.7 and full["map"] == full["map_area"]
    assert few["8"]["mean"] > few["1"]["mean"] > 0.25
    assert len(few["1"]["samples"]) == 2 and few["1"]["cost"] in costs
    assert len(full["per_class"]) == 10
    assert json.loads((tmp_path / "svm.json").read_text())["full"]["map"] == pytest.approx(full["map"])
    noise = svm(noise_backbone(28), data=data, costs=costs, folds=2, fewshot=False)
    print(f"noise features: full mAP {noise['full']['map']:.4f}")
    assert noise["full"]["map"] < 0.2  # chance: 10% positives
    assert "mAP" in V.format_result(pixels)


def test_composites_default_data(noise_backbone):
    costs = [0.1, 1.0, 10.0]
    kw = dict(n_train=600, n_test=600, costs=costs, folds=2, shots=[2], samples=2, ap_method="voc07")
    rc = svm(randconv_backbone(64), **kw)
    noise = svm(noise_backbone(64), **kw)
    print(f"\ncomposites 600→600 (VOC07 11-point): random-conv features full mAP "
          f"{rc['full']['map']:.4f}, noise {noise['full']['map']:.4f}")
    assert rc["data"] == "composites" and rc["num_classes"] == 10 and rc["data_note"].startswith("auto")
    assert rc["full"]["map"] == rc["full"]["map_voc07"]
    assert rc["full"]["map"] > noise["full"]["map"] + 0.08
    assert noise["full"]["map"] < 0.3  # ~19% of the images show a given class


def test_bad_inputs(tmp_path, fashion_one_hot, pixel_backbone):
    model = pixel_backbone(28)
    x, y, xt, yt = fashion_one_hot(200, 100)
    with pytest.raises(ValueError, match="k=96 is larger than the"):
        svm(model, data=(x, y, xt, yt), full=False, shots=[1, 96])
    with pytest.raises(ValueError, match="needs >= 2"):
        svm(model, data=(x, y[:, :1], xt, yt[:, :1]))
    with pytest.raises(ValueError, match="must be 1 \\(present\\), 0 \\(absent\\) or -1"):
        svm(model, data=(x, 2 * y, xt, yt))
    with pytest.raises(ValueError, match="ap_method"):
        svm(model, data=(x, y, xt, yt), ap_method="coco")
    from burn_tf.data.source_info import SourceNotFoundError

    with pytest.raises(SourceNotFoundError, match="data_dir"):
        svm(model, data="voc2007")
    with pytest.raises(SourceNotFoundError, match="voc"):
        svm(model, data="voc2007", data_dir=str(tmp_path))


# The demo's student (48 px) ends in a 2×2 map; the default grid for 4,096-d (6×6 at width
# 0.125, 4×4 at width 0.25 — the demo's) needs a larger input, and doubling or tripling 48 px
# is not enough (96 px → 3×3, 144 px → 5×5: the strides round up).


def test_default_svm_runs_on_a_backbone_exported_like_the_demos(tmp_path):
    """Width 0.125: exported as the demo exports, read back, rebuilt at 192 px (6×6 grid) and fitted."""
    from burn_tf.models.reactnet import ReActNetConfig, reactnet_a

    path = save_backbone(reactnet_a(ReActNetConfig(stage=2, input_size=48, width_multiplier=0.125)),
                         tmp_path / "stage2" / "backbone", {"method": "burn", "stage": 2})
    result = svm(path, n_train=100, n_test=50, costs=[1.0], folds=2, shots=[1], samples=1,
                 out_dir=tmp_path / "out")
    pooling = result["pooling"]
    assert (pooling["grid"], pooling["input_size"], pooling["feature_dim"]) == (6, 192, 6 * 6 * 128)
    assert pooling["feature_map"][:2] == [6, 6] and pooling["rebuilt_at_input_size"]
    assert result["feature_dim"] == 4608 and result["protocol"]["input_size"] == 192
    assert np.isfinite(result["full"]["map"])
    written = json.loads(next((tmp_path / "out").rglob("*.json")).read_text())
    assert written["pooling"]["input_size"] == 192 and written["pooling"]["grid"] == 6


def test_the_demos_width_0_25_student_is_pooled_on_a_4x4_grid_at_144_px():
    """The demo's own width: the evaluator's choice only (no SVM fit, no export: the choice
    reads the model's config, which an export restores — the test above)."""
    from burn_tf.models.reactnet import ReActNetConfig, reactnet_a

    model = reactnet_a(ReActNetConfig(stage=2, input_size=48, width_multiplier=0.25))
    _, size, info = V.svm_features_model(model, {}, pooling="grid", feature_dim=V.DEFAULT_FEATURE_DIM,
                                         pooling_grid=None, image_size=None)
    assert (info["grid"], size, info["feature_map"]) == (4, 144, [5, 5, 256])


def test_the_cli_prints_the_time_left_into_a_redirected_file_while_it_runs(tmp_path, tiny_reactnet):
    """Output redirected to a file, as on a cluster: a progress line with the time left is in
    the file while the command still runs (flushed, not held in a buffer until exit). The
    full-shot cost sweep alone runs for minutes here, so the run is stopped once it is seen."""
    path = tmp_path / "backbone"
    save_backbone(tiny_reactnet(), path)
    out = tmp_path / "out.txt"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    command = [sys.executable, "-m", "burn_tf.evaluate", "svm", "--backbone", str(path), "--out", str(tmp_path),
               "--set", "n_train=200", "--set", "n_test=100", "--set", "folds=2", "--set", "shots=[1,2]", "--json"]
    with out.open("w") as stdout, (tmp_path / "err.txt").open("w") as stderr:
        proc = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env)
        try:
            deadline, lines = time.monotonic() + 300, []
            while not lines and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.5)
                lines = [line for line in out.read_text().splitlines() if "left" in line]
            running = proc.poll() is None
        finally:
            proc.kill()
            proc.wait()
    assert lines, f"no line with the time left in {out.read_text()!r}; stderr: {(tmp_path / 'err.txt').read_text()!r}"
    assert running, "the progress line reached the file only when the command ended"
    assert lines[0].startswith("svm features: 1/") and len(lines[0]) <= 120
