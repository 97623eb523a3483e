"""InfoMin: MoCo v2 with InfoMin Aug's views (timm RandAugment in the data pipeline) and 1/16
of the queue's negatives."""

import numpy as np
import pytest
import tensorflow as tf
from contrastive_helpers import fashion_views, run_cli, tiny_reactnet
from method_helpers import view_pair

from burn_tf.config import load_config
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


def test_queue_holds_the_fraction_and_the_model_leaves_the_views_alone():
    model = make_infomin()
    assert model.queue.shape == (32, 8)
    v1, v2 = view_pair(8)
    # RandAugment belongs to the data pipeline (before the grey conversion, as PyContrast).
    assert model.augment_views([v1, v2], training=True)[0] is v1
    logs = model.train_on_batch((v1, v2), return_dict=True)
    assert np.isfinite(logs["info_nce"]) and int(model.queue_pointer.numpy()) == 8


def test_shipped_yaml_has_infomin_aug_and_a_momentum_that_moves():
    cfg = load_config("infomin", overrides=["backbone.input_size=48"])
    (view,) = cfg.views
    assert (view.randaugment_ops, view.randaugment_magnitude, view.randaugment_magnitude_std,
            view.randaugment_prob) == (2, 10.0, 0.5, 0.5)  # rand-n2-m10-mstd0.5, timm's p 0.5
    assert (view.brightness, view.contrast, view.saturation, view.hue, view.jitter_prob) == (0.8, 0.8, 0.8, 0.2, 0.8)
    assert view.blur_prob == (0.5, 0.5) and view.grayscale_prob == 0.2 and view.crop_scale == (0.2, 1.0)
    assert view.image_size == 48 and view.interpolation == "bilinear"
    assert (cfg.method.tau_start, cfg.method.tau_end) == (0.99, 0.999)  # solo-learn CIFAR MoCo v2+


def test_short_fit_on_fashion_mnist_lowers_the_loss(fashion_mnist_available):
    # As MoCo's: a queue of one batch, one warm-up epoch to replace the random initial queue.
    model = make_infomin(queue_size=512)
    views = fashion_views(64, 32)
    model.fit(views, epochs=1, verbose=0)
    losses = model.fit(views, epochs=4, verbose=0).history["loss"]
    assert losses[-1] < losses[0], losses


def test_pretrain_cli_runs_infomin_yaml(fashion_mnist_available, tmp_path):
    metrics = run_cli("infomin", tmp_path, ["method.queue_size=128", "method.projector_hidden=16"])
    assert metrics["method"] == "infomin" and np.isfinite(metrics["loss"])
