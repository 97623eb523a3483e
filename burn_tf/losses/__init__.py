"""Losses: pure functions of tensors (no model state), one family of losses a module, each
tested on its own (``tests/losses/`` mirrors it). ``distillation`` — KL and L_FS against a
frozen teacher and BURN's Eq. 4 (BURN, S2-BNN, supervised KL-div); ``classification`` —
cross-entropy with labels (supervised); ``contrastive`` — NT-Xent, InfoNCE against a queue,
BYOL's regression (SimCLR, MoCo v2, InfoMin, BYOL, CLD's MoCo branch); ``instance`` — NPID's
memory-bank instance discrimination (NPID, CLD's NPID branch); ``swapped`` — SwAV's swapped
prediction; ``groups`` — CLD's cross-level group loss. What the methods compute around
their losses and is not one — the λ/τ/warm-up schedules, the collapse diagnostics, the
teacher targets, the queue/EMA/bank updates and the clustering — is in :mod:`burn_tf.ops`.
A method imports the module it uses: ``from burn_tf.losses import distillation``.
"""
