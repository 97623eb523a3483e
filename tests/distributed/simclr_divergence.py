"""Diagnosis: where SimCLR v2 on 2 logical CPUs parts from one device, step by step. Prints
one JSON line per step.

    python tests/distributed/simclr_divergence.py [--steps 4] [--perturb 1e-5]
        [--fp-activations] [--two-pass-bn]

The setting of contrastive_replicas.py (width 0.125, synchronized BatchNorm, global batch 8
of real Fashion-MNIST views, SGD). Before every step both runs' weights are copied into one
probe network on one device and its binary activations' inputs (``x + b`` of every RSign)
are computed on that step's global batch (training mode: global-batch statistics): how
many differ in sign between the two runs' weights, per binary conv; for the first conv with
a flip, how close to 0 the flipped input was and how far the unflipped inputs had moved;
how many BatchNorm channels have a one-pass variance dominated by rounding. After every
step: both losses, gradient norms and the largest weight differences.

Measured (3 steps, 2 replicas): steps 1-2 agree (loss 1.4e-6, weights 4.8e-5 of their
scale); before step 3, 565 inputs of the last 13 binary convs have flipped, the first at
|x| = 2.7e-5 while unflipped inputs moved by up to 1.1e-3; step 3's loss is 9.12 vs 6.71.
No BatchNorm channel's variance is rounding-dominated at any step.

``--perturb 1e-5``: no strategy — the second run is one device too and after step 2 its
weights are multiplied by 1 + 1e-5·N(0, 1) (weights then 3.5e-5 of their scale apart, as
the replicas' are). Measured: step 3 agrees (loss 3e-7), then 1341 flipped inputs (first at
|x| = 6.2e-5, unflipped moved by up to 9.9e-4) and step 4's loss is 9.84 vs 8.91.

``--two-pass-bn``: synchronized BatchNorm's variance as the mean squared deviation from the
global mean instead of Keras' E[x²] − E[x]² (ruled out: step 3 still parts, 10.94 vs 6.32).
``--fp-activations``: every RSign computes ``clip(x + b, −1, 1)``; at this learning rate
that network is not trainable (backbone gradient norm 1.9e4 at step 1, NaN at step 4).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import larq as lq
import numpy as np
import tensorflow as tf
from contrastive_replicas import SETTINGS, TINY, views
from replicas import comparison_optimizer, weight_difference

from burn_tf.build import build_method
from burn_tf.config import load_config
from burn_tf.models import reactnet


class StepLogs(tf.keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.values = []

    def on_train_batch_end(self, batch, logs=None):
        self.values.append({k: float(v) for k, v in logs.items() if k.endswith("_step")})


def build(strategy):
    cfg = load_config("simclr_v2", [*TINY, *SETTINGS["simclr_v2"]])
    with strategy.scope():
        model = build_method(cfg, 1)
        model.compile(optimizer=comparison_optimizer())
    return model


def presign_probe(model):
    """Model: images → the input of every binary conv's RSign (before its shift) and of
    every BatchNorm."""
    backbone = model.backbone
    convs = [layer for layer in backbone.layers if isinstance(layer, lq.layers.QuantConv2D)]
    norms = [layer for layer in backbone.layers if isinstance(layer, tf.keras.layers.BatchNormalization)]
    return tf.keras.Model(backbone.inputs, [c.input for c in convs] + [n.input for n in norms]), convs


def presign(probe, convs, images):
    outputs = probe(images, training=True)
    inputs, norm_inputs = outputs[:len(convs)], outputs[len(convs):]
    return [x.numpy() + c.input_quantizer.bias.numpy() for x, c in zip(inputs, convs)], \
        [x.numpy() for x in norm_inputs]


def cancelled_channels(norm_inputs, epsilon=1e-5):
    """BatchNorm channels whose float32 one-pass variance E[x²] − E[x]² (Keras'
    synchronized BatchNorm) is off by more than 10 % of var + ε from the exact variance:
    there the normalised output is rounding noise times 1/sqrt(var + ε)."""
    count = 0
    for x in norm_inputs:
        x32 = x.reshape(-1, x.shape[-1]).astype(np.float32)
        naive = np.mean(np.square(x32), 0) - np.square(np.mean(x32, 0))
        exact = np.var(x32.astype(np.float64), 0)
        count += int(np.sum(np.abs(naive - exact) > 0.1 * (exact + epsilon)))
    return count


def two_pass_moments(self, x, reduction_axes, keep_dims, mask=None):
    """Synchronized moments, the variance as the mean of squared deviations from the global
    mean (two all-reduces in sequence) instead of E[x²] − E[x]²."""
    replica_ctx = tf.distribute.get_replica_context()
    y = tf.cast(x, tf.float32)
    local_count = tf.cast(tf.reduce_prod(tf.gather(tf.shape(y), reduction_axes)), tf.float32)
    count = replica_ctx.all_reduce(tf.distribute.ReduceOp.SUM, local_count)
    mean = replica_ctx.all_reduce(tf.distribute.ReduceOp.SUM,
                                  tf.reduce_sum(y, reduction_axes, keepdims=True)) / count
    with tf.control_dependencies([mean]):
        squares = tf.reduce_sum(tf.square(y - mean), reduction_axes, keepdims=True)
    variance = replica_ctx.all_reduce(tf.distribute.ReduceOp.SUM, squares) / count
    if not keep_dims:
        mean, variance = tf.squeeze(mean, reduction_axes), tf.squeeze(variance, reduction_axes)
    return tf.cast(mean, x.dtype), tf.cast(variance, x.dtype)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--fp-activations", action="store_true")
    parser.add_argument("--two-pass-bn", action="store_true")
    parser.add_argument("--perturb", type=float, default=0.0,
                        help="no strategy: the second run is one device too, its weights multiplied "
                             "by 1 + perturb·N(0, 1) after step --perturb-after")
    parser.add_argument("--perturb-after", type=int, default=2)
    args = parser.parse_args()
    if args.two_pass_bn:
        tf.keras.layers.BatchNormalization._sync_calculate_mean_and_var = two_pass_moments
    if args.fp_activations:
        reactnet._sign_fn = lambda name: (lambda x: tf.clip_by_value(x, -1.0, 1.0))
    data = views(args.steps)
    batches = list(data)
    tf.keras.utils.set_random_seed(0)
    one = build(tf.distribute.get_strategy())
    tf.keras.utils.set_random_seed(0)
    second = tf.distribute.get_strategy() if args.perturb else tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    two = build(second)
    two.set_weights(one.get_weights())
    probe_model = build(tf.distribute.get_strategy())
    probe, convs = presign_probe(probe_model)
    for step, batch in enumerate(batches, start=1):
        images = tf.concat(batch, axis=0)
        pre, norm_inputs = [], []
        for model in (one, two):
            probe_model.set_weights(model.get_weights())
            signs, norms = presign(probe, convs, images)
            pre.append(signs)
            norm_inputs.append(norms)
        flipped = [int(np.sum(np.sign(a) != np.sign(b))) for a, b in zip(*pre)]
        first = next((i for i, f in enumerate(flipped) if f), None)
        if first is not None:
            a, b = pre[0][first], pre[1][first]
            same_sign = np.sign(a) == np.sign(b)
            # How far the runs' pre-activations are apart where no sign has flipped yet (the
            # convs before the first flip, and that conv's unflipped inputs), beside how close
            # to 0 the flipped ones were.
            unflipped = [np.abs(x - y) for x, y in zip(pre[0][:first], pre[1][:first])] + [np.abs(a - b)[same_sign]]
            first_flip = {"conv": first,
                          "abs_presign_of_flipped_min": float(np.min(np.abs(a[~same_sign]))),
                          "unflipped_max_abs_difference": max(float(np.max(d)) for d in unflipped)}
        else:
            first_flip = None
        near_zero = [int(np.sum(np.abs(a) < 1e-4)) for a in pre[0]]
        logs = []
        for model in (one, two):
            record = StepLogs()
            model.fit(tf.data.Dataset.from_tensors(batch), epochs=1, steps_per_epoch=1, verbose=0,
                      callbacks=[record])
            logs.append(record.values[0])
        if args.perturb and step == args.perturb_after:
            rng = np.random.default_rng(1)
            for v in two.weights:
                if v.dtype == tf.float32 and v.name.split(":")[0] not in ("total", "count"):
                    v.assign(v.numpy() * (1 + args.perturb * rng.standard_normal(v.shape)).astype("float32"))
        diffs = sorted(((weight_difference(b.numpy(), a.numpy()), a.name) for a, b in zip(one.weights, two.weights)
                        if a.name.split(":")[0] not in ("total", "count")), reverse=True)
        print(json.dumps({
            "step": step,
            "loss": [logs[0]["loss_step"], logs[1]["loss_step"]],
            "grad_norm_backbone": [logs[0]["grad_norm_backbone_step"], logs[1]["grad_norm_backbone_step"]],
            "grad_norm_projector": [logs[0]["grad_norm_projector_step"], logs[1]["grad_norm_projector_step"]],
            "flipped_signs_before_step": sum(flipped),
            "flipped_per_conv": flipped,
            "presign_inputs": sum(a.size for a in pre[0]),
            "presign_within_1e-4_of_0": sum(near_zero),
            "first_flip": first_flip,
            "bn_channels_cancelled_before_step": cancelled_channels(norm_inputs[0]),
            "max_presign_abs_difference": max(float(np.max(np.abs(a - b))) for a, b in zip(*pre)),
            "weights_after_step_worst": diffs[:3],
        }), flush=True)


if __name__ == "__main__":
    main()
