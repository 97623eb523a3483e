"""Split BatchNorm: the training-time view of a network whose BatchNorms compute their
statistics per group of the batch — how MoCo's single-GPU CIFAR demo
(``facebookresearch/moco`` ``colab/moco_cifar10_demo.ipynb``, ``SplitBatchNorm`` with
``--bn-splits 8``) emulates the per-GPU BatchNorm of MoCo's multi-GPU training on one
device. :func:`split_batchnorm_view` returns a ``tf.keras.Model`` made of the *same* layers
as the network (the same variables: gradients, EMA and checkpoints see no difference) in
which every ``BatchNormalization`` is wrapped by :class:`SplitBatchNormalization`. In
training each group of ``batch / num_splits`` consecutive examples is normalised with its
own mean and variance, and the moving statistics move by the mean of the groups' statistics
(the demo's ``running_mean`` = mean over splits); in inference the wrapped
layer runs as the plain BatchNormalization it is. The network itself is not changed: what is
exported is still a plain Keras model. Under ``tf.distribute`` each replica holds
``num_splits / replicas`` of the groups (the global batch is cut into the same groups as one
device's), and the split layers do not synchronise (their statistics are per group).
"""

from __future__ import annotations

import tensorflow as tf


class SplitBatchNormalization(tf.keras.layers.Layer):
    """``batchnorm`` (a built channels-last ``BatchNormalization``, shared, not copied) with
    per-group batch statistics in training; ``batchnorm`` itself in inference."""

    def __init__(self, batchnorm: tf.keras.layers.BatchNormalization, num_splits: int, **kwargs):
        super().__init__(name=f"{batchnorm.name}_split", dtype=batchnorm.dtype_policy, **kwargs)
        axis = batchnorm.axis if isinstance(batchnorm.axis, (list, tuple)) else [batchnorm.axis]
        rank = batchnorm.input_spec.ndim if batchnorm.input_spec is not None else None
        if rank is None or list(axis) not in ([rank - 1], [-1]) or batchnorm.renorm or batchnorm.virtual_batch_size:
            raise ValueError(f"split BatchNorm: layer {batchnorm.name!r} must be a built channels-last "
                             "BatchNormalization without renorm or virtual_batch_size")
        self.batchnorm = batchnorm
        self.num_splits = int(num_splits)

    def groups_on_this_replica(self) -> int:
        ctx = tf.distribute.get_replica_context()
        replicas = ctx.num_replicas_in_sync if ctx is not None else 1
        if self.num_splits % replicas:
            raise ValueError(f"split BatchNorm {self.batchnorm.name!r}: {self.num_splits} groups do not divide "
                             f"over {replicas} replicas")
        return self.num_splits // replicas

    def call(self, inputs, training=None):
        bn = self.batchnorm
        # A frozen BatchNorm (trainable False) runs in inference as Keras' own does.
        if not training or not bn.trainable:
            return bn(inputs, training=False)
        groups = self.groups_on_this_replica()
        if inputs.shape[0] is not None and inputs.shape[0] % groups:
            raise ValueError(f"split BatchNorm {bn.name!r}: a batch of {inputs.shape[0]} does not cut into "
                             f"{groups} equal groups")
        x = tf.cast(inputs, tf.float32)  # statistics in float32, as Keras' BatchNorm under mixed precision
        # [groups, batch / groups, ...]: consecutive examples form a group (one device's share).
        grouped = tf.reshape(x, tf.concat([[groups, -1], tf.shape(x)[1:]], axis=0))
        axes = list(range(1, len(inputs.shape)))  # the group's examples and positions, not the channels
        mean, variance = tf.nn.moments(grouped, axes, keepdims=True)
        outputs = tf.nn.batch_normalization(grouped, mean, variance, bn.beta, bn.gamma, bn.epsilon)
        outputs = tf.cast(tf.reshape(outputs, tf.shape(inputs)), inputs.dtype)
        outputs.set_shape(inputs.shape)
        # The moving statistics move by the mean of the groups' (MoCo's demo: the mean of the
        # per-split running statistics, each updated with the same momentum), each group's as
        # the wrapped layer would move them: Keras' fused kernel (the default for images) with
        # the unbiased variance, as PyTorch's, the unfused layer with the biased one.
        if bn.fused:
            count = tf.cast(tf.size(grouped[0]) // tf.shape(grouped)[-1], tf.float32)
            variance = variance * count / tf.maximum(count - 1.0, 1.0)
        decay = 1.0 - bn.momentum
        group_axes = list(range(len(inputs.shape)))
        for moving, value in ((bn.moving_mean, mean), (bn.moving_variance, variance)):
            value = tf.reshape(tf.reduce_mean(value, axis=group_axes), tf.shape(moving))
            moving.assign_sub((moving - tf.cast(value, moving.dtype)) * decay)
        return outputs

    def get_config(self):
        raise NotImplementedError("SplitBatchNormalization is a training-time view: save the network it wraps")


def _has_batchnorm(model: tf.keras.Model) -> bool:
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            return True
        if isinstance(layer, tf.keras.Model) and _has_batchnorm(layer):
            return True
    return False


def split_batchnorm_view(model: tf.keras.Model, num_splits: int) -> tf.keras.Model:
    """``model`` with every BatchNormalization computing per-group statistics in training
    (:class:`SplitBatchNormalization`), sharing all of ``model``'s layers and variables;
    ``model`` itself when ``num_splits`` is 1 or it has no BatchNorm. ``model`` must be a
    functional Keras model (nested functional models are viewed too)."""
    if int(num_splits) == 1 or not _has_batchnorm(model):
        return model

    def view(layer):
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            return SplitBatchNormalization(layer, num_splits)
        if isinstance(layer, tf.keras.Model):
            return split_batchnorm_view(layer, num_splits)
        return layer  # shared: the same layer object, the same variables

    split = tf.keras.models.clone_model(model, clone_function=view)
    split._name = f"{model.name}_split_bn"
    return split
