"""Shared by the contrastive / momentum method tests: tiny backbones, real Fashion-MNIST
views, and the pretraining CLI at a tiny size."""

import json

import numpy as np
from method_helpers import tiny_reactnet

from burn_tf.data import AugmentConfig, fashion_mnist, multi_view_dataset
from burn_tf.models.resnet import resnet18
from burn_tf.pretrain import main

# Every shipped YAML at a tiny size through the CLI: 2 steps of 8 images per stage.
TINY_CLI = [
    "backbone.width_multiplier=0.125",
    "backbone.blocks=4",
    "train.batch_size=8",
    "train.steps_per_epoch=2",
    "train.epochs=1",
    "train.verbose=0",
    "train.run_eagerly=true",
    "data.limit=32",
    "data.shuffle_buffer=32",
    "optimizer.warmup_epochs=0",
]


def tiny_resnet18():
    return resnet18(input_shape=(32, 32, 3), small_input_stem=True)


def fashion_views(images=64, batch=16):
    """Two augmented views of the first ``images`` Fashion-MNIST training images."""
    return multi_view_dataset(
        fashion_mnist("train").take(images), [AugmentConfig(image_size=32)] * 2, batch, seed=0, cache=True
    )


def first_batch(images=16):
    return next(iter(fashion_views(images, images)))


def run_cli(config, run_dir, overrides, stage="1"):
    """``python -m burn_tf.pretrain`` in process; returns the last stage's metrics.json."""
    args = ["--config", config, "--run-dir", str(run_dir), "--stage", stage]
    for item in [*TINY_CLI, *overrides]:
        args += ["--set", item]
    assert main(args) == 0
    last = "2" if stage == "all" else stage
    return json.loads((run_dir / f"stage{last}" / "metrics.json").read_text())


def check_stage2_from_stage1(make, head_name):
    """Stage 2 built by ``make(backbone)`` from a trained stage 1: the head ``head_name``
    as is, every EMA target a copy of its (transferred) online network; returns stage 2."""
    stage1 = make(tiny_reactnet())
    stage1.train_on_batch(first_batch(16))
    stage2 = make(tiny_reactnet(stage=2))
    stage2.init_from_previous_stage(stage1)
    for a, b in zip(getattr(stage2, head_name).get_weights(), getattr(stage1, head_name).get_weights()):
        np.testing.assert_array_equal(a, b)
    for _, online, target in stage2.momentum_pairs:
        for a, b in zip(target.get_weights(), online.get_weights()):
            np.testing.assert_array_equal(a, b)
    return stage2
