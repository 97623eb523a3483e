"""burn_tf.ops.memory: the FIFO queue, the EMA and NPID's bank rows."""

import numpy as np
import pytest
import tensorflow as tf

from burn_tf.ops import memory


def test_enqueue_is_first_in_first_out_and_wraps_around():
    queue = tf.zeros((6, 1))
    pointer = tf.constant(0, tf.int64)
    for batch in range(4):  # keys 1..8 in batches of 2 into a queue of 6
        keys = tf.constant([[2.0 * batch + 1], [2.0 * batch + 2]])
        queue, pointer = memory.enqueue(queue, pointer, keys)
    # 8 keys into 6 rows: keys 7, 8 overwrote the oldest (1, 2); 3..6 are still there.
    np.testing.assert_array_equal(queue.numpy()[:, 0], [7, 8, 3, 4, 5, 6])
    assert int(pointer) == 2 and pointer.dtype == tf.int64
    # A batch that does not divide the queue wraps around inside the batch: rows 5, 0.
    queue, pointer = memory.enqueue(tf.zeros((5, 1)), tf.constant(4), tf.constant([[1.0], [2.0]]))
    np.testing.assert_array_equal(queue.numpy()[:, 0], [2, 0, 0, 0, 1])
    assert int(pointer) == 1


def test_enqueue_refuses_more_keys_than_the_queue_holds():
    with pytest.raises(tf.errors.InvalidArgumentError, match="more keys than the queue holds"):
        memory.enqueue(tf.zeros((2, 1)), tf.constant(0), tf.ones((3, 1)))


def test_momentum_update_is_the_ema():
    target, online = tf.constant([1.0, -2.0]), tf.constant([3.0, 0.0])
    np.testing.assert_allclose(memory.momentum_update(target, online, 0.9).numpy(), [1.2, -1.8], rtol=1e-6)


def test_memory_bank_update_mixes_by_momentum_and_renormalises():
    old = np.array([[1.0, 0.0], [0.6, 0.8]], np.float32)
    new = np.array([[0.0, 1.0], [0.6, 0.8]], np.float32)
    rows = memory.memory_bank_rows(old, new, momentum=0.5).numpy()
    np.testing.assert_allclose(rows[0], [2 ** -0.5, 2 ** -0.5], rtol=1e-6)  # 0.5·(1,0)+0.5·(0,1), unit
    np.testing.assert_allclose(rows[1], [0.6, 0.8], rtol=1e-6)  # same direction stays put
    np.testing.assert_allclose(memory.memory_bank_rows(old, new, momentum=1.0).numpy(), old)
