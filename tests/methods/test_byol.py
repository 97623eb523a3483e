"""BYOL: the symmetric 2 − 2cos loss through the predictor, an EMA target without a
predictor, stages, an FP ResNet-18, training, the CLI."""

import numpy as np
import pytest
import tensorflow as tf
from contrastive_helpers import check_stage2_from_stage1, fashion_views, run_cli, tiny_reactnet
from method_helpers import snapshot, view_pair

from burn_tf.callbacks import ScheduledValue
from burn_tf.losses import contrastive
from burn_tf.methods import BYOL, BYOLConfig, method_class


def make_byol(backbone=None, lr=1e-2, **cfg):
    settings = dict(projector_hidden=16, projector_dim=8, predictor_hidden=16)
    model = BYOL(backbone or tiny_reactnet(), BYOLConfig(**{**settings, **cfg}))
    model.compile(optimizer=tf.keras.optimizers.Adam(lr), run_eagerly=True)
    return model


def test_registered_with_a_cosine_tau_from_099_to_1():
    assert method_class("byol") is BYOL
    model = make_byol()
    tau = model.callbacks(10)[0]
    assert isinstance(tau, ScheduledValue) and tau.variable is model.tau and tau.name == "tau"
    assert (model.config.tau_start, model.config.tau_end) == (0.99, 1.0)
    # Targets for the backbone and projector only: the predictor is online only.
    assert [key for key, _, _ in model.momentum_pairs] == ["momentum_backbone", "momentum_projector"]


def test_loss_is_symmetric_two_minus_two_cosine_against_the_target():
    model = make_byol()
    v1, v2 = view_pair(8)  # the loss's algebra does not depend on the images

    def online(v):
        return model.predictor(model.projector(model.backbone(v, training=True), training=True), training=True)

    def target(v):
        return model.momentum_projector(model.momentum_backbone(v, training=True), training=True)

    expected = contrastive.byol_loss(online(v1), target(v2)) + contrastive.byol_loss(online(v2), target(v1))
    terms = model.compute_losses([v1, v2], training=True)
    assert float(terms["regression"]) == pytest.approx(float(expected), rel=1e-4)


def test_step_trains_online_networks_and_moves_the_target_by_ema_only():
    model = make_byol(tau_start=0.5, tau_end=0.5)
    target = snapshot(model.momentum_projector.trainable_variables or
                      [w for w in model.momentum_projector.weights if "moving" not in w.name])
    predictor = snapshot(model.predictor.trainable_variables)
    model.train_on_batch(view_pair(16))
    assert any(not np.array_equal(a, b.numpy()) for a, b in zip(predictor, model.predictor.trainable_variables))
    online = [w for w in model.projector.weights if "moving" not in w.name]
    after = [w for w in model.momentum_projector.weights if "moving" not in w.name]
    for old, w_target, w_online in zip(target, after, online):
        np.testing.assert_allclose(w_target.numpy(), 0.5 * old + 0.5 * w_online.numpy(), rtol=1e-5, atol=1e-6)


def test_stage2_restarts_the_target_from_the_transferred_online_networks():
    check_stage2_from_stage1(make_byol, "predictor")


def test_short_fit_on_fashion_mnist_lowers_the_loss(fashion_mnist_available):
    model = make_byol()
    history = model.fit(fashion_views(64, 32), epochs=4, verbose=0, callbacks=model.callbacks(8))
    losses = history.history["loss"]
    assert losses[-1] < losses[0], losses


def test_pretrain_cli_runs_byol_yaml_on_a_full_precision_resnet18(fashion_mnist_available, tmp_path):
    # The demo teacher's setting: BYOL on an FP ResNet-18 with the small-input stem (32 px),
    # one stage; it trains, and its loss is BYOL's: two terms of 2 − 2cos, each in [0, 4].
    metrics = run_cli("byol", tmp_path, ["backbone.kind=resnet18", "backbone.small_input_stem=true",
                                         "method.projector_hidden=16", "method.predictor_hidden=16"])
    assert metrics["method"] == "byol" and np.isfinite(metrics["loss"])
    assert metrics["global_step"] == 2 and 0 <= metrics["regression"] <= 8, metrics
    assert (tmp_path / "stage1" / "backbone").is_dir()
