"""Does the two-view pipeline keep a ReActNet-A train step fed? (issue: foundation)

    python benchmarks/pipeline.py [--json] [--batch-size 64] [--seconds 10]

Measures, in one run: augmented images/s of the two-view pipeline (BURN's recipe on
Fashion-MNIST train) and images/s of a full-width ReActNet-A stage-2 train step (cross
entropy on a 10-way head, Adam) at 32 and 64 px. Prints the ratios; goal >= 3x.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tensorflow as tf
from _timing import load_average, time_step

from burn_tf.data.source_fashion_mnist import fashion_mnist
from burn_tf.data.throughput import two_view_throughput
from burn_tf.models.reactnet import ReActNetConfig, reactnet_a


def train_step_images_per_s(size: int, batch_size: int, width: float) -> float:
    model = reactnet_a(ReActNetConfig(stage=2, input_size=size, width_multiplier=width),
                       include_top=True, num_classes=10)
    optimizer = tf.keras.optimizers.Adam(1e-3)
    x = tf.random.uniform((batch_size, size, size, 3), seed=0)
    y = tf.random.uniform((batch_size,), 0, 10, tf.int32, seed=1)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    timing = time_step(step, (x, y), repeats=5)
    return batch_size / timing["median_s"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    args = parser.parse_args(argv)

    source = fashion_mnist("train")
    result = {"batch_size": args.batch_size, "width_multiplier": args.width,
              "load_average_start": load_average()}
    for size in args.sizes:
        pipe = two_view_throughput(size, 256, args.seconds, source=source)
        step = train_step_images_per_s(size, args.batch_size, args.width)
        ratio = pipe["views_per_s"] / step
        result[f"pipeline_images_per_s_{size}"] = round(pipe["views_per_s"], 1)
        result[f"step_images_per_s_{size}"] = round(step, 1)
        result[f"pipeline_over_step_{size}"] = round(ratio, 2)
        print(f"{size:3d} px: pipeline {pipe['views_per_s']:8.0f} augmented img/s | "
              f"ReActNet-A stage-2 train step {step:7.1f} img/s | ratio {ratio:6.1f}x (goal >= 3)",
              flush=True)
    result["load_average_end"] = load_average()
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
