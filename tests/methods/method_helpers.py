"""Helpers shared by the method tests: a tiny student and frozen teacher, view batches,
snapshots."""

import numpy as np
import tensorflow as tf

from burn_tf.models.reactnet import ReActNetConfig, reactnet_a


def tiny_reactnet(stage=1):
    """The method tests' student: ReActNet-A at 32 px, width 0.125, its first 4 blocks (a
    third of the 13 blocks' build and trace time; the method logic is the same)."""
    return reactnet_a(ReActNetConfig(stage=stage, input_size=32, width_multiplier=0.125, blocks=4))


def tiny_teacher(size=32, dim=24):
    """A small FP CNN with BatchNorm: a real (random) frozen feature extractor."""
    inputs = tf.keras.Input((size, size, 3))
    x = tf.keras.layers.Conv2D(16, 3, strides=2, name="t_conv")(inputs)
    x = tf.keras.layers.BatchNormalization(name="t_bn")(x)
    x = tf.keras.layers.ReLU()(x)
    x = tf.keras.layers.Conv2D(dim, 3, strides=2, name="t_conv2")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    return tf.keras.Model(inputs, x, name="tiny_teacher")


def view_pair(n=16, seed=0, size=32):
    rng = np.random.default_rng(seed)
    v1 = rng.random((n, size, size, 3), dtype=np.float32)
    v2 = np.clip(v1 + 0.1 * rng.standard_normal(v1.shape).astype(np.float32), 0, 1)
    return tf.constant(v1), tf.constant(v2)


def snapshot(variables):
    return [v.numpy().copy() for v in variables]


def changed(before, variables):
    return any(not np.array_equal(b, v.numpy()) for b, v in zip(before, variables))
