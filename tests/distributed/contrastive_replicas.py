"""Run in a subprocess by tests/methods/test_moco.py and tests/test_distributed.py: MoCo
v2's queue, SimCLR v2's cross-replica negatives, BYOL's EMA targets and SwAV's multi-crop
Sinkhorn on the global batch and its queue, under MirroredStrategy over 2 logical CPUs vs
one device (stepped eagerly, replicas.one_device) — the method's own config on ReActNet-A
(width 0.125, its first 2 blocks), same initial weights, same global batches of real
Fashion-MNIST views, synchronized BatchNorm. Prints one JSON line; several methods share one
process (and one MirroredStrategy, replicas.two_cpus; tests/distributed/mirrored.py runs
them with the other scripts' cases).

    python tests/distributed/contrastive_replicas.py moco_v2 simclr_v2 byol swav
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
from replicas import StepLosses, comparison_optimizer, one_device, two_cpus, weight_difference

from burn_tf.build import build_method
from burn_tf.config import load_config
from burn_tf.data import AugmentConfig, fashion_mnist, multi_view_dataset
from burn_tf.methods.momentum import _ema_weights

GLOBAL_BATCH = 8
# Free-running cases (compare), float32 as trained. MoCo: 3 steps, so step 3 reads keys
# both replicas gathered in steps 1-2 and the pointer wraps. SimCLR: 2 steps — the loss of
# step 2 checks step 1's gradient through the cross-replica negatives. Step 3 parts (loss
# 9.12 vs 6.71) through the binary activations, not a distribution bug
# (tests/distributed/simclr_divergence.py): after step 2 the weights agree to 4.8e-5 of
# their scale (float32 sums in another order), which moves the binary convs' inputs by up
# to 1.1e-3; one of them, 2.7e-5 from 0, flips sign and the flip propagates (565 flipped
# inputs in the last 13 convs before step 3). A one-device run whose weights are perturbed
# by as much (×(1 + 1e-5·N(0, 1)), no strategy) parts from its twin the same way one step
# later. BYOL and SwAV: 2 steps — a 3rd parts as SimCLR's does (measured on 13 blocks:
# steps 1-2 within 1.1e-6, step 3 loss 3.44 vs 3.26 for BYOL, 4.23 vs 4.35 for SwAV).
# Each-step cases (compare_each_step, float64): see EACH_STEP_FLOATX.
STEPS = {"moco_v2": 3, "simclr_v2": 2, "byol": 2, "swav": 2}
# name:each_step — compare_each_step over this many steps.
EACH_STEP_STEPS = 3
TINY = ["backbone.width_multiplier=0.125", "train.sync_batchnorm=true", f"train.batch_size={GLOBAL_BATCH}"]
# Every case on ReActNet-A's first 2 blocks (as replicas.TINY_BURN: every kind of its
# layers; the two-replica trace grows with the blocks). The measurements quoted below were
# taken on 4 or 13 blocks; tests/test_distributed.py quotes those of 2.
SHALLOW = ["backbone.blocks=2"]
# The each-step cases build their models in float64. In float32 a step from one state can
# part through a binary activation whose input sits within rounding of 0: BYOL, 13 blocks,
# run alone, step 2 from identical weights gave losses 4.166 vs 4.389 (5.3 %) and weights
# 1.24 of their scale apart while steps 1 and 3 agreed to 1e-6 — and the same case passed
# after SwAV and SimCLR v2 had run in the process (other initial weights), as did 4 blocks
# for some states and not others (SimCLR v2 2.3e-3, BYOL 7.5e-3 at step 2). Which step
# flips depends on the initial weights, so a float32 check passes or fails by the process's
# random state. Float64 rounds at 1.1e-16 relative instead of float32's 6e-8 (the forward
# passes were not compared element by element), and every step is asserted (measured, 4
# blocks: losses within 1.0e-7 relative — the loss is reduced in float32 —, weights within
# 1.9e-7 of their scale, at all 3 steps).
# The summed-in-another-order computation under test (all-reduce, gathered negatives,
# synchronized BatchNorm, the EMA applied in cross-replica context) is the same code in
# either dtype; the free-running cases above stay in float32, as trained.
EACH_STEP_FLOATX = "float64"
SETTINGS = {
    # A queue of 2 global batches.
    "moco_v2": ["method.queue_size=16", "method.projector_hidden=16", "method.projector_dim=8",
                "method.tau_start=0.9", "method.tau_end=0.9"],
    "simclr_v2": ["method.projector_hidden=16", "method.projector_dim=8"],
    "byol": ["method.projector_hidden=16", "method.projector_dim=8", "method.predictor_hidden=16",
             "method.tau_start=0.9", "method.tau_end=0.9"],
    # Multi-crop as swav.yaml: 2 large crops (32 px) and 6 small (16 px); the queue (2
    # global batches) fills from step 1 (in use from step 3), prototypes trained from step 2.
    "swav": ["method.projection_hidden=16", "method.projection_dim=8", "method.num_prototypes=6",
             "method.freeze_prototypes_steps=1", "method.queue_size=16", "method.queue_start_step=0"],
}
VIEW_SIZES = {"swav": [32, 32, 16, 16, 16, 16, 16, 16]}


def views(steps, sizes=(32, 32)):
    ds = multi_view_dataset(fashion_mnist("train").take(steps * GLOBAL_BATCH),
                            [AugmentConfig(image_size=size) for size in sizes], GLOBAL_BATCH, seed=0, shuffle_buffer=1)
    arrays = [tuple(v.numpy() for v in batch) for batch in ds]
    return tf.data.Dataset.from_tensor_slices(
        tuple(np.concatenate([b[i] for b in arrays]) for i in range(len(sizes)))).batch(GLOBAL_BATCH,
                                                                                      drop_remainder=True)


def state_of(model):
    """(name, value) of everything the method checkpoints, in a fixed order."""
    out = []
    for key, module in model.checkpoint_modules().items():
        variables = module.weights if isinstance(module, tf.keras.Model) else [module]
        out += [(f"{key}/{v.name}", np.array(v.numpy(), dtype=np.float64)) for v in variables]
    return out


def build(name, strategy):
    cfg = load_config(name, [*TINY, *SETTINGS[name], *SHALLOW])
    with strategy.scope():
        model = build_method(cfg, 1)
        model.compile(optimizer=comparison_optimizer(), run_eagerly=one_device())
    return model


def train(name, strategy, initial, data, steps):
    model = build(name, strategy)
    if initial is not None:
        model.set_weights(initial)
    start = model.get_weights()
    record = StepLosses()
    model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[*model.callbacks(steps), record])
    return start, record.values, state_of(model), int(model.optimizer.iterations.numpy())


def compare(name):
    steps = STEPS[name]
    data = views(steps, VIEW_SIZES.get(name, (32, 32)))
    tf.keras.utils.set_random_seed(0)
    initial, one_losses, one_state, one_iters = train(name, tf.distribute.get_strategy(), None, data, steps)
    tf.keras.utils.set_random_seed(0)
    mirrored = two_cpus()
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
    if name == "swav":
        state = {n: (one, two) for (n, one), (_, two) in zip(one_state, two_state)}
        (q1, q2), (f1, f2) = state["queue/queue:0"], state["queue_filled/queue_filled:0"]
        result["queue_max_abs"] = float(np.max(np.abs(q1 - q2)))
        result["queue_filled"] = [int(f1), int(f2)]
    return result


def ema_pairs(model):
    """(online weight, its EMA target weight) of every momentum pair; [] without any."""
    return [pair for _, online, target in getattr(model, "momentum_pairs", [])
            for pair in zip(online.trainable_weights, _ema_weights(target, online))]


def ema_residual(model, targets_before, tau):
    """How far each target weight is from τ·(its value before the step) + (1 − τ)·(the
    online weight after it), relative to the target's scale (:func:`weight_difference`): 0
    up to float32 rounding when the step applied the EMA exactly once, with τ and the
    updated online weights — whatever the online update itself was."""
    return max((weight_difference(t.numpy().astype(np.float64),
                                  tau * before + (1.0 - tau) * o.numpy().astype(np.float64))
                for (o, t), before in zip(ema_pairs(model), targets_before)), default=0.0)


def compare_each_step(name, steps):
    """Every step from one state: before each step the two-replica model receives the
    one-device model's weights and optimizer state, then both take the step on the same
    global batch. Checks the step's distributed computation at every step of a longer run
    without letting a flipped binary activation (float32 rounding of a pre-activation near
    0, then propagated) carry over from one step into the next."""
    batches = list(views(steps, VIEW_SIZES.get(name, (32, 32))))
    previous_floatx = tf.keras.backend.floatx()
    tf.keras.backend.set_floatx(EACH_STEP_FLOATX)
    try:
        return _compare_each_step(name, batches, steps)
    finally:
        tf.keras.backend.set_floatx(previous_floatx)


def _compare_each_step(name, batches, steps):
    tf.keras.utils.set_random_seed(0)
    one = build(name, tf.distribute.get_strategy())
    mirrored = two_cpus()
    two = build(name, mirrored)
    one_losses, two_losses, weights, ema = [], [], [], []
    for batch in batches:
        two.set_weights(one.get_weights())
        for mine, theirs in zip(two.optimizer.variables, one.optimizer.variables):
            mine.assign(theirs.numpy())
        targets_before = [t.numpy().astype(np.float64) for _, t in ema_pairs(two)]
        for model, record in ((one, one_losses), (two, two_losses)):
            losses = StepLosses()
            model.fit(tf.data.Dataset.from_tensors(batch), epochs=1, steps_per_epoch=1, verbose=0,
                      callbacks=[*model.callbacks(steps), losses])
            record.extend(losses.values)
        weights.append(max((weight_difference(b, a), n) for (n, a), (_, b) in zip(state_of(one), state_of(two))))
        if targets_before:
            ema.append(ema_residual(two, targets_before, float(two.tau.numpy())))
    result = {
        "replicas": mirrored.num_replicas_in_sync,
        "one_device_losses": one_losses,
        "mirrored_losses": two_losses,
        "loss_max_relative": max(abs(a - b) / abs(a) for a, b in zip(one_losses, two_losses)),
        "weights_max_relative_per_step": weights,
        "weights_max_relative": max(w for w, _ in weights),
        "optimizer_iterations": [int(one.optimizer.iterations.numpy()), int(two.optimizer.iterations.numpy())],
        "variable_dtypes": sorted({v.dtype.name for v in two.trainable_weights}),
    }
    if ema:
        # The two-replica run's targets after each step vs its own EMA of that step.
        result["mirrored_ema_residual_per_step"] = ema
    return result


def run_case(case):
    """``name`` (free-running, :func:`compare`) or ``name:each_step`` (:func:`compare_each_step`)."""
    name, _, mode = case.partition(":")
    return compare_each_step(name, EACH_STEP_STEPS) if mode == "each_step" else compare(name)


def main():
    print(json.dumps({case: run_case(case) for case in sys.argv[1:]}))


if __name__ == "__main__":
    main()
