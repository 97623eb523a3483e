"""The states of a run directory and the checks made before a stage touches it.

A stage directory (``<run>/stage{1,2}``) is ``finished`` (a final checkpoint), ``interrupted``
(checkpoints but no final one) or ``empty``. Every check here raises :class:`RunDirError`
and touches nothing, so a request that cannot proceed never costs an existing run.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import tensorflow as tf

from burn_tf.methods import PretrainMethod


class RunDirError(RuntimeError):
    """The run directory is in a state the request cannot proceed from."""


def checkpoint_bytes(model: PretrainMethod, optimizer) -> int:
    """Bytes one checkpoint of ``model`` and ``optimizer`` takes (their variables)."""
    variables = {id(v): v for v in [*model.variables, *optimizer.variables]}
    return sum(v.shape.num_elements() * v.dtype.size for v in variables.values())


def check_run_dir_writable(stage_dir: Path, needed_bytes: int) -> None:
    """Raises :class:`RunDirError` (touching nothing) when ``stage_dir`` cannot be created or
    written, or its file system has less free space than ``needed_bytes``."""
    existing = stage_dir
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise RunDirError(f"{stage_dir}: {existing} is not a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-test-"):
            pass
    except OSError as err:
        raise RunDirError(f"{stage_dir}: cannot write in {existing} ({err.strerror or err}); "
                          "choose another --run-dir") from None
    free = shutil.disk_usage(existing).free
    if free < needed_bytes:
        raise RunDirError(
            f"{stage_dir}: {existing} has {free / 2**20:.1f} MiB free, the run needs about "
            f"{needed_bytes / 2**20:.1f} MiB (checkpoints and the exported backbone); free some space "
            "or lower train.keep_checkpoints"
        )


def check_stage_dir(stage_dir: Path, resume: bool, overwrite: bool) -> bool:
    """Returns True when an existing checkpoint should be resumed; raises (touching
    nothing) when the request cannot proceed from the directory's state."""
    has_checkpoint = tf.train.latest_checkpoint(str(stage_dir / "checkpoints")) is not None
    if resume:
        if not has_checkpoint:
            raise RunDirError(f"--resume: {stage_dir / 'checkpoints'} has no checkpoint to resume from")
        return True
    if stage_dir.exists() and any(stage_dir.iterdir()) and not overwrite:
        raise RunDirError(
            f"{stage_dir} already holds a run; pass --resume to continue it or --overwrite "
            "to replace it"
        )
    return False


def check_previous_stage(previous_final: Path) -> None:
    if not tf.train.latest_checkpoint(str(previous_final)):
        raise RunDirError(
            f"stage 2 needs stage 1's result, but {previous_final} holds no final checkpoint; "
            "run --stage 1 first (or --stage all)"
        )


def stage_state(stage_dir: Path) -> str:
    """``finished`` (a final checkpoint), ``interrupted`` (checkpoints, no final one) or ``empty``."""
    if tf.train.latest_checkpoint(str(stage_dir / "final")):
        return "finished"
    if tf.train.latest_checkpoint(str(stage_dir / "checkpoints")):
        return "interrupted"
    return "empty"
