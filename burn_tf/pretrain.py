"""Pretraining with any registered method (``method.name``): stage 1, and for the binary
backbone stage 2 (binary weights too).

CLI (a thin layer over :func:`pretrain`)::

    python -m burn_tf.pretrain --config demo --stage all --run-dir runs/demo
    python -m burn_tf.pretrain --config imagenet/burn_stage2.yaml --stage 2 \\
        --run-dir runs/imagenet --set train.batch_size=1024

``--config`` takes a file or the name of a config shipped in ``burn_tf/configs``. The method
says what it needs — a teacher (``needs_teacher``), how many views (``num_views_for``),
labels (``needs_labels``), its callbacks, its heads to export — and this module provides it.

Run directory::

    <run>/config.yaml                 resolved config of the latest stage run
    <run>/stage{1,2}/config.yaml      resolved config of that stage
                    checkpoints/      one TF checkpoint per epoch (model, optimizer, step)
                    final/            the stage's final weights (read by stage 2)
                    logs/             TensorBoard (per-step scalars)
                    history.jsonl     one JSON line per epoch
                    metrics.json      final metrics, time, steps
                    summary.txt       lq.models.summary of the trained backbone
                    backbone/         exported backbone (+ the method's heads, e.g. classifier.keras)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import shutil
import sys
import time
from pathlib import Path

import larq as lq
import tensorflow as tf

from burn_tf.backbone import save_backbone
from burn_tf.callbacks import CheckpointEveryEpoch, JsonLinesLogger, ProgressLines
from burn_tf.config import ConfigError, PretrainConfig, load_config
from burn_tf.data import multi_view_dataset, source_from_config
from burn_tf.io import atomic_write_json, atomic_write_text
from burn_tf.methods import PretrainMethod
from burn_tf.models.backbones import build_backbone
from burn_tf.models.teacher import build_teacher
from burn_tf.optim import build_optimizer


class RunDirError(RuntimeError):
    """The run directory is in a state the request cannot proceed from."""


# ---------------------------------------------------------------------------- builders
def build_source(cfg: PretrainConfig) -> tf.data.Dataset:
    d = cfg.data
    if d.source == "fashion_mnist":
        source = source_from_config("fashion_mnist", split=d.split, root=d.path)
    elif d.source == "tfds":
        if not d.name:
            raise ConfigError("data.source=tfds needs data.name (a tfds builder name)")
        source = source_from_config("tfds", name=d.name, split=d.split, data_dir=d.data_dir)
    elif d.source == "image_folder":
        source = source_from_config("image_folder", path=d.path, strict=d.strict)
    else:
        source = source_from_config("tfrecord", files=d.path, strict=d.strict)
    if d.limit is not None:
        source = source.take(d.limit)
    return source


def build_train_dataset(cfg: PretrainConfig) -> tuple[tf.data.Dataset, int]:
    """The method's views (and labels, if it needs them), repeated; returns (dataset,
    steps per epoch)."""
    source = build_source(cfg)
    steps = cfg.train.steps_per_epoch
    if steps is None:
        n = int(source.cardinality())
        if n < 0:
            raise ConfigError(
                "the size of this data source is unknown; set train.steps_per_epoch"
            )
        steps = n // cfg.train.batch_size
        if steps < 1:
            raise ConfigError(
                f"data has {n} images, fewer than train.batch_size={cfg.train.batch_size}"
            )
    ds = multi_view_dataset(
        source, cfg.view_configs(), cfg.train.batch_size, seed=cfg.train.seed,
        shuffle_buffer=cfg.data.shuffle_buffer, drop_remainder=True, repeat=True,
        cache=cfg.data.source == "fashion_mnist", with_labels=cfg.method_class.needs_labels,
    )
    return ds, steps


def build_teacher_from_config(cfg: PretrainConfig, include_head: bool = False) -> tf.keras.Model:
    size = cfg.teacher.input_size or cfg.backbone.input_size
    return build_teacher(
        cfg.teacher.kind, cfg.teacher.weights, (size, size, 3), small_input_stem=cfg.teacher.small_input_stem,
        include_head=include_head, random_head_width=cfg.teacher.random_head_width,
    )


def build_method(cfg: PretrainConfig, stage: int, teacher: tf.keras.Model | None = None) -> PretrainMethod:
    """The method of ``cfg`` for ``stage`` (backbone binarized accordingly), not compiled.
    A teacher is built only if the method needs one (pass ``teacher`` to reuse one)."""
    cls = cfg.method_class
    kwargs = dict(accumulation_steps=cfg.optimizer.accumulation_steps, name=f"{cls.method_name}_stage{stage}")
    if cls.needs_teacher:
        # The teacher first, then the backbone: the order fixes which random numbers
        # initialise the backbone (the same student for the same seed as before the
        # method framework).
        if teacher is None:
            teacher = build_teacher_from_config(cfg, include_head=cls.teacher_includes_head)
        return cls(teacher, build_backbone(cfg.backbone, stage), cfg.method, **kwargs)
    return cls(build_backbone(cfg.backbone, stage), cfg.method, **kwargs)


def checkpoint_for(model: PretrainMethod, optimizer=None, epoch=None) -> tf.train.Checkpoint:
    """A checkpoint of what the method says it holds, plus the optimizer and epoch."""
    parts = model.checkpoint_parts()
    if optimizer is not None:
        parts["optimizer"] = optimizer
    if epoch is not None:
        parts["epoch"] = epoch
    return tf.train.Checkpoint(**parts)


def init_from_previous_stage(model: PretrainMethod, cfg: PretrainConfig, previous_final: Path,
                             teacher=None) -> None:
    """Alg. 1 line 13: stage 2 starts from stage 1's final state (for BURN φ **and** θ)."""
    if not tf.train.latest_checkpoint(str(previous_final)):
        raise RunDirError(
            f"stage 2 needs stage 1's result, but {previous_final} holds no final checkpoint; "
            "run --stage 1 first (or --stage all)"
        )
    previous = build_method(cfg, stage=1, teacher=teacher)
    previous.build_all()
    checkpoint_for(previous).restore(tf.train.latest_checkpoint(str(previous_final))).expect_partial()
    model.build_all()
    model.init_from_previous_stage(previous)


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


def lq_summary_text(model: tf.keras.Model) -> str:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        lq.models.summary(model)
    return buffer.getvalue()


# ---------------------------------------------------------------------------- one stage
def _check_stage_dir(stage_dir: Path, resume: bool, overwrite: bool) -> bool:
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
    resuming = _check_stage_dir(stage_dir, resume, overwrite)
    tf.keras.utils.set_random_seed(cfg.train.seed + stage)
    # Data, teacher weights and model are built before the run directory is touched, so a
    # mistake never costs an existing run (not even with --overwrite).
    dataset, steps_per_epoch = build_train_dataset(cfg)
    epochs = cfg.train.epochs
    model = build_method(cfg, stage)
    if not resuming and stage_dir.exists():
        shutil.rmtree(stage_dir)  # only reached with --overwrite (or an empty directory)
    stage_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(stage_dir / "config.yaml", cfg.to_yaml())
    atomic_write_text(run_dir / "config.yaml", cfg.to_yaml())
    teacher = getattr(model, "teacher_backbone", None)
    optimizer = build_optimizer(cfg.optimizer, steps_per_epoch, epochs)
    model.compile(optimizer=optimizer, jit_compile=cfg.train.jit_compile, run_eagerly=cfg.train.run_eagerly)

    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    checkpoint = checkpoint_for(model, optimizer, epoch_var)
    if resuming:
        latest = tf.train.latest_checkpoint(str(stage_dir / "checkpoints"))
        checkpoint.restore(latest).assert_existing_objects_matched()
        print(f"resumed {latest}: epoch {int(epoch_var.numpy())}, step {int(model.global_step.numpy())}")
    elif stage == 2:
        init_from_previous_stage(model, cfg, run_dir / "stage1" / "final", teacher)

    summary = lq_summary_text(model.backbone)
    atomic_write_text(stage_dir / "summary.txt", summary)
    if cfg.train.verbose:
        print(summary)

    saver = CheckpointEveryEpoch(checkpoint, stage_dir / "checkpoints", epoch_var)
    callbacks = [
        *model.callbacks(epochs * steps_per_epoch),
        saver,
        JsonLinesLogger(stage_dir / "history.jsonl"),
        tf.keras.callbacks.TensorBoard(str(stage_dir / "logs"), update_freq=max(steps_per_epoch // 10, 1),
                                       profile_batch=0),
        *(extra_callbacks or []),
    ]
    # A progress bar on a terminal; plain lines in logs and captured output, where Keras'
    # bar would print nothing until the epoch ends.
    progress_bar = cfg.train.verbose == 1 and sys.stdout.isatty()
    if cfg.train.verbose and not progress_bar:
        callbacks.append(ProgressLines(steps_per_epoch, epochs, cfg.train.log_lines_per_epoch,
                                       prefix=f"{cfg.method.name} stage {stage}  "))
    initial_epoch = int(epoch_var.numpy())
    start = time.time()
    history = model.fit(
        dataset, epochs=epochs, initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch,
        callbacks=callbacks, verbose=1 if progress_bar else 0,
    )
    seconds = time.time() - start
    if saver.nan_detected:
        raise FloatingPointError(
            f"stage {stage}: the loss became NaN/Inf; training stopped and the last good "
            f"checkpoint in {stage_dir / 'checkpoints'} was kept"
        )

    final_dir = stage_dir / "final"
    # The manager writes the data files first, then its index by an atomic rename.
    tf.train.CheckpointManager(checkpoint_for(model), str(final_dir), max_to_keep=1).save()

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
        model.backbone, stage_dir / "backbone",
        {"method": cls.method_name, "stage": stage, "config_hash": cfg.hash(), "metrics": last,
         "backbone_config": dataclasses.asdict(cfg.backbone),
         "teacher": dataclasses.asdict(cfg.teacher) if cls.needs_teacher else None, "data": cfg.data.source},
        overwrite=True,
    )
    for head_name, head in model.exported_heads().items():
        head.save(backbone_dir / f"{head_name}.keras")
    return metrics


def _stage_state(stage_dir: Path) -> str:
    if tf.train.latest_checkpoint(str(stage_dir / "final")):
        return "finished"
    if tf.train.latest_checkpoint(str(stage_dir / "checkpoints")):
        return "interrupted"
    return "empty"


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
        state = _stage_state(stage_dir)
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
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set train.epochs=5")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    run_dir = args.run_dir or str(Path("runs") / (Path(args.config).stem if args.config else "default"))
    try:
        results = pretrain(cfg, run_dir, args.stage, resume=args.resume, overwrite=args.overwrite)
    except (RunDirError, ConfigError, OSError, FloatingPointError, ValueError) as err:
        # A user's mistake (config, paths, data, teacher weights): one line, no traceback.
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({f"stage{k}": v for k, v in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
