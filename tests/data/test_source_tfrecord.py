"""The TFRecord source: reads, skips undecodable and truncated records, strict mode, keys, globs."""

import pytest
import tensorflow as tf
from data_helpers import check_source_spec, collect, encode_image, example, solid, write_records

from burn_tf.data import CorruptImageError, DataSourceError, get_source_info, tfrecord


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
