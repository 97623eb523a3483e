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
                    checkpoints/      TF checkpoints (model, optimizer, step) after every epoch
                                      and every train.checkpoint_every_steps; the latest
                                      train.keep_checkpoints are kept
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
import pickle
import shutil
import sys
import tempfile
import time
from pathlib import Path

import larq as lq
import tensorflow as tf

from burn_tf.backbone import build_teacher_from_export, record_checksums, save_backbone
from burn_tf.callbacks import JsonLinesLogger, ProgressLines, RunCheckpoints, StepScalarLogger
from burn_tf.config import ConfigError, PretrainConfig, load_config
from burn_tf.data import (
    MissingLabelError,
    eval_dataset,
    get_source_info,
    multi_view_dataset,
    seeded_record_stream,
    source_from_config,
    with_source_info,
)
from burn_tf.distribute import (
    STRATEGIES,
    dtype_policy,
    float32_outputs,
    make_strategy,
    shard_by_data,
    synchronize_batchnorm,
)
from burn_tf.io import atomic_write_json, atomic_write_text
from burn_tf.methods import PretrainMethod
from burn_tf.models.backbones import build_backbone
from burn_tf.models.teacher import build_teacher
from burn_tf.optim import build_optimizer


class RunDirError(RuntimeError):
    """The run directory is in a state the request cannot proceed from."""


# ---------------------------------------------------------------------------- builders
def build_source(cfg: PretrainConfig) -> tf.data.Dataset:
    """The configured source. A method that needs no labels reads none (an unlabelled
    TFRecord or tfds split is fine); one that needs them is refused, before the run
    directory is touched, a source that has none (:func:`check_labelled`)."""
    d = cfg.data
    needs_labels = cfg.method_class.needs_labels
    keys = {}
    if d.image_key is not None:
        keys["image_key"] = d.image_key
    if not needs_labels:
        keys["label_key"] = None
    elif d.label_key is not None:
        keys["label_key"] = d.label_key
    try:
        if d.source == "fashion_mnist":
            source = source_from_config("fashion_mnist", split=d.split, root=d.path)
        elif d.source == "tfds":
            if not d.name:
                raise ConfigError("data.source=tfds needs data.name (a tfds builder name)")
            source = source_from_config("tfds", name=d.name, split=d.split, data_dir=d.data_dir, **keys)
        # data.strict: every file is decoded once up front, so a corrupt or truncated one is
        # named before the run directory is touched — not in the middle of an epoch.
        elif d.source == "image_folder":
            source = source_from_config("image_folder", path=d.path, strict=d.strict, validate=d.strict)
        else:
            source = source_from_config("tfrecord", files=d.path, strict=d.strict, validate=d.strict, **keys)
    except MissingLabelError as err:
        where = f"data.path={d.path!r}" if d.source == "tfrecord" else f"data.name={d.name!r}"
        raise ConfigError(
            f"method.name={cfg.method.name!r} needs labels, but data.source={d.source} with {where} has "
            f"none: {err}. Set data.label_key to the label feature, or choose a method that needs no labels"
        ) from None
    if needs_labels:
        check_labelled(cfg, source)
    if d.limit is not None:
        source = with_source_info(source.take(d.limit), get_source_info(source))
    return source


def check_labelled(cfg: PretrainConfig, source: tf.data.Dataset) -> None:
    """Refuses (before the run directory is touched) a method that needs labels on a source
    known to have none: a flat image folder (a TFRecord or tfds source without the label
    feature is refused by :func:`build_source`). Examples that lack a label in a labelled
    source (label −1) fail the method's first step."""
    info = get_source_info(source)
    if cfg.data.source == "image_folder" and info is not None and not info.class_names:
        raise ConfigError(
            f"method.name={cfg.method.name!r} needs labels, but data.source=image_folder with "
            f"data.path={cfg.data.path!r} is a flat folder of unlabelled images; put each class in its "
            "own sub-folder (path/<class>/<image>) or choose a method that needs no labels"
        )


def stream_seed(cfg: PretrainConfig, stage: int) -> int:
    """The seed of stage ``stage``'s data stream (order and augmentations): a stage-2 run
    sees other orders and crops than stage 1's."""
    return cfg.train.seed * 8 + stage


def build_train_dataset(cfg: PretrainConfig, start_step: int = 0, source: tf.data.Dataset | None = None,
                        stage: int = 1) -> tuple[tf.data.Dataset, int]:
    """The method's views (and labels, if it needs them), endless; returns (dataset,
    steps per epoch). The dataset's first batch is batch ``start_step`` of the run.

    A source that can read a record by its index (Fashion-MNIST, image folders,
    uncompressed TFRecords, whole tfds splits: ``source_info.reader``) is streamed by
    :func:`~burn_tf.data.seeded_record_stream`: each epoch a permutation seeded by
    (seed, epoch), augmentations seeded by (seed, position). Starting at ``start_step``
    then reads, decodes and augments only what comes from there — a resume late in a run
    costs what a fresh start costs — and gives exactly the batches of an uninterrupted
    run. Other sources (tfds split slices, compressed TFRecords) go through a shuffle buffer and skip
    the batches before ``start_step``, which re-runs the pipeline for each of them.
    """
    source = build_source(cfg) if source is None else source
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
    info = get_source_info(source)
    seed = stream_seed(cfg, stage)
    batch = cfg.train.batch_size
    kwargs = {"with_labels": cfg.method_class.needs_labels, "with_index": cfg.method_class.needs_index}
    if info is not None and info.reader is not None:
        stream = seeded_record_stream(source, seed, start_position=start_step * batch, num_records=cfg.data.limit,
                                      shuffle=cfg.data.shuffle_buffer > 1, strict=cfg.data.strict)
        ds = multi_view_dataset(stream, cfg.view_configs(), batch, seed=seed, start_position=start_step * batch,
                                **kwargs)
    else:
        ds = multi_view_dataset(
            source, cfg.view_configs(), batch, seed=seed, shuffle_buffer=cfg.data.shuffle_buffer,
            drop_remainder=True, repeat=True, **kwargs,
        )
        ds = ds.skip(start_step) if start_step else ds
    return ds, steps


def dataset_size(cfg: PretrainConfig) -> int:
    """Images in the (limited) source: the rows of a ``needs_index`` method's memory bank."""
    n = int(build_source(cfg).cardinality())
    if n < 0 and cfg.data.limit is not None:
        n = cfg.data.limit  # at most this many: rows past the source's end stay unused
    if n < 0:
        raise ConfigError(
            f"method {cfg.method.name!r} keeps one memory-bank row per image, but the size of this "
            "data source is unknown; set data.limit"
        )
    return n


def build_teacher_from_config(cfg: PretrainConfig, include_head: bool = False) -> tf.keras.Model:
    t = cfg.teacher
    if t.weights is not None and Path(t.weights).is_dir():
        # A ResNet burn_tf pretrained itself (<run>/stage1/backbone): at the size it was
        # trained at unless teacher.input_size says otherwise.
        return build_teacher_from_export(t.weights, t.kind, t.input_size, t.small_input_stem, include_head)
    size = cfg.teacher.input_size or cfg.backbone.input_size
    return build_teacher(
        cfg.teacher.kind, cfg.teacher.weights, (size, size, 3), small_input_stem=cfg.teacher.small_input_stem,
        include_head=include_head, random_head_width=cfg.teacher.random_head_width,
    )


def build_method(cfg: PretrainConfig, stage: int, teacher: tf.keras.Model | None = None) -> PretrainMethod:
    """The method of ``cfg`` for ``stage`` (backbone binarized accordingly), not compiled.
    A teacher is built only if the method needs one (pass ``teacher`` to reuse one).

    Call it inside the strategy's scope to train under one. ``train.mixed_precision``: the
    backbones compute in float16 (outputs cast to float32), the method's heads and losses in
    float32. ``train.sync_batchnorm``: the backbone's BatchNorms use global-batch statistics.
    """
    cls = cfg.method_class
    mixed = cfg.train.mixed_precision
    with dtype_policy(mixed):
        # The teacher first, then the backbone: the order fixes which random numbers
        # initialise the backbone (the same student for the same seed as before the
        # method framework).
        if cls.needs_teacher and teacher is None:
            teacher = build_teacher_from_config(cfg, include_head=cls.teacher_includes_head)
        backbone = build_backbone(cfg.backbone, stage)
    if mixed:
        backbone = float32_outputs(backbone)
        teacher = float32_outputs(teacher) if teacher is not None else None
    if cfg.train.sync_batchnorm:
        synchronize_batchnorm(backbone)
    # A method whose config depends on the batch it sees (CLD's groups) checks it here,
    # before the run directory is touched.
    check_batch_size = getattr(cfg.method, "check_batch_size", None)
    if check_batch_size is not None:
        check_batch_size(cfg.train.batch_size)
    kwargs = dict(accumulation_steps=cfg.optimizer.accumulation_steps, name=f"{cls.method_name}_stage{stage}")
    if cls.needs_index:
        kwargs["dataset_size"] = dataset_size(cfg)
    if cls.needs_teacher:
        return cls(teacher, backbone, cfg.method, **kwargs)
    return cls(backbone, cfg.method, **kwargs)


def fill_initial_bank(model: PretrainMethod, cfg: PretrainConfig) -> None:
    """A memory bank that must hold real features before the first step (NPID's
    ``bank_init: features``) gets one no-gradient pass of the initial network over the
    training images, unaugmented, in source order (row i = image i). Batches close to
    ``train.batch_size`` and of nearly equal size, so BatchNorm never sees a tiny last batch."""
    if not getattr(model, "fills_bank_from_images", False):
        return
    n = model.dataset_size
    batch = -(-n // -(-n // cfg.train.batch_size))  # n split into ceil(n / batch_size) near-equal batches
    images = eval_dataset(build_source(cfg), model.input_size, batch).map(lambda image, _: image)
    start = time.time()
    rows = model.fill_memory_bank(images)
    if cfg.train.verbose:
        print(f"memory bank: {rows} of {n} rows filled with the initial network's features "
              f"(method.bank_init=features) in {time.time() - start:.1f} s")


def build_training_optimizer(cfg: PretrainConfig, steps_per_epoch: int):
    """The configured optimizer; with ``train.mixed_precision`` wrapped in a dynamic
    LossScaleOptimizer (the step scales the loss, unscales the gradients, skips a step
    whose gradients overflow and lowers the scale)."""
    optimizer = build_optimizer(cfg.optimizer, steps_per_epoch, cfg.train.epochs)
    if cfg.train.mixed_precision:
        optimizer = tf.keras.mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer


def strategy_for(cfg: PretrainConfig) -> tf.distribute.Strategy:
    """``train.strategy`` as a strategy, checked against the global batch."""
    strategy = make_strategy(cfg.train.strategy, cfg.train.tpu)
    replicas = strategy.num_replicas_in_sync
    if cfg.train.batch_size % replicas:
        raise ConfigError(
            f"train.batch_size={cfg.train.batch_size} is the global batch and must divide evenly over "
            f"the {replicas} replicas of train.strategy={cfg.train.strategy}"
        )
    return strategy


def checkpoint_for(model: PretrainMethod, optimizer=None, epoch=None) -> tf.train.Checkpoint:
    """A checkpoint of what the method says it holds, plus the optimizer and epoch."""
    parts = model.checkpoint_parts()
    if optimizer is not None:
        parts["optimizer"] = optimizer
    if epoch is not None:
        parts["epoch"] = epoch
    return tf.train.Checkpoint(**parts)


def _check_previous_stage(previous_final: Path) -> None:
    if not tf.train.latest_checkpoint(str(previous_final)):
        raise RunDirError(
            f"stage 2 needs stage 1's result, but {previous_final} holds no final checkpoint; "
            "run --stage 1 first (or --stage all)"
        )


def init_from_previous_stage(model: PretrainMethod, cfg: PretrainConfig, previous_final: Path,
                             teacher=None) -> None:
    """Alg. 1 line 13: stage 2 starts from stage 1's final state (for BURN φ **and** θ)."""
    _check_previous_stage(previous_final)
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
    if stage == 2 and not resuming:
        _check_previous_stage(run_dir / "stage1" / "final")
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

    summary = lq_summary_text(model.backbone)
    atomic_write_text(stage_dir / "summary.txt", summary)
    if cfg.train.verbose:
        print(summary)

    saver = RunCheckpoints(checkpoint, stage_dir / "checkpoints", epoch_var,
                           every_steps=cfg.train.checkpoint_every_steps, max_to_keep=cfg.train.keep_checkpoints)
    model.log_dir = stage_dir  # per-step records (BURN: steps.jsonl) go beside the run's logs
    callbacks = [
        *model.callbacks(epochs * steps_per_epoch),
        StepScalarLogger(stage_dir),  # every method's per-step values: steps.jsonl, logs/steps
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
