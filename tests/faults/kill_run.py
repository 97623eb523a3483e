"""A tiny BURN pretraining run that tests/test_faults.py kills (run in a subprocess).

    python tests/faults/kill_run.py RUN_DIR [--kill-at-step N] [--kill-in-write {before-index,random}]
                                    [--resume] [--set key=value …]

Every batch appends {"step", "loss_step"} to RUN_DIR/steps.jsonl (flushed), so the test can
compare the batches a resumed run trained on with an uninterrupted run's.
--kill-at-step N: SIGKILL right after batch N.
--kill-in-write before-index: SIGKILL inside the first checkpoint write after step 2, after
the data files are written and before the manager's index is replaced.
--kill-in-write random: SIGKILL at a random moment (0-40 ms) after that write began.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import tensorflow as tf
from tensorflow.python.checkpoint import checkpoint_management

from burn_tf.config import load_config
from burn_tf.pretrain import pretrain_stage

TINY = [
    "teacher.kind=resnet18", "teacher.weights=null", "teacher.small_input_stem=true",
    "teacher.input_size=32", "backbone.input_size=32", "backbone.width_multiplier=0.125", "backbone.blocks=4",
    "method.head_width=32", "train.batch_size=8", "train.steps_per_epoch=3", "train.epochs=2",
    "train.verbose=0", "train.run_eagerly=true", "data.limit=64", "data.shuffle_buffer=64",
    "optimizer.warmup_epochs=0", "train.checkpoint_every_steps=2", "train.keep_checkpoints=2",
]


class RecordSteps(tf.keras.callbacks.Callback):
    def __init__(self, path: Path, kill_at: int | None):
        super().__init__()
        self.path, self.kill_at = path, kill_at

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.global_step.numpy())
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, "loss_step": float(logs["loss_step"])}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if step == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)


def kill_inside_writes(mode: str) -> None:
    """Makes the first checkpoint write after step 2 end in SIGKILL."""
    state = {"saves": 0}
    original_save = tf.train.CheckpointManager.save
    original_index = checkpoint_management.update_checkpoint_state_internal

    def save(self, checkpoint_number=None, **kwargs):
        if checkpoint_number is not None and checkpoint_number > 2:
            state["armed"] = True
            if mode == "random":
                delay = random.uniform(0.0, 0.04)
                print(f"kill in {delay * 1000:.1f} ms", flush=True)
                threading.Timer(delay, os.kill, (os.getpid(), signal.SIGKILL)).start()
        return original_save(self, checkpoint_number=checkpoint_number, **kwargs)

    def update_index(*args, **kwargs):
        if state.get("armed") and mode == "before-index":
            os.kill(os.getpid(), signal.SIGKILL)
        return original_index(*args, **kwargs)

    tf.train.CheckpointManager.save = save
    checkpoint_management.update_checkpoint_state_internal = update_index


def train(run_dir, resume: bool = False, kill_at: int | None = None, overrides=()) -> dict:
    """The tiny stage-1 run, recording every batch (and SIGKILL after batch ``kill_at``): its
    metrics. tests/test_faults.py calls it in its own process for the runs it does not kill."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return pretrain_stage(load_config("demo", [*TINY, *overrides]), 1, run_dir, resume=resume,
                          extra_callbacks=[RecordSteps(run_dir / "steps.jsonl", kill_at)])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--kill-at-step", type=int)
    parser.add_argument("--kill-in-write", choices=["before-index", "random"])
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    if args.kill_in_write:
        kill_inside_writes(args.kill_in_write)
    print(json.dumps(train(args.run_dir, resume=args.resume, kill_at=args.kill_at_step, overrides=args.overrides)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
