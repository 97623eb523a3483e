"""Run in a subprocess by tests/distributed (it splits the CPU into logical devices, which
must happen before TensorFlow initialises them). Prints one JSON line.

    python tests/distributed/replicas.py burn:2 momentum:1 burn:1:per-replica-bn mixed

compare: the same model, initial weights and global batches, trained for a few steps on one
device (eagerly: the plain reading of the step) and under MirroredStrategy over 2 logical
CPUs (traced, as a strategy runs it); prints the largest differences.
tests/distributed/mirrored.py runs these cases in one process with the other scripts' cases.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import tensorflow as tf

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(_cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

TESTS = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(TESTS.parent), str(TESTS / "methods")]

from method_helpers import tiny_teacher  # noqa: E402

from burn_tf.build import build_method, build_training_optimizer  # noqa: E402
from burn_tf.config import load_config  # noqa: E402
from burn_tf.distribute import gather_from_replicas, replica_shared_variable, synchronize_batchnorm  # noqa: E402
from burn_tf.losses import distillation  # noqa: E402
from burn_tf.models.teacher import freeze  # noqa: E402
from burn_tf.models.trained_network import build_backbone  # noqa: E402

# ReActNet-A's first 2 blocks: the stem, the block that doubles the width at stride 1 and
# the first stride-2 block (every kind of layer of the 13; the trace of the two-replica step
# grows with the blocks: 2 instead of 4 cut it by ~40 %). The teacher: the config's kind for
# mixed precision (built from the config); the compared BURN runs get a 2-conv frozen CNN
# (method_helpers.tiny_teacher, BatchNorm in inference mode as any frozen teacher): it runs
# per replica with no cross-replica step, and its ResNet-18 took a fifth of a case's time.
TINY_BURN = [
    "teacher.kind=resnet18", "teacher.weights=null", "teacher.small_input_stem=true",
    "teacher.input_size=32", "backbone.input_size=32", "backbone.width_multiplier=0.125", "backbone.blocks=2",
    "method.head_width=32", "method.symmetric=true", "optimizer.warmup_epochs=0",
    # The paper's softmax target unless the case names another (centered, sinkhorn: both
    # use the global batch, gathered from every replica).
    "method.target=softmax",
    "optimizer.learning_rate=0.001", "train.batch_size=8", "train.epochs=1", "train.verbose=0",
]
GLOBAL_BATCH = 8


def momentum_model(accumulation, sync_bn):
    from test_base import OnlineTargetPair, PairConfig, small_backbone

    class QueuedPair(OnlineTargetPair):
        """OnlineTargetPair plus a MoCo-style queue of target keys gathered from every
        replica, read by the loss: the queue rule of burn_tf.distribute."""

        def __init__(self, backbone, config=None, **kwargs):
            super().__init__(backbone, config, **kwargs)
            self.queue = replica_shared_variable(tf.zeros((3 * GLOBAL_BATCH, 8)), "queue")

        def compute_losses(self, views, labels=None, training=True):
            online = self.backbone(views[0], training=training)
            target = tf.stop_gradient(self.target_backbone(views[1], training=False))
            logits = tf.matmul(tf.math.l2_normalize(online, -1), self.queue, transpose_b=True)
            loss = distillation.feature_similarity(target, online) + 0.1 * tf.reduce_mean(logits)
            if training:
                # After the loss: its synchronized BatchNorm all-reduces come first on every
                # replica (collectives must run in the same order everywhere).
                with tf.control_dependencies([loss]):
                    keys = gather_from_replicas(tf.math.l2_normalize(target, -1))
                self.queue.assign(tf.concat([keys, self.queue[:-GLOBAL_BATCH]], 0))
            return {"loss": loss}

    backbone = small_backbone()
    if sync_bn:
        synchronize_batchnorm(backbone)
    model = QueuedPair(backbone, PairConfig(tau_start=0.9, tau_end=0.99), accumulation_steps=accumulation)
    model.compile(optimizer=comparison_optimizer(), run_eagerly=one_device())
    return model


def burn_model(accumulation, sync_bn, target="softmax"):
    cfg = load_config("demo", [*TINY_BURN, f"optimizer.accumulation_steps={accumulation}",
                               f"train.sync_batchnorm={'true' if sync_bn else 'false'}", f"method.target={target}"])
    model = build_method(cfg, 1, teacher=freeze(tiny_teacher(32)))
    model.compile(optimizer=comparison_optimizer(), run_eagerly=one_device())
    return model


def one_device() -> bool:
    """True outside a multi-replica strategy: the reference run then steps eagerly (no trace
    of its own; the eager step is the same Python code, and a step that only the traced
    graph got wrong would now part the runs instead of passing in both)."""
    return tf.distribute.get_strategy().num_replicas_in_sync == 1


def comparison_optimizer():
    # SGD, not Adam: Adam's first steps are ≈ lr·sign(g), so a gradient that is zero in exact
    # arithmetic (a bias right before BatchNorm: ~1e-9 of rounding noise) moves by ±lr with a
    # sign decided by summation order — a difference of the optimizer, not of the replicas.
    return tf.keras.optimizers.SGD(0.05, momentum=0.9)


def batches(steps, size=32):
    rng = np.random.default_rng(0)
    v1 = rng.uniform(size=(steps * GLOBAL_BATCH, size, size, 3)).astype("float32")
    v2 = rng.uniform(size=(steps * GLOBAL_BATCH, size, size, 3)).astype("float32")
    return tf.data.Dataset.from_tensor_slices((v1, v2)).batch(GLOBAL_BATCH, drop_remainder=True)


class StepLosses(tf.keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.values = []

    def on_train_batch_end(self, batch, logs=None):
        self.values.append(float(logs["loss_step"]))


def train(build, strategy, initial, steps):
    """(initial weights, per-step losses, state before, state after, optimizer iterations)."""
    with strategy.scope():
        model = build()
        if initial is not None:
            model.set_weights(initial)
    start, state_before = model.get_weights(), state_of(model)
    record = StepLosses()
    callbacks = model.callbacks(steps) if hasattr(model, "tau") else []
    model.fit(batches(steps), epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[*callbacks, record])
    return start, record.values, state_before, state_of(model), int(model.optimizer.iterations.numpy())


def state_of(model) -> list:
    """[(name, value)] of the trained variables (and a momentum method's targets and queue)
    in order; compared by position (Keras makes layer names unique per process)."""
    state = [(w.name, w.numpy()) for w in model.train_variables()]
    if hasattr(model, "momentum_pairs"):
        state += [(f"target/{w.name}", w.numpy()) for w in model.target_backbone.weights]
        state.append(("queue", model.queue.numpy()))
    return state


@functools.cache
def two_cpus():
    """One MirroredStrategy for every case of the process (as contrastive_replicas.py): a
    second one in the same process stopped on a collective mismatch."""
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def relative(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def weight_difference(a, b):
    """Largest |a − b| relative to the variable's largest |b|, floored at 1e-2: a bias in
    front of a BatchNorm has a zero gradient in exact arithmetic, starts at 0 and moves by
    rounding noise only (~1e-10), which a plain relative difference would blow up."""
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-2))


def compare(method, accumulation, sync_bn, steps, target="softmax"):
    if method == "burn":
        build = lambda: burn_model(accumulation, sync_bn, target)  # noqa: E731
    else:
        build = lambda: momentum_model(accumulation, sync_bn)  # noqa: E731
    initial, one_losses, start, one_state, one_iters = train(build, tf.distribute.get_strategy(), None, steps)
    mirrored = two_cpus()
    _, two_losses, _, two_state, two_iters = train(build, mirrored, initial, steps)
    pairs = [(name, two, one, begin) for (name, one), (_, two), (_, begin) in zip(one_state, two_state, start)]
    worst = max(pairs, key=lambda p: weight_difference(p[1], p[2]))
    return {
        "replicas": mirrored.num_replicas_in_sync,
        "one_device_losses": one_losses,
        "mirrored_losses": two_losses,
        "loss_max_relative": max(abs(a - b) / abs(a) for a, b in zip(one_losses, two_losses)),
        "weights_max_relative": weight_difference(worst[1], worst[2]),
        "weights_max_abs": max(float(np.max(np.abs(two - one))) for _, two, one, _ in pairs),
        "worst_variable": worst[0],
        "weights_moved_max_abs": max(float(np.max(np.abs(one - begin))) for _, _, one, begin in pairs),
        "optimizer_iterations": [one_iters, two_iters],
        "variables": len(pairs),
    }


def mixed():
    """BURN stage 2 under mixed_float16: finite losses, float32 variables; every binary conv
    computes in float16 what it computes in float32 on the same ±1 input."""
    import larq as lq

    cfg = load_config("demo", [*TINY_BURN, "train.mixed_precision=true"])
    model = build_method(cfg, 2)
    model.compile(optimizer=build_training_optimizer(cfg, steps_per_epoch=3))
    record = StepLosses()
    model.fit(batches(3), epochs=1, steps_per_epoch=3, verbose=0, callbacks=[record])
    reference = build_backbone(load_config("demo", TINY_BURN).backbone, 2)  # float32, the same layers
    reference.set_weights(model.student_backbone.get_weights())
    float32_layers = {layer.name: layer for layer in reference.layers}
    binary_conv_errors = []
    for layer in model.student_backbone.layers:
        if isinstance(layer, lq.layers.QuantConv2D):
            signs = tf.sign(tf.random.normal((4, *layer.input_shape[1:]), seed=1))
            half = tf.cast(layer(signs), tf.float32).numpy()
            full = float32_layers[layer.name](signs).numpy()
            binary_conv_errors.append(float(np.linalg.norm(half - full) / np.linalg.norm(full)))
    images = next(iter(batches(1)))[0]
    mixed_features = model.student_backbone(images, training=False).numpy()
    float_features = reference(images, training=False).numpy()
    return {
        "losses": record.values,
        "variable_dtypes": sorted({v.dtype.name for v in model.train_variables()}),
        "compute_dtype": model.student_backbone.layers[2].compute_dtype,
        "output_dtype": model.student_backbone.outputs[0].dtype.name,
        "loss_scale": float(model.optimizer.loss_scale.numpy()),
        "binary_convs": len(binary_conv_errors),
        "binary_conv_max_relative_l2": max(binary_conv_errors),
        # End to end, float16 rounding of a pre-activation near 0 flips its sign now and
        # then and the binary network amplifies it: reported, not a per-layer error.
        "features_relative_l2": float(np.linalg.norm(mixed_features - float_features)
                                      / np.linalg.norm(float_features)),
    }


def run_case(case, steps=2):
    """``mixed``, or ``method:accumulation[:per-replica-bn][:<BURN target>]`` (:func:`compare`)."""
    tf.keras.utils.set_random_seed(0)
    if case == "mixed":
        return mixed()
    method, accumulation, *options = case.split(":")
    targets = [o for o in options if o != "per-replica-bn"]
    return compare(method, int(accumulation), "per-replica-bn" not in options, steps, *targets)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("cases", nargs="+",
                        help="method:accumulation[:per-replica-bn][:<BURN target>] … or mixed")
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps({case: run_case(case, args.steps) for case in args.cases}))


if __name__ == "__main__":
    main()
