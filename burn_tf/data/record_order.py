"""Record order: an endless, seeded stream of a source's records that can start at any position.

Each epoch is a stateless permutation seeded by ``(seed, epoch)`` (:func:`record_at`), so
the record at any position is computed directly and a resumed run reads only the records
from its position on (:func:`seeded_record_stream`, for sources with a
:class:`~burn_tf.data.source_info.RecordReader`).
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

from burn_tf.data.source_info import CorruptImageError, DataSourceError, get_source_info, with_source_info

AUTOTUNE = tf.data.AUTOTUNE
_graph_fn = tf.autograph.experimental.do_not_convert  # no AutoGraph needed in map fns


_ORDER_SALT = 0x5EED  # keeps the order's random stream apart from the augmentation's
SUBSTITUTE_WINDOW = 16


def record_at(position, num_records: int, seed: int, shuffle: bool = True):
    """The record shown at ``position`` (int64) of an endless stream of epochs: epoch
    ``position // num_records`` visits every record once, in the order of a stateless
    permutation seeded by ``(seed, epoch)`` (``tf.random.experimental.index_shuffle``), so
    any position's record is computed directly, without drawing the ones before it."""
    position = tf.cast(position, tf.int64)  # a scalar or a vector of positions
    within = position % num_records
    if not shuffle or num_records < 2:
        return within
    # One seed per position: (this stream's seed, the position's epoch, a salt). The raw op:
    # the public wrapper cannot take a batch of seeds whose size is unknown when tracing.
    fill = functools.partial(tf.fill, tf.shape(position))
    epoch_seed = tf.stack([fill(tf.constant(seed, tf.int64)), position // num_records,
                           fill(tf.constant(_ORDER_SALT, tf.int64))], axis=-1)
    return tf.raw_ops.RandomIndexShuffle(index=within, seed=epoch_seed,
                                         max_index=fill(tf.constant(num_records - 1, tf.int64)), rounds=4)


def seeded_record_stream(
    source: tf.data.Dataset,
    seed: int,
    start_position: int = 0,
    num_records: int | None = None,
    shuffle: bool = True,
    strict: bool = False,
) -> tf.data.Dataset:
    """Endless ``(image, label, index)`` stream of a source with a :class:`RecordReader`,
    starting at element ``start_position``: each epoch is a permutation seeded by
    ``(seed, epoch)`` (:func:`record_at`), and only the records from ``start_position`` on
    are read and decoded — starting late costs nothing more than starting at 0.
    ``num_records`` uses the first N records only (``data.limit``); ``shuffle=False``
    keeps record order. ``index`` is the record's number (a memory bank's row).

    A record that cannot be read or decoded is replaced by the next readable record of
    the stream (within :data:`SUBSTITUTE_WINDOW` positions) and counted once in
    ``source_info.skipped``; so every position holds an image and a resumed stream sees
    the same batches as an uninterrupted one. ``strict=True`` raises instead.
    """
    info = get_source_info(source)
    reader = info.reader if info is not None else None
    if reader is None:
        kind = info.kind if info is not None else "this"
        raise DataSourceError(f"{kind} source cannot be read at a record index (no RecordReader)")
    n = reader.num_records if num_records is None else min(int(num_records), reader.num_records)
    if start_position < 0:
        raise ValueError(f"start_position must be >= 0, got {start_position}")
    positions = tf.data.Dataset.range(start_position, tf.int64.max)

    @_graph_fn
    def read_at(position):
        index = record_at(position, n, seed, shuffle)
        image, label = reader.read(index)
        return position, image, label, index

    if reader.read_many is not None and not reader.may_fail:
        @_graph_fn
        def read_block(block):
            index = record_at(block, n, seed, shuffle)
            images, labels = reader.read_many(index)
            return images, labels, index

        ds = positions.batch(256).map(read_block, num_parallel_calls=AUTOTUNE, deterministic=True).unbatch()
        return with_source_info(ds, info)
    if not reader.may_fail:
        ds = positions.map(read_at, num_parallel_calls=AUTOTUNE, deterministic=True)
        ds = ds.map(_graph_fn(lambda position, image, label, index: (image, label, index)))
        return with_source_info(ds, info)

    def report(position, found, indices):
        names = [reader.record_name(int(i)) for i in indices[: max(int(found - position), 0) or None]]
        if found < 0:
            raise DataSourceError(
                f"{SUBSTITUTE_WINDOW} records in a row cannot be read or decoded from stream position "
                f"{int(position)} on: {', '.join(names[:3])} ...; check the data (data.strict=true names "
                "every bad file up front)"
            )
        if strict:
            raise CorruptImageError(names)
        for name in names:
            info.skipped.add(name)
        return np.int64(0)

    sentinel = tf.data.Dataset.from_tensors(
        (tf.constant(-1, tf.int64), tf.zeros([1, 1, 3], tf.uint8), tf.constant(-1, tf.int64), tf.constant(-1, tf.int64))
    )

    def first_readable(position):
        window = tf.data.Dataset.range(position, position + SUBSTITUTE_WINDOW).map(read_at).ignore_errors()
        return window.concatenate(sentinel).take(1).map(_graph_fn(
            lambda found, image, label, index: (position, found, image, label, index)))

    @_graph_fn
    def check(position, found, image, label, index):
        done = tf.cond(
            tf.not_equal(found, position),
            lambda: tf.numpy_function(
                report, [position, found, tf.stack([record_at(position + k, n, seed, shuffle)
                                                    for k in range(SUBSTITUTE_WINDOW)])], tf.int64),
            lambda: tf.constant(0, tf.int64),
        )
        with tf.control_dependencies([done]):
            return tf.identity(image), label, index

    # Parallel and deterministic: each position yields exactly one element, in order.
    ds = positions.interleave(first_readable, cycle_length=AUTOTUNE, block_length=1,
                              num_parallel_calls=AUTOTUNE, deterministic=True)
    return with_source_info(ds.map(check), info)
