"""Faults a long run meets: SIGKILL at any step or inside a checkpoint write, then --resume;
a run directory that cannot take the run. The killed runs are subprocesses
(tests/faults/kill_run.py), every one bounded by a timeout; the uninterrupted run they are
compared with and the resumed runs train in this process, as kill_run.py would."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from burn_tf.config import load_config
from burn_tf.pretrain import pretrain_stage
from burn_tf.rundir import RunDirError

KILL_RUN = Path(__file__).resolve().parent / "faults" / "kill_run.py"
sys.path.insert(0, str(KILL_RUN.parent))
from kill_run import train as train_in_this_process  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 240


def run(run_dir, *args, expect_killed=False):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(KILL_RUN), str(run_dir), *args], capture_output=True, text=True,
                          timeout=TIMEOUT, env=env)
    if expect_killed:
        assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr[-3000:]
    else:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def steps_of(run_dir) -> dict:
    """step → loss of that batch; a step recorded twice (trained again after a resume)
    keeps its last value."""
    records = [json.loads(x) for x in (Path(run_dir) / "steps.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss_step"] for r in records}


def checkpoint_values(path) -> dict:
    reader = tf.train.load_checkpoint(path)
    return {k: np.asarray(reader.get_tensor(k)) for k in reader.get_variable_to_shape_map()
            if "save_counter" not in k and "OBJECT_GRAPH" not in k}


def assert_same_state(a_dir, b_dir, rtol=1e-5):
    """The latest checkpoints hold the same weights, optimizer state, step and epoch."""
    a = checkpoint_values(tf.train.latest_checkpoint(str(Path(a_dir) / "stage1" / "checkpoints")))
    b = checkpoint_values(tf.train.latest_checkpoint(str(Path(b_dir) / "stage1" / "checkpoints")))
    assert set(a) == set(b)
    assert any("optimizer" in k for k in a) and any("global_step" in k for k in a)
    for key in a:
        if a[key].dtype.kind in "fc":
            np.testing.assert_allclose(b[key], a[key], rtol=rtol, atol=rtol * max(np.abs(a[key]).max(), 1e-3),
                                       err_msg=key)
        else:
            np.testing.assert_array_equal(b[key], a[key], err_msg=key)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, fashion_mnist_dir):
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    train_in_this_process(run_dir)
    return run_dir


@pytest.fixture(scope="module")
def fashion_mnist_dir():
    if not os.path.exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"):
        pytest.skip("Debian package dataset-fashion-mnist is not installed")


def test_sigkill_at_a_random_step_then_resume_matches_the_uninterrupted_run(uninterrupted, tmp_path):
    kill_at = int(np.random.default_rng().integers(1, 6))  # any of steps 1-5 of 6
    cut = tmp_path / "cut"
    run(cut, "--kill-at-step", str(kill_at), expect_killed=True)
    if kill_at < 2:  # killed before the first checkpoint (step 2): nothing to resume
        assert tf.train.latest_checkpoint(str(cut / "stage1" / "checkpoints")) is None
        return
    metrics = train_in_this_process(cut, resume=True)
    full = json.loads((uninterrupted / "stage1" / "metrics.json").read_text())
    assert metrics["global_step"] == full["global_step"] == 6, f"killed at step {kill_at}"
    assert metrics["lambda"] == full["lambda"] and metrics["lr"] == full["lr"]
    # Data order: every batch after the resume point is the one the uninterrupted run saw
    # at that step (its loss, computed from the same weights, is bit-equal).
    assert steps_of(cut) == steps_of(uninterrupted), f"killed at step {kill_at}"
    assert_same_state(uninterrupted, cut)


@pytest.mark.parametrize("moment", ["before-index", "random"])
def test_sigkill_inside_a_checkpoint_write_leaves_a_good_latest_checkpoint(uninterrupted, tmp_path, moment):
    cut = tmp_path / "cut"
    run(cut, "--kill-in-write", moment, expect_killed=True)
    checkpoints = cut / "stage1" / "checkpoints"
    latest = tf.train.latest_checkpoint(str(checkpoints))
    assert latest is not None and int(latest.rsplit("-", 1)[1]) >= 2
    # Complete and readable: every tensor loads.
    assert checkpoint_values(latest)
    metrics = train_in_this_process(cut, resume=True)
    assert metrics["global_step"] == 6
    assert steps_of(cut) == steps_of(uninterrupted)
    assert_same_state(uninterrupted, cut)


def test_two_uninterrupted_runs_are_bit_identical(uninterrupted, tmp_path):
    again = tmp_path / "again"  # in a fresh process; the first one ran in this one
    run(again)
    assert steps_of(again) == steps_of(uninterrupted)
    assert_same_state(uninterrupted, again, rtol=0)


def test_run_dir_that_cannot_be_written_or_is_full_is_reported_before_training(tmp_path, monkeypatch,
                                                                               fashion_mnist_dir):
    # The checks come after the stage is built (the space it needs is its checkpoints'): the
    # cheapest stage to build, a supervised tiny ReActNet-A (no teacher, crop and flip only).
    cfg = load_config("supervised", ["backbone.width_multiplier=0.125", "backbone.blocks=4", "train.batch_size=8",
                                     "train.steps_per_epoch=2", "train.verbose=0", "data.limit=64"])
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the run directory's parent should be")
    with pytest.raises(RunDirError, match="not a directory"):
        pretrain_stage(cfg, 1, blocker / "run")
    assert blocker.read_text().startswith("a file")
    # A directory nobody can create files in (procfs refuses even root; chmod would not).
    with pytest.raises(RunDirError, match="cannot write in /proc/self"):
        pretrain_stage(cfg, 1, "/proc/self/run")

    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1024, 1024))
    with pytest.raises(RunDirError, match=r"MiB free, the run needs about"):
        pretrain_stage(cfg, 1, tmp_path / "full")
    assert not (tmp_path / "full").exists()
