"""Operations the pretraining methods compute around their losses, none of them a loss:
pure functions of tensors or step numbers, no model state (the state they update belongs to
the methods), one concern a module, each tested on its own (``tests/ops/`` mirrors it).
``schedules`` — λ(t), the KL warm-up weight, τ(t); ``diagnostics`` — the per-step collapse
watches (entropies, argmax agreement, feature spread); ``targets`` — soft targets made from
scores (a centred and sharpened softmax, SwAV's Sinkhorn–Knopp); ``memory`` — the update
rules of what a method keeps across steps (FIFO queue, EMA target, NPID's bank rows);
``clustering`` — k-means and spectral grouping (CLD's groups). It sits at the import layer of
:mod:`burn_tf.losses`, below the methods; the two rooms do not import each other.
"""
