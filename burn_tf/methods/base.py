"""What every pretraining method shares: :class:`PretrainMethod` and two middle layers.

A method is one ``keras.Model`` subclass in one file. The base owns the training loop
(``train_step``/``test_step``), metric tracking, ``global_step``, gradient accumulation,
per-replica loss scaling, gradient norms per variable group, building every variable
(``build_all``) and what goes into a checkpoint.

A method declares each of its networks and state variables once, in ``__init__``:
``add_head(name, network, trainable=True, exported=True)`` for a head (``exported`` a file
stem other than ``name``, or False), ``add_state(name, variable)`` for a variable that is
checkpointed but neither trained nor exported (a queue, a memory bank, a centre);
:meth:`MomentumMethod.add_momentum_pair` adds a frozen EMA target. The base registers the
backbone under ``backbone_key``. ``trainable_groups``, ``checkpoint_modules`` and
``exported_heads`` are derived from these declarations, in declaration order (a method
overrides one of them only for a genuine exception). The method supplies its hooks:

=============================  =========================================================
hook                           what the method returns / does
=============================  =========================================================
``compute_losses(views,        a dict of scalars that contains ``"loss"``; every other
labels, training)``            key is logged (declare them in ``loss_terms``), as the
                               epoch's running mean ``<name>`` and this batch's value
                               ``<name>_step``
``trainable_groups()``         ``{group name: [variables]}``; one gradient norm is logged
                               per group (``grad_norm_<group>``). Derived: every
                               ``trainable`` part
``checkpoint_modules()``       ``{name: network or variable}`` saved with the run. Derived:
                               every part
``method_callbacks(            Keras callbacks the method itself needs (BURN: λ(t));
total_steps)``                 ``callbacks(total_steps)`` adds the per-step logger and
                               the progress lines to them
``after_update()``             runs after each optimizer update (EMA targets, queues)
``init_from_previous_stage``   stage 2 from stage 1 (default: the backbone by layer name,
``(previous)``                 every other network of ``checkpoint_modules`` as is)
``exported_heads()``           ``{file stem: network}`` saved beside the backbone.
                               Derived: every ``exported`` head
``extra_logs()``               scalars to log that are not running means (BURN: λ)
=============================  =========================================================

Class attributes: ``method_name`` (the YAML ``method.name``), ``Config`` (the method's own
dataclass), ``num_views`` (or ``num_views_for(config)``), ``needs_labels``,
``needs_teacher``, ``moving_target`` (a jointly trained target whose collapse
:class:`~burn_tf.callbacks.CollapseWatcher` watches: BURN). A registry
(:mod:`burn_tf.methods.registry`) maps the name to the class; nothing else selects a
method by its name.

Middle layers: :class:`DistillationMethod` (a frozen FP teacher: resized input,
``stop_gradient``, BatchNorm in inference mode; one view, or two with ``symmetric``, the
student of each view paired with the teacher of the other — BURN, S2-BNN, supervised
KL-div) and
:class:`MomentumMethod` (online/target pairs updated by an EMA whose τ follows a cosine
from ``tau_start`` to ``tau_end`` — BYOL, MoCo v2, InfoMin, CLD).

The dataset yields ``(view_1, …, view_N)`` batches of images, optionally followed by an
integer label batch (``needs_labels``); a single image batch is one view.

Dataset index (``needs_index``, NPID's memory bank): the dataset yields
``(views…, [labels,] index)`` — the index is always *last*, the int64 position of each
image in the (limited) source, stable across epochs and shuffles
(``multi_view_dataset(with_index=True)``). :meth:`PretrainMethod.parse_batch` takes it
off by that position, and the base passes it as ``compute_losses(views, labels, training,
index=index)`` to such methods only (the others keep their three-argument hook and their
batches). Such a method takes ``dataset_size=`` (rows of its bank) in its constructor;
pretraining counts the source and passes it.

Distribution (``tf.distribute``: one device, MirroredStrategy, MultiWorkerMirroredStrategy,
TPUStrategy). ``train_step`` runs once per replica on that replica's share of the global
batch. The rules every method follows, so that N replicas compute what one device computes
on the global batch:

- ``compute_losses`` returns the replica's *mean* loss; the base divides it by the replica
  count and sums the gradients over replicas once (``all_reduce``) before the update — the
  exact gradient of the global mean because every replica holds the same number of
  examples (``drop_remainder``; pretraining checks the batch divides by the replicas).
  Same result as ``tf.nn.compute_average_loss(per_example, global_batch_size)``.
- Gradient norms are of the summed (global) gradients; logged per-step values are means
  over replicas.
- A variable that the step *writes* in replica context needs an aggregation a
  MirroredStrategy accepts:

  ============================  ==========================================================
  state                         how
  ============================  ==========================================================
  queue, memory bank, centre    gather what every replica contributes first
  (same value on all replicas)  (:func:`gather_from_replicas`, after the loss), then assign
                                (a bank: :func:`update_rows`, read by :func:`read_rows`) to a
                                :func:`replica_shared_variable` (``ON_WRITE`` +
                                ``ONLY_FIRST_REPLICA``: the first replica's write is
                                broadcast, the others' are dropped — they are equal)
  Keras layer weights (EMA      :func:`assign_on_every_replica`: one ``merge_call`` into
  targets) written from         cross-replica context, then ``extended.update`` per device
  mirrored values
  counters (``global_step``)    ``aggregation=ONLY_FIRST_REPLICA``
  replica-local sums            ``synchronization=ON_READ`` (BatchNorm statistics: MEAN)
  ============================  ==========================================================

- A branch that synchronises replicas (``apply_gradients``, ``merge_call``,
  ``all_reduce``) must not sit in a ``tf.cond`` in replica context: use :func:`run_if`
  (the branch runs in cross-replica context, as Keras' LossScaleOptimizer does).
- BatchNorm: the heads use ``synchronized=True`` (global batch statistics); backbones
  compute per-replica statistics unless ``train.sync_batchnorm`` is set (see
  :func:`burn_tf.distribute.synchronize_batchnorm`).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, ClassVar

import tensorflow as tf

from burn_tf.callbacks import ProgressLines, ScheduledValue, StepScalarLogger
from burn_tf.models.reactnet import transfer_stage1_to_stage2
from burn_tf.ops.memory import momentum_update
from burn_tf.ops.schedules import cosine_momentum
from burn_tf.optim import current_learning_rate


# ---------------------------------------------------------------------------- distribution helpers
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


@dataclasses.dataclass
class MethodConfig:
    """Keys every method has; a method's ``Config`` subclasses it."""

    name: str = ""


@dataclasses.dataclass(frozen=True)
class MethodPart:
    """A network or variable a method declared: checkpointed under its name, its trainable
    variables one gradient group when ``trainable``, saved beside the backbone as
    ``<exported>.keras`` when ``exported`` is a file stem."""

    module: object
    trainable: bool = False
    exported: str | None = None


class PretrainMethod(tf.keras.Model):
    """Base of every pretraining method; see the module docstring for the hooks."""

    method_name: ClassVar[str] = ""
    Config: ClassVar[type] = MethodConfig
    num_views: ClassVar[int] = 2
    needs_labels: ClassVar[bool] = False
    needs_teacher: ClassVar[bool] = False
    # True: batches end with each image's dataset index, passed as compute_losses(index=).
    needs_index: ClassVar[bool] = False
    # Scalars compute_losses returns besides "loss" (created as metrics up front: Keras
    # metrics cannot be created inside a traced train_step).
    loss_terms: ClassVar[tuple[str, ...]] = ()
    # True: a jointly trained target that can collapse; CollapseWatcher's metrics are logged.
    moving_target: ClassVar[bool] = False
    # The backbone's checkpoint key and gradient group.
    backbone_key: ClassVar[str] = "backbone"

    def __init__(self, backbone: tf.keras.Model, config=None, accumulation_steps: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.config = config if config is not None else self.Config()
        self.backbone = backbone
        # Every declared network and state variable by name, in declaration order.
        self._parts: dict[str, MethodPart] = {}
        self._add_part(self.backbone_key, MethodPart(backbone, trainable=True))
        self.input_size = int(backbone.inputs[0].shape[1])
        self.feature_dim = int(backbone.outputs[0].shape[-1])
        # Counts batches seen (not optimizer applies): schedules (λ, τ) are functions of it,
        # and it is checkpointed so a resumed run continues the same curves.
        # ONLY_FIRST_REPLICA: every replica adds 1; a MirroredStrategy keeps one of them.
        self.global_step = tf.Variable(0, trainable=False, dtype=tf.int64, name="global_step",
                                       aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        if int(accumulation_steps) < 1:
            raise ValueError(f"accumulation_steps must be >= 1, got {accumulation_steps}")
        self.accumulation_steps = int(accumulation_steps)
        self._accumulators = None
        self._trackers = None
        # Where callbacks that write per-step records put them (pretraining sets the stage
        # directory; None in a notebook unless the user sets it).
        self.log_dir = None
        # Resuming in the middle of an epoch: the batch of that epoch fit() starts at.
        self.resume_at_batch = 0
        # Every logged value is already equal on all replicas (global means, see train_step):
        # report the first replica's, not Keras' default sum over replicas.
        self.distribute_reduction_method = "first"

    # ------------------------------------------------------------------ declarations
    def add_head(self, name: str, network: tf.keras.Model, trainable: bool = True,
                 exported: bool | str = True) -> tf.keras.Model:
        """Declares ``network`` (returned): checkpointed as ``name``; its trainable variables
        are the gradient group ``name`` when ``trainable``; saved beside the backbone as
        ``<name>.keras`` when ``exported`` is True, as ``<exported>.keras`` when it is a
        string. The checkpoint key and the file stem are a run directory's format: keep them."""
        stem = (name if exported is True else exported) or None
        return self._add_part(name, MethodPart(network, trainable=trainable, exported=stem))

    def add_state(self, name: str, variable: tf.Variable) -> tf.Variable:
        """Declares ``variable`` (returned): checkpointed as ``name``, neither trained nor
        exported (a queue, a memory bank, a centre)."""
        return self._add_part(name, MethodPart(variable))

    def _add_part(self, name: str, part: MethodPart):
        if name in self._parts:
            raise ValueError(f"{type(self).__name__}: a part named {name!r} is declared twice")
        self._parts[name] = part
        return part.module

    # ------------------------------------------------------------------ hooks
    @classmethod
    def num_views_for(cls, config) -> int:
        """Views per batch this method needs with ``config`` (default: ``num_views``)."""
        return cls.num_views

    @property
    def views_needed(self) -> int:
        return type(self).num_views_for(self.config)

    @classmethod
    def view_sizes_for(cls, config, input_size: int) -> list[int]:
        """Image size of each view with ``config`` at ``input_size`` (multi-crop methods
        override); a ``views`` entry without ``image_size`` gets its view's."""
        return [input_size] * cls.num_views_for(config)

    def view_sizes(self) -> list[int]:
        """Image size of each view."""
        return type(self).view_sizes_for(self.config, self.input_size)

    def compute_losses(self, views: list, labels, training: bool = True) -> dict:
        raise NotImplementedError(f"{type(self).__name__} must implement compute_losses")

    def trainable_groups(self) -> dict[str, list[tf.Variable]]:
        return {name: part.module.trainable_variables for name, part in self._parts.items() if part.trainable}

    def checkpoint_modules(self) -> dict:
        return {name: part.module for name, part in self._parts.items()}

    def callbacks(self, total_steps: int, log_dir=None, *, progress: bool = True, progress_prefix: str | None = None,
                  lines_per_epoch: int = 10) -> list:
        """The callbacks ``model.fit`` needs to train this method and to show it, the same that
        ``python -m burn_tf.pretrain`` uses (it adds only the run directory's checkpoints,
        history and TensorBoard): the method's own (:meth:`method_callbacks`), a
        :class:`~burn_tf.callbacks.StepScalarLogger` (every step's values in its ``records``;
        ``steps.jsonl`` and TensorBoard in ``log_dir``, default the model's ``log_dir``) and,
        with ``progress``, :class:`~burn_tf.callbacks.ProgressLines` (``lines_per_epoch`` lines
        per epoch with the time left, prefixed ``progress_prefix``, default the model's name;
        under ``fit(verbose=2)`` or 0: with ``verbose=1`` Keras' bar shows instead)."""
        shown = [StepScalarLogger(log_dir)]
        if progress:
            prefix = self.name if progress_prefix is None else progress_prefix
            shown.append(ProgressLines(lines_per_epoch=lines_per_epoch, prefix=prefix))
        return [*self.method_callbacks(total_steps), *shown]

    def method_callbacks(self, total_steps: int) -> list:
        return []

    def after_update(self) -> None:
        """Runs after every optimizer update (inside the traced step)."""

    def exported_heads(self) -> dict[str, tf.keras.Model]:
        return {part.exported: part.module for part in self._parts.values() if part.exported}

    def extra_logs(self) -> dict:
        return {}

    def init_from_previous_stage(self, previous: "PretrainMethod") -> None:
        """Stage 2 starts from stage 1: the backbone by layer name (every binary conv must
        receive weights), every other network in ``checkpoint_modules`` as is."""
        theirs = previous.checkpoint_modules()
        for name, module in self.checkpoint_modules().items():
            if module is self.backbone:
                transfer_stage1_to_stage2(theirs[name], module)
            elif isinstance(module, tf.keras.Model):
                module.set_weights(theirs[name].get_weights())
            elif isinstance(module, tf.Variable) and module.trainable:
                module.assign(theirs[name])

    # ------------------------------------------------------------------ shared machinery
    def call(self, images, training=False):
        """The backbone's features (what the exported backbone computes)."""
        return self.backbone(images, training=training)

    def train_variables(self) -> list[tf.Variable]:
        return [v for group in self.trainable_groups().values() for v in group]

    def _metric_names(self) -> list[str]:
        return ["loss", *self.loss_terms, *(f"grad_norm_{g}" for g in self.trainable_groups())]

    @property
    def metrics(self):
        if self._trackers is None:
            self._trackers = {n: tf.keras.metrics.Mean(name=n) for n in self._metric_names()}
        return list(self._trackers.values())

    def parse_batch(self, data) -> tuple[list, tf.Tensor | None]:
        """``(views, labels)`` from a dataset element: rank-4 tensors are views (in order),
        a lower-rank tensor is the label batch (for a ``needs_index`` method: the last one
        is the index, see :meth:`batch_index`)."""
        flat = tf.nest.flatten(data)
        views = [t for t in flat if t.shape.rank == 4]
        others = [t for t in flat if t.shape.rank != 4]
        if self.needs_index:
            others = others[:-1]
        n = self.views_needed
        if len(views) < n:
            names = ", ".join(f"view{i + 1}" for i in range(n))
            raise ValueError(
                f"{type(self).__name__} needs batches of {n} view(s) ({names}), got {len(views)}"
            )
        labels = others[0] if others else None
        if self.needs_labels and labels is None:
            raise ValueError(
                f"{type(self).__name__} needs labels: the dataset must yield (views..., labels)"
            )
        return views[:n], labels

    def batch_index(self, data) -> dict:
        """``{"index": …}`` — the keyword arguments that carry the dataset index to
        ``compute_losses`` — for a ``needs_index`` method (the element's last non-image
        tensor); ``{}`` for the others."""
        if not self.needs_index:
            return {}
        others = [t for t in tf.nest.flatten(data) if t.shape.rank != 4]
        if not others:
            raise ValueError(
                f"{type(self).__name__} needs each image's dataset index: the dataset must yield "
                "(views..., [labels,] index) (multi_view_dataset(with_index=True))"
            )
        return {"index": others[-1]}

    def example_batch(self, batch_size: int = 2) -> tuple[list, tf.Tensor | None]:
        """Zeros shaped like a real batch: builds every variable through the real code path."""
        views = [tf.zeros((batch_size, s, s, 3)) for s in self.view_sizes()]
        labels = tf.zeros((batch_size,), tf.int64) if self.needs_labels else None
        return views, labels

    def build_all(self) -> None:
        """Creates every variable (networks, metrics, optimizer slots, accumulators) before a
        checkpoint restore, a stage transfer or a distributed step, so all find the same
        objects and none is created inside ``train_step``."""
        index = {"index": tf.range(2, dtype=tf.int64)} if self.needs_index else {}
        self.compute_losses(*self.example_batch(), training=False, **index)
        self.metrics  # noqa: B018 - creates the trackers
        variables = self.train_variables()
        if self.optimizer is not None:
            self.optimizer.build(variables)
        if self.accumulation_steps > 1 and self._accumulators is None:
            # Sums of gradients already summed over replicas: equal on every replica, kept
            # per device (ON_READ: no communication to add to them).
            self._accumulators = [
                tf.Variable(tf.zeros_like(v), trainable=False, name=f"accumulated_grad_{i}",
                            synchronization=tf.VariableSynchronization.ON_READ,
                            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
                for i, v in enumerate(variables)
            ]

    def _maybe_load_initial_counters_from_ckpt(self, steps_per_epoch, initial_epoch):
        # Keras' hook for where fit() starts (epoch, batch of that epoch): a run resumed from a
        # step checkpoint continues its epoch at the next batch, not at the epoch's start.
        epoch, batch = super()._maybe_load_initial_counters_from_ckpt(steps_per_epoch, initial_epoch)
        return epoch, batch or self.resume_at_batch

    def compile(self, optimizer="adam", **kwargs):
        super().compile(optimizer=optimizer, **kwargs)
        self.build_all()

    def checkpoint_parts(self) -> dict:
        """Everything of the method a checkpoint holds (the caller adds the optimizer)."""
        parts = {**self.checkpoint_modules(), "global_step": self.global_step}
        if self._accumulators is not None:
            parts["accumulated_gradients"] = list(self._accumulators)
        return parts

    @property
    def loss_scaling(self) -> bool:
        """True when the optimizer scales the loss (mixed_float16 training)."""
        return isinstance(self.optimizer, tf.keras.mixed_precision.LossScaleOptimizer)

    def _apply_now(self, grads, variables) -> None:
        # The gradients are already summed over replicas (train_step).
        self.optimizer.apply_gradients(zip(grads, variables), skip_gradients_aggregation=True)
        self.after_update()

    def _apply(self, grads, variables) -> None:
        if self.accumulation_steps == 1:
            self._apply_now(grads, variables)
            return
        if self._accumulators is None:
            raise RuntimeError(f"{type(self).__name__}: call compile() or build_all() before training")
        for acc, g in zip(self._accumulators, grads):
            acc.assign_add(g)

        def apply():
            # The mean of the k accumulated gradients: the step of one k-times larger batch.
            k = float(self.accumulation_steps)
            self._apply_now([acc.read_value() / k for acc in self._accumulators], variables)
            for acc in self._accumulators:
                acc.assign(tf.zeros_like(acc))

        run_if((self.global_step + 1) % self.accumulation_steps == 0, apply)

    def train_step(self, data):
        views, labels = self.parse_batch(data)
        index = self.batch_index(data)
        groups = self.trainable_groups()
        variables = [v for group in groups.values() for v in group]
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            terms = self.compute_losses(views, labels, training=True, **index)
            # The replica's mean loss ÷ replicas, gradients summed over replicas below: the
            # gradient of the global batch's mean (equal shares; see the module docstring).
            scaled = tf.cast(terms["loss"], tf.float32) / replicas
            if self.loss_scaling:
                scaled = self.optimizer.get_scaled_loss(scaled)
        grads = tape.gradient(scaled, variables)
        grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]
        if self.loss_scaling:
            grads = self.optimizer.get_unscaled_gradients(grads)
        grads = sum_over_replicas(grads)
        start = 0
        for group_name, group in groups.items():
            terms[f"grad_norm_{group_name}"] = tf.linalg.global_norm(grads[start:start + len(group)])
            start += len(group)
        self._apply(grads, variables)
        self.global_step.assign_add(1)
        self.metrics  # noqa: B018
        for name, tracker in self._trackers.items():
            tracker.update_state(terms[name])
        logs = {name: tracker.result() for name, tracker in self._trackers.items()}
        # This batch's own values beside the epoch's running means: a spike or a collapse
        # shows at its step, not smoothed over the epoch (callbacks see them per batch).
        # Under a strategy: the mean over replicas (grad norms are equal on all of them).
        # After the gradient all-reduce (control dependency): collectives must be launched in
        # the same order on every replica.
        with tf.control_dependencies(grads):
            step_values = mean_over_replicas({n: tf.identity(terms[n]) for n in self._trackers})
        logs.update({f"{name}_step": v for name, v in step_values.items()})
        logs.update({k: tf.identity(v) for k, v in self.extra_logs().items()})
        logs["lr"] = current_learning_rate(
            self.optimizer.inner_optimizer if self.loss_scaling else self.optimizer)
        return logs

    def test_step(self, data):
        views, labels = self.parse_batch(data)
        terms = self.compute_losses(views, labels, training=False, **self.batch_index(data))
        self.metrics  # noqa: B018
        names = ["loss", *self.loss_terms]
        for name in names:
            self._trackers[name].update_state(terms[name])
        return {name: self._trackers[name].result() for name in names}


class DistillationMethod(PretrainMethod):
    """A binary (or FP) student learns from a frozen FP teacher.

    The teacher is frozen in one place: never trained, called with ``training=False`` so
    its BatchNorm keeps its statistics, its output behind ``stop_gradient``, its input
    resized from the student's view when the two sizes differ.
    """

    needs_teacher = True
    backbone_key = "student_backbone"
    # True: the teacher is built with its own head and outputs logits (S2-BNN).
    teacher_includes_head: ClassVar[bool] = False

    def __init__(self, teacher_backbone: tf.keras.Model, student_backbone: tf.keras.Model, config=None,
                 accumulation_steps: int = 1, **kwargs):
        super().__init__(student_backbone, config, accumulation_steps=accumulation_steps, **kwargs)
        self.teacher_backbone = teacher_backbone
        self.teacher_backbone.trainable = False
        self.teacher_dim = int(teacher_backbone.outputs[0].shape[-1])
        self.teacher_input_size = int(teacher_backbone.inputs[0].shape[1])

    @property
    def student_backbone(self) -> tf.keras.Model:
        return self.backbone

    @property
    def student_input_size(self) -> int:
        return self.input_size

    @property
    def student_dim(self) -> int:
        return self.feature_dim

    @classmethod
    def num_views_for(cls, config) -> int:
        """Two views with ``config.symmetric`` (each view's student against the other view's
        teacher, as BURN's released code), else one (both networks see the same view)."""
        return 2 if config.symmetric else 1

    @staticmethod
    def stacked_views(views: list) -> tf.Tensor:
        """The views as one batch (one call of each network: faster than one per view)."""
        return views[0] if len(views) == 1 else tf.concat(views, axis=0)

    @staticmethod
    def other_view(rows: tf.Tensor, views: list) -> tf.Tensor:
        """Rows of :meth:`stacked_views` order moved to the other view's image: with two views
        row i of view 1 faces row i of view 2 and vice versa (the halves swapped); one view:
        unchanged."""
        if len(views) != 2:
            return rows
        return tf.roll(rows, shift=tf.shape(views[0])[0], axis=0)

    def teacher_features(self, images):
        if self.teacher_input_size != self.input_size:
            images = tf.image.resize(images, (self.teacher_input_size, self.teacher_input_size))
        return tf.stop_gradient(self.teacher_backbone(images, training=False))


class MomentumMethod(PretrainMethod):
    """Online networks and their EMA targets: target ← τ·target + (1 − τ)·online.

    A method calls :meth:`add_momentum_pair` for each online network (backbone, projector…);
    the target is a non-trainable copy. The EMA updates *weights* (trainable variables),
    not BatchNorm statistics, which the target computes itself (solo-learn's
    ``MomentumUpdater``). τ follows :func:`cosine_momentum` of ``global_step`` from
    ``config.tau_start`` to ``config.tau_end``, set by
    :class:`burn_tf.callbacks.ScheduledValue` (τ(t) of :func:`burn_tf.ops.schedules.cosine_momentum`).
    That is solo-learn's schedule (``solo/utils/momentum.py`` ``update_tau``: τ = final −
    (final − base)·(cos(πk/K) + 1)/2): the update after batch k (k = 0, 1, …) uses τ(k), the
    first one ``tau_start``. With gradient accumulation the step counts batches, not updates
    (solo-learn counts optimizer steps), so an update uses τ of its last batch.
    """

    def __init__(self, backbone: tf.keras.Model, config=None, accumulation_steps: int = 1, **kwargs):
        super().__init__(backbone, config, accumulation_steps=accumulation_steps, **kwargs)
        # (checkpoint key, online, target); the key is stable across stages.
        self.momentum_pairs: list[tuple[str, tf.keras.Model, tf.keras.Model]] = []
        self.tau = tf.Variable(float(self.config.tau_start), trainable=False, dtype=tf.float32, name="tau")

    def add_momentum_pair(self, online: tf.keras.Model, key: str | None = None) -> tf.keras.Model:
        """A frozen copy of ``online`` (same weights) that follows it by EMA; returns it.
        ``key`` names it in checkpoints (default ``momentum_<online's role>``); it is neither
        trained nor exported."""
        key = key or ("momentum_backbone" if online is self.backbone else f"momentum_{online.name}")
        target = tf.keras.models.clone_model(online)
        target._name = f"momentum_{online.name}"
        target.set_weights(online.get_weights())
        target.trainable = False
        _use_batch_statistics(target, online)
        self.momentum_pairs.append((key, online, target))
        return self.add_head(key, target, trainable=False, exported=False)

    def init_from_previous_stage(self, previous: "PretrainMethod") -> None:
        """Stage 2 from stage 1: the base's rules, then every EMA target restarts as a copy
        of its (transferred) online network — a stage-1 target is the EMA of a different
        (stage-1) network, so it is not carried over."""
        super().init_from_previous_stage(previous)
        for _, online, target in self.momentum_pairs:
            target.set_weights(online.get_weights())

    def after_update(self) -> None:
        tau = self.tau
        targets, onlines = [], []
        for _, online, target in self.momentum_pairs:
            for w_online, w_target in zip(online.trainable_weights, _ema_weights(target, online)):
                targets.append(w_target)
                onlines.append((w_online,))
        # Target weights are Keras layer weights (no aggregation): assigned on every device.
        assign_on_every_replica(targets, lambda t, o: momentum_update(t, o, tau), onlines)

    def method_callbacks(self, total_steps: int) -> list:
        start, end = self.config.tau_start, self.config.tau_end
        return [ScheduledValue(self.tau, lambda step: cosine_momentum(step, total_steps, start, end), "tau",
                               total_steps)]

    def extra_logs(self) -> dict:
        return {"tau": self.tau}


def _use_batch_statistics(target: tf.keras.Model, online: tf.keras.Model) -> None:
    """The frozen target's BatchNorms compute with their own batch statistics when called
    with ``training=True`` (and keep their own moving averages), synchronized across
    replicas exactly when the online network's are.

    Two Keras facts make this necessary: a BatchNormalization whose ``trainable`` is False
    always runs in inference mode (its moving statistics would then never move), and
    ``clone_model`` drops ``synchronized``, which is not part of the layer's config. The
    target model stays frozen (no trainable weights)."""
    for layer_online, layer_target in zip(_all_layers(online), _all_layers(target)):
        if isinstance(layer_target, tf.keras.layers.BatchNormalization):
            layer_target.trainable = True
            layer_target.synchronized = layer_online.synchronized
            if layer_online.synchronized:
                layer_target.fused = False  # the fused kernel cannot synchronise


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, tf.keras.Model):
            yield from _all_layers(layer)


def _ema_weights(target: tf.keras.Model, online: tf.keras.Model) -> list[tf.Variable]:
    """The target's counterparts of ``online.trainable_weights`` (same layer and name order;
    the target is frozen, so its own ``trainable_weights`` is empty)."""
    by_name = {}
    for layer_online, layer_target in zip(online.layers, target.layers):
        for w_o, w_t in zip(layer_online.weights, layer_target.weights):
            by_name[id(w_o)] = w_t
    return [by_name[id(w)] for w in online.trainable_weights]
