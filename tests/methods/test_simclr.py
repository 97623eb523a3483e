"""SimCLR v2: the loss on both views of the batch, the 3-layer head, training, the CLI.
(Two replicas vs one device: tests/methods/test_moco.py, which runs both methods.)"""

import json

import numpy as np
import pytest
import tensorflow as tf
from contrastive_helpers import fashion_views, run_cli, tiny_reactnet
from method_helpers import view_pair

from burn_tf.losses import contrastive
from burn_tf.methods import SimCLRV2, SimCLRV2Config, method_class
from burn_tf.schema import ConfigError


def make_simclr(**cfg):
    model = SimCLRV2(tiny_reactnet(), SimCLRV2Config(**{**dict(projector_hidden=16, projector_dim=8), **cfg}))
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-2), run_eagerly=True)
    return model


def test_registered_with_simclr_v2_defaults():
    assert method_class("simclr_v2") is SimCLRV2
    cfg = SimCLRV2Config()
    assert (cfg.temperature, cfg.projector_layers, cfg.projector_dim) == (0.1, 3, 128)
    with pytest.raises(ConfigError, match="method.projector_layers"):
        SimCLRV2Config(projector_layers=0)


def test_loss_is_nt_xent_of_both_views_projected_together():
    model = make_simclr(temperature=0.5)
    v1, v2 = view_pair(8)  # the loss's algebra does not depend on the images
    terms = model.compute_losses([v1, v2], training=False)
    z = model.projector(model.backbone(tf.concat([v1, v2], 0), training=False), training=False)
    # nt_xent itself is checked against NumPy in tests/losses/test_contrastive.py.
    assert float(terms["nt_xent"]) == pytest.approx(float(contrastive.nt_xent(z[:8], z[8:], temperature=0.5)),
                                                    rel=1e-5)
    # Three Linear layers, each followed by BatchNorm (the last without β).
    dense = [layer for layer in model.projector.layers if isinstance(layer, tf.keras.layers.Dense)]
    norms = [layer for layer in model.projector.layers if isinstance(layer, tf.keras.layers.BatchNormalization)]
    assert len(dense) == 3 and len(norms) == 3 and not norms[-1].center


def test_short_fit_on_fashion_mnist_lowers_the_loss(fashion_mnist_available):
    model = make_simclr()
    history = model.fit(fashion_views(64, 32), epochs=4, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0], losses


def test_pretrain_cli_runs_simclr_v2_yaml(fashion_mnist_available, tmp_path):
    metrics = run_cli("simclr_v2", tmp_path, ["method.projector_hidden=16"])
    assert metrics["method"] == "simclr_v2" and np.isfinite(metrics["loss"])
    # Pretraining logs every method's per-step values, not only BURN's.
    steps = [json.loads(line) for line in (tmp_path / "stage1" / "steps.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps] == [1, 2]
    assert all(np.isfinite(r["nt_xent"]) and np.isfinite(r["grad_norm_projector"]) for r in steps)
    assert (tmp_path / "stage1" / "logs" / "steps").is_dir()
