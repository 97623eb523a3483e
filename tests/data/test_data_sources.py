"""Sources: Fashion-MNIST idx files, tfds data_dir, image folders, TFRecords."""

import os

import numpy as np
import pytest
import tensorflow as tf
from data_helpers import (
    REAL_FASHION_DIR,
    encode_image,
    real_fashion_available,
    solid,
    write_idx,
    write_image,
)

from burn_tf import data
from burn_tf.data import (
    CorruptImageError,
    DataSourceError,
    SourceNotFoundError,
    fashion_mnist,
    get_source_info,
    image_folder,
    load_fashion_mnist_arrays,
    source_from_config,
    tfds_source,
    tfrecord,
)


def collect(ds):
    images, labels = [], []
    for x, y in ds:
        images.append(x.numpy())
        labels.append(int(y.numpy()))
    return images, labels


def check_source_spec(ds):
    image_spec, label_spec = ds.element_spec
    assert image_spec.dtype == tf.uint8 and image_spec.shape.rank == 3 and image_spec.shape[-1] == 3
    assert label_spec.dtype == tf.int64 and label_spec.shape.rank == 0


# ------------------------------------------------------------------------ Fashion-MNIST


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


# --------------------------------------------------------------------------------- tfds


@pytest.fixture(scope="module")
def tiny_tfds_builder_cls():
    import tensorflow_datasets as tfds

    class BurnTfTinyGrey(tfds.core.GeneratorBasedBuilder):
        """Five 6x5 grey images, labels 0..2, generated (no download)."""

        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict({
                    "image": tfds.features.Image(shape=(6, 5, 1)),
                    "label": tfds.features.ClassLabel(names=["a", "b", "c"]),
                }),
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for i in range(5):
                yield i, {"image": np.full((6, 5, 1), 10 * i, np.uint8), "label": i % 3}

    return BurnTfTinyGrey


def test_tfds_source_prepared(tmp_path, tiny_tfds_builder_cls):
    import tensorflow_datasets as tfds

    builder = tiny_tfds_builder_cls(data_dir=str(tmp_path))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    ds = tfds_source("burn_tf_tiny_grey", "train", data_dir=tmp_path)
    check_source_spec(ds)
    images, labels = collect(ds)
    assert sorted(labels) == [0, 0, 1, 1, 2]
    assert all(x.shape == (6, 5, 3) and (x == x[0, 0, 0]).all() for x in images)
    info = get_source_info(ds)
    assert info.class_names == ("a", "b", "c") and info.num_examples == 5
    unl = tfds_source("burn_tf_tiny_grey", "train[:2]", data_dir=tmp_path, label_key=None)
    assert collect(unl)[1] == [-1, -1]
    with pytest.raises(DataSourceError, match="no split 'test'"):
        tfds_source("burn_tf_tiny_grey", "test", data_dir=tmp_path)
    with pytest.raises(DataSourceError, match="'picture'"):
        tfds_source("burn_tf_tiny_grey", "train", data_dir=tmp_path, image_key="picture")


def test_tfds_source_missing_or_unprepared(tmp_path, tiny_tfds_builder_cls):
    with pytest.raises(SourceNotFoundError, match="data_dir"):
        tfds_source("burn_tf_tiny_grey", "train", data_dir=tmp_path / "missing")
    with pytest.raises(SourceNotFoundError, match="data_dir="):
        tfds_source("burn_tf_tiny_grey", "train", data_dir=None)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceNotFoundError, match="not prepared"):
        tfds_source("burn_tf_tiny_grey", "train", data_dir=empty)
    with pytest.raises(SourceNotFoundError, match="no_such_dataset_xyz"):
        tfds_source("no_such_dataset_xyz", "train", data_dir=empty)


# ------------------------------------------------------------------------- image folder


def make_class_folder(root):
    write_image(root / "cat" / "a.png", solid(8, 6, (200, 10, 10)))
    write_image(root / "cat" / "b.JPG", solid(10, 10, (10, 200, 10)))
    write_image(root / "cat" / "sub" / "c.png", np.full((5, 7), 90, np.uint8))  # grey
    write_image(root / "dog" / "d.jpeg", solid(12, 9, (10, 10, 200)))
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 128
    write_image(root / "dog" / "e.png", rgba)
    (root / "dog" / "notes.txt").write_text("not an image")
    return root


def test_image_folder_classes(tmp_path):
    root = make_class_folder(tmp_path / "imgs")
    ds = image_folder(root)
    check_source_spec(ds)
    images, labels = collect(ds)
    info = get_source_info(ds)
    assert info.class_names == ("cat", "dog") and info.num_examples == 5
    assert labels == [0, 0, 0, 1, 1]
    assert images[0].shape == (8, 6, 3) and tuple(images[0][0, 0]) == (200, 10, 10)
    assert tuple(images[2][0, 0]) == (90, 90, 90)  # grey → 3 channels
    assert images[4].shape == (4, 4, 3) and tuple(images[4][0, 0]) == (255, 0, 0)  # alpha dropped
    assert abs(int(images[1][5, 5, 1]) - 200) < 8  # JPEG, upper-case extension
    assert info.skipped.count == 0


def test_image_folder_flat_and_extensions(tmp_path):
    for i in range(3):
        write_image(tmp_path / f"{i}.png", solid(4, 4, (i, i, i)))
    write_image(tmp_path / "skip.jpg", solid(4, 4, (9, 9, 9)))
    ds = image_folder(tmp_path, extensions=("png",))
    images, labels = collect(ds)
    assert labels == [-1, -1, -1] and [int(x[0, 0, 0]) for x in images] == [0, 1, 2]
    assert get_source_info(ds).class_names == ()


def test_image_folder_corrupt_skipped_and_counted(tmp_path, caplog):
    root = make_class_folder(tmp_path / "imgs")
    jpeg = encode_image(solid(32, 32, (1, 2, 3)), "JPEG")
    (root / "cat" / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / "dog" / "zz_garbage.png").write_bytes(b"definitely not a png" * 3)
    ds = image_folder(root)
    assert get_source_info(ds).num_examples == 7
    with caplog.at_level("WARNING"):
        images, labels = collect(ds)
    assert len(images) == 5 and labels == [0, 0, 0, 1, 1]
    skipped = get_source_info(ds).skipped
    assert skipped.count == 2
    assert [os.path.basename(n) for n in skipped.names] == ["truncated.jpg", "zz_garbage.png"]
    assert "truncated.jpg" in caplog.text and "zz_garbage.png" in caplog.text
    collect(ds)  # a second epoch does not count them again
    assert skipped.count == 2 and "2 unreadable image(s) skipped" in skipped.summary()


def test_image_folder_validate_counts_up_front(tmp_path):
    root = make_class_folder(tmp_path / "imgs")
    (root / "dog" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    ds = image_folder(root, validate=True)
    assert get_source_info(ds).skipped.count == 1
    assert len(collect(ds)[0]) == 5


def test_image_folder_strict_raises_naming_file(tmp_path):
    root = make_class_folder(tmp_path / "imgs")
    png = encode_image(solid(16, 16, (5, 5, 5)))
    (root / "cat" / "broken.png").write_bytes(png[:30])
    with pytest.raises(CorruptImageError, match="broken.png"):
        image_folder(root, strict=True, validate=True)
    ds = image_folder(root, strict=True)
    with pytest.raises(tf.errors.OpError, match="broken.png"):
        collect(ds)


def test_image_folder_empty_and_missing(tmp_path):
    (tmp_path / "empty" / "class_a").mkdir(parents=True)
    with pytest.raises(DataSourceError, match="contains no images"):
        image_folder(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        image_folder(tmp_path / "missing")


# ----------------------------------------------------------------------------- tfrecord


def example(image_bytes, label=None, image_key="image/encoded", label_key="image/class/label"):
    feature = {image_key: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_bytes]))}
    if label is not None:
        feature[label_key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_records(path, records):
    with tf.io.TFRecordWriter(str(path)) as w:
        for r in records:
            w.write(r)
    return str(path)


def test_tfrecord_reads_and_skips(tmp_path):
    good = [encode_image(solid(6, 6, (i * 20, 0, 0))) for i in range(4)]
    f1 = write_records(tmp_path / "a.tfrecord", [
        example(good[0], 0), example(b"garbage bytes", 1), example(good[1], 2),
    ])
    f2 = tmp_path / "b.tfrecord"
    write_records(f2, [example(good[2], 3), example(good[3], 4)])
    raw = f2.read_bytes()
    f2.write_bytes(raw[:-25])  # the last record is truncated
    ds = tfrecord([f1, f2])
    check_source_spec(ds)
    images, labels = collect(ds)
    assert labels == [0, 2, 3]
    assert [int(x[0, 0, 0]) for x in images] == [0, 20, 40]
    skipped = get_source_info(ds).skipped
    assert skipped.count == 2
    assert skipped.names == [f"{f2} record 1", f"{f1} record 1"]  # truncation found up front
    collect(ds)
    assert skipped.count == 2


def test_tfrecord_strict_glob_keys_and_unlabelled(tmp_path):
    img = encode_image(solid(5, 5, (1, 1, 1)), "JPEG")
    f = write_records(tmp_path / "x-00000.tfrecord", [example(img, 7), example(b"bad", 8)])
    with pytest.raises(CorruptImageError, match=r"x-00000.tfrecord record 1"):
        tfrecord(str(tmp_path / "x-*.tfrecord"), strict=True, validate=True)
    with pytest.raises(tf.errors.OpError, match=r"x-00000.tfrecord record 1"):
        collect(tfrecord(f, strict=True))
    with pytest.raises(DataSourceError, match="'img'.*image/encoded"):
        tfrecord(f, image_key="img")
    with pytest.raises(DataSourceError, match="'label'"):
        tfrecord(f, label_key="label")
    images, labels = collect(tfrecord(f, label_key=None))
    assert labels == [-1]
    with pytest.raises(FileNotFoundError):
        tfrecord(tmp_path / "missing.tfrecord")
    with pytest.raises(FileNotFoundError, match="no TFRecord files match"):
        tfrecord(str(tmp_path / "none-*.tfrecord"))


# ------------------------------------------------------------------------------- config


def test_source_from_config(tiny_fashion_dir, tmp_path):
    root, _ = tiny_fashion_dir
    ds = source_from_config("fashion_mnist", split="test", root=root)
    assert len(collect(ds)[0]) == 4
    write_image(tmp_path / "flat" / "a.png", solid(3, 3, (1, 2, 3)))
    assert collect(source_from_config("image_folder", path=tmp_path / "flat"))[1] == [-1]
    with pytest.raises(ValueError) as e:
        source_from_config("cifar")
    for name in ("fashion_mnist", "tfds", "image_folder", "tfrecord"):
        assert name in str(e.value)
    with pytest.raises(TypeError, match="accepted arguments"):
        source_from_config("image_folder", folder="x")


# ------------------------------------------------------------------ records by index


def _by_index(ds, n):
    """The first ``n`` (image, label) of ``ds``'s records in record order, read by index."""
    stream = data.seeded_record_stream(ds, seed=0, shuffle=False)
    return [(x.numpy(), int(y), int(i)) for x, y, i in stream.take(n)]


def test_every_indexable_source_reads_a_record_by_index_as_the_sequential_source_does(tmp_path,
                                                                                    tiny_tfds_builder_cls,
                                                                                    tiny_fashion_dir):
    import tensorflow_datasets as tfds

    root, _ = tiny_fashion_dir
    tiny_tfds_builder_cls(data_dir=str(tmp_path)).download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    folder = tmp_path / "folder"
    for i in range(5):
        write_image(str(folder / f"{i}.png"), solid(4, 3, (40 * i, 7, 9)))
    records = write_records(tmp_path / "r.tfrecord", [example(encode_image(solid(3, 3, (i, 1, 2))), i)
                                                      for i in range(4)])
    sources = {
        "fashion_mnist": fashion_mnist("train", root),
        "tfds": tfds_source("burn_tf_tiny_grey", "train", data_dir=tmp_path),
        "image_folder": image_folder(folder),
        "tfrecord": tfrecord(records),
    }
    for kind, ds in sources.items():
        expected = collect(ds)
        n = len(expected[0])
        got = _by_index(ds, n)
        for k, (image, label, index) in enumerate(got):
            assert index == k, kind
            np.testing.assert_array_equal(image, expected[0][k], err_msg=kind)
            assert label == expected[1][k], kind
    # A slice of a tfds split, and a compressed TFRecord, can only be read in order.
    assert get_source_info(tfds_source("burn_tf_tiny_grey", "train[:2]", data_dir=tmp_path)).reader is None
    gz = tmp_path / "r.tfrecord.gz"
    with tf.io.TFRecordWriter(str(gz), options="GZIP") as w:
        w.write(example(encode_image(solid(3, 3, (1, 1, 2))), 0))
    assert get_source_info(tfrecord(gz, compression_type="GZIP")).reader is None


def test_a_record_stream_is_a_seeded_permutation_per_epoch_and_starts_anywhere(tmp_path, caplog):
    folder = tmp_path / "folder"
    for i in range(7):
        write_image(str(folder / f"{i}.png"), solid(2, 2, (i, 0, 0)))
    (folder / "3.png").write_bytes(b"not a png")
    source = image_folder(folder)
    stream = data.seeded_record_stream(source, seed=5)
    full = [(int(x[0, 0, 0]), int(i)) for x, _, i in stream.take(21)]
    epochs = [sorted(i for _, i in full[e * 7:(e + 1) * 7]) for e in range(3)]
    # Every epoch a permutation of the records, except the unreadable one, each time
    # replaced by the next readable record of the stream.
    assert all(3 not in e and len(e) == 7 for e in epochs)
    orders = [[i for _, i in full[e * 7:(e + 1) * 7]] for e in range(3)]
    assert orders[0] != orders[1] != orders[2]
    assert all(pixel == index for pixel, index in full)
    assert get_source_info(source).skipped.names == [str(folder / "3.png")]
    late = data.seeded_record_stream(source, seed=5, start_position=9)
    assert [(int(x[0, 0, 0]), int(i)) for x, _, i in late.take(12)] == full[9:]
    other_seed = data.seeded_record_stream(source, seed=6)
    assert [int(i) for _, _, i in other_seed.take(7)] != orders[0]
    with pytest.raises(tf.errors.OpError, match="3.png"):
        list(data.seeded_record_stream(image_folder(folder), seed=5, strict=True).take(21))
