"""Pretraining with any registered method (``method.name``): stage 1, and for the binary
backbone stage 2 (binary weights too).

CLI (a thin layer over :func:`pretrain`)::

    python -m burn_tf.pretrain --config demo --stage all --run-dir runs/demo
    python -m burn_tf.pretrain --config imagenet/burn_stage2.yaml --stage 2 \\
        --run-dir runs/imagenet --set train.batch_size=1024

``--config`` takes a file or the name of a config in ``configs/`` (shipped in the wheel). The method
says what it needs — a teacher (``needs_teacher``), how many views (``num_views_for``),
labels (``needs_labels``), its callbacks, its heads to export — and this module provides it.
This module holds the stage loop — :func:`pretrain_stage`, a short sequence of named steps
(check, seed, build, prepare the run directory, start state, callbacks, fit, final state,
metrics, export) — and the CLI; :func:`burn_tf.build.build_stage` builds what a stage trains
(strategy, data stream, teacher, method, optimizer, checkpoint) in one call and
:mod:`burn_tf.rundir` checks the run directory before a stage touches it.

Run directory::

    <run>/config.yaml                 resolved config of the latest stage run
    <run>/stage{1,2}/config.yaml      resolved config of that stage
                    checkpoints/      TF checkpoints (model, optimizer, step) after every epoch
                                      and every train.checkpoint_every_steps; the latest
                                      train.keep_checkpoints are kept
                    final/            the stage's final weights (read by stage 2)
                    logs/             TensorBoard (per-step scalars)
                    history.jsonl     one JSON line per epoch
                    metrics.json      final metrics, time, steps
                    summary.txt       lq.models.summary of the backbone (its layer table;
                                      the console gets the totals only)
                    backbone/         exported backbone (+ the method's heads, e.g. classifier.keras)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pickle
import shutil
import sys
import time
from pathlib import Path

import tensorflow as tf

from burn_tf.build import StageParts, build_stage, checkpoint_for
from burn_tf.callbacks import JsonLinesLogger, RunCheckpoints, StageTensorBoard
from burn_tf.config import ConfigError, PretrainConfig, load_config
from burn_tf.distribute import STRATEGIES
from burn_tf.io import atomic_write_json, atomic_write_text
from burn_tf.rundir import (
    RunDirError,
    check_previous_stage,
    check_run_dir_writable,
    check_stage_dir,
    checkpoint_bytes,
    stage_state,
)
from burn_tf.saved_backbone import record_checksums, save_backbone
from burn_tf.summary import summary_text, summary_totals


def stages_of(cfg: PretrainConfig, stage: str | int) -> list[int]:
    """The stages a ``--stage`` request runs for this backbone."""
    key = str(stage)
    if key not in ("1", "2", "all"):
        raise ValueError(f"stage must be 1, 2 or all, got {stage!r}")
    available = list(cfg.backbone.stages)
    if key == "all":
        return available
    if int(key) not in available:
        raise ConfigError(
            f"backbone.kind={cfg.backbone.kind!r} is trained in stage(s) {available} only, not stage {key}"
        )
    return [int(key)]


# ---------------------------------------------------------------------------- one stage
def pretrain_stage(
    cfg: PretrainConfig,
    stage: int,
    run_dir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    extra_callbacks: list | None = None,
) -> dict:
    """Runs one stage of the configured method in ``run_dir``; returns its final metrics."""
    run_dir = Path(run_dir)
    stage_dir = run_dir / f"stage{stage}"
    resuming = _check_request(cfg, stage, run_dir, resume, overwrite)
    tf.keras.utils.set_random_seed(cfg.train.seed + stage)
    # Data, teacher weights and model are built before the run directory is touched, so a
    # mistake never costs an existing run (not even with --overwrite).
    parts = build_stage(cfg, stage)
    _prepare_stage_dir(parts, run_dir, stage_dir, resuming)
    _start_state(parts, run_dir, stage_dir, resuming)
    _write_summary(parts, stage_dir)
    callbacks, saver = _callbacks(parts, stage_dir, extra_callbacks)
    history, seconds = _fit(parts, callbacks, saver, stage_dir)
    _save_final_state(parts, stage_dir)
    last = {k: float(v[-1]) for k, v in history.history.items() if v}
    metrics = _write_metrics(parts, stage_dir, last, seconds)
    _export(parts, stage_dir, last)
    return metrics


def _check_request(cfg: PretrainConfig, stage: int, run_dir: Path, resume: bool, overwrite: bool) -> bool:
    """True when the stage resumes its latest checkpoint; raises (touching nothing) when the
    backbone has no such stage or the run directory cannot proceed as asked."""
    if stage not in cfg.backbone.stages:
        stages_of(cfg, stage)  # raises, naming the stages this backbone has
    resuming = check_stage_dir(run_dir / f"stage{stage}", resume, overwrite)
    if stage == 2 and not resuming:
        check_previous_stage(run_dir / "stage1" / "final")
    return resuming


def _prepare_stage_dir(parts: StageParts, run_dir: Path, stage_dir: Path, resuming: bool) -> None:
    """Checks that the stage's files fit, empties the stage directory unless resuming (only
    reached with --overwrite, or an empty directory) and writes the resolved config."""
    cfg = parts.cfg
    # Checkpoints kept, one being written, the final one, the backbone and its heads.
    check_run_dir_writable(stage_dir, checkpoint_bytes(parts.model, parts.optimizer) * (cfg.train.keep_checkpoints + 4))
    if not resuming and stage_dir.exists():
        shutil.rmtree(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(stage_dir / "config.yaml", cfg.to_yaml())
    atomic_write_text(run_dir / "config.yaml", cfg.to_yaml())


def _start_state(parts: StageParts, run_dir: Path, stage_dir: Path, resuming: bool) -> None:
    """Where training starts: the stage's latest checkpoint (resume), stage 1's final state
    (stage 2), or the method's own initial state (stage 1: a memory bank filled from the
    images, where the method asks for one)."""
    if resuming:
        latest = tf.train.latest_checkpoint(str(stage_dir / "checkpoints"))
        with parts.strategy.scope():
            parts.checkpoint.restore(latest).assert_existing_objects_matched()
        print(f"resumed {latest}: epoch {int(parts.epoch.numpy())}, step {int(parts.model.global_step.numpy())}")
    elif parts.stage == 2:
        parts.start_from_previous_stage(run_dir / "stage1" / "final")
    else:
        parts.fill_initial_bank()


def _write_summary(parts: StageParts, stage_dir: Path) -> None:
    """The layer table (a hundred lines and more) goes to a file; the console gets its totals."""
    backbone = parts.model.backbone
    atomic_write_text(stage_dir / "summary.txt", summary_text(backbone) + "\n")
    if parts.cfg.train.verbose:
        print(f"stage {parts.stage} {summary_totals(backbone)}\n  layer table: {stage_dir / 'summary.txt'}")


def _callbacks(parts: StageParts, stage_dir: Path, extra_callbacks: list | None) -> tuple[list, RunCheckpoints]:
    """What a ``model.fit`` user gets too (the method's own callbacks, every step's values in
    steps.jsonl and logs/steps, progress lines), then what only a run directory has
    (checkpoints, history.jsonl, TensorBoard) and the caller's; returns them and the
    checkpoint writer (which also watches for NaN/Inf)."""
    cfg, model, steps_per_epoch = parts.cfg, parts.model, parts.steps_per_epoch
    epochs = cfg.train.epochs
    saver = RunCheckpoints(parts.checkpoint, stage_dir / "checkpoints", parts.epoch,
                           every_steps=cfg.train.checkpoint_every_steps, max_to_keep=cfg.train.keep_checkpoints)
    model.log_dir = stage_dir  # per-step records (BURN: steps.jsonl) go beside the run's logs
    callbacks = [
        *model.callbacks(epochs * steps_per_epoch, stage_dir, progress=bool(cfg.train.verbose),
                         progress_prefix=f"{cfg.method.name} stage {parts.stage}",
                         lines_per_epoch=cfg.train.log_lines_per_epoch),
        saver,
        JsonLinesLogger(stage_dir / "history.jsonl"),
        StageTensorBoard(str(stage_dir / "logs"), update_freq=max(steps_per_epoch // 10, 1), profile_batch=0),
        *(extra_callbacks or []),
    ]
    return callbacks, saver


def _progress_bar(cfg: PretrainConfig) -> bool:
    """Keras' progress bar: on a terminal at ``train.verbose: 1`` only; plain lines
    (ProgressLines, silent under the bar) in logs and captured output, where Keras' bar
    would print nothing until the epoch ends."""
    return cfg.train.verbose == 1 and sys.stdout.isatty()


def _fit(parts: StageParts, callbacks: list, saver: RunCheckpoints, stage_dir: Path):
    """Trains from the step the model holds to the end of the stage; returns (Keras
    history, seconds). Raises :class:`FloatingPointError` when the loss or the weights
    became NaN/Inf (``saver`` stopped the run and kept the last good checkpoint)."""
    model, steps_per_epoch = parts.model, parts.steps_per_epoch
    # The data stream continues where the checkpoint left it, and Keras starts its epoch
    # count and the first epoch's batch index there too.
    done = int(model.global_step.numpy())
    initial_epoch, model.resume_at_batch = divmod(done, steps_per_epoch)
    dataset = parts.stream_from(done)
    start = time.time()
    try:
        history = model.fit(
            dataset, epochs=parts.cfg.train.epochs, initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch,
            callbacks=callbacks, verbose=1 if _progress_bar(parts.cfg) else 0,
        )
    finally:
        model.resume_at_batch = 0
    seconds = time.time() - start
    if saver.nan_detected:
        latest = tf.train.latest_checkpoint(str(stage_dir / "checkpoints"))
        kept = f"the last good checkpoint {latest} was kept" if latest else "no checkpoint had been written yet"
        raise FloatingPointError(
            f"stage {parts.stage}: the loss or the weights became NaN/Inf at step {saver.nan_step} "
            f"(epoch {(saver.nan_step - 1) // steps_per_epoch + 1}); training stopped and {kept}"
        )
    return history, seconds


def _save_final_state(parts: StageParts, stage_dir: Path) -> None:
    """The stage's final checkpoint (``final/``: what stage 2 and ``stage_state`` read). The
    manager writes the data files first, then its index by an atomic rename."""
    tf.train.CheckpointManager(checkpoint_for(parts.model), str(stage_dir / "final"), max_to_keep=1).save()


def _write_metrics(parts: StageParts, stage_dir: Path, last: dict, seconds: float) -> dict:
    """metrics.json: the run's shape, its time and the last logged values."""
    cfg = parts.cfg
    metrics = {
        "method": cfg.method.name,
        "stage": parts.stage,
        "epochs": cfg.train.epochs,
        "steps_per_epoch": parts.steps_per_epoch,
        "global_step": int(parts.model.global_step.numpy()),
        "train_seconds": round(seconds, 1),
        "config_hash": cfg.hash(),
        **last,
    }
    atomic_write_json(stage_dir / "metrics.json", metrics)
    return metrics


def _export(parts: StageParts, stage_dir: Path, last: dict) -> None:
    """The float32 backbone with its metadata, the method's heads beside it, checksums."""
    cfg, cls = parts.cfg, type(parts.model)
    backbone_dir = save_backbone(
        parts.export_backbone(), stage_dir / "backbone",
        {"method": cls.method_name, "stage": parts.stage, "config_hash": cfg.hash(), "metrics": last,
         "backbone_config": dataclasses.asdict(cfg.backbone),
         "teacher": dataclasses.asdict(cfg.teacher) if cls.needs_teacher else None, "data": cfg.data.source},
        overwrite=True,
    )
    for head_name, head in parts.model.exported_heads().items():
        head.save(backbone_dir / f"{head_name}.keras")
    record_checksums(backbone_dir)  # the heads too


def pretrain(
    cfg: PretrainConfig,
    run_dir: str | Path,
    stage: str | int = "all",
    resume: bool | str = False,
    overwrite: bool = False,
    extra_callbacks: list | None = None,
) -> dict:
    """Runs stage 1, stage 2 or both; returns {stage: metrics} of the stages run now.

    ``resume=True`` (``--resume``) continues a run: a finished stage is reused, an
    interrupted one resumed from its latest checkpoint, a stage not begun yet starts (if an
    earlier stage of the request was found); with nothing to continue it raises.
    ``resume="auto"`` (the demo) does the same and starts a missing run afresh.
    ``overwrite`` replaces what exists. A stage that runs makes later stages stale: they
    are run again from it.
    """
    run_dir = Path(run_dir)
    results = {}
    found_earlier = False
    for s in stages_of(cfg, stage):
        stage_dir = run_dir / f"stage{s}"
        state = stage_state(stage_dir)
        if resume and not overwrite and state == "finished":
            print(f"stage {s}: reusing the finished run in {stage_dir}")
            found_earlier = True
            continue
        stage_resume = bool(resume) and not overwrite and state == "interrupted"
        if resume is True and not overwrite and state == "empty" and not found_earlier:
            raise RunDirError(f"--resume: {stage_dir / 'checkpoints'} has no checkpoint to resume from")
        results[s] = pretrain_stage(cfg, s, run_dir, resume=stage_resume, overwrite=overwrite,
                                    extra_callbacks=extra_callbacks)
        found_earlier = True
        overwrite = True  # later stages start from this one
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m burn_tf.pretrain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config file, or the name of a shipped one (e.g. demo, "
                        "imagenet/burn_stage1); keys mirror burn_tf.config dataclasses")
    parser.add_argument("--stage", default="all", choices=["1", "2", "all"])
    parser.add_argument("--run-dir", default=None, help="default: runs/<config name>")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run")
    parser.add_argument("--strategy", choices=STRATEGIES, default=None,
                        help="where to train (sets train.strategy): default (one device), mirrored (all "
                        "local GPUs), multiworker (TF_CONFIG), tpu")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set train.epochs=5")
    args = parser.parse_args(argv)
    if args.strategy:
        args.overrides.append(f"train.strategy={args.strategy}")
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    run_dir = args.run_dir or str(Path("runs") / (Path(args.config).stem if args.config else "default"))
    try:
        results = pretrain(cfg, run_dir, args.stage, resume=args.resume, overwrite=args.overwrite)
    except (RunDirError, ConfigError, OSError, FloatingPointError, ValueError, pickle.UnpicklingError) as err:
        # A user's mistake (config, paths, data, teacher weights): one line, no traceback.
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({f"stage{k}": v for k, v in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
