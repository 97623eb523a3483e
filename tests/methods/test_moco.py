"""MoCo v2: the queue (FIFO, gathered keys, checkpointed), the momentum encoder (exact EMA of
weights, its own BatchNorm statistics), stages, an FP backbone, the CLI (two replicas: tests/test_distributed.py)."""


import functools

import numpy as np
import pytest
import tensorflow as tf
from contrastive_helpers import (
    check_stage2_from_stage1,
    fashion_views,
    first_batch,
    run_cli,
    tiny_reactnet,
    tiny_resnet18,
)
from method_helpers import snapshot
from test_base import small_backbone

from burn_tf.build import checkpoint_for
from burn_tf.config import load_config
from burn_tf.methods import MoCoV2, MoCoV2Config, method_class
from burn_tf.methods.moco import check_bn_splits, key_permutation
from burn_tf.models.split_batchnorm import SplitBatchNormalization
from burn_tf.saved_backbone import load_backbone
from burn_tf.schema import ConfigError


def make_moco(backbone=None, lr=1e-2, **cfg):
    """MoCo v2 on ``backbone``; by default a small FP CNN with BatchNorm, where the backbone
    does not matter (the queue, the key shuffle and its split BatchNorm, the EMA, τ: a
    ReActNet-A and its momentum clone take seconds to build). ReActNet-A where it does: the
    stage transfer, the short fit and the CLI run."""
    settings = dict(queue_size=32, projector_hidden=16, projector_dim=8)
    model = MoCoV2(backbone or small_backbone(), MoCoV2Config(**{**settings, **cfg}))
    model.compile(optimizer=tf.keras.optimizers.Adam(lr), run_eagerly=True)
    return model


@functools.cache
def batch16():
    """contrastive_helpers.first_batch(16), read once for the file (a fresh augmentation
    pipeline each time took 1-2 s; the tests only read the tensors)."""
    return first_batch(16)


def test_registered_and_config_errors_name_the_key():
    assert method_class("moco_v2") is MoCoV2 and MoCoV2.Config is MoCoV2Config
    with pytest.raises(ConfigError, match="method.temperature"):
        MoCoV2Config(temperature=0)
    with pytest.raises(ConfigError, match="method.queue_size"):
        MoCoV2Config(queue_size=0)


def test_queue_must_be_a_multiple_of_the_global_batch():
    model = make_moco(queue_size=24)
    v1, v2 = batch16()
    with pytest.raises(ValueError, match=r"method.queue_size.*multiple of the global batch size 16"):
        model.train_on_batch((v1, v2))


def momentum_keys(model, images, bn_splits):
    """What the step's keys must be, from the plain networks: the momentum encoder before the
    step on the batch in :func:`key_permutation`'s order, its BatchNorm on the statistics of
    each group of ``batch / bn_splits`` shuffled images alone (training=True), unshuffled."""
    permutation = key_permutation(model.global_step, images.shape[0]).numpy()
    shuffled = tf.gather(images, permutation) if bn_splits > 1 else images
    keys = tf.concat([model.momentum_projector(model.momentum_backbone(group, training=True), training=True)
                      for group in tf.split(shuffled, bn_splits)], 0).numpy()
    return keys[np.argsort(permutation)] if bn_splits > 1 else keys


@pytest.mark.parametrize("bn_splits", [4, 1])
def test_step_enqueues_the_momentum_keys_first_in_first_out_and_wraps(bn_splits):
    model = make_moco(queue_size=32, tau_start=0.9, tau_end=0.9, bn_splits=bn_splits)
    v1, v2 = batch16()
    initial_queue = model.queue.numpy().copy()
    expected = tf.math.l2_normalize(momentum_keys(model, v2, bn_splits), axis=1).numpy()
    model.train_on_batch((v1, v2))
    np.testing.assert_allclose(model.queue.numpy()[:16], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(model.queue.numpy()[16:], initial_queue[16:])
    assert int(model.queue_pointer.numpy()) == 16
    model.train_on_batch((v1, v2))
    assert int(model.queue_pointer.numpy()) == 0  # wrapped around
    assert not np.array_equal(model.queue.numpy()[16:], initial_queue[16:])


def images_normalised_with(embed, images, replaced=None):
    """[n, m] True where example n's output changes when image m alone is replaced (its
    colours inverted): the images whose BatchNorm statistics normalise example n (and n).
    Columns: the images ``replaced`` (default all)."""
    base = embed(images).numpy()
    rows = []
    for m in range(images.shape[0]) if replaced is None else replaced:
        changed = tf.tensor_scatter_nd_update(images, [[m]], [1.0 - images[m]])
        rows.append(np.abs(embed(changed).numpy() - base).max(axis=1) > 1e-5 * np.abs(base).max())
    return np.array(rows).T


@pytest.mark.parametrize("bn_splits", [4, 1])
def test_a_querys_positive_key_is_normalised_with_another_groups_statistics(bn_splits):
    """MoCo's shuffled BatchNorm (moco/builder.py _batch_shuffle_ddp; one device: the CIFAR
    demo's SplitBatchNorm): query n is normalised with the statistics of its own group of the
    batch; its positive key — the other view of image n — with those of the group of the
    shuffled key batch it landed in, whose images are not the query's group. Without splits
    (bn_splits 1, the code before) both see the whole batch: the same images, the leak."""
    model = make_moco(bn_splits=bn_splits)
    v1, v2 = batch16()
    replaced = [0] if bn_splits == 1 else None  # one group: one replaced image shows it
    queries = images_normalised_with(lambda x: model.query_embedding(x, training=True), v1, replaced)
    keys = images_normalised_with(lambda x: model.key_embedding(x, training=True), v2, replaced)
    if bn_splits == 1:
        assert queries.all() and keys.all()  # the whole batch for both
        return
    group = np.arange(16) // 4
    np.testing.assert_array_equal(queries, group[:, None] == group[None, :])
    # The keys' groups are those of the shuffled batch: image n sits at position where[n].
    where = np.argsort(key_permutation(model.global_step, 16).numpy())
    np.testing.assert_array_equal(keys, group[where][:, None] == group[where][None, :])
    assert all((keys[n] != queries[n]).any() for n in range(16))


def test_bn_splits_must_cut_the_batch_and_the_replicas_naming_the_key():
    with pytest.raises(ConfigError, match="method.bn_splits"):
        MoCoV2Config(bn_splits=0)
    with pytest.raises(ConfigError, match=r"method.bn_splits=8 must divide .*train.batch_size=12"):
        load_config("moco_v2", ["train.batch_size=12"])
    assert load_config("moco_v2", ["train.batch_size=12", "method.bn_splits=4"]).method.bn_splits == 4
    # Checked when the method is built under a strategy (tests/distributed/: 2 replicas).
    with pytest.raises(ConfigError, match=r"method.bn_splits=6 must be a multiple of the 4 replicas"):
        check_bn_splits(6, batch_size=12, replicas=4)


def test_momentum_encoder_is_the_exact_ema_of_weights_with_its_own_batch_statistics():
    model = make_moco(tau_start=0.9, tau_end=0.9)
    assert not model.momentum_backbone.trainable_weights and not model.momentum_projector.trainable_weights
    assert {id(v) for v in model.train_variables()}.isdisjoint(
        {id(v) for v in model.momentum_backbone.weights + model.momentum_projector.weights})
    before = snapshot(model.momentum_backbone.weights)
    model.train_on_batch(batch16())
    # The clone lists its weights in the online network's order.
    trainable = {id(v) for v in model.backbone.trainable_weights}
    emas = moved_statistics = 0
    for w_online, w, old in zip(model.backbone.weights, model.momentum_backbone.weights, before):
        if id(w_online) in trainable:
            np.testing.assert_allclose(w.numpy(), 0.9 * old + 0.1 * w_online.numpy(), rtol=1e-5, atol=1e-6)
            emas += 1
        elif "moving_" in w.name:
            # Its own statistics of its own batch: not an EMA of the online network's.
            moved_statistics += not np.array_equal(w.numpy(), old)
            assert not np.allclose(w.numpy(), 0.9 * old + 0.1 * w_online.numpy())
    assert emas == len(model.backbone.trainable_weights) and moved_statistics > 0


def test_shipped_yaml_anneals_tau_from_0_99_to_0_999_by_solo_learns_cosine():
    """solo-learn's CIFAR MoCo v2+ (scripts/pretrain/cifar/mocov2plus.yaml: base_tau 0.99,
    final_tau 0.999; solo/utils/momentum.py MomentumUpdater.update_tau): the k-th update
    (k = 0, 1, …) uses τ = 0.999 − 0.009·(cos(πk/K) + 1)/2. Hand-computed for K = 4."""
    method = load_config("moco_v2").method
    assert (method.tau_start, method.tau_end) == (0.99, 0.999)
    model = make_moco(tau_start=method.tau_start, tau_end=method.tau_end)
    seen = []

    class Record(tf.keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(float(self.model.tau.numpy()))

    batches = tf.data.Dataset.from_tensors(batch16()).repeat(4)
    model.fit(batches, epochs=1, verbose=0, callbacks=[*model.callbacks(4), Record()])
    assert seen == pytest.approx([0.99, 0.99131802, 0.9945, 0.99768198], abs=1e-7)


def test_queue_pointer_and_the_key_shuffle_resume_exactly(tmp_path):
    model = make_moco()  # bn_splits 8: the key batch is shuffled every step
    model.train_on_batch(batch16())
    path = checkpoint_for(model).save(str(tmp_path / "ckpt"))
    restored = make_moco()
    checkpoint_for(restored).restore(path).assert_existing_objects_matched()
    np.testing.assert_array_equal(restored.queue.numpy(), model.queue.numpy())
    assert int(restored.queue_pointer.numpy()) == 16
    # The key permutation is a function of the step (stateless): the resumed step draws the
    # uninterrupted run's, and so enqueues the same keys.
    first, again, next_step = (key_permutation(s, 16).numpy() for s in (5, 5, 6))
    assert sorted(first) == list(range(16)) and np.array_equal(first, again) and not np.array_equal(first, next_step)
    batch = batch16()[::-1]  # another batch: the views swapped (queries ↔ keys)
    for m in (model, restored):
        m.train_on_batch(batch)
    np.testing.assert_array_equal(restored.queue.numpy(), model.queue.numpy())


def test_stage2_takes_the_online_networks_and_restarts_the_momentum_encoder_from_them():
    stage2 = check_stage2_from_stage1(make_moco, "projector")
    logs = stage2.train_on_batch(batch16(), return_dict=True)
    assert np.isfinite(logs["loss"])


def test_trains_a_full_precision_resnet18():
    model = make_moco(tiny_resnet18(), lr=1e-3)
    weights = snapshot(model.backbone.trainable_variables)
    logs = model.train_on_batch(batch16(), return_dict=True)
    assert np.isfinite(logs["info_nce"]) and model.feature_dim == 512
    assert any(not np.array_equal(a, b.numpy()) for a, b in zip(weights, model.backbone.trainable_variables))


def test_short_fit_on_fashion_mnist_lowers_the_loss(fashion_mnist_available):
    # A queue of one batch of 32 keys. The first epoch replaces the random initial queue (easy
    # negatives) with real keys, which raises the loss; from then on the loss measures
    # instance discrimination among the 64 images, which the network learns.
    model = make_moco(tiny_reactnet(), queue_size=32, tau_start=0.99, tau_end=0.99)
    views = fashion_views(64, 32)
    model.fit(views, epochs=1, verbose=0)
    losses = model.fit(views, epochs=4, verbose=0).history["loss"]
    assert losses[-1] < losses[0], losses


def test_pretrain_cli_runs_moco_v2_yaml_through_both_stages(fashion_mnist_available, tmp_path):
    # The YAML's split BatchNorm (bn_splits 8) trains; the export is the plain network.
    # ReActNet-A's first 2 blocks (the CLI path is what this checks; ~20 % less than 4).
    metrics = run_cli("moco_v2", tmp_path, ["method.queue_size=16", "method.projector_hidden=16", "backbone.blocks=2"],
                      stage="all")
    assert metrics["method"] == "moco_v2" and metrics["stage"] == 2 and np.isfinite(metrics["loss"])
    backbone, meta = load_backbone(tmp_path / "stage2" / "backbone")
    assert meta["method"] == "moco_v2" and (tmp_path / "stage2" / "backbone" / "projector.keras").exists()
    assert not any(isinstance(layer, SplitBatchNormalization) for layer in backbone.layers)
    assert any(type(layer) is tf.keras.layers.BatchNormalization for layer in backbone.layers)


# Two replicas against one device (MoCo's gathered queue, the momentum encoder): in
# tests/test_distributed.py (test_moco_v2_two_replicas_match_one_device_for_the_queue), which
# runs every two-replica case in one process.
