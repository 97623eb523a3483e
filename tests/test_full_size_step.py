"""The paper's full-size setting takes one real train step on the CPU: ReActNet-A (width 1.0,
224 px) distilled by BURN from a ResNet-50 teacher (random FP weights), batch 2; and the options
a GPU cluster turns on, ``train.mixed_precision`` with ``train.jit_compile``, take one step of
the same networks at 32 px. Correctness only (finite loss, weights changed, the dtype policy
applied); the time is reported by pytest's --durations, never asserted.

Why the flags are not tried at 224 px here: on a CPU float16 convolutions have no fast kernels
and XLA compiles the whole step first — the full-size step took 220 s with mixed precision
alone and 558 s with both (the test command's longest test), against 16 s in float32, while what
the flags can break (a layer that ignores the policy, an op XLA cannot compile, the loss scale)
does not depend on the image size: the networks, layers and ops are the same at 32 px.

Each setting runs in its own process: the Keras dtype policy and XLA's compilation cache
are process-wide. The child is this file run as a script:

    python tests/test_full_size_step.py full_size
    python tests/test_full_size_step.py mixed_precision+jit_compile

"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BURN_STEP = ["method.name=burn", "train.batch_size=2", "train.epochs=1", "train.steps_per_epoch=1",
             "train.verbose=0", "optimizer.warmup_epochs=0"]
# The paper's networks at the paper's size.
FULL_SIZE = [
    "teacher.kind=resnet50", "teacher.weights=null", "teacher.input_size=null",
    "backbone.kind=reactnet_a", "backbone.input_size=224", "backbone.width_multiplier=1.0",
]
# The same kinds of layer (ReActNet-A's first 4 blocks hold both of its block types; a ResNet
# teacher), small: XLA's compile time grows with the number of ops, not with the image size
# (the full networks took 530 s to compile at 32 px).
SMALL = [
    "teacher.kind=resnet18", "teacher.weights=null", "teacher.small_input_stem=true", "teacher.input_size=32",
    "backbone.kind=reactnet_a", "backbone.input_size=32", "backbone.width_multiplier=0.125", "backbone.blocks=4",
]
# setting → its overrides. A GPU cluster turns both flags on together.
SETTINGS = {
    "full_size": FULL_SIZE,
    "mixed_precision+jit_compile": [*SMALL, "train.mixed_precision=true", "train.jit_compile=true"],
}
BATCH = 2


def one_step(setting: str) -> dict:
    """Builds the full-size BURN stage 2 under ``setting``, trains one step, reports."""
    import larq as lq
    import numpy as np
    import tensorflow as tf

    from burn_tf.build import build_method, build_training_optimizer
    from burn_tf.config import load_config

    tf.keras.utils.set_random_seed(0)
    cfg = load_config(None, [*BURN_STEP, *SETTINGS[setting]])
    size = cfg.backbone.input_size
    model = build_method(cfg, stage=2)
    model.compile(optimizer=build_training_optimizer(cfg, steps_per_epoch=1),
                  jit_compile=cfg.train.jit_compile)
    variables = model.train_variables()
    before = [v.numpy().copy() for v in variables]
    rng = np.random.default_rng(0)
    views = [rng.uniform(size=(BATCH, size, size, 3)).astype("float32") for _ in range(2)]
    dataset = tf.data.Dataset.from_tensor_slices(tuple(views)).batch(BATCH)
    start = time.time()
    history = model.fit(dataset, epochs=1, steps_per_epoch=1, verbose=0)
    seconds = time.time() - start
    moved = [float(np.max(np.abs(v.numpy() - b))) for v, b in zip(variables, before)]
    binary_convs = [layer for layer in _all_layers(model.student_backbone)
                    if isinstance(layer, lq.layers.QuantConv2D)]
    return {
        "setting": setting,
        "input_size": model.student_backbone.input_shape[1],
        "loss": float(history.history["loss"][0]),
        "kl": float(history.history["kl"][0]),
        "global_step": int(model.global_step.numpy()),
        "variables": len(variables),
        "variables_moved": sum(m > 0 for m in moved),
        "max_moved": max(moved),
        "variable_dtypes": sorted({v.dtype.name for v in variables}),
        "student_compute_dtypes": sorted({layer.compute_dtype for layer in binary_convs}),
        "teacher_conv_compute_dtypes": sorted({layer.compute_dtype for layer in _all_layers(model.teacher_backbone)
                                               if isinstance(layer, tf.keras.layers.Conv2D)}),
        "student_output_dtype": model.student_backbone.outputs[0].dtype.name,
        "loss_scaled": model.loss_scaling,
        "jit_compile": bool(model.jit_compile),
        "fit_seconds": round(seconds, 1),
    }


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def _run(setting: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, __file__, setting], capture_output=True, text=True, env=env,
                          timeout=1800)
    assert proc.returncode == 0, proc.stderr[-6000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# Half a minute each on a 2-core CPU (one process per setting builds both networks and
# traces or XLA-compiles the step): marked slow (-m "not slow" leaves it out).
@pytest.mark.slow
@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_burn_step(setting):
    result = _run(setting)
    flags = SETTINGS[setting]
    assert result["input_size"] == (224 if setting == "full_size" else 32), result
    assert result["global_step"] == 1, result
    assert math.isfinite(result["loss"]) and math.isfinite(result["kl"]), result
    # Every trainable variable of the student, its heads and g_θ takes the step (Adam moves
    # each one by about the learning rate).
    assert result["variables_moved"] == result["variables"], result
    assert result["variable_dtypes"] == ["float32"], result
    assert result["student_output_dtype"] == "float32", result
    mixed = "train.mixed_precision=true" in flags
    compute = ["float16"] if mixed else ["float32"]
    assert result["student_compute_dtypes"] == compute, result
    assert result["teacher_conv_compute_dtypes"] == compute, result
    assert result["loss_scaled"] is mixed, result
    assert result["jit_compile"] is ("train.jit_compile=true" in flags), result


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    print(json.dumps(one_step(sys.argv[1])))
