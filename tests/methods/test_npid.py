"""NPID and the dataset-index feature it needs (multi_view_dataset(with_index=True),
PretrainMethod.needs_index)."""

import json

import numpy as np
import pytest
import tensorflow as tf
from method_helpers import changed, snapshot, tiny_reactnet, view_pair
from test_base import small_backbone

from burn_tf.config import ConfigError, load_config
from burn_tf.data import AugmentConfig, eval_dataset, fashion_mnist, multi_view_dataset
from burn_tf.distribute import read_rows
from burn_tf.losses import instance
from burn_tf.methods import NPID, NPIDConfig, method_class
from burn_tf.ops import memory

# The CLI at a tiny size (test_npid's, test_cld's and test_swav's CLI runs): ReActNet-A's
# first 2 blocks (what these check is the CLI path of the method; 2 blocks build and step
# ~20 % faster than 4).
TINY = [
    "--set",
    "data.limit=64",
    "--set",
    "train.batch_size=16",
    "--set",
    "backbone.width_multiplier=0.125",
    "--set",
    "backbone.blocks=2",
    "--set",
    "train.verbose=0",
    "--set",
    "train.run_eagerly=true",
    "--set",
    "optimizer.warmup_epochs=0",
]


def make_npid(stage=1, dataset_size=128, reactnet=True, **cfg):
    """NPID on ReActNet-A (stage 1 or 2), or on a small FP CNN where the backbone does not
    matter (building a ReActNet takes seconds)."""
    backbone = tiny_reactnet(stage) if reactnet else small_backbone()
    model = NPID(backbone, NPIDConfig(projection_dim=16, **{"negatives": 32, **cfg}), dataset_size=dataset_size)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-2), run_eagerly=True)
    return model


def run_cli(config, run_dir, *extra, stage="1"):
    """``python -m burn_tf.pretrain`` in-process at a tiny size (64 images, 4 steps)."""
    from burn_tf.pretrain import main

    return main(["--config", config, "--run-dir", str(run_dir), "--stage", stage, *TINY, *extra])


def test_registered_with_its_config():
    assert method_class("npid") is NPID and NPID.Config is NPIDConfig
    assert NPID.needs_index and NPID.num_views == 1 and not NPID.needs_labels


def test_index_is_each_images_source_position_across_shuffled_epochs(fashion_mnist_available):
    source = fashion_mnist("train").take(40)
    source_labels = np.array([int(label) for _, label in source])
    ds = multi_view_dataset(
        source,
        [AugmentConfig(image_size=28)],
        8,
        seed=0,
        shuffle_buffer=40,
        with_labels=True,
        with_index=True,
        cache=True,
    )
    epochs = []
    for _ in range(2):
        seen = []
        for view, labels, index in ds:
            assert view.shape == (8, 28, 28, 3) and index.dtype == tf.int64
            np.testing.assert_array_equal(labels.numpy(), source_labels[index.numpy()])
            seen.extend(index.numpy().tolist())
        assert sorted(seen) == list(range(40))  # every image once per epoch
        epochs.append(seen)
    assert epochs[0] != epochs[1] and epochs[0] != list(range(40))  # shuffled, differently each epoch


def test_without_the_index_batches_are_unchanged(fashion_mnist_available):
    def first_batch(**kwargs):
        ds = multi_view_dataset(
            fashion_mnist("train").take(32), [AugmentConfig(image_size=32)] * 2, 16, seed=3, with_labels=True, **kwargs
        )
        return next(iter(ds))

    plain, indexed = first_batch(), first_batch(with_index=True)
    assert len(plain) == 3 and len(indexed) == 4
    for a, b in zip(plain, indexed[:3]):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_parse_batch_tells_labels_from_the_index():
    model = make_npid(reactnet=False)
    v1, _ = view_pair(4)
    labels, index = tf.constant([7, 7, 7, 7], tf.int64), tf.constant([0, 1, 2, 3], tf.int64)
    views, parsed_labels = model.parse_batch((v1, labels, index))
    assert parsed_labels is labels and model.batch_index((v1, labels, index))["index"] is index
    assert model.parse_batch((v1, index))[1] is None and model.batch_index((v1, index))["index"] is index
    with pytest.raises(ValueError, match="dataset index"):
        model.batch_index((v1,))
    with pytest.raises(ValueError, match="needs index="):
        model.compute_losses([v1], None, training=False)


def test_needs_the_dataset_size():
    with pytest.raises(ValueError, match="dataset_size"):
        NPID(small_backbone(), NPIDConfig())


def test_step_writes_the_batchs_bank_rows_by_momentum_and_no_others():
    model = make_npid(dataset_size=20, bank_momentum=0.5, reactnet=False)
    v1, _ = view_pair(4)
    index = tf.constant([3, 17, 0, 9], tf.int64)
    before = model.memory_bank.numpy().copy()
    weights = snapshot(model.backbone.trainable_variables)
    model.compute_losses([v1], None, training=True, index=index)
    # In training mode BatchNorm uses the batch's statistics: the same features again.
    features = model.instance_features(v1, training=True).numpy()
    after = model.memory_bank.numpy()
    expected = memory.memory_bank_rows(before[index.numpy()], features, 0.5).numpy()
    np.testing.assert_allclose(after[index.numpy()], expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(after[index.numpy()], axis=1), 1.0, rtol=1e-5)
    untouched = np.setdiff1d(np.arange(20), index.numpy())
    np.testing.assert_array_equal(after[untouched], before[untouched])
    logs = model.train_on_batch((v1, index), return_dict=True)
    assert changed(weights, model.backbone.trainable_variables) and np.isfinite(logs["instance"])


def test_nce_is_the_default_loss_and_estimates_z_once():
    # lemniscate: NCE with Z = N·mean(exp(f·v/T)) set on the first batch, then fixed.
    assert NPIDConfig().loss == "nce" and load_config("npid").method.loss == "nce"
    with pytest.raises(ConfigError, match="method.loss=nce needs sampled negatives"):
        NPIDConfig(negatives=0)
    model = make_npid()
    assert float(model.nce_normaliser.numpy()) < 0
    images = tf.random.stateless_uniform((8, 32, 32, 3), (1, 2))
    index = tf.range(8, dtype=tf.int64)
    negatives = model.negative_index(8)
    features = model.instance_features(images, training=True)
    rows = [read_rows(model.memory_bank, index), tf.gather(model.memory_bank, negatives)]
    z = float(instance.estimate_nce_normaliser(features, *rows, 0.1, model.dataset_size))
    loss = model.compute_losses([images], None, training=True, index=index)["instance"]
    assert float(model.nce_normaliser.numpy()) == pytest.approx(z, rel=1e-4)
    assert float(loss) == pytest.approx(float(instance.nce_loss(features, *rows, 0.1, z, model.dataset_size)),
                                        rel=1e-4)
    model.compute_losses([tf.reverse(images, [0])], None, training=True, index=index)
    assert float(model.nce_normaliser.numpy()) == pytest.approx(z, rel=1e-4)  # estimated once


def test_negatives_are_drawn_from_the_bank_and_change_with_the_step():
    model = make_npid(dataset_size=50, negatives=7, reactnet=False)
    first = model.negative_index(4).numpy()
    assert first.shape == (4, 7) and first.min() >= 0 and first.max() < 50
    np.testing.assert_array_equal(model.negative_index(4).numpy(), first)  # a function of the step
    model.global_step.assign_add(1)
    assert not np.array_equal(model.negative_index(4).numpy(), first)
    assert make_npid(negatives=0, loss="softmax", reactnet=False).negative_index(4) is None  # the whole bank


def test_short_fit_on_fashion_mnist_lowers_the_loss(fashion_mnist_available):
    # The softmax form: NCE's value on a 96-image bank (K/N = 1/3, Z fixed at the first batch)
    # rose over this fit (24.7 → 55.0), so it is not what this checks.
    model = make_npid(dataset_size=96, loss="softmax")
    ds = multi_view_dataset(
        fashion_mnist("train").take(96), [AugmentConfig(image_size=32)], 32, seed=0, cache=True, with_index=True
    )
    history = model.fit(ds, epochs=4, verbose=0).history
    assert history["loss"][-1] < 0.8 * history["loss"][0]
    assert history["positive_similarity"][-1] > history["positive_similarity"][0]


def test_filled_bank_holds_each_images_initial_feature(fashion_mnist_available):
    model = make_npid(dataset_size=50, reactnet=False)
    assert model.fills_bank_from_images and not make_npid(bank_init="random", reactnet=False).fills_bank_from_images
    images = eval_dataset(fashion_mnist("train").take(40), 32, 20).map(lambda image, _: image)
    moving = [v.numpy().copy() for v in model.backbone.non_trainable_weights]
    random_rows = model.memory_bank.numpy().copy()
    assert model.fill_memory_bank(images) == 40
    bank = model.memory_bank.numpy()
    for before, v in zip(moving, model.backbone.non_trainable_weights):  # BatchNorm statistics put back
        np.testing.assert_array_equal(v.numpy(), before)
    # Row i is image i's feature, as a training step computes it on that batch.
    first = next(iter(images))
    np.testing.assert_allclose(bank[:20], model.instance_features(first, training=True).numpy(), atol=1e-5)
    np.testing.assert_array_equal(bank[40:], random_rows[40:])  # rows without an image stay
    with pytest.raises(ValueError, match="more images than the 30 bank rows"):
        make_npid(dataset_size=30, reactnet=False).fill_memory_bank(images)


def test_one_epoch_budget_reads_real_features_as_positives(tmp_path, fashion_mnist_available):
    # 64 images, one epoch: no image recurs. The positive (the image's bank row) must be a
    # feature of the image, not a random row: mean cosine with the current feature far above
    # a random row's (|cos| ~ 1/sqrt(128) ~ 0.09).
    assert run_cli("npid", tmp_path / "run", "--set", "method.negatives=16") == 0
    metrics = json.loads((tmp_path / "run" / "stage1" / "metrics.json").read_text())
    assert metrics["global_step"] == 4 and metrics["positive_similarity"] > 0.5, metrics


def test_stage_two_starts_from_stage_one_with_its_bank():
    first = make_npid(dataset_size=20)
    v1, _ = view_pair(4)
    first.train_on_batch((v1, tf.constant([0, 1, 2, 3], tf.int64)))
    second = make_npid(stage=2, dataset_size=20)
    second.init_from_previous_stage(first)
    np.testing.assert_array_equal(second.memory_bank.numpy(), first.memory_bank.numpy())
    np.testing.assert_array_equal(second.projector.get_weights()[0], first.projector.get_weights()[0])
    logs = second.train_on_batch((v1, tf.constant([4, 5, 6, 7], tf.int64)), return_dict=True)
    assert np.isfinite(logs["loss"])


def test_cli_runs_the_shipped_yaml_through_both_stages(tmp_path, fashion_mnist_available):
    assert run_cli("npid", tmp_path / "run", "--set", "method.negatives=16", stage="all") == 0
    for stage in (1, 2):
        metrics = json.loads((tmp_path / "run" / f"stage{stage}" / "metrics.json").read_text())
        assert metrics["method"] == "npid" and metrics["global_step"] == 4 and np.isfinite(metrics["loss"])
    assert (tmp_path / "run" / "stage2" / "backbone" / "projector.keras").exists()


# Two replicas against one device (the bank gathered and scattered across replicas; CLD's and
# SwAV's too): in tests/test_distributed.py (test_npid_two_replicas_write_the_same_bank_as_one_device),
# which runs every two-replica case in one process.
