"""Schedules of a scalar over the training steps, as pure functions of the step (Python
floats, set every step by :class:`burn_tf.callbacks.ScheduledValue`): BURN's λ(t) (Eq. 3)
and its Table-7 alternatives (:data:`LAMBDA_SCHEDULES`), the KL term's linear warm-up
weight, and the EMA momentum τ(t) of the momentum methods (BYOL's cosine).

>>> lam = lambda_at(step, total_steps, start=0.9, end=0.7, schedule="cosine")
"""

from __future__ import annotations

import math

# step: ``start`` then ``end`` at T/2 (burn_tf's earlier reading); heaviside: the paper's
# literal Table-7 H(−t + T/2), i.e. λ = 1 (L_FS alone) until T/2, then 0 (KL alone).
LAMBDA_SCHEDULES = ("cosine", "constant", "step", "heaviside")


def lambda_at(step, total_steps, start: float = 0.9, end: float = 0.7, schedule: str = "cosine"):
    """λ(t) of Eq. 3 (cosine from ``start`` to ``end``) or a Table-7 alternative.

    constant: ``end`` throughout (the paper's 0.7); step: ``start`` until T/2, then ``end``;
    heaviside: the paper's literal H(−t + T/2) of Table 7 — 1 until T/2, then 0 (``start``
    and ``end`` are ignored).
    """
    t = min(max(float(step), 0.0), float(total_steps))
    if schedule == "cosine":
        return end - (end - start) * (math.cos(math.pi * t / total_steps) + 1.0) / 2.0
    if schedule == "constant":
        return end
    if schedule == "step":
        return start if t < total_steps / 2 else end
    if schedule == "heaviside":
        return 1.0 if t < total_steps / 2 else 0.0
    raise ValueError(f"lambda schedule {schedule!r} is not one of {LAMBDA_SCHEDULES}")


def kl_warmup_weight(step, warmup_steps: int) -> float:
    """Weight of the KL term during a linear warm-up: (t + 1)/W for t < W, then 1 (W = 0:
    always 1). Keeps the KL's large early gradients from swamping L_FS's."""
    if warmup_steps <= 0:
        return 1.0
    return min((max(float(step), 0.0) + 1.0) / float(warmup_steps), 1.0)


def cosine_momentum(step, total_steps: int, start: float, end: float) -> float:
    """τ(t) = end − (end − start)·(cos(πt/T) + 1)/2 (BYOL): ``start`` at t=0, ``end`` at T."""
    t = min(max(float(step), 0.0), float(max(total_steps, 1)))
    return end - (end - start) * (math.cos(math.pi * t / max(total_steps, 1)) + 1.0) / 2.0
