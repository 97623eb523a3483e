"""SwAV's swapped prediction (Caron et al., NeurIPS 2020) as a pure function of tensors:
every view predicts the soft cluster codes of the other views from its prototype scores.
The codes are Sinkhorn–Knopp equipartitions, :func:`burn_tf.ops.targets.sinkhorn_log_assignment`.

>>> loss = swapped_prediction_loss(log_q, scores, temperature=0.1)
"""

from __future__ import annotations

import tensorflow as tf


def swapped_prediction_loss(log_assignments: list, scores: list, temperature: float = 0.1):
    """SwAV's swapped prediction (Caron et al. 2020, Eq. 1–2; swav ``main_swav.py``).

    ``log_assignments[i]`` is log Q of view ``i`` (the first views: SwAV's two large crops),
    ``scores[v]`` are view ``v``'s prototype scores ⟨z, c⟩. Every other view predicts each
    assignment: mean over (i, v ≠ i) of the cross-entropy −Σ_k q_ik log softmax(s_v/T)_k,
    averaged over the batch — SwAV's loss as written (cross-entropy, not KL).
    """
    if len(scores) < 2 or not 1 <= len(log_assignments) <= len(scores):
        raise ValueError(f"swapped prediction needs >= 2 views and 1..{len(scores)} assignments, "
                         f"got {len(scores)} views and {len(log_assignments)} assignments")
    total = 0.0
    terms = 0
    for i, log_q in enumerate(log_assignments):
        q = tf.exp(tf.stop_gradient(log_q))
        for v, s in enumerate(scores):
            if v == i:
                continue
            log_p = tf.nn.log_softmax(s / temperature, axis=-1)
            total += -tf.reduce_mean(tf.reduce_sum(q * log_p, axis=-1))
            terms += 1
    return total / terms
