"""Fixtures of the evaluator tests: Fashion-MNIST (or a skip), and the small feature
extractors several evaluators are tested with."""

import pytest
import tensorflow as tf


@pytest.fixture(scope="session")
def fashion_splits():
    """{"train": (x, y), "test": (x, y)} of the Debian Fashion-MNIST, or a skip."""
    from burn_tf.data.source_fashion_mnist import load_fashion_mnist_arrays
    from burn_tf.data.source_info import SourceNotFoundError

    try:
        return {split: load_fashion_mnist_arrays(split) for split in ("train", "test")}
    except SourceNotFoundError as err:  # pragma: no cover - the Debian package is a dependency
        pytest.skip(str(err))


@pytest.fixture
def fashion(fashion_splits):
    """``fashion(n_train, n_test)`` → the first images of each split:
    (x_train, y_train, x_test, y_test)."""

    def first(n_train, n_test):
        (x_train, y_train), (x_test, y_test) = fashion_splits["train"], fashion_splits["test"]
        return x_train[:n_train], y_train[:n_train], x_test[:n_test], y_test[:n_test]

    return first


class Noise(tf.keras.layers.Layer):
    """Features independent of the image: fresh Gaussian noise on every call."""

    def call(self, x):
        return tf.random.normal([tf.shape(x)[0], 64]) + 0.0 * tf.reduce_mean(x)


@pytest.fixture
def pixel_backbone():
    """``pixel_backbone(size=28, pool=2)``: average-pooled pixels as features — a real,
    deterministic feature extractor that beats chance on Fashion-MNIST."""

    def make(size=28, pool=2):
        inputs = tf.keras.Input((size, size, 3))
        x = tf.keras.layers.AveragePooling2D(pool)(inputs)
        return tf.keras.Model(inputs, tf.keras.layers.Flatten()(x), name="pixels")

    return make


@pytest.fixture
def noise_backbone():
    """``noise_backbone(size=28)``: features that carry nothing of the image (chance level)."""

    def make(size=28):
        inputs = tf.keras.Input((size, size, 3))
        return tf.keras.Model(inputs, Noise()(inputs), name="noise")

    return make


@pytest.fixture
def tiny_reactnet():
    """``tiny_reactnet(size=32, blocks=4)``: a stage-2 ReActNet-A of width 0.125 (random
    weights), its first 4 blocks unless a test needs all 13."""
    from burn_tf.models.reactnet import ReActNetConfig, reactnet_a

    def make(size=32, blocks=4):
        return reactnet_a(ReActNetConfig(stage=2, input_size=size, width_multiplier=0.125, blocks=blocks))

    return make
