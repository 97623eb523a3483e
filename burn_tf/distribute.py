"""Where training runs, and the replica plumbing a method's training step writes through.

``train.strategy`` → a ``tf.distribute.Strategy`` (:func:`make_strategy`):

``default``      one device (the first GPU if any, else the CPU)
``mirrored``     every local GPU (one replica each); on a machine without GPUs, every
                 logical CPU device (tests split one CPU into two)
``multiworker``  MultiWorkerMirroredStrategy: one process per machine, ``TF_CONFIG`` names
                 the cluster and this worker (collective all-reduce over gRPC/NCCL)
``tpu``          TPUStrategy on the TPU named by ``train.tpu`` (``""``: the local one or the
                 one a Cloud TPU VM exports)

plus explicit tf.data sharding, synchronized BatchNorm and mixed precision. The config's
``train.batch_size`` is the *global* batch: every step consumes it, split evenly over the
replicas. So that N replicas compute what one device computes on the global batch, a
method's ``compute_losses`` returns the replica's *mean* loss (the base divides it by the
replica count and sums the gradients over replicas once), and every variable the step
*writes* in replica context follows this table (why: docs/adding_a_method.md, "Under
tf.distribute"):

============================  ==========================================================
state                         how
============================  ==========================================================
queue, memory bank, centre    gather what every replica contributes first
(same value on all replicas)  (:func:`gather_from_replicas`, after the loss), then assign
                              (a bank: :func:`update_rows`, read by :func:`read_rows`) to a
                              :func:`replica_shared_variable`
Keras layer weights (EMA      :func:`assign_on_every_replica`
targets) written from
mirrored values
counters (``global_step``)    ``aggregation=ONLY_FIRST_REPLICA``
replica-local sums            ``synchronization=ON_READ`` (BatchNorm statistics: MEAN)
a branch that synchronises    :func:`run_if`, not ``tf.cond`` in replica context
replicas
a batch shuffled across       :func:`apply_to_shuffled_batch` (MoCo's shuffled BatchNorm:
replicas                      gather, permute, compute, gather, unshuffle)
============================  ==========================================================
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable

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


@functools.cache
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


# ---------------------------------------------------------------------------- what a step writes under a strategy
def _strategy_in_use() -> bool:
    return tf.distribute.has_strategy() and tf.distribute.get_strategy().num_replicas_in_sync > 1


def replica_shared_variable(initial_value, name: str, dtype=None) -> tf.Variable:
    """A non-trainable variable every replica writes with the same value — a queue, memory
    bank or centre after :func:`gather_from_replicas` (MirroredStrategy keeps the first
    replica's write and broadcasts it). Create it where the method's networks are created
    (inside the strategy's scope)."""
    return tf.Variable(initial_value, trainable=False, name=name, dtype=dtype,
                       synchronization=tf.VariableSynchronization.ON_WRITE,
                       aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


def update_rows(variable: tf.Variable, index, new_rows: Callable, *args) -> None:
    """``variable[index] ← new_rows(variable[index], *args)`` in place: a sparse read and a
    sparse write of these rows only, never of the whole variable. For a
    :func:`replica_shared_variable` under a strategy every replica passes the same
    (index, args) — gathered from every replica first — and the update runs in
    cross-replica context (one ``merge_call``, then ``extended.update``): each device reads
    and writes the rows of its own copy with its own copy of the arguments.

    Why not the replica-context ``MirroredVariable.scatter_update`` (correct too:
    ``ONLY_FIRST_REPLICA`` applies the first replica's update everywhere), or reading the
    rows with ``tf.gather`` in replica context before the write: under MirroredStrategy
    either costs time in proportion to the whole variable (about 0.6 s a step for
    1.28M × 128 rows, ``benchmarks/bank_update.py``)."""
    index = tf.cast(index, tf.int64)

    def write(var, index, *args):
        rows = new_rows(tf.gather(var, index), *args)
        var.scatter_update(tf.IndexedSlices(tf.cast(rows, var.dtype), index))

    if not _strategy_in_use():
        write(variable, index, *args)
        return

    def update_all(strategy, index, *args):
        strategy.extended.update(variable, write, args=(index, *args), group=False)

    ctx = tf.distribute.get_replica_context()
    if ctx is None:  # already in cross-replica context (a bank filled before training)
        update_all(tf.distribute.get_strategy(), index, *args)
    else:
        ctx.merge_call(update_all, args=(index, *args))


def read_rows(variable: tf.Variable, index) -> tf.Tensor:
    """``variable[index]`` by a sparse read of these rows (``ResourceGather``). Under a
    strategy the read runs on each device's own copy from cross-replica context (one
    ``merge_call``): ``tf.gather`` of a MirroredVariable in replica context reads the whole
    variable densely, and once a sparse write has touched it TensorFlow copies the whole
    buffer on every dense read (its copy-on-read mode) — about 0.6 s a step for
    1.28M × 128 rows."""
    index = tf.cast(index, tf.int64)
    if not _strategy_in_use():
        return tf.gather(variable, index)

    def read_all(strategy, index):
        return strategy.extended.update(variable, lambda var, index: tf.gather(var, index), args=(index,),
                                        group=True)

    ctx = tf.distribute.get_replica_context()
    if ctx is None:
        return read_all(tf.distribute.get_strategy(), index)
    return ctx.merge_call(read_all, args=(index,))


def scatter_rows(variable: tf.Variable, index, rows) -> None:
    """``variable[index] ← rows`` in place (:func:`update_rows`)."""
    update_rows(variable, index, lambda _, rows: rows, rows)


def gather_from_replicas(tensor: tf.Tensor) -> tf.Tensor:
    """``tensor`` of every replica concatenated along axis 0, in replica order (replica 0's
    examples first: the global batch's order). Identity on one device.

    Collectives (this gather, synchronized BatchNorm, all-reduces) must run in the same order
    on every replica, or they pair up wrongly ("Shape mismatch in the collective instance"):
    when nothing orders the gather after the forward pass's BatchNorms, gather under
    ``tf.control_dependencies([loss])``."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return tensor
    return ctx.all_gather(tensor, axis=0)


def gather_in_order(tensors: list, after) -> list:
    """:func:`gather_from_replicas` of each tensor, the first after ``after`` (the loss) and
    each after the previous: several gathers with nothing ordering them could be launched
    in different orders on different replicas and pair up wrongly."""
    gathered = []
    previous = after
    for tensor in tensors:
        with tf.control_dependencies(tf.nest.flatten(previous)):
            previous = gather_from_replicas(tensor)
        gathered.append(previous)
    return gathered


def apply_to_shuffled_batch(fn: Callable, tensor: tf.Tensor, permutation: tf.Tensor) -> tf.Tensor:
    """``fn`` applied to the *global* batch in the order ``permutation`` (a permutation of
    the global batch, equal on every replica), cut into the replicas' shares as usual; its
    rows returned in this replica's own order — MoCo's ``_batch_shuffle_ddp`` /
    ``_batch_unshuffle_ddp`` (gather, shuffle, fn, gather, unshuffle). On one device:
    ``fn(tensor[permutation])[argsort(permutation)]``. No gradient flows through it (MoCo's
    keys); the two gathers are ordered by their data: launch it where nothing else
    synchronises concurrently (before the query encoder)."""
    tensor = tf.stop_gradient(tensor)
    inverse = tf.argsort(permutation)  # inverse[i]: where example i sits in the shuffled batch
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return tf.stop_gradient(tf.gather(fn(tf.gather(tensor, permutation)), inverse))
    local = tf.shape(tensor)[0]
    start = ctx.replica_id_in_sync_group * local
    mine = tf.gather(ctx.all_gather(tensor, axis=0), permutation[start:start + local])
    every = ctx.all_gather(tf.stop_gradient(fn(mine)), axis=0)
    return tf.gather(every, inverse[start:start + local])


def mean_over_replicas(values: dict) -> dict:
    """Scalars averaged over replicas (one all-reduce for all); unchanged on one device."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1 or not values:
        return values
    names = list(values)
    stacked = ctx.all_reduce(tf.distribute.ReduceOp.MEAN,
                             tf.stack([tf.cast(values[n], tf.float32) for n in names]))
    return {n: stacked[i] for i, n in enumerate(names)}


def sum_over_replicas(tensors: list) -> list:
    """Gradients summed over replicas (one batched all-reduce); unchanged on one device."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return tensors
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, tensors)


def assign_on_every_replica(variables: list, fn: Callable, args: list) -> None:
    """``v.assign(fn(v, *a))`` for each variable ``v`` and its args ``a`` (mirrored values,
    e.g. the online weights of an EMA), on every device. For variables without an
    aggregation (Keras layer weights): in replica context under a strategy it enters
    cross-replica context once and updates each device's copy from that device's args."""
    if not _strategy_in_use():
        for v, a in zip(variables, args):
            v.assign(fn(v, *a))
        return

    def update_all(strategy):
        for v, a in zip(variables, args):
            strategy.extended.update(v, lambda var, *xs: var.assign(fn(var, *xs)), args=tuple(a), group=False)

    ctx = tf.distribute.get_replica_context()
    if ctx is None:  # already in cross-replica context
        update_all(tf.distribute.get_strategy())
    else:
        ctx.merge_call(update_all)


def run_if(pred, fn: Callable[[], None]) -> None:
    """``if pred: fn()`` inside a traced step, where ``fn`` may synchronise replicas
    (``apply_gradients``, ``merge_call``). Under a strategy the ``tf.cond`` runs in
    cross-replica context and ``fn`` once per replica inside it: a branch with a
    synchronisation point is not allowed in a replica-context cond (MirroredStrategy)."""

    def branch():
        fn()
        return tf.constant(True)

    if not _strategy_in_use():
        tf.cond(pred, branch, lambda: tf.constant(False))
        return

    def cross_replica(strategy, pred):
        pred = strategy.experimental_local_results(pred)[0]  # equal on every replica

        def each_replica():
            strategy.extended.call_for_each_replica(fn)
            return tf.constant(True)

        tf.cond(pred, each_replica, lambda: tf.constant(False))

    ctx = tf.distribute.get_replica_context()
    if ctx is None:
        cross_replica(tf.distribute.get_strategy(), pred)
    else:
        ctx.merge_call(cross_replica, args=(pred,))
