"""Keras callbacks for pretraining: scheduled values (λ(t), τ(t): :class:`ScheduledValue`),
checkpoints that survive a kill, NaN guard, per-step scalars (:class:`StepRecorder`,
:class:`StepScalarLogger`), a collapse watch (:class:`CollapseWatcher`, by the one
:class:`CollapseCriterion`), what a person watching a fit sees (:class:`ProgressLines` for
pretraining, :class:`FitProgress` for the evaluators' fits, both at most 120 columns and
flushed) and a TensorBoard callback whose per-batch work is cheap (:class:`StageTensorBoard`,
by the traced :class:`ScalarWriter`). A method's ``callbacks(total_steps)`` gives a
``model.fit`` user the same per-step logging and progress lines as ``python -m
burn_tf.pretrain``.

The online weighted-kNN monitor lives in :mod:`burn_tf.evaluate.monitor` (``KNNMonitor``)
and works with any method.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import tensorflow as tf
from tensorboard.plugins.scalar import metadata as scalar_metadata

from burn_tf.progress import EVERY_SECONDS, Progress, RemainingTime, fit_columns, format_value


class ScheduledValue(tf.keras.callbacks.Callback):
    """Sets ``variable`` to ``schedule(t)`` before every batch, t the model's checkpointed
    ``global_step`` (so a resumed run continues the same curve): BURN's λ(t) (Eq. 3) and KL
    warm-up weight, the momentum methods' τ(t).

    ``name`` is the value's name in the step's logs (``lambda``, ``kl_weight``, ``tau``: the
    method logs the variable under it) and in errors. ``total_steps``, when given, must be
    >= 1 (the length of the curve ``schedule`` follows). ``schedule(0)`` is evaluated here,
    so a bad schedule fails when the callback is made, not at the first batch.
    """

    def __init__(self, variable: tf.Variable, schedule: Callable[[int], float], name: str,
                 total_steps: int | None = None):
        super().__init__()
        if total_steps is not None and total_steps < 1:
            raise ValueError(f"the {name} schedule needs total_steps >= 1, got {total_steps}")
        schedule(0)  # a bad schedule (e.g. an unknown λ schedule name) raises here
        self.variable, self.schedule, self.name = variable, schedule, name
        self._step = None

    def on_train_begin(self, logs=None):
        self._step = int(self.model.global_step.numpy())

    def on_train_batch_begin(self, batch, logs=None):
        self.variable.assign(self.schedule(self._step))
        self._step += 1


class ScalarWriter:
    """Writes one step's scalars to a summary ``writer`` in one call of a function traced when
    the writer is made: the same events as ``tf.summary.scalar`` (tag, step, float32 value,
    the scalars plugin's metadata) at a fraction of the cost. Eager, every scalar is a few
    ops dispatched from Python, 0.3–1.5 ms each: a step's 20–30 scalars took as long as a
    tiny model's whole step. Traced, they take ~0.4 ms together."""

    def __init__(self, writer):
        metadata = scalar_metadata.create_summary_metadata(display_name=None, description=None)

        @tf.function(input_signature=[tf.TensorSpec([], tf.int64), tf.TensorSpec([None], tf.string),
                                      tf.TensorSpec([None], tf.float32)])
        def write(step, tags, values):
            with tf.summary.record_if(True), writer.as_default(step=step):
                for i in tf.range(tf.size(tags)):
                    tf.summary.write(tags[i], values[i], metadata=metadata)

        # Traced and run once (writing nothing) now: the first run of a traced function
        # instantiates it, which costs about as much as the trace; neither belongs in a batch hook.
        self._write = write.get_concrete_function()
        self._write(tf.constant(0, tf.int64), tf.constant([], tf.string), tf.constant([], tf.float32))

    def __call__(self, step: int, scalars: dict) -> None:
        if scalars:
            self._write(tf.constant(step, tf.int64), tf.constant(list(scalars), tf.string),
                        tf.constant([float(v) for v in scalars.values()], tf.float32))


class StepRecorder(tf.keras.callbacks.Callback):
    """Keeps every step's instantaneous scalars in ``records`` (a list of dicts).

    A record is ``{"step": global step after the batch, <name>: value}`` with one entry per
    ``<name>_step`` key of the batch logs (the base's per-batch values of the loss terms and
    gradient norms) plus the instantaneous ``lambda``, ``kl_weight``, ``lr`` and ``tau``.
    Running means (the other keys) are left out: they lag and smooth spikes.
    """

    INSTANT_KEYS = ("lambda", "kl_weight", "lr", "tau")

    def __init__(self):
        super().__init__()
        self.records: list[dict] = []

    def _record(self, logs) -> dict:
        record = {"step": int(self.model.global_step.numpy())}
        for key, value in (logs or {}).items():
            if key.endswith("_step"):
                record[key[: -len("_step")]] = float(value)
            elif key in self.INSTANT_KEYS:
                record[key] = float(value)
        return record

    def on_train_batch_end(self, batch, logs=None):
        self.records.append(self._record(logs))


class StepScalarLogger(StepRecorder):
    """Writes every step's instantaneous scalars to ``<directory>/steps.jsonl`` (one JSON line
    per step) and to TensorBoard under ``<directory>/logs/steps`` (tag = the scalar's name,
    x = global step), beside Keras' epoch running means.

    ``directory=None``: the model's ``log_dir`` attribute at train begin (nothing is written
    when that is unset either).
    """

    def __init__(self, directory: str | os.PathLike | None = None):
        super().__init__()
        self.directory = directory
        self._file = None
        self._writer = None

    def on_train_begin(self, logs=None):
        directory = self.directory or getattr(self.model, "log_dir", None)
        if directory is None:
            return
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._file = (directory / "steps.jsonl").open("a")
        self._writer = tf.summary.create_file_writer(str(directory / "logs" / "steps"))
        self._scalars = ScalarWriter(self._writer)

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        if self._file is None:
            return
        record = self.records[-1]
        self._file.write(json.dumps(record) + "\n")
        self._scalars(record["step"], {key: value for key, value in record.items() if key != "step"})

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._writer.flush()
            self._file = None


@dataclasses.dataclass(frozen=True)
class CollapseCriterion:
    """When a moving target (BURN's g_θ) counts as collapsed: its batch-mean entropy H(p̄)
    below ``entropy_fraction``·log C (the batch's targets crowd onto few classes) or the KL
    below ``kl_floor`` (the KL term carries no signal). The one definition that the per-step
    watch (:class:`CollapseWatcher`), the demo's report and the ablation's "target alive"
    column use; a BURN config's ``collapse_entropy_fraction``/``collapse_kl_floor`` set it
    (:meth:`of`)."""

    entropy_fraction: float = 0.5
    kl_floor: float = 1e-3

    @classmethod
    def of(cls, method_config) -> CollapseCriterion:
        """The thresholds a method config sets (``collapse_entropy_fraction``, ``collapse_kl_floor``)."""
        return cls(float(method_config.collapse_entropy_fraction), float(method_config.collapse_kl_floor))

    def collapsed(self, entropy_fraction: float, kl: float) -> bool:
        """One step's H(p̄)/log C and KL: below either bar."""
        return entropy_fraction < self.entropy_fraction or kl < self.kl_floor

    def alive(self, metrics: dict) -> bool:
        """Whether a stage stayed above both bars at every step: its per-step minima
        (``target_entropy_fraction_min``, ``kl_min``, as :class:`CollapseWatcher` logs them)
        clear them. Not alive when a minimum is NaN (no step was seen)."""
        return (metrics["target_entropy_fraction_min"] > self.entropy_fraction
                and metrics["kl_min"] > self.kl_floor)


class CollapseWatcher(tf.keras.callbacks.Callback):
    """Says so when the moving target has collapsed, without stopping the run.

    Per step it reads ``target_entropy_step`` (H(p̄)) and ``kl_step``: the target counts as
    collapsed once ``criterion`` (:class:`CollapseCriterion`) says so for ``patience``
    consecutive steps. It prints one warning naming the first of those steps, and at each
    epoch end adds to the logs (hence to ``history.jsonl`` and ``metrics.json``):
    ``target_collapsed`` (0/1), ``collapse_step`` (−1: none), the per-step minima
    ``target_entropy_min``, ``target_entropy_fraction_min`` (= min H(p̄)/log C) and ``kl_min``.
    """

    def __init__(self, num_classes: int, criterion: CollapseCriterion | None = None, patience: int = 20,
                 stream=None):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"CollapseWatcher needs num_classes >= 2, got {num_classes}")
        self.log_classes = math.log(num_classes)
        self.criterion = criterion or CollapseCriterion()
        self.patience = max(int(patience), 1)
        self.stream = stream
        self.collapse_step = None
        self.entropy_min = math.inf
        self.kl_min = math.inf
        self._bad_since = None

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        if "target_entropy_step" not in logs or "kl_step" not in logs:
            return
        entropy, kl = float(logs["target_entropy_step"]), float(logs["kl_step"])
        step = int(self.model.global_step.numpy())
        self.entropy_min, self.kl_min = min(self.entropy_min, entropy), min(self.kl_min, kl)
        if self.criterion.collapsed(entropy / self.log_classes, kl):
            self._bad_since = step if self._bad_since is None else self._bad_since
            if self.collapse_step is None and step - self._bad_since + 1 >= self.patience:
                self.collapse_step = self._bad_since
                fraction, floor = self.criterion.entropy_fraction, self.criterion.kl_floor
                print(f"WARNING: the moving target collapsed at step {self.collapse_step}: for "
                      f"{self.patience} steps H(p̄) < {fraction:g}·log C = "
                      f"{fraction * self.log_classes:.3g}\n  (the batch's targets crowd onto "
                      f"few classes) or KL < {floor:g} (the KL term carries no signal);\n  now "
                      f"H(p̄) {entropy:.3g}, KL {kl:.3g}. Training continues.",
                      file=self.stream or sys.stdout, flush=True)
        else:
            self._bad_since = None

    def summary(self) -> dict:
        seen = math.isfinite(self.entropy_min)
        return {
            "target_collapsed": float(self.collapse_step is not None),
            "collapse_step": float(-1 if self.collapse_step is None else self.collapse_step),
            "target_entropy_min": self.entropy_min if seen else float("nan"),
            "target_entropy_fraction_min": self.entropy_min / self.log_classes if seen else float("nan"),
            "kl_min": self.kl_min if seen else float("nan"),
        }

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(self.summary())


class RunCheckpoints(tf.keras.callbacks.Callback):
    """Writes a TF checkpoint (model, optimizer, global step, epoch) after every epoch and,
    with ``every_steps``, every N steps; keeps the latest ``max_to_keep``. Checkpoints are
    numbered by ``global_step`` (a resumed run continues from any of them).

    Safe against kills and bad numbers:

    - TF checkpoints hold tensors and an object graph, never pickled code. The data files
      are written first (under temporary names, then renamed); the manager's index
      (``checkpoint``) is replaced by an atomic rename after them, so a kill at any point of
      a write leaves the previous checkpoint as the latest, complete.
    - A batch whose loss is not finite stops training (``nan_step`` names it); nothing is
      saved after it. Before each save the trainable variables are checked to be finite
      (an update can make them NaN one batch before the loss shows it), so the latest
      checkpoint is always a good one.
    """

    def __init__(self, checkpoint: tf.train.Checkpoint, directory: str | os.PathLike, epoch_var: tf.Variable,
                 every_steps: int = 0, max_to_keep: int = 3):
        super().__init__()
        self.checkpoint = checkpoint
        self.epoch_var = epoch_var
        self.every_steps = int(every_steps)
        self.manager = tf.train.CheckpointManager(checkpoint, str(directory), max_to_keep=max_to_keep)
        self.nan_step = None

    @property
    def nan_detected(self) -> bool:
        return self.nan_step is not None

    def _step(self) -> int:
        return int(self.model.global_step.numpy())

    def _weights_finite(self) -> bool:
        # Eager, once per save: a tf.function per callback instance was retraced by every
        # run of an experiment that trains many models in one process.
        return all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in self.model.train_variables())

    def _save(self, epoch: int) -> None:
        step = self._step()
        if self.manager.latest_checkpoint and self.manager.latest_checkpoint.endswith(f"-{step}"):
            return  # this step is saved already
        if not self._weights_finite():
            self.nan_step = step
            self.model.stop_training = True
            return
        self.epoch_var.assign(epoch)
        self.manager.save(checkpoint_number=step)

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        loss = logs.get("loss_step", logs.get("loss"))
        if loss is not None and not math.isfinite(float(loss)):
            self.nan_step = self._step()
            self.model.stop_training = True
            return
        if self.every_steps and self._step() % self.every_steps == 0:
            self._save(epoch=int(self.epoch_var.numpy()))

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_var.assign(epoch)

    def on_epoch_end(self, epoch, logs=None):
        if not self.nan_detected:
            self._save(epoch=epoch + 1)


class JsonLinesLogger(tf.keras.callbacks.Callback):
    """Appends every epoch's logs as one JSON line (readable without TensorBoard)."""

    def __init__(self, path: str | os.PathLike):
        super().__init__()
        self.path = Path(path)

    def on_epoch_end(self, epoch, logs=None):
        record = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


class ProgressLines(tf.keras.callbacks.Callback):
    """Progress as plain lines, for logs and non-terminal output where Keras' progress bar
    prints nothing until an epoch ends: ``lines_per_epoch`` lines per epoch, each at most
    :data:`~burn_tf.progress.WIDTH` (120) columns, flushed, e.g.

        burn stage 1  epoch 1/1  step 94/468 (20%)  41 s, ~2.7 min left  loss 0.621  kl 0.411  fs 0.302

    The time is that of the whole ``fit`` so far and the time left that of its remaining
    steps. The logged values follow, the loss first, then the method's ``loss_terms``, then
    the rest, as many as fit (every value is in the history and in ``steps.jsonl``; gradient
    norms, ``lr`` and the ``*_step`` values are never shown here). Silent under
    ``fit(verbose=1)`` (the default), where Keras draws its own progress bar (on a terminal,
    in a notebook, and as carriage-return updates in a file): lines with ``verbose=2`` or 0.
    ``steps_per_epoch`` and ``epochs`` default to those ``fit`` was given; when the steps of
    an epoch are unknown, a line is printed every :data:`~burn_tf.progress.EVERY_SECONDS`.
    """

    def __init__(self, steps_per_epoch: int | None = None, epochs: int | None = None, lines_per_epoch: int = 10,
                 prefix: str = "", stream=None):
        super().__init__()
        self.steps_per_epoch, self.epochs = steps_per_epoch, epochs
        self.lines_per_epoch = max(int(lines_per_epoch), 1)
        self.prefix = prefix.strip()
        self.stream = stream
        self._epoch = 0
        self._time, self._printed_at, self._step = None, None, 0

    def on_train_begin(self, logs=None):
        self._steps = self.steps_per_epoch or self.params.get("steps")
        self._epochs = self.epochs or self.params.get("epochs") or 1
        self._every = max(self._steps // self.lines_per_epoch, 1) if self._steps else None
        self._silent = self.params.get("verbose") == 1  # Keras draws its bar
        self._time = RemainingTime()
        self._printed_at = time.time()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def _values(self, logs) -> list[str]:
        logs = dict(logs or {})
        first = ["loss", *getattr(self.model, "loss_terms", ())]
        keys = [k for k in first if k in logs] + [k for k in logs if k not in first]
        return [f"{k} {format_value(logs[k])}" for k in keys
                if not k.startswith("grad_norm_") and not k.endswith("_step") and k != "lr"]

    def _line(self, step: int, logs) -> str:
        if self._steps:
            left = (self._epochs - self._epoch - 1) * self._steps + self._steps - step
            position = f"step {step}/{self._steps} ({100 * step // self._steps}%)"
        else:
            position, left = f"step {step}", None
        timing = self._time.line(left)
        prefix = f"{self.prefix}  " if self.prefix else ""
        head = f"{prefix}epoch {self._epoch + 1}/{self._epochs}  {position}  {timing}"
        return fit_columns(head, self._values(logs))

    def _print(self, line: str) -> None:
        print(line, file=self.stream or sys.stdout, flush=True)
        self._printed_at = time.time()

    def on_train_batch_end(self, batch, logs=None):
        self._time.advance()
        self._step = step = batch + 1
        if self._silent:
            return
        due = (step % self._every == 0 if self._every else time.time() - self._printed_at >= EVERY_SECONDS)
        if due and (not self._steps or step < self._steps):
            self._print(self._line(step, logs))

    def on_epoch_end(self, epoch, logs=None):
        if not self._silent:
            self._print(self._line(self._steps or self._step, logs))


class FitProgress(tf.keras.callbacks.Callback):
    """A whole ``fit`` as one :class:`~burn_tf.progress.Progress` phase, for the evaluators'
    heads, fine-tuning and detectors: counts the steps of every epoch, prints after the
    first, then at most every ``every_seconds`` and at the end, with the latest loss::

        linear evaluation: 1410/23500 steps (6%)  31 s, ~8.2 min left  loss 1.38
    """

    def __init__(self, what: str, every_seconds: float = EVERY_SECONDS, stream=None):
        super().__init__()
        self.what, self.every_seconds, self.stream = what, every_seconds, stream
        self.progress = None

    def on_train_begin(self, logs=None):
        steps, epochs = self.params.get("steps"), self.params.get("epochs") or 1
        self.progress = Progress(self.what, steps * epochs if steps else None, "steps",
                                 every_seconds=self.every_seconds, stream=self.stream)

    @staticmethod
    def _note(logs) -> str:
        loss = (logs or {}).get("loss")
        return "" if loss is None else f"loss {format_value(loss)}"

    def on_train_batch_end(self, batch, logs=None):
        self.progress.advance(1, self._note(logs))

    def on_train_end(self, logs=None):
        self.progress.finish(self._note(logs))


class StageTensorBoard(tf.keras.callbacks.TensorBoard):
    """Keras' ``TensorBoard`` callback for a pretraining stage, writing the same summaries,
    with the work Keras times kept out of ``on_train_batch_end``.

    Keras times ``on_train_batch_end`` against the batch time over the first batches and
    warns "Callback method `on_train_batch_end` is slow compared to the batch time" when it
    is slower. Two things made every stage print that:

    - serialising the train step's graph (3.5 s for the demo's BURN step) happened in the
      first batch's hook: it is written at the end of the first epoch here (Keras does not
      time ``on_epoch_end``);
    - every batch wrote its ``batch_<name>`` scalars eagerly (or, on the steps between two
      ``update_freq`` steps, evaluated and discarded them): here only the ``update_freq``
      steps write them, by one traced call (:class:`ScalarWriter`).
    """

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._batch_scalars = ScalarWriter(self._train_writer) if self.update_freq != "epoch" else None

    def on_train_batch_end(self, batch, logs=None):
        pending, self._should_write_train_graph = self._should_write_train_graph, False
        super().on_train_batch_end(batch, None)  # the rest of Keras' batch work (profiling)
        self._should_write_train_graph = pending
        if self._batch_scalars is not None and isinstance(logs, dict):
            step = int(self._train_step.numpy())
            if step % self.update_freq == 0:
                self._batch_scalars(step, {f"batch_{name}": value for name, value in logs.items()})

    def on_epoch_end(self, epoch, logs=None):
        if self._should_write_train_graph:
            self._write_keras_model_train_graph()
            self._should_write_train_graph = False
        super().on_epoch_end(epoch, logs)
