"""Run in a subprocess by tests/methods/test_moco.py and tests/test_distributed.py: MoCo
v2's queue, SimCLR v2's cross-replica negatives, BYOL's EMA targets and SwAV's multi-crop
Sinkhorn on the global batch and its queue, under MirroredStrategy over 2 logical CPUs vs
one device — the method's own config on ReActNet-A (width 0.125; 4 blocks where SHALLOW says), same initial weights,
same global batches of real Fashion-MNIST views, synchronized BatchNorm. Prints one JSON
line; several methods share one process (and one MirroredStrategy).

    python tests/distributed/contrastive_replicas.py moco_v2 simclr_v2 byol swav
"""

from __future__ import annotations

import functools
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
from burn_tf.methods.base import _ema_weights
from burn_tf.pretrain import build_method

GLOBAL_BATCH = 8
# MoCo: 3 steps, so step 3 reads keys both replicas gathered in steps 1-2 and the pointer
# wraps. SimCLR: 2 steps — the loss of step 2 checks step 1's gradient through the
# cross-replica negatives. Step 3 parts (loss 9.12 vs 6.71) through the binary activations,
# not a distribution bug (tests/distributed/simclr_divergence.py): after step 2 the weights
# agree to 4.8e-5 of their scale (float32 sums in another order), which moves the binary
# convs' inputs by up to 1.1e-3; one of them, 2.7e-5 from 0, flips sign in the 14th binary
# conv and the flip propagates (565 flipped inputs in the last 13 convs before step 3). A
# one-device run whose weights are perturbed by as much (×(1 + 1e-5·N(0, 1)), no strategy)
# parts from its twin the same way one step later (step 4: loss 9.84 vs 8.91; first flip at
# |x| = 6.2e-5 while unflipped inputs moved by up to 9.9e-4). "simclr_v2:each_step"
# compares 3 steps, each taken from the one-device state (measured: losses 1.4e-6, weights
# 2.2e-5, 2.6e-5, 6.3e-5 of their scale; a 4th step: loss 1.4e-6 but weights 1.9e-3 —
# not investigated further).
# BYOL and SwAV: 2 steps — a 3rd parts as SimCLR's does (measured: steps 1-2 within
# 1.1e-6, step 3 loss 3.44 vs 3.26 for BYOL, 4.23 vs 4.35 for SwAV; flips not counted).
# BYOL over 2 free steps: loss 3.4e-7 but weights 1.33e-4 of their scale apart
# (block_02_rprelu1/shift_out), above the 1e-4 of the other cases. Not a distribution bug:
# "byol:each_step" (measured) — step 1 from one state: loss 3.4e-7 relative, every variable
# within 1.7e-5 of its scale, the EMA targets and the target's BatchNorm statistics
# included (τ applied twice, or per-replica BatchNorm statistics, would part them at step
# 1 by far more: see the EMA residual below); step 2 from one state: losses equal to all
# printed digits (3.8761678), weights 1.13e-4 (block_12_conv1x1/kernel); step 3: loss
# 1.1e-5, weights 1.2e-2. Before step 2 the binary activations' inputs (x + b of every RSign,
# online and target backbones, each view; one device vs strategy.run on the 2 replicas)
# agree in sign everywhere (0 of 407,552 flipped; max difference 5.5e-5, 2.9e-5 before
# step 1; a throw-away probe script, not kept), so the step-2/3 parting is float32 rounding
# amplified in the backward pass, not a flipped sign in the forward pass (a step moves a
# variable, BatchNorm statistics included, by up to 2.1 at step 1 and 4.5 at step 2); and
# "mirrored_ema_residual_per_step" shows the two-replica targets are exactly their EMA.
STEPS = {"moco_v2": 3, "simclr_v2": 2, "byol": 2, "swav": 2}
# name:each_step — compare_each_step over this many steps.
EACH_STEP_STEPS = 3
TINY = ["backbone.width_multiplier=0.125", "train.sync_batchnorm=true", f"train.batch_size={GLOBAL_BATCH}"]
# The free-running cases (compare) on ReActNet-A's first 4 blocks: a third of the trace time,
# and they pass as they did on 13. The each-step cases keep all 13 blocks, on which the
# numbers above were measured: on 4 blocks, step 2 from one state parts (loss relative
# 2.3e-3 for SimCLR v2, 7.5e-3 for BYOL; steps 1 and 3 within 1e-5), while on 3 blocks BYOL
# agrees at every step (loss 9.2e-7, weights 4.0e-5): a flipped activation would fit, not traced.
SHALLOW = ["backbone.blocks=4"]
SETTINGS = {
    # A queue of 2 global batches.
    "moco_v2": ["method.queue_size=16", "method.projector_hidden=16", "method.projector_dim=8",
                "method.tau_start=0.9", "method.tau_end=0.9"],
    "simclr_v2": ["method.projector_hidden=16", "method.projector_dim=8"],
    "byol": ["method.projector_hidden=16", "method.projector_dim=8", "method.predictor_hidden=16",
             "method.tau_start=0.9", "method.tau_end=0.9"],
    # Multi-crop as swav.yaml: 2 large crops (32 px) and 4 small (16 px); the queue (2
    # global batches) fills from step 1 (in use from step 3), prototypes trained from step 2.
    "swav": ["method.projection_hidden=16", "method.projection_dim=8", "method.num_prototypes=6",
             "method.freeze_prototypes_steps=1", "method.queue_size=16", "method.queue_start_step=0"],
}
VIEW_SIZES = {"swav": [32, 32, 16, 16, 16, 16]}


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


def build(name, strategy, shallow=False):
    cfg = load_config(name, [*TINY, *SETTINGS[name], *(SHALLOW if shallow else [])])
    with strategy.scope():
        model = build_method(cfg, 1)
        model.compile(optimizer=comparison_optimizer())
    return model


def train(name, strategy, initial, data, steps):
    model = build(name, strategy, shallow=True)
    if initial is not None:
        model.set_weights(initial)
    start = model.get_weights()
    record = StepLosses()
    model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[*model.callbacks(steps), record])
    return start, record.values, state_of(model), int(model.optimizer.iterations.numpy())


@functools.cache
def two_cpus():
    """One MirroredStrategy for every case of the process: a second one in the same process
    stopped on a collective shape mismatch."""
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


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
    }
    if ema:
        # The two-replica run's targets after each step vs its own EMA of that step.
        result["mirrored_ema_residual_per_step"] = ema
    return result


def main():
    results = {}
    for case in sys.argv[1:]:
        name, _, mode = case.partition(":")
        results[case] = compare_each_step(name, EACH_STEP_STEPS) if mode == "each_step" else compare(name)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
