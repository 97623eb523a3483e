"""BYOL (Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020) — a baseline of the BURN
paper (Sec. 4.1, Tables 1–4).

    p = q(g(f(x₁))),  z' = g_m(f_m(x₂)),  loss = (2 − 2·cos(p, z')) + the same with x₁ ↔ x₂

f, g: the online backbone and projector; q: the predictor (online only); f_m, g_m: their
EMA targets, τ following a cosine from ``tau_start`` to ``tau_end`` over training (BYOL
Sec. 3.2). The EMA moves weights only; the target's BatchNorms use the target's own batch
statistics (:meth:`MomentumMethod.add_momentum_pair`).

Defaults: projector and predictor Linear(4096) → BN → ReLU → Linear(256) (BYOL Sec. 3.3);
τ from 0.99 to 1 (solo-learn's ``scripts/pretrain/imagenet-100/byol.yaml``, base_tau 0.99
— BYOL's ImageNet value is 0.996 for 1000-epoch runs with batch 4096). The symmetric loss
is the sum of both directions (BYOL Eq. 2, L + L̃). Each view passes through the networks
on its own (per-view BatchNorm statistics, as in the official code); the passes are
ordered one after the other so synchronized BatchNorms all-reduce in the same order on
every replica (two replicas vs one device: tests/test_distributed.py, step by step, with the
EMA checked to apply once per step). Stage 2 of
ReActNet: the targets restart as copies of the transferred online networks
(:meth:`MomentumMethod.init_from_previous_stage`).
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from burn_tf.losses import contrastive
from burn_tf.methods.base import MethodConfig
from burn_tf.methods.momentum import MomentumMethod
from burn_tf.methods.registry import register
from burn_tf.models.heads import build_projector
from burn_tf.schema import check_range


@dataclasses.dataclass
class BYOLConfig(MethodConfig):
    name: str = "byol"
    projector_hidden: int = 4096
    projector_dim: int = 256
    predictor_hidden: int = 4096
    tau_start: float = 0.99
    tau_end: float = 1.0

    def __post_init__(self):
        for key in ("projector_hidden", "projector_dim", "predictor_hidden"):
            check_range("method", key, getattr(self, key), 1)
        check_range("method", "tau_start", self.tau_start, 0, 1)
        check_range("method", "tau_end", self.tau_end, 0, 1)


@register
class BYOL(MomentumMethod):
    method_name = "byol"
    Config = BYOLConfig
    loss_terms = ("regression", "target_std")

    def __init__(self, backbone: tf.keras.Model, config: BYOLConfig | None = None, accumulation_steps: int = 1,
                 **kwargs):
        super().__init__(backbone, config, accumulation_steps=accumulation_steps, **kwargs)
        cfg = self.config
        self.projector = self.add_head("projector", build_projector(
            self.feature_dim, cfg.projector_hidden, cfg.projector_dim, "projector"))
        self.predictor = self.add_head("predictor", build_projector(
            cfg.projector_dim, cfg.predictor_hidden, cfg.projector_dim, "predictor"))
        self.momentum_backbone = self.add_momentum_pair(backbone)
        self.momentum_projector = self.add_momentum_pair(self.projector)

    def compute_losses(self, views, labels=None, training=True) -> dict:
        predictions, targets = [], []
        after = []
        # One pass at a time, target before online (MoCo v2's order, the one checked on two
        # replicas): synchronized BatchNorms must all-reduce in the same order everywhere.
        for view in views[:2]:
            with tf.control_dependencies(after):
                target = self.momentum_projector(self.momentum_backbone(tf.identity(view), training=training),
                                                 training=training)
            with tf.control_dependencies([target]):
                prediction = self.predictor(
                    self.projector(self.backbone(tf.identity(view), training=training), training=training),
                    training=training)
            predictions.append(prediction)
            targets.append(tf.stop_gradient(target))
            after = [prediction]
        loss = contrastive.byol_loss(predictions[0], targets[1]) + contrastive.byol_loss(predictions[1], targets[0])
        # Spread of the unit target projections: near 0 means the targets collapsed.
        target_std = tf.reduce_mean(tf.math.reduce_std(tf.math.l2_normalize(targets[0], -1), axis=0))
        return {"loss": loss, "regression": loss, "target_std": target_std}
