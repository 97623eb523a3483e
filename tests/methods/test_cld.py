"""CLD on NPID and on MoCo v2: the variant chosen by ``instance``, the cross-level group
loss on the other view's groups, a short fit, stage 2 and both shipped YAMLs."""

import json

import numpy as np
import pytest
import tensorflow as tf
from method_helpers import tiny_reactnet, view_pair
from test_base import small_backbone
from test_npid import run_cli

from burn_tf.config import ConfigError, load_config
from burn_tf.data import AugmentConfig, fashion_mnist, multi_view_dataset
from burn_tf.losses import contrastive
from burn_tf.methods import CLD, CLDConfig, CLDOnMoCo, CLDOnNPID, method_class
from burn_tf.models.heads import CosineDense
from burn_tf.ops import clustering, memory

INDEX = tf.constant([0, 1, 2, 3, 4, 5, 6, 7], tf.int64)


def make_cld(stage=1, reactnet=True, dataset_size=40, **cfg):
    """CLD on ReActNet-A (stage 1 or 2), or on a small FP CNN where the backbone does not
    matter (building a ReActNet takes seconds)."""
    backbone = tiny_reactnet(stage) if reactnet \
        else small_backbone()
    settings = dict(num_groups=3, group_dim=8, projection_dim=8, negatives=16, queue_size=32, projector_hidden=16)
    model = CLD(backbone, CLDConfig(**{**settings, **cfg}), dataset_size=dataset_size)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-2), run_eagerly=True)
    return model


def view_triple(n=8):
    v1, v2 = view_pair(n)
    return v1, v2, tf.reverse(v1, axis=[2])


def test_registered_and_built_by_instance_branch():
    assert method_class("cld") is CLD and CLD.Config is CLDConfig and CLD.needs_index and CLD.num_views == 2
    npid, moco = make_cld(reactnet=False), make_cld(instance="moco", reactnet=False)
    assert type(npid) is CLDOnNPID and type(moco) is CLDOnMoCo
    assert npid.method_name == moco.method_name == "cld" and npid.views_needed == 2
    # Each branch's CIFAR script: NPID --nce-t 0.1 --Lambda 1.0; MoCo --three-imgs --nce-t 0.07
    # --Lambda 0.8 --nce-k 12288 --normlinear.
    assert moco.views_needed == CLD.num_views_for(moco.config) == 3
    assert (npid.config.temperature, npid.config.group_weight) == (0.1, 1.0)
    assert (moco.config.temperature, moco.config.group_weight) == (0.07, 0.8)
    assert CLDConfig(instance="moco").queue_size == 12288 and moco.config.projection_head == "cosine"
    assert any(isinstance(layer, CosineDense) for layer in moco.projector.layers)
    assert any(isinstance(layer, CosineDense) for layer in moco.group_projector.layers)
    assert make_cld(instance="moco", query_views=1, reactnet=False).views_needed == 2
    assert "group_projector" in npid.trainable_groups() and "group_projector" in moco.checkpoint_modules()


def test_bad_keys_are_named():
    with pytest.raises(ConfigError, match="method.grouping"):
        CLDConfig(grouping="dbscan")
    with pytest.raises(ConfigError, match="method.instance"):
        CLDConfig(instance="simclr")
    with pytest.raises(ConfigError, match="method.centroids"):
        CLDConfig(centroids="median")
    with pytest.raises(ConfigError, match="method.query_views"):
        CLDConfig(instance="moco", query_views=3)
    with pytest.raises(ConfigError, match="method.projection_head='cosine'"):
        CLDConfig(instance="npid", projection_head="cosine")


def test_more_groups_than_half_the_batch_are_refused_naming_both():
    # CLD groups one batch of 256 into 128 (train_cifar10_npid_cld.sh): 5 groups of 8 images
    # would leave groups of one image. Refused in the step (notebooks) and by the config.
    model = make_cld(num_groups=5, reactnet=False)
    v1, v2 = view_pair(8)
    with pytest.raises(ConfigError, match=r"method.num_groups=5 .*batch 8 \(train.batch_size\)"):
        model.compute_losses([v1, v2], None, training=True, index=INDEX)
    CLDConfig(num_groups=4).check_batch_size(8)
    with pytest.raises(ConfigError, match="method.num_groups=128 .*batch 128"):
        CLDConfig(num_groups=128).check_batch_size(128)


@pytest.mark.parametrize("grouping", clustering.GROUPINGS)
def test_group_loss_uses_the_other_views_groups(grouping):
    model = make_cld(grouping=grouping, reactnet=False)
    v1, v2 = view_pair(8)
    terms = model.compute_losses([v1, v2], None, training=False, index=INDEX)
    g1, g2 = (model.group_embedding(model.backbone(v, training=False), False) for v in (v1, v2))
    groups_1 = clustering.group_features(g1, 3, grouping, 5)
    groups_2 = clustering.group_features(g2, 3, grouping, 5)
    ce_1 = tf.keras.losses.sparse_categorical_crossentropy(
        groups_2[0], tf.matmul(g1, groups_2[1], transpose_b=True) / 0.2, from_logits=True
    )
    ce_2 = tf.keras.losses.sparse_categorical_crossentropy(
        groups_1[0], tf.matmul(g2, groups_1[1], transpose_b=True) / 0.2, from_logits=True
    )
    assert float(terms["group"]) == pytest.approx(float(tf.reduce_mean(ce_1) + tf.reduce_mean(ce_2)) / 2, rel=1e-5)
    assert float(terms["loss"]) == pytest.approx(float(terms["instance"]) + 1.0 * float(terms["group"]), rel=1e-6)


def test_moco_branch_two_queries_each_get_a_gradient_against_one_key():
    # train_cifar_moco_cld.py l. 267-282: q1 (view 1) and q2 (view 2) against k3 (view 3,
    # the momentum encoder), the two InfoNCE losses averaged; the group loss on views 1, 2.
    model = make_cld(instance="moco", reactnet=False)
    v1, v2, v3 = view_triple()
    q1_input, q2_input = tf.Variable(v1), tf.Variable(v2)
    with tf.GradientTape() as tape:
        terms = model.compute_losses([q1_input, q2_input, v3], None, training=False, index=INDEX)
    grad_1, grad_2 = tape.gradient(terms["instance"], [q1_input, q2_input])
    assert grad_1 is not None and float(tf.reduce_max(tf.abs(grad_1))) > 0
    assert grad_2 is not None and float(tf.reduce_max(tf.abs(grad_2))) > 0
    key = model.momentum_projector(model.momentum_backbone(v3, training=False), training=False)
    queue = model.queue.read_value()
    q1, q2 = (model.projector(model.backbone(v, training=False), training=False) for v in (v1, v2))
    want = (contrastive.info_nce(q1, key, queue, 0.07) + contrastive.info_nce(q2, key, queue, 0.07)) / 2
    assert float(terms["instance"]) == pytest.approx(float(want), rel=1e-5)
    model.compute_losses([v1, v2, v3], None, training=True, index=INDEX)
    assert int(model.queue_pointer.numpy()) == 8  # the key enqueued once


def test_npid_branch_writes_view_2_then_view_1_as_clds_backward():
    # CLD's two LinearAverageOp.backward run last-created first: view 2's write, then view 1's.
    model = make_cld(reactnet=False)
    v1, v2 = view_pair(8)
    before = model.memory_bank.numpy().copy()
    model.compute_losses([v1, v2], None, training=True, index=INDEX)
    z1, z2 = (model.instance_features(v, training=True) for v in (v1, v2))
    after_view_2 = memory.memory_bank_rows(before[:8], z2, 0.5)
    np.testing.assert_allclose(model.memory_bank.numpy()[:8], memory.memory_bank_rows(after_view_2, z1, 0.5), atol=1e-5)
    np.testing.assert_array_equal(model.memory_bank.numpy()[8:], before[8:])


def test_the_group_loss_trains_the_group_head_through_the_centroids():
    # centroids: mean (CLD's code) lets the gradient reach the group features through the
    # centroids as well; unit (constant centroids) gives a different gradient.
    v1, v2 = view_pair(8)
    grads = {}
    for centroids in ("mean", "unit"):
        tf.keras.utils.set_random_seed(0)
        model = make_cld(reactnet=False, centroids=centroids)
        with tf.GradientTape() as tape:
            group = model.compute_losses([v1, v2], None, training=False, index=INDEX)["group"]
        grads[centroids] = tape.gradient(group, model.group_projector.trainable_variables[0]).numpy()
    assert np.abs(grads["mean"]).max() > 0 and np.abs(grads["mean"] - grads["unit"]).max() > 1e-4


def test_moco_branch_trains_and_enqueues_keys():
    model = make_cld(instance="moco", grouping="spectral", reactnet=False)
    logs = model.train_on_batch((*view_triple(), INDEX), return_dict=True)
    assert np.isfinite(logs["loss"]) and logs["grad_norm_group_projector"] > 0
    assert int(model.queue_pointer.numpy()) == 8


@pytest.mark.slow  # a real fit on Fashion-MNIST: minutes
def test_short_fit_on_fashion_mnist_lowers_the_loss(fashion_mnist_available):
    model = make_cld(num_groups=4, dataset_size=96)
    ds = multi_view_dataset(
        fashion_mnist("train").take(96), [AugmentConfig(image_size=32)] * 2, 32, seed=0, cache=True, with_index=True
    )
    history = model.fit(ds, epochs=4, verbose=0).history
    assert history["loss"][-1] < 0.8 * history["loss"][0]


@pytest.mark.parametrize("instance", ["npid", "moco"])
def test_stage_two_starts_from_stage_one(instance):
    first = make_cld(instance=instance)
    views = view_triple() if instance == "moco" else view_pair(8)
    first.train_on_batch((*views, INDEX))
    second = make_cld(stage=2, instance=instance)
    second.init_from_previous_stage(first)
    np.testing.assert_array_equal(second.group_projector.get_weights()[0], first.group_projector.get_weights()[0])
    logs = second.train_on_batch((*views, INDEX), return_dict=True)
    assert np.isfinite(logs["loss"]) and np.isfinite(logs["group"])


def test_cli_refuses_groups_for_the_batch_before_touching_the_run(tmp_path, capsys, fashion_mnist_available):
    assert run_cli("cld_npid", tmp_path / "run", "--set", "method.num_groups=9") != 0
    assert "method.num_groups=9 is more than half the batch 16 (train.batch_size)" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_reading_a_config_refuses_groups_for_its_batch():
    with pytest.raises(ConfigError, match=r"cld_npid.yaml: method.num_groups=9 .*batch 16 \(train.batch_size\)"):
        load_config("cld_npid", ["train.batch_size=16", "method.num_groups=9"])
    assert load_config("cld_npid", ["train.batch_size=16", "method.num_groups=8"]).method.num_groups == 8


@pytest.mark.parametrize("config", ["cld_npid", "cld_moco"])
def test_shipped_groups_are_half_the_batch(config):
    cfg = load_config(config)
    assert 2 * cfg.method.num_groups == cfg.train.batch_size
    assert config != "cld_moco" or (cfg.method.tau_start, cfg.method.tau_end) == (0.99, 0.999)


def test_shipped_yamls_are_the_cifar_scripts_settings():
    # scripts/cifar/train_cifar10_npid_cld.sh: --nce-k 0 --nce-t 0.1 --Lambda 1.0 --cld_t 0.2;
    # train_cifar10_moco_cld.sh: --three-imgs --nce-t 0.07 --nce-k 12288 --Lambda 0.8 --normlinear.
    npid = load_config("cld_npid").method
    assert (npid.negatives, npid.temperature, npid.group_weight, npid.group_temperature) == (0, 0.1, 1.0, 0.2)
    moco = load_config("cld_moco")
    m = moco.method
    assert (m.query_views, m.temperature, m.group_weight, m.projection_head) == (2, 0.07, 0.8, "cosine")
    # K: the script's fraction of CIFAR's 50,000 images, of Fashion-MNIST's 60,000, in whole batches.
    batch = moco.train.batch_size
    assert m.queue_size == round(12288 / 50000 * 60000 / batch) * batch == 14848
    assert m.queue_size % 128 == 0  # the comparison's batch


@pytest.mark.parametrize("config", ["cld_npid", "cld_moco"])
def test_cli_runs_the_shipped_yaml(config, tmp_path, fashion_mnist_available):
    assert (
        run_cli(
            config,
            tmp_path / "run",
            "--set",
            "method.num_groups=4",
            "--set",
            "method.negatives=16",
            "--set",
            "method.queue_size=32",
            "--set",
            "method.projector_hidden=16",
        )
        == 0
    )
    metrics = json.loads((tmp_path / "run" / "stage1" / "metrics.json").read_text())
    assert metrics["method"] == "cld" and metrics["global_step"] == 4 and np.isfinite(metrics["group"])


# Two replicas against one device (the group features gathered, CLD on NPID and on MoCo v2):
# in tests/test_distributed.py (test_cld_two_replicas_group_the_global_batch_as_one_device,
# test_cld_on_moco_two_replicas_match_one_device), which runs every two-replica case in one process.
