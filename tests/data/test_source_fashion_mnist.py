"""The Fashion-MNIST source: written idx files, the env variable, missing and damaged files."""

import numpy as np
import pytest
from data_helpers import REAL_FASHION_DIR, check_source_spec, collect, real_fashion_available, write_idx

from burn_tf import data
from burn_tf.data import DataSourceError, fashion_mnist, get_source_info, load_fashion_mnist_arrays


def test_fashion_mnist_from_written_idx(tiny_fashion_dir):
    root, truth = tiny_fashion_dir
    for split, prefix in (("train", "train"), ("test", "t10k")):
        ds = fashion_mnist(split, root=root)
        check_source_spec(ds)
        images, labels = collect(ds)
        want_images, want_labels = truth[prefix]
        assert len(images) == len(want_images)
        for got, want in zip(images, want_images):
            assert got.shape == (28, 28, 3)
            for c in range(3):
                np.testing.assert_array_equal(got[..., c], want)
        assert labels == [int(v) for v in want_labels]
        info = get_source_info(ds)
        assert info.num_examples == len(want_images) and info.num_classes == 10
    arrays, labels = load_fashion_mnist_arrays("test", root=root)
    assert arrays.dtype == np.uint8 and arrays.shape == (4, 28, 28)
    assert labels.dtype == np.int64 and labels.shape == (4,)


def test_fashion_mnist_uncompressed_and_env_var(tmp_path, monkeypatch):
    images = np.full((2, 28, 28), 7, np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte", images, gz=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([3, 4]), gz=False)
    monkeypatch.setenv(data.FASHION_MNIST_ENV, str(tmp_path))
    imgs, labels = collect(fashion_mnist("train"))
    assert labels == [3, 4] and imgs[0].max() == 7


def test_fashion_mnist_missing_says_how_to_install(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        fashion_mnist("train", root=tmp_path / "nowhere")
    msg = str(e.value)
    assert "sudo apt-get update && sudo apt-get install dataset-fashion-mnist" in msg
    assert "train-images-idx3-ubyte" in msg and "root=" in msg
    with pytest.raises(ValueError, match="split"):
        fashion_mnist("validation", root=tmp_path)


def test_fashion_mnist_truncated_file_named(tiny_fashion_dir):
    root, _ = tiny_fashion_dir
    path = root / "train-images-idx3-ubyte.gz"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])  # truncated gzip stream
    with pytest.raises(DataSourceError, match="train-images-idx3-ubyte.gz"):
        load_fashion_mnist_arrays("train", root=root)


def test_fashion_mnist_truncated_payload_and_bad_magic(tmp_path):
    images = np.zeros((5, 28, 28), np.uint8)
    import gzip
    import struct

    header = struct.pack(">IIII", 0x803, 5, 28, 28)
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(header + images.tobytes()[:-100])  # valid gzip, short payload
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    with pytest.raises(DataSourceError, match=r"train-images-idx3-ubyte.gz: truncated"):
        load_fashion_mnist_arrays("train", root=tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", images, magic=0x801)
    with pytest.raises(DataSourceError, match="magic"):
        load_fashion_mnist_arrays("train", root=tmp_path)


def test_fashion_mnist_count_mismatch(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((3, 28, 28), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    with pytest.raises(DataSourceError, match="3 images but .* 4 labels"):
        load_fashion_mnist_arrays("train", root=tmp_path)


@pytest.mark.skipif(not real_fashion_available(), reason="Debian package dataset-fashion-mnist not installed")
def test_real_debian_fashion_mnist():
    images, labels = load_fashion_mnist_arrays("train")
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [6000] * 10
    test_images, test_labels = load_fashion_mnist_arrays("test", root=REAL_FASHION_DIR)
    assert test_images.shape == (10000, 28, 28) and np.bincount(test_labels).tolist() == [1000] * 10
    ds = fashion_mnist("test")
    check_source_spec(ds)
    x, y = next(iter(ds))
    np.testing.assert_array_equal(x.numpy()[..., 1], test_images[0])
    assert int(y) == int(test_labels[0])
