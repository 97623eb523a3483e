"""Update rules of what a method remembers across steps, as pure functions returning the
new values (the variables belong to the methods, which assign them on every replica):

- :func:`enqueue` — FIFO update of a ring-buffer queue of negatives (MoCo v2, InfoMin,
  CLD's MoCo branch): the newest keys overwrite the oldest, the pointer wraps around.
- :func:`momentum_update` — the EMA target ← τ·target + (1 − τ)·online (MoCo, BYOL);
  τ(t) is :func:`burn_tf.ops.schedules.cosine_momentum`.
- :func:`memory_bank_rows` — NPID's memory-bank rows ← normalise(m·v + (1 − m)·f).
"""

from __future__ import annotations

import tensorflow as tf


def enqueue(queue, pointer, keys):
    """``(new_queue, new_pointer)``: ``keys`` ([n, d]) written at rows ``pointer, pointer+1,
    …`` modulo the queue's length — the n oldest entries are replaced (first in, first
    out) — and the pointer moved past them (wrapping around). ``n`` must not exceed the
    queue's length."""
    size = tf.shape(queue)[0]
    count = tf.shape(keys)[0]
    checks = [tf.debugging.assert_less_equal(count, size, message="more keys than the queue holds")]
    with tf.control_dependencies(checks):
        rows = (tf.cast(pointer, tf.int32) + tf.range(count)) % size
    new_queue = tf.tensor_scatter_nd_update(queue, rows[:, None], tf.cast(keys, queue.dtype))
    new_pointer = (tf.cast(pointer, tf.int32) + count) % size
    return new_queue, tf.cast(new_pointer, tf.convert_to_tensor(pointer).dtype)


def momentum_update(target, online, tau):
    """τ·target + (1 − τ)·online (MoCo Eq. 2, BYOL Eq. 1), in the target's dtype (τ is a
    float32 schedule variable; a float64 model keeps its precision)."""
    tau = tf.cast(tau, tf.convert_to_tensor(target).dtype)
    return tau * target + (1.0 - tau) * online


def memory_bank_rows(old_rows, features, momentum: float = 0.5):
    """NPID's bank update (Wu et al. 2018 §3.2; lemniscate ``LinearAverage``):
    v ← normalise(m·v + (1 − m)·f), no gradient."""
    mixed = momentum * tf.cast(old_rows, tf.float32) + (1.0 - momentum) * tf.stop_gradient(
        tf.cast(features, tf.float32)
    )
    return tf.math.l2_normalize(mixed, axis=-1, epsilon=1e-12)
