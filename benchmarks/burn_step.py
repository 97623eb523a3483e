"""Is the BURN step just its parts? (issue: BURN pretraining)

    python benchmarks/burn_step.py [--json] [--config configs/demo.yaml] [--set key=value …]

Times, in one run and on the same batch: the full BURN train step; the teacher forward
alone; a student train step alone (ReActNet-A + its head, forward, backward, Adam update).
Prints images/s of each and burn_over_parts = step time ÷ (teacher + student times).
Goal <= 1.10. Weights are random (speed does not depend on them).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tensorflow as tf  # noqa: E402
from _timing import load_average, time_step  # noqa: E402

from burn_tf.config import load_config  # noqa: E402
from burn_tf.losses import feature_similarity  # noqa: E402
from burn_tf.pretrain import build_burn  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"))
    parser.add_argument("--stage", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    cfg = load_config(args.config, ["teacher.weights=null", *args.overrides])

    model = build_burn(cfg, args.stage)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-4))
    model.build_all()
    b, s = cfg.train.batch_size, cfg.student.input_size
    view1 = tf.random.uniform((b, s, s, 3), seed=0)
    view2 = tf.random.uniform((b, s, s, 3), seed=1)
    data = (view1, view2) if cfg.method.symmetric else view1
    images = tf.concat([view1, view2], 0) if cfg.method.symmetric else view1
    n_images = int(images.shape[0])

    burn_step = tf.function(model.train_step)
    teacher_forward = tf.function(lambda x: model.teacher_features(x))

    student, head = model.student_backbone, model.student_classifier
    variables = student.trainable_variables + head.trainable_variables
    student_optimizer = tf.keras.optimizers.Adam(1e-4)
    student_optimizer.build(variables)
    target = tf.random.normal((n_images, cfg.method.head_width), seed=2)

    @tf.function
    def student_step(x):
        with tf.GradientTape() as tape:
            loss = feature_similarity(target, head(student(x, training=True), training=True))
        student_optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    # Interleave the three measurements so a burst of other load hits them alike.
    times = {"burn": [], "teacher": [], "student": []}
    for _ in range(3):
        times["burn"].append(time_step(burn_step, (data,), repeats=args.repeats)["median_s"])
        times["teacher"].append(time_step(teacher_forward, (images,), repeats=args.repeats)["median_s"])
        times["student"].append(time_step(student_step, (images,), repeats=args.repeats)["median_s"])
    t = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    ratio = t["burn"] / (t["teacher"] + t["student"])
    result = {
        "images_per_step": n_images,
        "burn_images_per_s": round(n_images / t["burn"], 1),
        "teacher_forward_images_per_s": round(n_images / t["teacher"], 1),
        "student_step_images_per_s": round(n_images / t["student"], 1),
        "burn_over_parts": round(ratio, 3),
        "teacher": cfg.teacher.kind, "student_width": cfg.student.width_multiplier,
        "student_input_size": s, "symmetric": cfg.method.symmetric, "stage": args.stage,
        "load_average": load_average(),
    }
    print(f"BURN step        {result['burn_images_per_s']:8.1f} img/s")
    print(f"teacher forward  {result['teacher_forward_images_per_s']:8.1f} img/s")
    print(f"student step     {result['student_step_images_per_s']:8.1f} img/s")
    print(f"burn_over_parts  {ratio:.3f}  (goal <= 1.10)")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
