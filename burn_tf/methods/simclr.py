"""SimCLR v2 (Chen et al., "Big Self-Supervised Models are Strong Semi-Supervised Learners",
NeurIPS 2020) — a baseline of the BURN supplement (Sec. 2, Tables 1–2).

    z = g(f(x)) for both views of every image,  loss = NT-Xent(z) at temperature T

Negatives are the other views of the *global* batch: each replica gathers every replica's
projections and computes the loss of its own views against all of them, as the official
``tpu_cross_replica_concat`` (``simclr/tf2/objective.py``) does — an all-reduce SUM of a
one-hot-placed tensor, whose gradient gives each replica's rows the sum of every replica's
gradient for them, so N replicas compute the gradient one device computes on the global
batch. (``ReplicaContext.all_gather`` has the same gradient — all-reduce SUM, then this
replica's slice; the all-reduce form is the official code's and the one checked against
one device.)

Defaults from the paper and ``google-research/simclr`` (``tf2/README.md``'s ImageNet
command, "the default hyperparameters in our paper"; ``tf2/model.py``): temperature 0.1;
a 3-layer projection head (SimCLR v2 Sec. 2, "deeper projection head"), every Linear
followed by BatchNorm, hidden width the backbone's feature width (2048 for ResNet-50),
output 128. Both views pass through the networks as one batch (as the official code
concatenates them), so the BatchNorm statistics are those of all 2N views. SimCLR v2's
optional MoCo-style memory is left out (its released code has none).
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from burn_tf.losses import contrastive
from burn_tf.methods.base import MethodConfig, PretrainMethod
from burn_tf.methods.registry import register
from burn_tf.models.heads import build_projector
from burn_tf.schema import check_range


@dataclasses.dataclass
class SimCLRV2Config(MethodConfig):
    name: str = "simclr_v2"
    # SimCLR v2's ImageNet temperature (google-research/simclr tf2/README.md: --temperature=0.1).
    temperature: float = 0.1
    projector_layers: int = 3
    projector_hidden: int = 2048
    projector_dim: int = 128

    def __post_init__(self):
        check_range("method", "temperature", self.temperature, 0, low_open=True)
        check_range("method", "projector_layers", self.projector_layers, 1)
        check_range("method", "projector_hidden", self.projector_hidden, 1)
        check_range("method", "projector_dim", self.projector_dim, 1)


def cross_replica_concat(tensor: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """``(every replica's rows in replica order, this replica's first row index)``; on one
    device ``(tensor, 0)``. As SimCLR's ``tpu_cross_replica_concat``: each replica places
    its rows in a zero tensor of the global shape (one-hot by replica) and the tensors are
    summed over replicas. The sum's gradient is the sum of every replica's gradient, so
    this replica's rows receive what all replicas' losses send them."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return tensor, tf.constant(0, tf.int32)
    replicas = ctx.num_replicas_in_sync
    replica = tf.cast(ctx.replica_id_in_sync_group, tf.int32)
    placed = tf.einsum("r,n...->rn...", tf.one_hot(replica, replicas, dtype=tensor.dtype), tensor)
    summed = ctx.all_reduce(tf.distribute.ReduceOp.SUM, placed)
    local = tf.shape(tensor)[0]
    return tf.reshape(summed, tf.concat([[replicas * local], tf.shape(tensor)[1:]], 0)), replica * local


@register
class SimCLRV2(PretrainMethod):
    method_name = "simclr_v2"
    Config = SimCLRV2Config
    loss_terms = ("nt_xent", "positive_cosine")

    def __init__(self, backbone: tf.keras.Model, config: SimCLRV2Config | None = None, accumulation_steps: int = 1,
                 **kwargs):
        super().__init__(backbone, config, accumulation_steps=accumulation_steps, **kwargs)
        cfg = self.config
        self.projector = self.add_head("projector", build_projector(
            self.feature_dim, cfg.projector_hidden, cfg.projector_dim, "projector", layers=cfg.projector_layers,
            batchnorm=True, output_batchnorm=True))

    def compute_losses(self, views, labels=None, training=True) -> dict:
        projections = self.projector(self.backbone(tf.concat(views[:2], axis=0), training=training),
                                     training=training)
        view_a, view_b = tf.split(projections, 2, axis=0)
        # One gather for both views (side by side), in global batch order; the gradient
        # flows back through it to the replica that computed each row.
        everyone, first_index = cross_replica_concat(tf.concat([view_a, view_b], axis=1))
        keys_a, keys_b = tf.split(everyone, 2, axis=1)
        loss = contrastive.nt_xent(view_a, view_b, keys_a, keys_b, first_index, self.config.temperature)
        positive_cosine = tf.reduce_mean(tf.reduce_sum(
            tf.math.l2_normalize(view_a, -1) * tf.math.l2_normalize(view_b, -1), axis=-1))
        return {"loss": loss, "nt_xent": loss, "positive_cosine": positive_cosine}
