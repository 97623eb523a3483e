"""The TFRecord source: ``tf.train.Example`` records holding an encoded image and an int64 label.

The framing of every file is walked once up front (a truncated tail is found when the
source is built); records that cannot be read or decoded are skipped and counted as
``"<file> record <k>"`` (or raise with ``strict=True``).  Uncompressed files can be read at
a record index (their payload offsets are kept).
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import zlib
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from burn_tf.data.source_info import (
    CorruptImageError,
    DataSourceError,
    MissingLabelError,
    RecordReader,
    SourceInfo,
    SourceNotFoundError,
    decode_image,
    run_validation,
    track_skips,
    with_source_info,
)

AUTOTUNE = tf.data.AUTOTUNE
_graph_fn = tf.autograph.experimental.do_not_convert  # no AutoGraph needed in map fns


def _open_maybe_compressed(path: str, compression: str):
    if compression == "GZIP":
        return gzip.open(path, "rb")
    if compression == "ZLIB":
        with open(path, "rb") as f:
            return io.BytesIO(zlib.decompress(f.read()))
    return open(path, "rb")


def _scan_tfrecord(path: str, compression: str) -> tuple[int, str | None, list[tuple[int, int]]]:
    """Count complete records by walking the framing (length headers).  Returns
    ``(complete_records, problem, spans)`` where problem describes a truncated tail (None
    when the file ends cleanly) and ``spans`` lists each record's (payload offset, length)
    in an uncompressed file (empty for a compressed one).  An uncompressed file's payloads
    are seeked over, not read."""
    count, spans = 0, []
    try:
        size = os.path.getsize(path) if not compression else None
        with _open_maybe_compressed(path, compression) as f:
            while True:
                start = f.tell() if size is not None else 0
                header = f.read(12)
                if not header:
                    return count, None, spans
                if len(header) < 12:
                    return count, f"truncated record header at record {count}", spans
                (length,) = struct.unpack("<Q", header[:8])
                if size is not None:
                    if start + 12 + length + 4 > size:
                        return count, f"truncated record {count} (header says {length} bytes)", spans
                    f.seek(length + 4, os.SEEK_CUR)
                    spans.append((start + 12, length))
                else:
                    payload = f.read(length + 4) if length < (1 << 40) else b""
                    if len(payload) < length + 4:
                        return count, f"truncated record {count} (header says {length} bytes)", spans
                count += 1
    except (OSError, EOFError, zlib.error) as e:
        return count, f"unreadable after record {count} ({e})", spans


def tfrecord(
    files: str | os.PathLike | Sequence[str | os.PathLike],
    image_key: str = "image/encoded",
    label_key: str | None = "image/class/label",
    strict: bool = False,
    compression_type: str | None = None,
    validate: bool = False,
) -> tf.data.Dataset:
    """Images from TFRecord files of ``tf.train.Example`` with an encoded image (JPEG/PNG/
    GIF/BMP bytes) under ``image_key`` and an int64 label under ``label_key`` (missing or
    ``label_key=None`` → -1).  ``files`` is a path, a glob pattern or a list of them.

    Records whose image cannot be decoded, or that cannot be read (bad CRC, truncated
    file), are skipped and counted in ``source_info.skipped`` as ``"<file> record <k>"``
    (``strict=True``: raise naming file and record).  A truncated tail is found when the
    dataset is built (the framing is checked up front).
    """
    if isinstance(files, (str, os.PathLike)):
        patterns = [os.fspath(files)]
    else:
        patterns = [os.fspath(f) for f in files]
    if not patterns:
        raise SourceNotFoundError("tfrecord() got an empty list of files")
    paths: list[str] = []
    for pattern in patterns:
        if any(c in pattern for c in "*?["):
            matched = sorted(tf.io.gfile.glob(pattern))
            if not matched:
                raise SourceNotFoundError(f"no TFRecord files match {pattern!r}")
            paths.extend(matched)
        elif os.path.isfile(pattern):
            paths.append(pattern)
        else:
            raise SourceNotFoundError(f"TFRecord file {pattern!r} does not exist")
    compression = (compression_type or "").upper()
    if compression not in ("", "GZIP", "ZLIB"):
        raise ValueError(f"compression_type must be None, 'GZIP' or 'ZLIB', got {compression_type!r}")

    info = SourceInfo(kind="tfrecord", location=",".join(paths))
    counts, offsets, names = [], [], []
    span_file, span_offset, span_length = [], [], []
    for file_number, path in enumerate(paths):
        n, problem, spans = _scan_tfrecord(path, compression)
        span_file.extend([file_number] * len(spans))
        span_offset.extend(offset for offset, _ in spans)
        span_length.extend(length for _, length in spans)
        offsets.append(sum(counts))
        counts.append(n)
        names.extend(f"{path} record {k}" for k in range(n))
        if problem is not None:
            bad = f"{path} record {n}"
            if strict:
                raise CorruptImageError([f"{bad} ({problem})"])
            info.skipped.add(bad, problem)
    total = sum(counts)
    info.num_examples = total + info.skipped.count
    if total == 0:
        raise DataSourceError(f"no complete records in TFRecord file(s) {', '.join(paths)}")

    # Check the keys on the first record, so a wrong key is one clear error rather than
    # every record being skipped.
    example = None
    first_path = paths[0]
    for path in paths:
        records = tf.data.TFRecordDataset(path, compression_type=compression).ignore_errors()
        for record in records.take(16):
            try:
                example = tf.train.Example.FromString(record.numpy())
                first_path = path
                break
            except Exception:
                continue
        if example is not None:
            break
    if example is None:
        raise DataSourceError(f"no readable tf.train.Example records in {', '.join(paths)}")
    feature_map = example.features.feature
    available = sorted(feature_map.keys())
    if image_key not in feature_map or feature_map[image_key].WhichOneof("kind") != "bytes_list":
        raise DataSourceError(
            f"{first_path}: record has no bytes feature {image_key!r}; features: "
            f"{available} (pass image_key=)"
        )
    if label_key is not None and label_key not in feature_map:
        raise MissingLabelError(
            f"{first_path}: record has no label feature {label_key!r}; features: "
            f"{available} (pass label_key=, or label_key=None for unlabelled data)"
        )
    if label_key is not None and feature_map[label_key].WhichOneof("kind") != "int64_list":
        raise DataSourceError(f"{first_path}: feature {label_key!r} is not an int64 label")

    spec = {image_key: tf.io.FixedLenFeature([], tf.string)}
    if label_key is not None:
        spec[label_key] = tf.io.FixedLenFeature([], tf.int64, default_value=-1)

    @_graph_fn
    def parse(index, record):
        parsed = tf.io.parse_single_example(record, spec)
        label = parsed[label_key] if label_key is not None else tf.constant(-1, tf.int64)
        return index, decode_image(parsed[image_key]), label

    span_file = np.asarray(span_file, np.int32)
    span_offset = np.asarray(span_offset, np.int64)
    span_length = np.asarray(span_length, np.int64)

    def read_payload(index):
        with open(paths[span_file[index]], "rb") as f:
            f.seek(int(span_offset[index]))
            return np.bytes_(f.read(int(span_length[index])))

    @_graph_fn
    def read(index):  # the offsets stay in Python (see fashion_mnist's reader)
        payload = tf.numpy_function(read_payload, [index], tf.string, stateful=False)
        return parse(index, tf.ensure_shape(payload, []))[1:]

    if not compression:
        # Uncompressed files are seekable: a record is read at its offset (the CRCs are not
        # checked there; a damaged payload fails to parse or decode and is skipped instead).
        info.reader = RecordReader(total, read, names.__getitem__, may_fail=True)

    def build(strict_mode):
        per_file = tf.data.Dataset.from_tensor_slices(
            (tf.constant(paths), tf.constant(offsets, tf.int64), tf.constant(counts, tf.int64))
        )
        ds = per_file.flat_map(
            lambda f, off, n: tf.data.TFRecordDataset(f, compression_type=compression)
            .take(n)
            .enumerate(start=off)
        )
        ds = ds.map(parse, num_parallel_calls=AUTOTUNE, deterministic=True)
        return track_skips(ds, total, names, info.skipped, strict_mode)

    if validate:
        run_validation(build(False), info, strict)
    return with_source_info(build(strict), info)
