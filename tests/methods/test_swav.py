"""SwAV: multi-crop views, unit prototypes frozen at first, the queue, a short fit, stage 2
and the shipped YAML through the CLI."""

import json

import numpy as np
import pytest
import tensorflow as tf
from method_helpers import changed, snapshot, tiny_reactnet, view_pair
from test_base import small_backbone
from test_npid import run_cli

from burn_tf.build import checkpoint_for
from burn_tf.config import load_config
from burn_tf.data import AugmentConfig, fashion_mnist, multi_view_dataset
from burn_tf.methods import SwAV, SwAVConfig, method_class
from burn_tf.ops import targets

SMALL = 16


def make_swav(stage=1, reactnet=True, **cfg):
    """SwAV on ReActNet-A (stage 1 or 2), or on a small FP CNN where the backbone does not
    matter (building a ReActNet takes seconds)."""
    backbone = tiny_reactnet(stage) if reactnet \
        else small_backbone()
    settings = dict(projection_hidden=32, projection_dim=16, num_prototypes=12, freeze_prototypes_steps=0,
                    queue_size=0, queue_start_step=0, small_crops=1, small_crop_size=SMALL)
    model = SwAV(backbone, SwAVConfig(**{**settings, **cfg}))
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-2), run_eagerly=True)
    return model


def crops(n=8, small_crops=1, seed=0):
    v1, v2 = view_pair(n, seed)
    return (v1, v2, *[tf.image.resize(v1, (SMALL, SMALL)) for _ in range(small_crops)])


def test_registered_with_multi_crop_views():
    assert method_class("swav") is SwAV and SwAV.Config is SwAVConfig
    assert SwAV.num_views_for(SwAVConfig(small_crops=6)) == 8  # swav: 2 × 224 + 6 × 96
    model = make_swav(small_crops=2, reactnet=False)
    assert model.view_sizes() == [32, 32, SMALL, SMALL]
    model.config.small_crop_size = 0  # default: swav's 96/224 of the input size
    assert model.small_crop_size == 14


def test_shipped_views_follow_the_student_and_small_crop_size_with_swavs_colour():
    sizes = lambda cfg: [v.image_size for v in cfg.view_configs()]  # noqa: E731
    assert sizes(load_config("swav")) == [32, 32] + [16] * 6  # swav --nmb_crops 2 6
    # One override resizes the small crops (swav: 96 beside 224); the large ones follow the student.
    cfg = load_config("swav", overrides=["backbone.input_size=48", "method.small_crop_size=24"])
    assert sizes(cfg) == [48, 48] + [24] * 6
    assert SwAV.view_sizes_for(cfg.method, 48) == sizes(cfg)
    auto = load_config("swav", overrides=["backbone.input_size=48", "method.small_crop_size=0"])
    assert sizes(auto) == [48, 48] + [21] * 6  # 96/224 of 48
    # swav get_color_distortion(s=1.0): jitter (0.8, 0.8, 0.8, 0.2) with p 0.8, grayscale 0.2.
    for view in cfg.views:
        assert (view.brightness, view.contrast, view.saturation, view.hue) == (0.8, 0.8, 0.8, 0.2)
        assert (view.jitter_prob, view.grayscale_prob, view.blur_prob) == (0.8, 0.2, (0.5, 0.5))


def test_loss_is_swapped_prediction_on_the_large_crops_sinkhorn_codes():
    model = make_swav(temperature=0.1, reactnet=False)
    views = crops()
    terms = model.compute_losses(list(views), None, training=False)
    embedded = model.embed(list(views), training=False)
    scores = [tf.matmul(z, model.prototype_kernel) for z in embedded]
    codes = [targets.sinkhorn_log_assignment(s, 0.05, 3) for s in scores[:2]]
    manual = 0.0
    for i in range(2):
        for v in range(3):
            if v != i:
                log_p = tf.nn.log_softmax(scores[v] / 0.1)
                manual += -tf.reduce_mean(tf.reduce_sum(tf.exp(codes[i]) * log_p, axis=1))
    assert float(terms["swapped_prediction"]) == pytest.approx(float(manual) / 4, rel=1e-5)


def test_prototypes_stay_frozen_then_move_and_stay_unit():
    model = make_swav(freeze_prototypes_steps=1, reactnet=False)
    prototypes = snapshot(model.prototypes.weights)
    backbone = snapshot(model.backbone.trainable_variables)
    logs = model.train_on_batch(crops(), return_dict=True)
    # Step 0: frozen — no gradient; only the renormalisation's rounding touches them.
    assert logs["grad_norm_prototypes"] == 0.0
    np.testing.assert_allclose(model.prototype_kernel.numpy(), prototypes[0], atol=1e-6)
    assert changed(backbone, model.backbone.trainable_variables)
    logs = model.train_on_batch(crops(), return_dict=True)
    assert logs["grad_norm_prototypes"] > 0 and np.abs(model.prototype_kernel.numpy() - prototypes[0]).max() > 1e-3
    np.testing.assert_allclose(np.linalg.norm(model.prototype_kernel.numpy(), axis=0), 1.0, rtol=1e-5)


def test_queue_fills_from_its_start_step_and_is_used_once_full():
    model = make_swav(queue_size=16, queue_start_step=1, reactnet=False)
    model.train_on_batch(crops())
    assert int(model.queue_filled.numpy()) == 0 and not np.any(model.queue.numpy())  # before its start
    model.train_on_batch(crops())
    assert int(model.queue_filled.numpy()) == 8 and not bool(model.queue_in_use())
    # The features this step pushes (training mode: the batch's own BatchNorm statistics).
    embedded = model.embed(list(crops()), training=True)
    model.train_on_batch(crops())
    assert bool(model.queue_in_use()) and int(model.queue_filled.numpy()) == 16
    # Newest first: this batch's large-crop features head each view's queue.
    for i in range(2):
        np.testing.assert_allclose(model.queue.numpy()[i, :8], embedded[i].numpy(), atol=1e-5)


def test_short_fit_on_fashion_mnist_lowers_the_loss(fashion_mnist_available):
    model = make_swav(queue_size=64, queue_start_step=2, freeze_prototypes_steps=2)
    large = AugmentConfig(image_size=32, crop_scale=(0.14, 1.0))
    small = AugmentConfig(image_size=SMALL, crop_scale=(0.05, 0.14))
    ds = multi_view_dataset(fashion_mnist("train").take(96), [large, large, small], 32, seed=0, cache=True)
    history = model.fit(ds, epochs=4, verbose=0).history
    assert history["loss"][-1] < 0.9 * history["loss"][0]


def test_stage_two_continues_stage_ones_run_no_second_freeze_and_its_queue():
    # swav's one run split in two: stage 1 ran past the freeze (2 steps) and filled the queue.
    schedule = dict(freeze_prototypes_steps=2, queue_size=16, queue_start_step=1)
    first = make_swav(**schedule)
    for _ in range(3):
        first.train_on_batch(crops())
    assert bool(first.queue_in_use())
    second = make_swav(stage=2, **schedule)
    second.init_from_previous_stage(first)
    np.testing.assert_array_equal(second.prototype_kernel.numpy(), first.prototype_kernel.numpy())
    np.testing.assert_array_equal(second.queue.numpy(), first.queue.numpy())
    assert int(second.queue_filled.numpy()) == 16 and int(second.run_step()) == 3
    logs = second.train_on_batch(crops(), return_dict=True)
    # Stage 2's first step: the prototypes learn (no second freeze), Sinkhorn uses the queue.
    assert np.isfinite(logs["loss"]) and logs["grad_norm_prototypes"] > 0
    assert logs["queue_in_use"] == 1.0


def test_resume_in_stage_two_continues_the_runs_freeze_exactly(tmp_path):
    # The freeze (4 steps) outlasts stage 1 (3 steps): stage 2's step 0 is run step 3, still
    # frozen; its step 1 (run step 4) is not — also after a resume from a checkpoint in between.
    schedule = dict(freeze_prototypes_steps=4, queue_size=16, queue_start_step=2)
    first = make_swav(**schedule)
    for _ in range(3):
        first.train_on_batch(crops())
    second = make_swav(stage=2, **schedule)
    second.init_from_previous_stage(first)
    assert second.train_on_batch(crops(), return_dict=True)["grad_norm_prototypes"] == 0.0
    path = checkpoint_for(second, second.optimizer).save(str(tmp_path / "ckpt"))
    uninterrupted = second.train_on_batch(crops(seed=1), return_dict=True)
    resumed = make_swav(stage=2, **schedule)
    checkpoint_for(resumed, resumed.optimizer).restore(path).assert_existing_objects_matched()
    logs = resumed.train_on_batch(crops(seed=1), return_dict=True)
    assert logs["grad_norm_prototypes"] > 0 and int(resumed.run_step()) == 5
    assert logs["loss_step"] == pytest.approx(uninterrupted["loss_step"], rel=1e-6)
    for ours, theirs in zip(snapshot(resumed.weights), snapshot(second.weights)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(resumed.queue.numpy(), second.queue.numpy())


def test_cli_runs_the_shipped_yaml(tmp_path, fashion_mnist_available):
    assert run_cli("swav", tmp_path / "run", "--set", "method.num_prototypes=8", "--set", "method.queue_size=32",
                   "--set", "method.queue_start_step=1", "--set", "method.projection_hidden=32") == 0
    metrics = json.loads((tmp_path / "run" / "stage1" / "metrics.json").read_text())
    assert metrics["method"] == "swav" and metrics["global_step"] == 4 and np.isfinite(metrics["loss"])


# Two replicas against one device (Sinkhorn on the global batch, the gathered queue): in
# tests/test_distributed.py (test_swav_two_replicas_compute_sinkhorn_on_the_global_batch), which
# runs every two-replica case in one process.
