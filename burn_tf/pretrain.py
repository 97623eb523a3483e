"""BURN pretraining, stage 1 (binary activations) and stage 2 (binary weights too).

CLI (a thin layer over :func:`pretrain`)::

    python -m burn_tf.pretrain --config configs/demo.yaml --stage all --run-dir runs/demo
    python -m burn_tf.pretrain --config configs/imagenet/burn_stage2.yaml --stage 2 \\
        --run-dir runs/imagenet --set train.batch_size=1024

Run directory::

    <run>/config.yaml                 resolved config of the latest stage run
    <run>/stage{1,2}/config.yaml      resolved config of that stage
                    checkpoints/      one TF checkpoint per epoch (model, optimizer, step)
                    final/            the stage's final weights (read by stage 2)
                    logs/             TensorBoard (per-step scalars)
                    history.jsonl     one JSON line per epoch
                    metrics.json      final metrics, time, steps
                    summary.txt       lq.models.summary of the student
                    backbone/         exported student backbone (+ classifier.keras)
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
from burn_tf.callbacks import CheckpointEveryEpoch, JsonLinesLogger, LambdaScheduler
from burn_tf.config import ConfigError, PretrainConfig, load_config
from burn_tf.io import atomic_write_json, atomic_write_text
from burn_tf.methods.burn import BURN
from burn_tf.models.reactnet import reactnet_a, transfer_stage1_to_stage2
from burn_tf.optim import build_optimizer


class RunDirError(RuntimeError):
    """The run directory is in a state the request cannot proceed from."""


# ---------------------------------------------------------------------------- builders
def build_source(cfg: PretrainConfig) -> tf.data.Dataset:
    from burn_tf.data import source_from_config

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
    """Two-view batches, repeated; returns (dataset, steps per epoch)."""
    from burn_tf.data import AugmentConfig, two_view_dataset

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
    aug = AugmentConfig(
        image_size=cfg.student.input_size,
        crop_scale=cfg.data.crop_scale,
        jitter_prob=cfg.data.jitter_prob,
        grayscale_prob=cfg.data.grayscale_prob,
        blur_prob=cfg.data.blur_prob,
        solarize_prob=cfg.data.solarize_prob,
    )
    ds = two_view_dataset(
        source, aug, cfg.train.batch_size, seed=cfg.train.seed, shuffle_buffer=cfg.data.shuffle_buffer,
        drop_remainder=True, repeat=True, cache=cfg.data.source == "fashion_mnist",
    )
    return ds, steps


def build_teacher_from_config(cfg: PretrainConfig) -> tf.keras.Model:
    from burn_tf.models.teacher import build_teacher

    size = cfg.teacher.input_size or cfg.student.input_size
    return build_teacher(
        cfg.teacher.kind, cfg.teacher.weights, (size, size, 3), small_input_stem=cfg.teacher.small_input_stem
    )


def build_burn(cfg: PretrainConfig, stage: int, teacher: tf.keras.Model | None = None) -> BURN:
    """The BURN model of ``stage`` (student binarized accordingly), not compiled."""
    student = reactnet_a(dataclasses.replace(cfg.student, stage=stage), name="student_backbone")
    teacher = teacher if teacher is not None else build_teacher_from_config(cfg)
    return BURN(teacher, student, cfg.method, accumulation_steps=cfg.optimizer.accumulation_steps,
                name=f"burn_stage{stage}")


def checkpoint_for(model: BURN, optimizer=None, epoch=None) -> tf.train.Checkpoint:
    parts = {"student_backbone": model.student_backbone, "student_classifier": model.student_classifier,
             "teacher_classifier": model.teacher_classifier, "global_step": model.global_step}
    if model.student_projection is not None:
        parts["student_projection"] = model.student_projection
    if optimizer is not None:
        parts["optimizer"] = optimizer
    if epoch is not None:
        parts["epoch"] = epoch
    return tf.train.Checkpoint(**parts)


def init_stage2_from_stage1(stage2: BURN, cfg: PretrainConfig, stage1_final: Path, teacher) -> None:
    """Alg. 1 line 13: stage 2 starts from stage 1's φ (backbone and head) **and** θ."""
    if not tf.train.latest_checkpoint(str(stage1_final)):
        raise RunDirError(
            f"stage 2 needs stage 1's result, but {stage1_final} holds no final checkpoint; "
            "run --stage 1 first (or --stage all)"
        )
    stage1 = build_burn(cfg, stage=1, teacher=teacher)
    stage1.build_all()
    checkpoint_for(stage1).restore(tf.train.latest_checkpoint(str(stage1_final))).expect_partial()
    stage2.build_all()
    transfer_stage1_to_stage2(stage1.student_backbone, stage2.student_backbone)
    stage2.student_classifier.set_weights(stage1.student_classifier.get_weights())
    stage2.teacher_classifier.set_weights(stage1.teacher_classifier.get_weights())
    if stage2.student_projection is not None:
        stage2.student_projection.set_weights(stage1.student_projection.get_weights())


def lq_summary_text(model: tf.keras.Model) -> str:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        lq.models.summary(model)
    return buffer.getvalue()


# ---------------------------------------------------------------------------- one stage
def _prepare_stage_dir(stage_dir: Path, resume: bool, overwrite: bool) -> bool:
    """Returns True when an existing checkpoint should be resumed."""
    has_checkpoint = tf.train.latest_checkpoint(str(stage_dir / "checkpoints")) is not None
    if resume:
        if not has_checkpoint:
            raise RunDirError(f"--resume: {stage_dir / 'checkpoints'} has no checkpoint to resume from")
        return True
    if stage_dir.exists() and any(stage_dir.iterdir()):
        if not overwrite:
            raise RunDirError(
                f"{stage_dir} already holds a run; pass --resume to continue it or --overwrite "
                "to replace it"
            )
        shutil.rmtree(stage_dir)
    return False


def pretrain_stage(
    cfg: PretrainConfig,
    stage: int,
    run_dir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    extra_callbacks: list | None = None,
) -> dict:
    """Runs one BURN stage in ``run_dir``; returns its final metrics."""
    run_dir = Path(run_dir)
    stage_dir = run_dir / f"stage{stage}"
    resuming = _prepare_stage_dir(stage_dir, resume, overwrite)
    stage_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(stage_dir / "config.yaml", cfg.to_yaml())
    atomic_write_text(run_dir / "config.yaml", cfg.to_yaml())
    tf.keras.utils.set_random_seed(cfg.train.seed + stage)

    dataset, steps_per_epoch = build_train_dataset(cfg)
    epochs = cfg.train.epochs
    teacher = build_teacher_from_config(cfg)
    model = build_burn(cfg, stage, teacher)
    optimizer = build_optimizer(cfg.optimizer, steps_per_epoch, epochs)
    model.compile(optimizer=optimizer, jit_compile=cfg.train.jit_compile, run_eagerly=cfg.train.run_eagerly)
    model.build_all()

    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    checkpoint = checkpoint_for(model, optimizer, epoch_var)
    if resuming:
        latest = tf.train.latest_checkpoint(str(stage_dir / "checkpoints"))
        checkpoint.restore(latest).assert_existing_objects_matched()
        print(f"resumed {latest}: epoch {int(epoch_var.numpy())}, step {int(model.global_step.numpy())}")
    elif stage == 2:
        init_stage2_from_stage1(model, cfg, run_dir / "stage1" / "final", teacher)

    summary = lq_summary_text(model.student_backbone)
    atomic_write_text(stage_dir / "summary.txt", summary)
    if cfg.train.verbose:
        print(summary)

    saver = CheckpointEveryEpoch(checkpoint, stage_dir / "checkpoints", epoch_var)
    callbacks = [
        LambdaScheduler(epochs * steps_per_epoch, cfg.method.lambda_start, cfg.method.lambda_end,
                        cfg.method.lambda_schedule),
        saver,
        JsonLinesLogger(stage_dir / "history.jsonl"),
        tf.keras.callbacks.TensorBoard(str(stage_dir / "logs"), update_freq=max(steps_per_epoch // 10, 1),
                                       profile_batch=0),
        *(extra_callbacks or []),
    ]
    initial_epoch = int(epoch_var.numpy())
    start = time.time()
    history = model.fit(
        dataset, epochs=epochs, initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch,
        callbacks=callbacks, verbose=cfg.train.verbose,
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
        "stage": stage,
        "epochs": epochs,
        "steps_per_epoch": steps_per_epoch,
        "global_step": int(model.global_step.numpy()),
        "train_seconds": round(seconds, 1),
        "config_hash": cfg.hash(),
        **last,
    }
    atomic_write_json(stage_dir / "metrics.json", metrics)
    backbone_dir = save_backbone(
        model.student_backbone, stage_dir / "backbone",
        {"method": "burn", "stage": stage, "config_hash": cfg.hash(), "metrics": last,
         "teacher": dataclasses.asdict(cfg.teacher), "data": cfg.data.source},
        overwrite=True,
    )
    model.student_classifier.save(backbone_dir / "classifier.keras")
    return metrics


def pretrain(
    cfg: PretrainConfig,
    run_dir: str | Path,
    stage: str | int = "all",
    resume: bool = False,
    overwrite: bool = False,
) -> dict:
    """Runs stage 1, stage 2 or both; returns {stage: metrics}."""
    stages = {"1": [1], "2": [2], "all": [1, 2]}.get(str(stage))
    if stages is None:
        raise ValueError(f"stage must be 1, 2 or all, got {stage!r}")
    results = {}
    for s in stages:
        stage_resume = resume
        if resume and s == 1 and len(stages) == 2 and (Path(run_dir) / "stage1" / "final").exists():
            continue  # stage 1 finished before the interruption
        if resume and s == 2 and len(stages) == 2 and not (Path(run_dir) / "stage2" / "checkpoints").exists():
            stage_resume = False  # the interruption came before stage 2 began
        results[s] = pretrain_stage(cfg, s, run_dir, resume=stage_resume, overwrite=overwrite)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m burn_tf.pretrain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config (keys mirror burn_tf.config dataclasses)")
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
    except (RunDirError, ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({f"stage{k}": v for k, v in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
