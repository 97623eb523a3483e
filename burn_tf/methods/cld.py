"""CLD: cross-level instance–group discrimination (Wang, Liu & Yu, CVPR 2021; seed 003 is
its supplement) on top of an instance branch — NPID (``instance: npid``) or MoCo v2
(``instance: moco``).

Besides the instance branch, a separate group branch (a linear head to ``group_dim``,
unit rows: the supplement's Table A.2 "separate" subspace) embeds both views. Each view's
group features are grouped (``grouping``: spherical k-means or spectral grouping into
``num_groups``), and each view must place its image in the group the *other* view's copy
fell in, against the other view's centroids::

    loss = instance + λ · ½[CE(g₁·C₂ᵀ/T, y₂) + CE(g₂·C₁ᵀ/T, y₁)]

Settings (``CLDConfig``) and sources: λ = 0.25 and T = 0.2 (supplement §6, Tables A.3 and
A.4: the best of λ ∈ {0.1 … 3} and of T; CLD's CIFAR scripts use ``--Lambda 1.0 --cld_t
0.2``), 128 groups and 5 k-means rounds (``train_cifar10_npid_cld.sh``: ``--clusters 128
--num_iters 5``; the DESIGN's "CLD on NPID: 128 groups"), a 128-d group head; the §3 study
compares k-means and spectral grouping at 10, 64, 128 and 256 groups (Table A.1) —
``grouping`` and ``num_groups`` are its keys. NPID branch: temperature 0.1 (``--nce-t 0.1``),
bank momentum 0.5, both views discriminated and written to the bank, as
``train_cifar_npid_cld.py`` does with ``--two-imgs``; MoCo branch: MoCo v2's keys and
defaults (temperature 0.2, queue, τ 0.999; :mod:`burn_tf.methods.moco`). ``temperature:
null`` takes the instance branch's default.

Grouping is over the *global* batch: the group features of every replica are gathered
(after the instance loss), every replica runs the same deterministic grouping (k-means
starts from the first rows) and keeps its own rows' labels, so N replicas compute what
one device does. No gradient goes through the grouping (labels and centroids are
constants of the step), as in CLD's code.

``CLD(backbone, config, dataset_size=…)`` builds :class:`CLDOnNPID` or
:class:`CLDOnMoCo` by ``config.instance`` (one registered name, two bases).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import tensorflow as tf

from burn_tf.losses import clustering, contrastive
from burn_tf.methods.base import PretrainMethod, gather_in_order
from burn_tf.methods.moco import MoCoV2
from burn_tf.methods.npid import NPID, NPIDConfig, require_index
from burn_tf.methods.registry import register
from burn_tf.models.heads import build_head
from burn_tf.schema import check_choice, check_range

INSTANCE_BRANCHES = ("npid", "moco")
_INSTANCE_TEMPERATURE = {"npid": 0.1, "moco": 0.2}


@dataclasses.dataclass
class CLDConfig(NPIDConfig):
    name: str = "cld"
    instance: str = "npid"
    grouping: str = "kmeans"
    num_groups: int = 128
    group_dim: int = 128
    group_temperature: float = 0.2
    group_weight: float = 0.25
    kmeans_iterations: int = 5
    # The instance branch's temperature; null: NPID's 0.1 or MoCo v2's 0.2.
    temperature: Optional[float] = None
    # MoCo v2's keys (instance: moco), defaults as MoCoV2Config.
    queue_size: int = 65536
    projector_hidden: int = 2048
    tau_start: float = 0.999
    tau_end: float = 0.999

    def __post_init__(self):
        check_choice("method", "instance", self.instance, INSTANCE_BRANCHES)
        check_choice("method", "grouping", self.grouping, clustering.GROUPINGS)
        if self.temperature is None:
            self.temperature = _INSTANCE_TEMPERATURE[self.instance]
        super().__post_init__()
        for key in ("num_groups", "group_dim", "kmeans_iterations", "queue_size", "projector_hidden"):
            check_range("method", key, getattr(self, key), 1)
        check_range("method", "group_temperature", self.group_temperature, 0, low_open=True)
        check_range("method", "group_weight", self.group_weight, 0)
        check_range("method", "tau_start", self.tau_start, 0, 1)
        check_range("method", "tau_end", self.tau_end, 0, 1)

    @property
    def projector_dim(self) -> int:
        """MoCo v2's name for the instance projection's width."""
        return self.projection_dim


class CrossLevelGroups:
    """The group branch both CLD variants add to their instance method."""

    method_name = "cld"
    Config = CLDConfig
    num_views = 2
    needs_index = True

    def build_group_branch(self) -> None:
        self.group_projector = build_head("dense", self.feature_dim, self.config.group_dim, "group_projector")

    # Cooperative hooks: the instance method's networks plus the group head.
    def trainable_groups(self):
        return {**super().trainable_groups(), "group_projector": self.group_projector.trainable_variables}

    def checkpoint_modules(self):
        return {**super().checkpoint_modules(), "group_projector": self.group_projector}

    def exported_heads(self):
        return {**super().exported_heads(), "group_projector": self.group_projector}

    def group_embedding(self, features, training):
        return tf.math.l2_normalize(self.group_projector(features, training=training), axis=-1, epsilon=1e-12)

    def group_loss(self, group_1, group_2, after, training):
        """CLD's cross-level loss of this replica's rows, grouping the global batch."""
        cfg = self.config
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if training and group_1.shape[0] is not None and group_1.shape[0] * replicas < cfg.num_groups:
            raise ValueError(f"method.num_groups={cfg.num_groups} is more than the global batch "
                             f"{group_1.shape[0] * replicas} (train.batch_size) it groups")
        every = gather_in_order([tf.stop_gradient(group_1), tf.stop_gradient(group_2)], after)
        ctx = tf.distribute.get_replica_context()
        replica = ctx.replica_id_in_sync_group if ctx is not None else 0
        local = tf.shape(group_1)[0]
        groups = []
        for g in every:
            labels, centroids = clustering.group_features(g, cfg.num_groups, cfg.grouping, cfg.kmeans_iterations)
            groups.append((labels[replica * local:(replica + 1) * local], centroids))
        return clustering.cross_level_group_loss(group_1, group_2, groups[0], groups[1], cfg.group_temperature)

    def group_terms(self, instance, group) -> dict:
        loss = instance + self.config.group_weight * group
        return {"loss": loss, "instance": instance, "group": group}


class CLDOnNPID(CrossLevelGroups, NPID):
    """NPID + CLD: both views discriminated against the bank (and written to it)."""

    loss_terms = ("instance", "group")

    def __init__(self, backbone, config=None, dataset_size=None, accumulation_steps=1, **kwargs):
        super().__init__(backbone, config, dataset_size=dataset_size, accumulation_steps=accumulation_steps,
                         **kwargs)
        self.build_group_branch()

    def compute_losses(self, views, labels=None, training=True, index=None) -> dict:
        index = require_index(self, index)
        features = [self.backbone(v, training=training) for v in views[:2]]
        instance_features = [tf.math.l2_normalize(self.projector(f, training=training), axis=-1, epsilon=1e-12)
                             for f in features]
        negatives = self.negative_index(tf.shape(index)[0])
        instance = tf.add_n([self.instance_loss(z, index, negatives) for z in instance_features]) / 2.0
        group = self.group_loss(*[self.group_embedding(f, training) for f in features], after=instance, training=training)
        if training:
            written = group
            for z in instance_features:  # view 1 then view 2, as CLD's two bank writes
                written = self.update_bank(index, z, written)
        return self.group_terms(instance, group)


class CLDOnMoCo(CrossLevelGroups, MoCoV2):
    """MoCo v2 + CLD: MoCo v2's loss (q from view 1, k from view 2) plus the group branch
    on the online backbone's features of both views. The dataset index is not used."""

    loss_terms = ("instance", "group", "positive_cosine")

    def __init__(self, backbone, config=None, dataset_size=None, accumulation_steps=1, **kwargs):
        super().__init__(backbone, config, accumulation_steps=accumulation_steps, **kwargs)
        self.build_group_branch()

    def compute_losses(self, views, labels=None, training=True, index=None) -> dict:
        features = [self.backbone(v, training=training) for v in views[:2]]
        queries = self.projector(features[0], training=training)
        keys = tf.stop_gradient(self.momentum_projector(self.momentum_backbone(views[1], training=training),
                                                        training=training))
        instance = contrastive.info_nce(queries, keys, self.queue.read_value(), self.config.temperature)
        group = self.group_loss(*[self.group_embedding(f, training) for f in features], after=instance, training=training)
        if training:
            self.enqueue_keys(keys, group)
        positive = tf.reduce_mean(tf.reduce_sum(
            tf.math.l2_normalize(queries, -1) * tf.math.l2_normalize(keys, -1), axis=-1))
        return {**self.group_terms(instance, group), "positive_cosine": positive}


@register
class CLD(PretrainMethod):
    """The registered name ``cld``: constructing it builds the variant ``config.instance``
    names (:class:`CLDOnNPID` or :class:`CLDOnMoCo`, which share this class's attributes)."""

    method_name = "cld"
    Config = CLDConfig
    num_views = 2
    needs_index = True
    loss_terms = ("instance", "group")

    def __new__(cls, backbone, config: CLDConfig | None = None, dataset_size: int | None = None, **kwargs):
        config = config if config is not None else CLDConfig()
        variant = CLDOnMoCo if config.instance == "moco" else CLDOnNPID
        return variant(backbone, config, dataset_size=dataset_size, **kwargs)
