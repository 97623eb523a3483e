"""Images per second of the BURN train step on whatever devices TensorFlow sees.

    python benchmarks/burn_step.py [--json] [--strategy default|mirrored|multiworker|tpu]
        [--mixed-precision] [--jit-compile] [--batch-size N] [--input-size S] [--stage 1|2]
        [--config imagenet/burn_stage1] [--set key=value …] [--parts]

Default: the full-size step — ReActNet-A (width 1.0) + ResNet-50 teacher, MLP heads 2000-d,
two views — from ``imagenet/burn_stage1`` with random weights (speed does not depend on
them) on synthetic batches. ``--batch-size`` is the global batch (split over the
replicas); ``--input-size`` (student and teacher) defaults to the config's (224) on a
GPU/TPU and to 64 on a CPU (a 224-px full-size step takes minutes there). The timed function
is exactly what ``model.fit`` runs per step (``make_train_function``: per-replica forward and
backward, gradient all-reduce, Adam update). ``--parts`` also times the teacher forward and
a student step alone and prints burn_over_parts = step ÷ (teacher + student) (goal <= 1.10;
one device only).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tensorflow as tf
from _timing import interleaved_medians, load_average, time_step

from burn_tf.build import build_method, build_training_optimizer, strategy_for
from burn_tf.config import load_config
from burn_tf.distribute import STRATEGIES
from burn_tf.losses.distillation import feature_similarity


def accelerator() -> str:
    for kind in ("TPU", "GPU"):
        devices = tf.config.list_logical_devices(kind)
        if devices:
            return f"{len(devices)}x {kind}"
    return "CPU"


def train_step_function(cfg, strategy, batch: int, size: int, stage: int):
    """(model, step, images per step): ``step()`` runs what ``model.fit`` runs for one global
    batch of synthetic views under ``strategy``."""
    with strategy.scope():
        model = build_method(cfg, stage)
        model.compile(optimizer=build_training_optimizer(cfg, steps_per_epoch=1000),
                      jit_compile=cfg.train.jit_compile)
    data = tuple(tf.random.uniform((batch, size, size, 3), seed=i) for i in range(model.views_needed))
    iterator = iter(strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(data).repeat()))
    train_function = model.make_train_function()
    return model, (lambda: train_function(iterator)), batch * model.views_needed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--config", default="imagenet/burn_stage1")
    parser.add_argument("--stage", type=int, default=1)
    parser.add_argument("--strategy", choices=STRATEGIES, default="default")
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--jit-compile", action="store_true")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="global batch (default 8 per replica on CPU, 128 else)")
    parser.add_argument("--input-size", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--parts", action="store_true")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)

    device = accelerator()
    size = args.input_size
    if size is None and device == "CPU" and load_config(args.config).backbone.input_size > 64:
        size = 64  # a 224-px full-size step takes minutes on a CPU
    sizes = [f"backbone.input_size={size}", f"teacher.input_size={size}"] if size else []
    overrides = ["teacher.weights=null", *sizes, f"train.strategy={args.strategy}",
                 f"train.mixed_precision={str(args.mixed_precision).lower()}",
                 f"train.jit_compile={str(args.jit_compile).lower()}", *args.overrides]
    cfg = load_config(args.config, overrides)
    size = cfg.backbone.input_size
    strategy = strategy_for(cfg)
    replicas = strategy.num_replicas_in_sync
    batch = args.batch_size or (8 if device == "CPU" else 128) * replicas
    cfg = load_config(args.config, [*overrides, f"train.batch_size={batch}"])
    strategy = strategy_for(cfg)  # checks the batch divides over the replicas

    model, step, n_images = train_step_function(cfg, strategy, batch, size, args.stage)
    timing = time_step(step, (), repeats=args.repeats)
    result = {
        "images_per_s": round(n_images / timing["median_s"], 1),
        "step_ms": round(1000 * timing["median_s"], 1),
        "images_per_step": n_images,
        "global_batch": batch,
        "replicas": replicas,
        "device": device,
        "strategy": args.strategy,
        "mixed_precision": args.mixed_precision,
        "jit_compile": args.jit_compile,
        "input_size": size,
        "stage": args.stage,
        "teacher": cfg.teacher.kind,
        "student_width": cfg.backbone.width_multiplier,
        "load_average": load_average(),
    }

    if args.parts and replicas == 1:
        teacher_forward = tf.function(lambda x: model.teacher_features(x), jit_compile=args.jit_compile)
        student, head = model.student_backbone, model.student_classifier
        variables = student.trainable_variables + head.trainable_variables
        student_optimizer = tf.keras.optimizers.Adam(1e-4)
        student_optimizer.build(variables)
        images = tf.random.uniform((n_images, size, size, 3), seed=0)
        target = tf.random.normal((n_images, cfg.method.head_width), seed=2)

        @tf.function(jit_compile=args.jit_compile)
        def student_step(x):
            with tf.GradientTape() as tape:
                loss = feature_similarity(target, head(student(x, training=True), training=True))
            student_optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return loss

        t = interleaved_medians({"burn": step, "teacher": lambda: teacher_forward(images),
                                 "student": lambda: student_step(images)}, args.repeats)
        result.update({
            "burn_images_per_s": round(n_images / t["burn"], 1),
            "teacher_forward_images_per_s": round(n_images / t["teacher"], 1),
            "student_step_images_per_s": round(n_images / t["student"], 1),
            "burn_over_parts": round(t["burn"] / (t["teacher"] + t["student"]), 3),
        })

    print(f"BURN step  {result['images_per_s']:10.1f} img/s  ({result['step_ms']} ms, {n_images} images, "
          f"{replicas} replica(s) on {device}, {size} px, mixed={args.mixed_precision}, xla={args.jit_compile})")
    if "burn_over_parts" in result:
        print(f"teacher forward {result['teacher_forward_images_per_s']} img/s, student step "
              f"{result['student_step_images_per_s']} img/s, burn_over_parts {result['burn_over_parts']}")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
