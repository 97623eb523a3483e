"""Run in a subprocess by tests/test_distributed.py, through tests/distributed/mirrored.py
(the CPU is split into 2 logical devices before TensorFlow initialises them).

    python tests/distributed/npid_replicas.py METHOD [METHOD …]   (npid, cld, cld_moco, swav)

NPID (its bank first filled by one pass over the images, in cross-replica context), CLD on
NPID (two views, k-means of the global batch's group features, the group loss
back-propagating through the centroids across replicas), CLD on MoCo v2 (its queue in
place of the bank) or SwAV (Sinkhorn on the global batch's scores, its queue) on a small
FP backbone with synchronized BatchNorm, the same initial weights and global batches
(images and dataset indices), trained for a few steps on one device (eagerly,
replicas.one_device) and under MirroredStrategy over 2 logical CPUs (replicas.two_cpus,
shared with tests/distributed/mirrored.py's other cases): the losses, weights and the memory bank (rows
gathered from both replicas, then scattered into a replica-shared variable) or queue must
match. Negatives are sampled (the replica takes its rows of the global batch's draw).
Prints one JSON line per method, in the order given (one process: TensorFlow starts once).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

TESTS = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(TESTS.parent), str(TESTS / "methods"), str(TESTS / "distributed")]

from replicas import StepLosses, comparison_optimizer, one_device, two_cpus, weight_difference  # noqa: E402 (splits the CPU)

from burn_tf.distribute import synchronize_batchnorm  # noqa: E402
from burn_tf.methods import CLD, NPID, CLDConfig, NPIDConfig, SwAV, SwAVConfig  # noqa: E402

GLOBAL_BATCH = 8
DATASET_SIZE = 24
STEPS = 3


def small_backbone():
    """FP conv (no bias: a bias right before BatchNorm has a zero gradient in exact
    arithmetic and moves by rounding noise only) + BatchNorm + pooling."""
    inputs = tf.keras.Input((32, 32, 3))
    x = tf.keras.layers.Conv2D(8, 3, strides=2, use_bias=False)(inputs)
    x = tf.keras.layers.BatchNormalization()(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(tf.keras.layers.ReLU()(x))
    return tf.keras.Model(inputs, x, name="backbone")


METHOD = "npid"  # the method being compared (main sets it)


def build():
    backbone = small_backbone()
    synchronize_batchnorm(backbone)
    if METHOD == "swav":
        config = SwAVConfig(projection_hidden=16, projection_dim=8, num_prototypes=6, freeze_prototypes_steps=1,
                            queue_size=16, queue_start_step=0, small_crops=1, small_crop_size=16)
        model = SwAV(backbone, config)
    elif METHOD == "cld":
        config = CLDConfig(projection_dim=8, negatives=5, num_groups=3, group_dim=8, group_weight=1.0)
        model = CLD(backbone, config, dataset_size=DATASET_SIZE)
    elif METHOD == "cld_moco":
        config = CLDConfig(instance="moco", projection_dim=8, projector_hidden=16, queue_size=16, num_groups=3,
                           group_dim=8, group_weight=1.0, tau_start=0.99, tau_end=0.999)
        model = CLD(backbone, config, dataset_size=DATASET_SIZE)
    else:
        model = NPID(backbone, NPIDConfig(projection_dim=8, negatives=5), dataset_size=DATASET_SIZE)
    model.compile(optimizer=comparison_optimizer(), run_eagerly=one_device())
    return model


def batches():
    rng = np.random.default_rng(0)
    # CLD-MoCo: two queries and the momentum encoder's key (train_cifar_moco_cld.py's three views).
    sizes = {"npid": [32], "cld": [32, 32], "cld_moco": [32, 32, 32], "swav": [32, 32, 16]}[METHOD]
    views = [rng.uniform(size=(STEPS * GLOBAL_BATCH, size, size, 3)).astype("float32") for size in sizes]
    # Each step a different set of images; the third step revisits rows the first wrote.
    index = np.concatenate([rng.permutation(DATASET_SIZE)[:GLOBAL_BATCH] for _ in range(STEPS)]).astype("int64")
    element = (*views, index) if METHOD != "swav" else tuple(views)
    return tf.data.Dataset.from_tensor_slices(element).batch(GLOBAL_BATCH, drop_remainder=True)


def train(strategy, initial):
    with strategy.scope():
        model = build()
        if initial is not None:
            model.set_weights(initial)
        if METHOD == "npid":  # bank_init: features, in cross-replica context under the strategy
            images = tf.data.Dataset.from_tensor_slices(
                np.random.default_rng(1).uniform(size=(DATASET_SIZE, 32, 32, 3)).astype("float32")).batch(8)
            model.fill_memory_bank(images)
    start = model.get_weights()
    trained_before = [w.numpy() for w in model.train_variables()]
    bank_before = shared_state(model).numpy()
    record = StepLosses()
    model.fit(batches(), epochs=1, steps_per_epoch=STEPS, verbose=0, callbacks=[record])
    state = [w.numpy() for w in model.train_variables()]
    return start, record.values, state, shared_state(model).numpy(), (bank_before, trained_before)


def shared_state(model):
    """The replica-shared variable the step writes: NPID's bank or the MoCo/SwAV queue."""
    return model.queue if METHOD in ("swav", "cld_moco") else model.memory_bank


def compare(method):
    """One device vs :func:`replicas.two_cpus` for ``method``: the largest differences."""
    global METHOD
    METHOD = method  # the module-level name every helper above reads
    mirrored = two_cpus()
    tf.keras.utils.set_random_seed(0)
    initial, one_losses, one_state, one_bank, (bank_start, one_start) = train(tf.distribute.get_strategy(), None)
    _, two_losses, two_state, two_bank, (two_bank_start, _) = train(mirrored, initial)
    return {
        "method": METHOD,
        "replicas": mirrored.num_replicas_in_sync,
        "losses": [one_losses, two_losses],
        "loss_max_relative": max(abs(a - b) / abs(a) for a, b in zip(one_losses, two_losses)),
        "weights_max_relative": max(weight_difference(two, one) for one, two in zip(one_state, two_state)),
        "weights_moved_max_abs": max(float(np.max(np.abs(one - begin))) for one, begin in zip(one_state, one_start)),
        "bank_max_abs": float(np.max(np.abs(two_bank - one_bank))),
        # NPID: the bank filled before the first step (the same on both when nothing filled it).
        "initial_bank_max_abs": float(np.max(np.abs(two_bank_start - bank_start))),
        "bank_rows_written": int(np.sum(np.any(one_bank != bank_start, axis=-1))),  # SwAV: queue rows
    }


def main():
    # One strategy for every method (replicas.two_cpus): a second MirroredStrategy on the same
    # devices numbers its collectives from the start again and collides with the first one's.
    for name in sys.argv[1:] or ["npid"]:
        print(json.dumps(compare(name)))


if __name__ == "__main__":
    main()
