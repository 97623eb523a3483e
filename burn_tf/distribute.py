"""Where training runs: ``train.strategy`` → a ``tf.distribute.Strategy``, explicit tf.data
sharding, synchronized BatchNorm, mixed precision.

``default``      one device (the first GPU if any, else the CPU)
``mirrored``     every local GPU (one replica each); on a machine without GPUs, every
                 logical CPU device (tests split one CPU into two)
``multiworker``  MultiWorkerMirroredStrategy: one process per machine, ``TF_CONFIG`` names
                 the cluster and this worker (collective all-reduce over gRPC/NCCL)
``tpu``          TPUStrategy on the TPU named by ``train.tpu`` (``""``: the local one or the
                 one a Cloud TPU VM exports)

The config's ``train.batch_size`` is the *global* batch: every step consumes it, split
evenly over the replicas (see :mod:`burn_tf.methods.base` for the rules that make N
replicas compute what one device does).
"""

from __future__ import annotations

import contextlib
import functools

import tensorflow as tf

from burn_tf.schema import ConfigError

STRATEGIES = ("default", "mirrored", "multiworker", "tpu")


def make_strategy(name: str, tpu: str = "") -> tf.distribute.Strategy:
    """The strategy ``name`` (one of :data:`STRATEGIES`); errors name ``train.strategy``.
    A multi-worker or TPU strategy cannot be created twice in a process: those are made once
    and shared (stage 1 and stage 2 of one run use the same)."""
    if name == "default":
        # Outside any strategy's scope (where pretraining and the evaluators call this): the
        # no-distribution default strategy. Never cached, unlike the two below.
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name in ("multiworker", "tpu"):
        return _process_strategy(name, tpu)
    raise ConfigError(f"train.strategy={name!r} is not one of {STRATEGIES}")


@functools.lru_cache(maxsize=None)
def _process_strategy(name: str, tpu: str) -> tf.distribute.Strategy:
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or None)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as err:
        raise ConfigError(f"train.strategy=tpu: no TPU could be reached ({err})") from None
    return tf.distribute.TPUStrategy(resolver)


def shard_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Sets the sharding explicitly: every worker runs the same seeded pipeline and keeps its
    slice of each global batch (``AutoShardPolicy.DATA``). The global batches — their order
    and augmentations — are then exactly those of a one-device run with the same seed;
    the price is that each worker decodes and augments every image (FILE sharding would
    split the reading but change the order, and needs as many files as workers)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def synchronize_batchnorm(model: tf.keras.Model) -> int:
    """Makes every BatchNormalization of ``model`` compute its batch statistics over the
    global batch (all replicas) instead of each replica's share; returns how many. Must run
    before the training step is traced. Costs one all-reduce per BN layer and step; a
    no-op on one device."""
    count = 0
    for layer in _all_layers(model):
        if isinstance(layer, tf.keras.layers.BatchNormalization) and not layer.synchronized:
            layer.synchronized = True
            layer.fused = False  # the fused kernel cannot synchronise
            count += 1
    return count


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, tf.keras.Model):
            yield from _all_layers(layer)


@contextlib.contextmanager
def dtype_policy(mixed_precision: bool):
    """Layers created inside compute in float16 with float32 variables when
    ``mixed_precision`` (``mixed_float16``); the previous global policy is restored after."""
    if not mixed_precision:
        yield
        return
    previous = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        tf.keras.mixed_precision.set_global_policy(previous)


def float32_outputs(model: tf.keras.Model) -> tf.keras.Model:
    """``model`` with its outputs cast to float32 (a mixed-precision network feeding float32
    heads and losses); same layers, same weights."""
    if all(o.dtype == tf.float32 for o in model.outputs):
        return model
    outputs = [tf.keras.layers.Activation("linear", dtype="float32", name=f"{model.name}_float32")(o)
               for o in model.outputs]
    return tf.keras.Model(model.inputs, outputs if len(outputs) > 1 else outputs[0], name=model.name)
