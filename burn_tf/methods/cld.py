"""CLD: cross-level instance–group discrimination (Wang, Liu & Yu, CVPR 2021; seed 003 is
its supplement) on top of an instance branch — NPID (``instance: npid``) or MoCo v2
(``instance: moco``).

Besides the instance branch, a separate group branch (a linear head to ``group_dim``,
unit rows: the supplement's Table A.2 "separate" subspace) embeds both views. Each view's
group features are grouped (``grouping``: k-means or spectral grouping into
``num_groups``), and each view must place its image in the group the *other* view's copy
fell in, against the other view's centroids::

    loss = instance + λ · ½[CE(g₁·C₂ᵀ/T, y₂) + CE(g₂·C₁ᵀ/T, y₁)]

Settings (``CLDConfig``) and sources: λ (``group_weight``) by default the CIFAR scripts'
(``scripts/cifar/train_cifar10_npid_cld.sh`` ``--Lambda 1.0``,
``train_cifar10_moco_cld.sh`` ``--Lambda 0.8``; the supplement's §6 best is 0.25, Tables A.3
and A.4), T = 0.2 (``--cld_t 0.2``), 5 k-means rounds (``train_cifar10_npid_cld.sh``: ``--num_iters 5``), a 128-d group
head; the §3 study compares k-means and spectral grouping at 10, 64, 128 and 256 groups
(Table A.1) — ``grouping`` and ``num_groups`` are its keys (256 groups need a batch of
512). ``num_groups`` is at most half the batch the grouping runs on (here the global batch,
see below): CLD's CIFAR scripts group one GPU's batch of 256 into ``--clusters 128``; more
groups than that leave most groups with one image or none and the group loss degenerates
into instance discrimination. NPID branch: temperature 0.1 (``--nce-t 0.1``), bank momentum 0.5, both
views discriminated and written to the bank, as ``train_cifar_npid_cld.py`` does with
``--two-imgs``; a softmax over the whole bank as its script (``--nce-k 0``) is
``negatives: 0``. MoCo branch as ``train_cifar_moco_cld.py`` l. 258-311 with
``--three-imgs``: **two queries** (views 1 and 2, the online network) against one key (view 3,
the momentum network), their two InfoNCE losses averaged, the key enqueued once, and the
group loss on the two queries' group features (``query_views: 1`` is a one-query variant:
q from view 1, k from view 2); temperature 0.07 (``--nce-t 0.07``), CLD's normalised linear
heads (``projection_head: cosine``, ``--normlinear``: ``NormedLinear`` for the instance and
the group head, no MLP), MoCo's queue and τ (:mod:`burn_tf.methods.moco`).
``temperature: null`` and ``group_weight: null`` take the instance branch's script value;
``projection_head: null`` its script's head (NPID: linear, MoCo: cosine).

As CLD's released code (``spectral_clustering.py`` ``KMeans``/``spectral_clustering``,
``train_cifar_npid_cld.py``), by default:

- k-means starts from the first ``num_groups`` rows, assigns by Euclidean distance and its
  centroids are the plain means of the live group features (``scatter_add_`` / count; an
  empty group's centroid is zero): the group loss back-propagates through the centroids
  (``centroids: mean``). ``centroids: unit`` is the supplement's spherical k-means
  (normalised centroids, no gradient through the grouping), ``kmeans_init: farthest`` a
  farthest-point start that cannot seed two centroids in one group — both are deviations
  kept for the grouping study, not CLD's code.
- the two NPID bank writes happen in the order autograd's backward pass runs CLD's two
  ``LinearAverageOp.backward`` (the op created last first): view 2, then view 1; both
  logits were computed against the bank before either write.

Grouping is over the *global* batch: the group features of every replica are gathered
(after the instance loss), every replica runs the same deterministic grouping and the
group loss of the whole global batch with its own rows differentiable
(:meth:`CrossLevelGroups.group_loss`), so N replicas compute what one device does on the
global batch, gradient through the centroids included.

``CLD(backbone, config, dataset_size=…)`` builds :class:`CLDOnNPID` or
:class:`CLDOnMoCo` by ``config.instance`` (one registered name, two bases).
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from burn_tf.distribute import gather_in_order
from burn_tf.losses import contrastive
from burn_tf.losses.groups import cross_level_group_loss
from burn_tf.methods.base import PretrainMethod
from burn_tf.methods.moco import MoCoV2, check_bn_splits
from burn_tf.methods.npid import NPID, NPIDConfig, require_index
from burn_tf.methods.registry import register
from burn_tf.models.heads import build_head
from burn_tf.ops import clustering
from burn_tf.schema import ConfigError, check_choice, check_range

INSTANCE_BRANCHES = ("npid", "moco")
# Each branch's CIFAR script (scripts/cifar/train_cifar10_{npid,moco}_cld.sh): --nce-t, --Lambda
# and the heads (--normlinear on MoCo's only).
_INSTANCE_TEMPERATURE = {"npid": 0.1, "moco": 0.07}
_GROUP_WEIGHT = {"npid": 1.0, "moco": 0.8}
_PROJECTION_HEAD = {"npid": "dense", "moco": "cosine"}
PROJECTION_HEADS = ("dense", "cosine", "mlp")


@dataclasses.dataclass
class CLDConfig(NPIDConfig):
    name: str = "cld"
    instance: str = "npid"
    grouping: str = "kmeans"
    num_groups: int = 128
    group_dim: int = 128
    group_temperature: float = 0.2
    # λ; null: the instance branch's script value (NPID 1.0, MoCo 0.8).
    group_weight: float | None = None
    kmeans_iterations: int = 5
    # mean: CLD's code (plain means, the loss back-propagates through them); unit: the
    # supplement's spherical k-means (normalised, constant).
    centroids: str = "mean"
    # first_rows: CLD's code (c = x[:K]); farthest: farthest-point seeding.
    kmeans_init: str = "first_rows"
    # The instance branch's temperature; null: the branch's script value (NPID 0.1, MoCo 0.07).
    temperature: float | None = None
    # NPID branch: a softmax over the whole bank (CLD's --nce-k 0); > 0: sampled negatives.
    negatives: int = 0
    loss: str = "softmax"
    # MoCo's keys (instance: moco): CLD's CIFAR queue (--nce-k 12288), --alpha 0.999.
    queue_size: int = 12288
    tau_start: float = 0.999
    tau_end: float = 0.999
    # Queries of the MoCo branch: 2 (CLD's --three-imgs: views 1 and 2 against view 3's key)
    # or 1 (view 1 against view 2's key).
    query_views: int = 2
    # The instance and group heads: dense (a linear layer), cosine (CLD's NormedLinear,
    # --normlinear) or, MoCo branch only, mlp (MoCo v2's projector, projector_hidden wide; the
    # group head is then dense); null: the branch's script (NPID dense, MoCo cosine).
    projection_head: str | None = None
    projector_hidden: int = 2048
    # MoCo's shuffled BatchNorm on one device (instance: moco; MoCoV2Config.bn_splits).
    bn_splits: int = 8

    def __post_init__(self):
        check_choice("method", "instance", self.instance, INSTANCE_BRANCHES)
        if self.projection_head is None:
            self.projection_head = _PROJECTION_HEAD[self.instance]
        check_choice("method", "projection_head", self.projection_head, PROJECTION_HEADS)
        if self.instance == "npid" and self.projection_head != "dense":
            raise ConfigError(f"method.projection_head={self.projection_head!r}: the NPID branch's instance head "
                              "is NPID's linear layer (dense), as CLD's NPID script")
        check_choice("method", "query_views", self.query_views, (1, 2))
        if self.group_weight is None:
            self.group_weight = _GROUP_WEIGHT[self.instance]
        check_choice("method", "grouping", self.grouping, clustering.GROUPINGS)
        check_choice("method", "centroids", self.centroids, clustering.CENTROIDS)
        check_choice("method", "kmeans_init", self.kmeans_init, clustering.KMEANS_INITS)
        if self.temperature is None:
            self.temperature = _INSTANCE_TEMPERATURE[self.instance]
        super().__post_init__()
        for key in ("num_groups", "group_dim", "kmeans_iterations", "queue_size", "projector_hidden"):
            check_range("method", key, getattr(self, key), 1)
        check_range("method", "group_temperature", self.group_temperature, 0, low_open=True)
        check_range("method", "group_weight", self.group_weight, 0)
        check_range("method", "tau_start", self.tau_start, 0, 1)
        check_range("method", "tau_end", self.tau_end, 0, 1)
        check_range("method", "bn_splits", self.bn_splits, 1)

    def check_batch_size(self, batch_size: int) -> None:
        """Refuses more groups than half the (global) batch the grouping runs on, and (MoCo
        branch) a batch that does not cut into ``bn_splits`` equal groups."""
        if self.instance == "moco":
            check_bn_splits(self.bn_splits, batch_size=batch_size)
        if 2 * self.num_groups > batch_size:
            raise ConfigError(
                f"method.num_groups={self.num_groups} is more than half the batch {batch_size} (train.batch_size) "
                f"that CLD groups: use at most {batch_size // 2} groups (CLD's CIFAR setting: 128 groups at "
                "batch 256) or a larger train.batch_size")

    @property
    def group_head(self) -> str:
        """The group head's kind: CLD's linear_layer, the instance head's (a linear layer
        beside MoCo v2's MLP)."""
        return "cosine" if self.projection_head == "cosine" else "dense"

    @property
    def projector_dim(self) -> int:
        """MoCo v2's name for the instance projection's width."""
        return self.projection_dim


def in_order(after, network, inputs, training):
    """``network(inputs)`` launched after ``after`` is computed (collectives in one order)."""
    with tf.control_dependencies([after]):
        return network(tf.identity(inputs), training=training)


class CrossLevelGroups:
    """The group branch both CLD variants add to their instance method."""

    method_name = "cld"
    Config = CLDConfig
    num_views = 2
    needs_index = True

    @classmethod
    def num_views_for(cls, config) -> int:
        """NPID: 2 views; MoCo: the queries' views and the key's."""
        return config.query_views + 1 if config.instance == "moco" else 2

    def build_group_branch(self) -> None:
        """The group head, declared after the instance method's networks."""
        self.group_projector = self.add_head("group_projector", build_head(
            self.config.group_head, self.feature_dim, self.config.group_dim, "group_projector"))

    def group_embedding(self, features, training):
        return tf.math.l2_normalize(self.group_projector(features, training=training), axis=-1, epsilon=1e-12)

    def group_loss(self, group_1, group_2, after, training):
        """CLD's cross-level loss of the global batch, grouping the global batch.

        Every replica gathers both views' group features (forward only: no collective in the
        backward pass, whose order across replicas nothing fixes), puts its own rows back
        live and computes the loss of the whole global batch — the same value on every
        replica, differentiable in this replica's rows, also through the centroids. Its
        gradient times the replica count is this replica's share of the global gradient
        (the base divides each replica's loss by the count and sums the gradients); one
        device: the plain loss."""
        cfg = self.config
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if training and group_1.shape[0] is not None:
            cfg.check_batch_size(group_1.shape[0] * replicas)
        every = gather_in_order([tf.stop_gradient(group_1), tf.stop_gradient(group_2)], after)
        ctx = tf.distribute.get_replica_context()
        replicas = ctx.num_replicas_in_sync if ctx is not None else 1  # cross-replica (build_all): nothing gathered
        if replicas == 1:
            live = [group_1, group_2]
        else:
            start = ctx.replica_id_in_sync_group * tf.shape(group_1)[0]
            end = start + tf.shape(group_1)[0]
            live = [tf.concat([g[:start], own, g[end:]], axis=0) for g, own in zip(every, (group_1, group_2))]
        groups = [clustering.group_features(g, cfg.num_groups, cfg.grouping, cfg.kmeans_iterations, cfg.centroids,
                                            cfg.kmeans_init) for g in live]
        loss = cross_level_group_loss(live[0], live[1], groups[0], groups[1], cfg.group_temperature)
        if replicas == 1:
            return loss
        return replicas * loss - (replicas - 1) * tf.stop_gradient(loss)

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
        # One fixed order of the networks: their synchronized BatchNorms must all-reduce in the
        # same order on every replica.
        features_1 = self.backbone(views[0], training=training)
        features_2 = in_order(features_1, self.backbone, views[1], training)
        projected_1 = in_order(features_2, self.projector, features_1, training)
        projected_2 = in_order(projected_1, self.projector, features_2, training)
        group_1 = in_order(projected_2, self.group_embedding, features_1, training)
        group_2 = in_order(group_1, self.group_embedding, features_2, training)
        instance_features = [tf.math.l2_normalize(p, axis=-1, epsilon=1e-12) for p in (projected_1, projected_2)]
        negatives = self.negative_index(tf.shape(index)[0])
        instance = tf.add_n([self.instance_loss(z, index, negatives, training) for z in instance_features]) / 2.0
        group = self.group_loss(group_1, group_2, after=instance, training=training)
        if training:
            written = group
            # View 2, then view 1: the order CLD's two LinearAverageOp.backward run in.
            for z in reversed(instance_features):
                written = self.update_bank(index, z, written)
        return self.group_terms(instance, group)


class CLDOnMoCo(CrossLevelGroups, MoCoV2):
    """MoCo + CLD as ``train_cifar_moco_cld.py`` (l. 267-311): queries q₁, q₂ of views 1
    and 2 (online) against the key k of the last view (momentum encoder), instance loss
    ½[InfoNCE(q₁, k) + InfoNCE(q₂, k)] over the queue (k enqueued once), plus the group
    branch on the online features of views 1 and 2. With ``query_views: 1``: q of view 1,
    k of view 2, the group branch on views 1 and 2. The dataset index is not used."""

    loss_terms = ("instance", "group", "positive_cosine")

    def __init__(self, backbone, config=None, dataset_size=None, accumulation_steps=1, **kwargs):
        super().__init__(backbone, config, accumulation_steps=accumulation_steps, **kwargs)
        self.build_group_branch()

    def build_instance_projector(self) -> tf.keras.Model:
        """CLD's instance head: a normalised linear layer (``cosine``), a linear layer, or
        MoCo v2's MLP (``mlp``)."""
        cfg = self.config
        if cfg.projection_head == "mlp":
            return super().build_instance_projector()
        return build_head(cfg.projection_head, self.feature_dim, cfg.projector_dim, "projector")

    def compute_losses(self, views, labels=None, training=True, index=None) -> dict:
        # One fixed order of the networks (key encoder first, as MoCoV2.queries_and_keys):
        # their synchronized BatchNorms must all-reduce in the same order on every replica.
        keys = self.key_embedding(views[-1], training)
        backbone, projector = self.encoder(self.backbone, training), self.encoder(self.projector, training)
        features_1 = in_order(keys, backbone, views[0], training)
        features_2 = in_order(features_1, backbone, views[1], training)
        queried = [features_1, features_2] if self.config.query_views == 2 else [features_1]
        queries, after = [], features_2
        for features in queried:
            after = in_order(after, projector, features, training)
            queries.append(after)
        group_1 = in_order(after, self.group_embedding, features_1, training)
        group_2 = in_order(group_1, self.group_embedding, features_2, training)
        negatives = self.queue.read_value()
        instance = tf.add_n([contrastive.info_nce(q, keys, negatives, self.config.temperature)
                             for q in queries]) / len(queries)
        group = self.group_loss(group_1, group_2, after=instance, training=training)
        if training:
            self.enqueue_keys(keys, group)
        positive = tf.reduce_mean([tf.reduce_mean(tf.reduce_sum(
            tf.math.l2_normalize(q, -1) * tf.math.l2_normalize(keys, -1), axis=-1)) for q in queries])
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
    num_views_for = CrossLevelGroups.__dict__["num_views_for"]  # the same classmethod

    def __new__(cls, backbone, config: CLDConfig | None = None, dataset_size: int | None = None, **kwargs):
        config = config if config is not None else CLDConfig()
        variant = CLDOnMoCo if config.instance == "moco" else CLDOnNPID
        return variant(backbone, config, dataset_size=dataset_size, **kwargs)
