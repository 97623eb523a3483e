"""InfoMin: MoCo v2 with RandAugment on the views and 1/16 of the queue's negatives."""

import numpy as np
import pytest
import tensorflow as tf
from contrastive_helpers import fashion_views, first_batch, run_cli, tiny_reactnet

from burn_tf.methods import InfoMin, InfoMinConfig, MoCoV2, method_class
from burn_tf.schema import ConfigError


def make_infomin(**cfg):
    settings = dict(queue_size=512, negatives_fraction=1 / 16, projector_hidden=16, projector_dim=8)
    model = InfoMin(tiny_reactnet(), InfoMinConfig(**{**settings, **cfg}))
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-2), run_eagerly=True)
    return model


def test_registered_on_moco_v2_with_the_supplements_negatives():
    assert method_class("infomin") is InfoMin and issubclass(InfoMin, MoCoV2)
    cfg = InfoMinConfig()
    assert cfg.negatives_fraction == 1 / 16 and cfg.temperature == 0.15
    assert InfoMin.negatives_in_queue(cfg) == 65536 // 16
    with pytest.raises(ConfigError, match="method.negatives_fraction"):
        InfoMinConfig(queue_size=100, negatives_fraction=1 / 16)
    with pytest.raises(ConfigError, match="method.negatives_fraction"):
        InfoMinConfig(negatives_fraction=0)


def test_queue_holds_the_fraction_and_randaugment_changes_training_views_only():
    model = make_infomin()
    assert model.queue.shape == (32, 8)
    v1, v2 = first_batch(8)
    augmented = model.augment_views([v1, v2], training=True)
    assert all(float(tf.reduce_min(a)) >= 0 and float(tf.reduce_max(a)) <= 1 for a in augmented)
    assert not np.allclose(augmented[0].numpy(), v1.numpy())
    assert model.augment_views([v1, v2], training=False)[0] is v1
    logs = model.train_on_batch((v1, v2), return_dict=True)
    assert np.isfinite(logs["info_nce"]) and int(model.queue_pointer.numpy()) == 8


def test_short_fit_on_fashion_mnist_lowers_the_loss(fashion_mnist_available):
    # As MoCo's: a queue of one batch, one warm-up epoch to replace the random initial
    # queue; a milder RandAugment so 4 epochs show the trend.
    model = make_infomin(queue_size=512, randaugment_magnitude=0.3)
    views = fashion_views(64, 32)
    model.fit(views, epochs=1, verbose=0)
    losses = model.fit(views, epochs=4, verbose=0).history["loss"]
    assert losses[-1] < losses[0], losses


def test_pretrain_cli_runs_infomin_yaml(fashion_mnist_available, tmp_path):
    metrics = run_cli("infomin", tmp_path, ["method.queue_size=128", "method.projector_hidden=16"])
    assert metrics["method"] == "infomin" and np.isfinite(metrics["loss"])
