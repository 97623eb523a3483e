"""Pretraining with any registered method (``method.name``): stage 1, and for the binary
backbone stage 2 (binary weights too).

CLI (a thin layer over :func:`pretrain`)::

    python -m burn_tf.pretrain --config demo --stage all --run-dir runs/demo
    python -m burn_tf.pretrain --config imagenet/burn_stage2.yaml --stage 2 \\
        --run-dir runs/imagenet --set train.batch_size=1024

``--config`` takes a file or the name of a config in ``configs/`` (shipped in the wheel). The method
says what it needs — a teacher (``needs_teacher``), how many views (``num_views_for``),
labels (``needs_labels``), its callbacks, its heads to export — and this module provides it.
This module holds the stage loop and the CLI; :mod:`burn_tf.build` builds what a stage
trains (data stream, teacher, method, optimizer, strategy, checkpoint) and
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

from burn_tf.build import (
    build_method,
    build_source,
    build_train_dataset,
    build_training_optimizer,
    checkpoint_for,
    fill_initial_bank,
    init_from_previous_stage,
    strategy_for,
)
from burn_tf.callbacks import JsonLinesLogger, RunCheckpoints, StageTensorBoard
from burn_tf.config import ConfigError, PretrainConfig, load_config
from burn_tf.distribute import STRATEGIES, shard_by_data
from burn_tf.io import atomic_write_json, atomic_write_text
from burn_tf.models.trained_network import build_backbone
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
    if stage not in cfg.backbone.stages:
        stages_of(cfg, stage)  # raises, naming the stages this backbone has
    resuming = check_stage_dir(stage_dir, resume, overwrite)
    if stage == 2 and not resuming:
        check_previous_stage(run_dir / "stage1" / "final")
    tf.keras.utils.set_random_seed(cfg.train.seed + stage)
    strategy = strategy_for(cfg)
    # Data, teacher weights and model are built before the run directory is touched, so a
    # mistake never costs an existing run (not even with --overwrite).
    source = build_source(cfg)
    dataset, steps_per_epoch = build_train_dataset(cfg, source=source, stage=stage)
    epochs = cfg.train.epochs
    with strategy.scope():
        model = build_method(cfg, stage)
        teacher = getattr(model, "teacher_backbone", None)
        optimizer = build_training_optimizer(cfg, steps_per_epoch)
        model.compile(optimizer=optimizer, jit_compile=cfg.train.jit_compile, run_eagerly=cfg.train.run_eagerly)
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        checkpoint = checkpoint_for(model, optimizer, epoch_var)
    # Checkpoints kept, one being written, the final one, the backbone and its heads.
    check_run_dir_writable(stage_dir, checkpoint_bytes(model, optimizer) * (cfg.train.keep_checkpoints + 4))
    if not resuming and stage_dir.exists():
        shutil.rmtree(stage_dir)  # only reached with --overwrite (or an empty directory)
    stage_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(stage_dir / "config.yaml", cfg.to_yaml())
    atomic_write_text(run_dir / "config.yaml", cfg.to_yaml())

    with strategy.scope():
        if resuming:
            latest = tf.train.latest_checkpoint(str(stage_dir / "checkpoints"))
            checkpoint.restore(latest).assert_existing_objects_matched()
            print(f"resumed {latest}: epoch {int(epoch_var.numpy())}, step {int(model.global_step.numpy())}")
        elif stage == 2:
            init_from_previous_stage(model, cfg, run_dir / "stage1" / "final", teacher)
        else:
            fill_initial_bank(model, cfg)

    # The layer table (a hundred lines and more) goes to a file; the console gets its totals.
    atomic_write_text(stage_dir / "summary.txt", summary_text(model.backbone) + "\n")
    if cfg.train.verbose:
        print(f"stage {stage} {summary_totals(model.backbone)}\n  layer table: {stage_dir / 'summary.txt'}")

    saver = RunCheckpoints(checkpoint, stage_dir / "checkpoints", epoch_var,
                           every_steps=cfg.train.checkpoint_every_steps, max_to_keep=cfg.train.keep_checkpoints)
    model.log_dir = stage_dir  # per-step records (BURN: steps.jsonl) go beside the run's logs
    # What a model.fit user gets too (the method's own callbacks, every step's values in
    # steps.jsonl and logs/steps, progress lines), then what only a run directory has.
    callbacks = [
        *model.callbacks(epochs * steps_per_epoch, stage_dir, progress=bool(cfg.train.verbose),
                         progress_prefix=f"{cfg.method.name} stage {stage}",
                         lines_per_epoch=cfg.train.log_lines_per_epoch),
        saver,
        JsonLinesLogger(stage_dir / "history.jsonl"),
        StageTensorBoard(str(stage_dir / "logs"), update_freq=max(steps_per_epoch // 10, 1), profile_batch=0),
        *(extra_callbacks or []),
    ]
    # A progress bar on a terminal; plain lines (ProgressLines, silent under the bar) in
    # logs and captured output, where Keras' bar would print nothing until the epoch ends.
    progress_bar = cfg.train.verbose == 1 and sys.stdout.isatty()
    # The data stream continues where the checkpoint left it: the stream is a seeded
    # function of the position, so starting it at the step already trained gives exactly
    # the batches an uninterrupted run sees next (a tf.data iterator cannot be checkpointed
    # once tf.distribute wraps it). Keras starts its epoch count and the first epoch's batch
    # index there too.
    done = int(model.global_step.numpy())
    initial_epoch, model.resume_at_batch = divmod(done, steps_per_epoch)
    if done:
        dataset, _ = build_train_dataset(cfg, start_step=done, source=source, stage=stage)
    dataset = shard_by_data(dataset)
    start = time.time()
    try:
        history = model.fit(
            dataset, epochs=epochs, initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch,
            callbacks=callbacks, verbose=1 if progress_bar else 0,
        )
    finally:
        model.resume_at_batch = 0
    seconds = time.time() - start
    if saver.nan_detected:
        latest = tf.train.latest_checkpoint(str(stage_dir / "checkpoints"))
        kept = f"the last good checkpoint {latest} was kept" if latest else "no checkpoint had been written yet"
        raise FloatingPointError(
            f"stage {stage}: the loss or the weights became NaN/Inf at step {saver.nan_step} "
            f"(epoch {(saver.nan_step - 1) // steps_per_epoch + 1}); training stopped and {kept}"
        )

    final_dir = stage_dir / "final"
    # The manager writes the data files first, then its index by an atomic rename.
    tf.train.CheckpointManager(checkpoint_for(model), str(final_dir), max_to_keep=1).save()
    export_backbone = model.backbone
    if cfg.train.mixed_precision:
        # The exported backbone is float32 (what the evaluators and the converters read).
        export_backbone = build_backbone(cfg.backbone, stage)
        export_backbone.set_weights(model.backbone.get_weights())

    last = {k: float(v[-1]) for k, v in history.history.items() if v}
    metrics = {
        "method": cfg.method.name,
        "stage": stage,
        "epochs": epochs,
        "steps_per_epoch": steps_per_epoch,
        "global_step": int(model.global_step.numpy()),
        "train_seconds": round(seconds, 1),
        "config_hash": cfg.hash(),
        **last,
    }
    atomic_write_json(stage_dir / "metrics.json", metrics)
    cls = type(model)
    backbone_dir = save_backbone(
        export_backbone, stage_dir / "backbone",
        {"method": cls.method_name, "stage": stage, "config_hash": cfg.hash(), "metrics": last,
         "backbone_config": dataclasses.asdict(cfg.backbone),
         "teacher": dataclasses.asdict(cfg.teacher) if cls.needs_teacher else None, "data": cfg.data.source},
        overwrite=True,
    )
    for head_name, head in model.exported_heads().items():
        head.save(backbone_dir / f"{head_name}.keras")
    record_checksums(backbone_dir)  # the heads too
    return metrics


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
