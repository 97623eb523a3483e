"""Run in a subprocess by tests/methods/test_moco.py: MoCo v2's queue and SimCLR v2's
cross-replica negatives under MirroredStrategy over 2 logical CPUs vs one device — same
initial weights, same global batches of real Fashion-MNIST views, synchronized BatchNorm.
Prints one JSON line.

    python tests/distributed/contrastive_replicas.py moco_v2 simclr_v2
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# replicas.py splits the CPU into 2 logical devices at import (before TensorFlow
# initialises them) and holds the comparison helpers.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
import tensorflow as tf
from replicas import StepLosses, comparison_optimizer, weight_difference

from burn_tf.config import load_config
from burn_tf.data import AugmentConfig, fashion_mnist, multi_view_dataset
from burn_tf.pretrain import build_method

GLOBAL_BATCH = 8
# MoCo: 3 steps, so step 3 reads keys both replicas gathered in steps 1-2 and the pointer
# wraps. SimCLR: 2 steps — the loss of step 2 checks step 1's gradient through the
# cross-replica negatives; after that, float rounding differences (summation order) flip
# the sign of near-zero pre-activations of the binary backbone and the two runs part (step
# 3: measured loss 9.12 vs 6.71, while steps 1-2 agreed to 1.4e-6).
STEPS = {"moco_v2": 3, "simclr_v2": 2}
TINY = ["backbone.width_multiplier=0.125", "train.sync_batchnorm=true", f"train.batch_size={GLOBAL_BATCH}"]
SETTINGS = {
    # A queue of 2 global batches.
    "moco_v2": ["method.queue_size=16", "method.projector_hidden=16", "method.projector_dim=8",
                "method.tau_start=0.9", "method.tau_end=0.9"],
    "simclr_v2": ["method.projector_hidden=16", "method.projector_dim=8"],
}


def views(steps):
    ds = multi_view_dataset(fashion_mnist("train").take(steps * GLOBAL_BATCH), [AugmentConfig(image_size=32)] * 2,
                            GLOBAL_BATCH, seed=0, shuffle_buffer=1)
    arrays = [tuple(v.numpy() for v in batch) for batch in ds]
    return tf.data.Dataset.from_tensor_slices(
        tuple(np.concatenate([b[i] for b in arrays]) for i in range(2))).batch(GLOBAL_BATCH, drop_remainder=True)


def state_of(model):
    """(name, value) of everything the method checkpoints, in a fixed order."""
    out = []
    for key, module in model.checkpoint_modules().items():
        variables = module.weights if isinstance(module, tf.keras.Model) else [module]
        out += [(f"{key}/{v.name}", np.array(v.numpy(), dtype=np.float64)) for v in variables]
    return out


def train(name, strategy, initial, data, steps):
    cfg = load_config(name, [*TINY, *SETTINGS[name]])
    with strategy.scope():
        model = build_method(cfg, 1)
        model.compile(optimizer=comparison_optimizer())
        if initial is not None:
            model.set_weights(initial)
    start = model.get_weights()
    record = StepLosses()
    model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[*model.callbacks(steps), record])
    return start, record.values, state_of(model), int(model.optimizer.iterations.numpy())


def compare(name):
    steps = STEPS[name]
    data = views(steps)
    tf.keras.utils.set_random_seed(0)
    initial, one_losses, one_state, one_iters = train(name, tf.distribute.get_strategy(), None, data, steps)
    tf.keras.utils.set_random_seed(0)
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    _, two_losses, two_state, two_iters = train(name, mirrored, initial, data, steps)
    names = [n for n, _ in one_state]
    worst = max(range(len(names)), key=lambda i: weight_difference(two_state[i][1], one_state[i][1]))
    result = {
        "replicas": mirrored.num_replicas_in_sync,
        "one_device_losses": one_losses,
        "mirrored_losses": two_losses,
        "loss_max_relative": max(abs(a - b) / abs(a) for a, b in zip(one_losses, two_losses)),
        "weights_max_relative": weight_difference(two_state[worst][1], one_state[worst][1]),
        "worst_variable": names[worst],
        "optimizer_iterations": [one_iters, two_iters],
    }
    if name == "moco_v2":
        queue = {n: (one, two) for (n, one), (_, two) in zip(one_state, two_state) if n.startswith("queue")}
        (q1, q2), (p1, p2) = queue[next(n for n in queue if n.startswith("queue/"))], \
            queue[next(n for n in queue if n.startswith("queue_pointer"))]
        result["queue_max_abs"] = float(np.max(np.abs(q1 - q2)))
        result["queue_pointer"] = [int(p1), int(p2)]
    return result


def main():
    print(json.dumps({name: compare(name) for name in sys.argv[1:]}))


if __name__ == "__main__":
    main()
