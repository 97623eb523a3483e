"""Figures of training over time for the studies, drawn on a matplotlib ``Axes`` the caller owns.

The ablation (:func:`burn_tf.studies.ablate.write_figures`) and the analysis notebook draw with the
same helpers: λ(t) of each schedule (supplement Fig. 3), the EMA-distance simulation (paper
Fig. 5, Eq. 5) and a per-step metric averaged over the seeds of each variant from the
``steps/<variant>_seed<k>.json`` logs (paper Fig. 3 and 6, the collapse metrics). Bands are
± the sample std over seeds / runs (:func:`burn_tf.evaluate.metrics.seed_std`, ddof 1).
The evaluators' own figures (layer-wise curve, t-SNE, clustering, retrieval grid) stay with
their evaluators in :mod:`burn_tf.evaluate`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from burn_tf.evaluate.metrics import seed_std
from burn_tf.ops.schedules import LAMBDA_SCHEDULES, lambda_at


def step_metric_over_seeds(steps_dir: Path, variant: str, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean and sample std over the seeds of ``variant`` of the per-step ``key`` (the runs cut
    to the shortest); None if no run logged ``key``."""
    runs = []
    for path in sorted(Path(steps_dir).glob(f"{variant}_seed*.json")):
        records = json.loads(path.read_text())
        if records and key in records[0]:
            runs.append([r[key] for r in records])
    if not runs:
        return None
    n = min(len(r) for r in runs)
    values = np.array([r[:n] for r in runs])
    return values.mean(0), seed_std(values, axis=0)


def plot_lambda_schedules(ax, total_steps: int = 1000, start: float = 0.9, end: float = 0.7) -> None:
    """Supplement Fig. 3: λ(t) of each schedule."""
    t = np.arange(total_steps + 1)
    for schedule in LAMBDA_SCHEDULES:
        ax.plot(t, [lambda_at(s, total_steps, start, end, schedule) for s in t], label=schedule)
    ax.set_xlabel("iteration t")
    ax.set_ylabel("λ(t)")
    ax.legend()


def ema_distance_simulation(runs: int = 10, dim: int = 100, iterations: int = 100, lr: float = 4.8,
                            tau: float = 0.99, seed: int = 0) -> dict:
    """Eq. 5 (paper Fig. 5): a *Backbone* vector takes random steps η·Δn, Δn ~ N(0, I), and a
    *Target* follows it by EMA τ; both start at the same random values. Returns the L2
    distance between them after each iteration, for the full-precision vectors ("fp") and
    their signs ("binary"), as arrays of shape (runs, iterations)."""
    rng = np.random.default_rng(seed)
    fp = np.zeros((runs, iterations))
    binary = np.zeros((runs, iterations))
    for r in range(runs):
        backbone = rng.standard_normal(dim)
        target = backbone.copy()
        for i in range(iterations):
            backbone = backbone + lr * rng.standard_normal(dim)
            target = tau * target + (1.0 - tau) * backbone
            fp[r, i] = np.linalg.norm(backbone - target)
            binary[r, i] = np.linalg.norm(np.sign(backbone) - np.sign(target))
    return {"fp": fp, "binary": binary}


def plot_ema_simulation(ax, runs: int = 10, lr: float = 4.8, tau: float = 0.99, iterations: int = 100) -> dict:
    """Paper Fig. 5 (Eq. 5): L2 distance between backbone and EMA target, FP vs binarised;
    returns the simulation ({"fp", "binary"}: [runs, iterations])."""
    sim = ema_distance_simulation(runs=runs, iterations=iterations, lr=lr, tau=tau)
    for key, label in (("fp", "full precision"), ("binary", "binarised (sign)")):
        mean, std = sim[key].mean(0), seed_std(sim[key], axis=0)
        x = np.arange(1, iterations + 1)
        ax.plot(x, mean, label=label)
        ax.fill_between(x, mean - std, mean + std, alpha=0.25)
    ax.set_xlabel("iteration")
    ax.set_ylabel("‖Backbone − Target‖₂")
    ax.legend()
    return sim


def plot_step_metric(ax, steps_dir: Path, variants: list[str], key: str, log: bool = False, scale: float = 1.0):
    """One curve per variant: the per-step ``key`` (× ``scale``), mean ± std over its seeds."""
    for name in variants:
        series = step_metric_over_seeds(steps_dir, name, key)
        if series is None:
            continue
        mean, std = series[0] * scale, series[1] * scale
        x = np.arange(1, len(mean) + 1)
        ax.plot(x, mean, label=name)
        ax.fill_between(x, mean - std, mean + std, alpha=0.15)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(key)
