"""Keras callbacks for pretraining: λ(t), checkpoints that survive a kill, NaN guard.

The online weighted-kNN monitor lives in :mod:`burn_tf.evaluate.monitor` (``KNNMonitor``)
and works with any method.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import tensorflow as tf

from burn_tf.losses import lambda_at


class LambdaScheduler(tf.keras.callbacks.Callback):
    """Sets ``model.lambda_value`` to λ(t) before every batch (Eq. 3 or a Table-7 variant).

    t is ``model.global_step`` (checkpointed), so a resumed run continues the same curve.
    """

    def __init__(self, total_steps: int, start: float = 0.9, end: float = 0.7, schedule: str = "cosine"):
        super().__init__()
        if total_steps < 1:
            raise ValueError(f"LambdaScheduler needs total_steps >= 1, got {total_steps}")
        lambda_at(0, total_steps, start, end, schedule)  # validates the schedule name
        self.total_steps = int(total_steps)
        self.start, self.end, self.schedule = start, end, schedule
        self._step = None

    def on_train_begin(self, logs=None):
        self._step = int(self.model.global_step.numpy())

    def on_train_batch_begin(self, batch, logs=None):
        self.model.lambda_value.assign(
            lambda_at(self._step, self.total_steps, self.start, self.end, self.schedule)
        )
        self._step += 1


class CheckpointEveryEpoch(tf.keras.callbacks.Callback):
    """Writes a TF checkpoint (model, optimizer, global step, epoch) after each good epoch.

    TF checkpoints hold tensors and an object graph, never pickled code. The manager
    updates its index file by an atomic rename after the data files are complete, so a
    kill mid-write leaves the previous checkpoint as the latest. An epoch whose loss is not
    finite is not saved (the last good checkpoint stays the latest) and training stops.
    """

    def __init__(self, checkpoint: tf.train.Checkpoint, directory: str | os.PathLike, epoch_var: tf.Variable,
                 max_to_keep: int = 3):
        super().__init__()
        self.checkpoint = checkpoint
        self.epoch_var = epoch_var
        self.manager = tf.train.CheckpointManager(checkpoint, str(directory), max_to_keep=max_to_keep)
        self.nan_detected = False

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.nan_detected = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.nan_detected:
            return
        self.epoch_var.assign(epoch + 1)
        self.manager.save(checkpoint_number=epoch + 1)


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
