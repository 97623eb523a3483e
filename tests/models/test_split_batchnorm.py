"""Split BatchNorm (MoCo's CIFAR demo ``SplitBatchNorm``): per-group statistics equal plain
Keras BatchNorm on each group alone, the moving statistics move by the groups' mean, inference
is plain BatchNorm, and the view shares every layer and variable of the network."""

import numpy as np
import pytest
import tensorflow as tf

from burn_tf.models.reactnet import ReActNetConfig, reactnet_a
from burn_tf.models.split_batchnorm import SplitBatchNormalization, split_batchnorm_view

GROUPS = 4


def batchnorm_with_state(channels=6, momentum=0.9, seed=0, fused=None):
    """A built BatchNormalization with non-trivial γ, β and moving statistics."""
    rng = np.random.default_rng(seed)
    bn = tf.keras.layers.BatchNormalization(momentum=momentum, epsilon=1e-3, fused=fused)
    bn.build((None, 5, 5, channels))
    bn.set_weights([1 + rng.random(channels), rng.standard_normal(channels), rng.standard_normal(channels),
                    0.5 + rng.random(channels)])
    return bn


def grouped_input(n=8, channels=6, seed=1):
    rng = np.random.default_rng(seed)
    # Each group has its own offset and scale, so per-group and whole-batch statistics differ.
    x = rng.standard_normal((n, 5, 5, channels)) * np.repeat(1 + np.arange(GROUPS), n // GROUPS)[:, None, None, None]
    return tf.constant(x + np.repeat(np.arange(GROUPS), n // GROUPS)[:, None, None, None], tf.float32)


def per_group_plain_batchnorm(x, fused=None):
    """Plain Keras BatchNorm (training) on each group of consecutive examples alone, each on
    a fresh copy of the same state: (outputs, moving mean and variance per group)."""
    outputs, moving = [], []
    for group in tf.split(x, GROUPS):
        bn = batchnorm_with_state(fused=fused)
        outputs.append(bn(group, training=True))
        moving.append([bn.moving_mean.numpy(), bn.moving_variance.numpy()])
    return tf.concat(outputs, 0).numpy(), np.array(moving)


def test_per_group_statistics_equal_plain_batchnorm_on_each_group_alone():
    x = grouped_input()
    split = SplitBatchNormalization(batchnorm_with_state(), GROUPS)
    expected, _ = per_group_plain_batchnorm(x)
    np.testing.assert_allclose(split(x, training=True).numpy(), expected, rtol=1e-4, atol=1e-4)
    # …and not what one BatchNorm over the whole batch gives.
    assert not np.allclose(batchnorm_with_state()(x, training=True).numpy(), expected, atol=1e-2)


@pytest.mark.parametrize("fused", [None, False])  # Keras' fused kernel: the unbiased variance
def test_moving_statistics_move_by_the_mean_of_the_groups_updates(fused):
    x = grouped_input()
    split = SplitBatchNormalization(batchnorm_with_state(fused=fused), GROUPS)
    split(x, training=True)
    _, moving = per_group_plain_batchnorm(x, fused)
    np.testing.assert_allclose(split.batchnorm.moving_mean.numpy(), moving[:, 0].mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(split.batchnorm.moving_variance.numpy(), moving[:, 1].mean(0), rtol=1e-5, atol=1e-6)


def test_inference_is_the_plain_batchnorm_with_the_same_moving_statistics():
    x = grouped_input()
    bn = batchnorm_with_state()
    split = SplitBatchNormalization(bn, GROUPS)
    split(x, training=True)  # moves the statistics
    np.testing.assert_array_equal(split(x, training=False).numpy(), bn(x, training=False).numpy())
    # Inference takes any batch, also one that does not cut into the groups.
    np.testing.assert_array_equal(split(x[:3], training=False).numpy(), bn(x[:3], training=False).numpy())


def test_a_batch_that_does_not_cut_into_the_groups_is_refused_naming_the_layer():
    bn = batchnorm_with_state()
    with pytest.raises(ValueError, match=rf"{bn.name}.*batch of 6 .*4 equal groups"):
        SplitBatchNormalization(bn, GROUPS)(grouped_input()[:6], training=True)


def test_view_of_reactnet_shares_every_variable_and_leaves_the_network_plain():
    network = reactnet_a(ReActNetConfig(input_size=32, width_multiplier=0.125, blocks=4))
    view = split_batchnorm_view(network, GROUPS)
    assert [id(v) for v in view.weights] == [id(v) for v in network.weights]
    assert [id(v) for v in view.trainable_weights] == [id(v) for v in network.trainable_weights]
    wrapped = [layer for layer in view.layers if isinstance(layer, SplitBatchNormalization)]
    plain = [layer for layer in network.layers if isinstance(layer, tf.keras.layers.BatchNormalization)]
    assert [w.batchnorm for w in wrapped] == plain and plain
    # The network is untouched: plain BatchNorms only, its config serialisable as before.
    assert not any(isinstance(layer, SplitBatchNormalization) for layer in network.layers)
    assert {layer["class_name"] for layer in network.get_config()["layers"]} >= {"BatchNormalization"}
    x = tf.random.stateless_uniform((8, 32, 32, 3), seed=(0, 1))
    np.testing.assert_array_equal(view(x, training=False).numpy(), network(x, training=False).numpy())
    # In training the view's features of one group do not depend on another group's images.
    changed = tf.concat([x[:6], 1.0 - x[6:]], 0)
    a, b = view(x, training=True).numpy(), view(changed, training=True).numpy()
    np.testing.assert_array_equal(a[:6], b[:6])
    assert not np.allclose(a[6:], b[6:])
    assert split_batchnorm_view(network, 1) is network
