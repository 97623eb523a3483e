"""Record order: every indexable source read by index, and the seeded per-epoch permutation."""

import numpy as np
import pytest
import tensorflow as tf
from data_helpers import collect, encode_image, example, solid, write_image, write_records

from burn_tf import data
from burn_tf.data import fashion_mnist, get_source_info, image_folder, tfds_source, tfrecord


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
