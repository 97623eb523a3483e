"""Shared by the benchmark scripts: time a compiled step fairly on a noisy machine."""

from __future__ import annotations

import os
import statistics
import time


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def time_step(step, args, repeats: int = 5, warmup: int = 2) -> dict:
    """Median wall seconds of ``step(*args)`` (result forced to host) after warm-up.

    Alternating several short measurements and taking the median keeps one burst of
    another process on this shared machine from deciding the figure.
    """
    for _ in range(warmup):
        _force(step(*args))
    walls = []
    for _ in range(repeats):
        start = time.perf_counter()
        _force(step(*args))
        walls.append(time.perf_counter() - start)
    return {"median_s": statistics.median(walls), "min_s": min(walls), "runs": len(walls)}


def _force(out):
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        for o in out:
            _force(o)
    elif hasattr(out, "numpy"):
        out.numpy()


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def interleaved_medians(steps: dict, repeats: int = 5, rounds: int = 3) -> dict:
    """{name: median seconds} of each ``steps[name]()`` measured in ``rounds`` interleaved
    rounds (median of the rounds' medians), so a burst of other load hits them alike."""
    times = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            times[name].append(time_step(step, (), repeats=repeats)["median_s"])
    return {name: sorted(v)[len(v) // 2] for name, v in times.items()}
