"""Single-image latency of a ``.tflite`` flatbuffer in Larq Compute Engine's interpreter.

What ``benchmarks/deploy.py`` and the larq-zoo students study (:mod:`burn_tf.studies.students`)
time. On x86 LCE runs its portable kernels — its hand-optimised binary kernels target Arm64 —
so these figures compare models on the same machine; they are not a device's latency.
A figure, never an assertion: time it on a quiet machine.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
from larq_compute_engine.tflite.python.interpreter import Interpreter


def lce_latency_ms(flatbuffer: bytes, threads: int = 1, runs: int = 20, warmup: int = 3, seed: int = 0,
                   use_xnnpack: bool = False) -> dict:
    """Median / p10 / p90 milliseconds of one image (uniform in [0, 1]) through
    ``flatbuffer`` with ``threads`` threads, over ``runs`` runs after ``warmup`` runs."""
    if runs < 1 or warmup < 0 or threads < 1:
        raise ValueError(f"runs must be >= 1, warmup >= 0 and threads >= 1; got {runs}, {warmup}, {threads}")
    interpreter = Interpreter(flatbuffer, num_threads=threads, use_xnnpack=use_xnnpack)
    shape = interpreter.input_shapes[0]
    x = np.random.default_rng(seed).uniform(0, 1, (1, *shape[1:])).astype(np.float32)
    for _ in range(warmup):
        interpreter.predict(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.predict(x)
        times.append((time.perf_counter() - start) * 1000.0)
    times.sort()
    return {
        "median_ms": statistics.median(times),
        "p10_ms": times[int(0.1 * (len(times) - 1))],
        "p90_ms": times[int(0.9 * (len(times) - 1))],
        "runs": runs,
        "threads": threads,
    }
