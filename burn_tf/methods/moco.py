"""MoCo v2 (Chen et al., "Improved Baselines with Momentum Contrastive Learning", 2020) as
BURN's "Tuned MoCov2" baseline (BURN paper Sec. 4.1 and Tables 1–4, from S2-BNN [39]).

    q = g(f(x₁)),  k = g_m(f_m(x₂)),  loss = InfoNCE(q, k, queue) at temperature T

f, g: the online backbone and projector; f_m, g_m: their EMA copies (the momentum encoder);
the queue holds the last ``queue_size`` keys of every replica (first in, first out).
Defaults from the official code (``facebookresearch/moco``: ``--mlp --moco-t 0.2
--aug-plus --cos``, K = 65536, m = 0.999, 128-d output, projector Linear → ReLU → Linear
without BatchNorm). BURN's baseline is S2-BNN's tuned version for binary networks
(``szq0214/S2-BNN``, ``Contrastive_only/step1/main_moco.py``): the same MoCo v2 loss — one
direction, q from view 1 and k from view 2, not symmetric — trained with Adam (lr 3e-4,
weight decay 1e-4, batch 256) instead of SGD (MoCo: lr 0.03, momentum 0.9, weight decay
1e-4), colour jitter applied with p = 0.6 ("lite aug"), and the two-stage ReActNet schedule
("progressive binarizing"; S2-BNN Table 1).

``configs/moco_v2.yaml`` (the optimizer and the views are set there, not here) keeps Adam,
at lr 0.002 without weight decay: the rate every binary method in this library starts from
for a single short run (``burn_tf.studies.compare`` chooses each row's rate from its ``lr_grid`` on
a validation split). It anneals the key-encoder momentum τ from 0.99 to 0.999 by a cosine
over the run's steps, solo-learn's CIFAR MoCo v2+ recipe (``scripts/pretrain/cifar/
mocov2plus.yaml``: ``base_tau 0.99``, ``final_tau 0.999``; the formula of
``solo/utils/momentum.py`` ``MomentumUpdater.update_tau``, which
:func:`burn_tf.ops.schedules.cosine_momentum` is): MoCo's constant 0.999 averages the encoder over
~1000 steps, so in a run of 64 steps the key encoder is still 94 % its random
initialisation (0.999⁶⁴). The dataclass default stays MoCo's constant 0.999.

Implementation notes:

- The momentum encoder's BatchNorm uses its own batch statistics (MoCo's key encoder runs
  in train mode); the EMA moves weights only (:class:`MomentumMethod`).
- Shuffled BatchNorm (``bn_splits``). MoCo computes BatchNorm per GPU and shuffles the key
  batch across GPUs before the key encoder (``moco/builder.py`` ``_batch_shuffle_ddp``,
  unshuffled after), so the statistics that normalise a key do not come from the same
  images as its query's: otherwise the encoders can find the positive through the batch
  statistics instead of the image. One device emulates it as MoCo's CIFAR demo does
  (``colab/moco_cifar10_demo.ipynb``: ``SplitBatchNorm``, ``--bn-splits 8``, the key batch
  shuffled by ``torch.randperm`` and unshuffled): in training the BatchNorms of the query
  and key encoders (and of the projectors, if they had any) compute statistics per group of
  ``batch / bn_splits`` consecutive examples (:mod:`burn_tf.models.split_batchnorm`,
  moving statistics moved by the groups' mean), and the keys are computed on the global
  batch in a permuted order drawn each step from a stateless RNG seeded by ``global_step``
  (:func:`key_permutation`: a resumed run draws the same), then put back in order
  (:func:`burn_tf.distribute.apply_to_shuffled_batch`). The groups are the global batch's:
  R replicas hold ``bn_splits / R`` groups each, exactly the groups of one device, and the
  split layers do not synchronise (``train.sync_batchnorm`` then applies to nothing of the
  encoders). ``bn_splits: 1`` is plain BatchNorm and no shuffle (the behaviour before).
  Inference and the exported backbone are plain BatchNorm.
- Under ``tf.distribute`` the keys of every replica are gathered (after the loss) before
  they enter the queue, which is a :func:`replica_shared_variable`; the queue and its
  pointer are checkpointed, so a resumed run continues with the same negatives.
- ``queue_size`` must be a multiple of the global batch (MoCo's ``assert K % batch_size ==
  0``): checked when the training step is built.
- Stage 2 of ReActNet: the online backbone and projector come from stage 1 (the base's
  rules) and the momentum encoder restarts as a copy of them
  (:meth:`MomentumMethod.init_from_previous_stage`);
  the queue restarts random.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from burn_tf.distribute import apply_to_shuffled_batch, gather_from_replicas, replica_shared_variable
from burn_tf.losses import contrastive
from burn_tf.methods.base import MethodConfig
from burn_tf.methods.momentum import MomentumMethod
from burn_tf.methods.registry import register
from burn_tf.models.heads import build_projector
from burn_tf.models.split_batchnorm import split_batchnorm_view
from burn_tf.ops import memory
from burn_tf.schema import ConfigError, check_range

# Salt of the stateless RNG that draws the key batch's permutation (global_step the second word).
_KEY_SHUFFLE_SALT = 2003


@dataclasses.dataclass
class MoCoV2Config(MethodConfig):
    name: str = "moco_v2"
    # MoCo v2's temperature (``--moco-t 0.2``, "Improved Baselines" Sec. 3).
    temperature: float = 0.2
    # Negatives K (``--moco-k``); a multiple of the global batch.
    queue_size: int = 65536
    # Projector Linear(feature → hidden) → ReLU → Linear(hidden → projector_dim): MoCo v2's
    # hidden width is the backbone's feature width (2048 for ResNet-50), output 128.
    projector_hidden: int = 2048
    projector_dim: int = 128
    # Momentum of the key encoder (``--moco-m 0.999``), constant unless tau_end differs
    # (moco_v2.yaml: 0.99 → 0.999, solo-learn's CIFAR recipe).
    tau_start: float = 0.999
    tau_end: float = 0.999
    # Shuffled BatchNorm on one device: BatchNorm statistics per group of batch / bn_splits
    # examples and the key batch shuffled across the groups (MoCo's CIFAR demo: --bn-splits 8,
    # emulating MoCo's 8 GPUs); 1: plain BatchNorm, no shuffle.
    bn_splits: int = 8

    def __post_init__(self):
        check_range("method", "temperature", self.temperature, 0, low_open=True)
        check_range("method", "queue_size", self.queue_size, 1)
        check_range("method", "projector_hidden", self.projector_hidden, 1)
        check_range("method", "projector_dim", self.projector_dim, 1)
        check_range("method", "tau_start", self.tau_start, 0, 1)
        check_range("method", "tau_end", self.tau_end, 0, 1)
        check_range("method", "bn_splits", self.bn_splits, 1)

    def check_batch_size(self, batch_size: int) -> None:
        """Refuses a global batch that does not cut into ``bn_splits`` equal groups."""
        check_bn_splits(self.bn_splits, batch_size=batch_size)


def check_bn_splits(bn_splits: int, batch_size: int | None = None, replicas: int = 1) -> None:
    """``ConfigError`` naming ``method.bn_splits`` unless the global batch (when given) cuts
    into ``bn_splits`` equal groups and the groups into the replicas."""
    if batch_size is not None and batch_size % bn_splits:
        raise ConfigError(f"method.bn_splits={bn_splits} must divide the global batch train.batch_size={batch_size} "
                          "(split BatchNorm cuts it into equal groups)")
    if bn_splits % replicas:
        raise ConfigError(f"method.bn_splits={bn_splits} must be a multiple of the {replicas} replicas "
                          "(each replica holds whole groups of the global batch)")


def key_permutation(step, global_batch: int) -> tf.Tensor:
    """The permutation of the key batch at ``step`` (MoCo's ``torch.randperm``): stateless,
    so every replica and a resumed run draw the same one at the same step."""
    seed = tf.stack([tf.constant(_KEY_SHUFFLE_SALT, tf.int64), tf.cast(step, tf.int64)])
    return tf.argsort(tf.random.stateless_uniform([global_batch], seed=seed))


@register
class MoCoV2(MomentumMethod):
    method_name = "moco_v2"
    Config = MoCoV2Config
    loss_terms = ("info_nce", "positive_cosine")

    def __init__(self, backbone: tf.keras.Model, config: MoCoV2Config | None = None, accumulation_steps: int = 1,
                 **kwargs):
        super().__init__(backbone, config, accumulation_steps=accumulation_steps, **kwargs)
        cfg = self.config
        self.projector = self.add_head("projector", self.build_instance_projector())
        self.momentum_backbone = self.add_momentum_pair(backbone)
        self.momentum_projector = self.add_momentum_pair(self.projector)
        # The encoders' training-time views with split BatchNorm (the same layers and weights).
        check_bn_splits(cfg.bn_splits, replicas=tf.distribute.get_strategy().num_replicas_in_sync)
        self.split_views = {network.name: split_batchnorm_view(network, cfg.bn_splits) for network in (
            backbone, self.projector, self.momentum_backbone, self.momentum_projector)}
        self.queue_size = self.negatives_in_queue(cfg)
        # MoCo initialises the queue with random unit vectors (``moco/builder.py``).
        self.queue = self.add_state("queue", replica_shared_variable(
            tf.math.l2_normalize(tf.random.normal((self.queue_size, cfg.projector_dim)), axis=1), "queue"))
        self.queue_pointer = self.add_state("queue_pointer", replica_shared_variable(tf.constant(0, tf.int64),
                                                                                     "queue_pointer"))

    @classmethod
    def negatives_in_queue(cls, config) -> int:
        """How many keys the queue holds (InfoMin uses a fraction of ``queue_size``)."""
        return int(config.queue_size)

    # ------------------------------------------------------------------ hooks
    def build_instance_projector(self) -> tf.keras.Model:
        """g: MoCo v2's Linear → ReLU → Linear (CLD-on-MoCo: its normalised linear layer)."""
        cfg = self.config
        return build_projector(self.feature_dim, cfg.projector_hidden, cfg.projector_dim, "projector", batchnorm=False)

    def augment_views(self, views: list, training: bool) -> list:
        """The views the encoders see (InfoMin adds its stronger augmentation here)."""
        return views

    def encoder(self, network: tf.keras.Model, training: bool) -> tf.keras.Model:
        """``network`` as a training step runs it: its split-BatchNorm view in training."""
        return self.split_views[network.name] if training else network

    def key_embedding(self, images, training: bool):
        """The momentum encoder's k = g_m(f_m(x)), no gradient; in training with
        ``bn_splits`` > 1 computed on the global batch shuffled by :func:`key_permutation`
        and put back in order (MoCo's shuffled BatchNorm)."""
        def encode(x):
            backbone, projector = (self.encoder(n, training) for n in (self.momentum_backbone, self.momentum_projector))
            return projector(backbone(x, training=training), training=training)

        if not training or self.config.bn_splits == 1:
            return tf.stop_gradient(encode(images))
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        permutation = key_permutation(self.global_step, tf.shape(images)[0] * replicas)
        return apply_to_shuffled_batch(encode, images, permutation)

    def query_embedding(self, images, training: bool):
        """q = g(f(x)) of the online encoder (split BatchNorm in training)."""
        backbone, projector = (self.encoder(n, training) for n in (self.backbone, self.projector))
        return projector(backbone(images, training=training), training=training)

    def queries_and_keys(self, views: list, training: bool):
        """q = g(f(x₁)) and the momentum encoder's k = g_m(f_m(x₂)) (no gradient)."""
        keys = self.key_embedding(views[1], training)
        # The key encoder first, the query encoder after it: synchronized BatchNorms of both
        # and the key shuffle's gathers must run in the same order on every replica (this
        # order is the one checked against one device, tests/distributed/contrastive_replicas.py).
        with tf.control_dependencies([keys]):
            queries = self.query_embedding(tf.identity(views[0]), training)
        return queries, keys

    def compute_losses(self, views, labels=None, training=True) -> dict:
        views = self.augment_views(views, training)
        queries, keys = self.queries_and_keys(views, training)
        # The loss reads the queue before this step's keys enter it (MoCo: negatives are
        # the previous batches' keys).
        loss = contrastive.info_nce(queries, keys, self.queue.read_value(), self.config.temperature)
        positive_cosine = tf.reduce_mean(tf.reduce_sum(
            tf.math.l2_normalize(queries, -1) * tf.math.l2_normalize(keys, -1), axis=-1))
        if training:
            self.enqueue_keys(keys, loss)
        return {"loss": loss, "info_nce": loss, "positive_cosine": positive_cosine}

    def enqueue_keys(self, keys, loss) -> None:
        """The unit keys of every replica (global batch order) replace the queue's oldest."""
        self._check_queue_fits_global_batch(keys)
        # After the loss: collectives (this gather, synchronized BatchNorms) must run in
        # the same order on every replica.
        with tf.control_dependencies([loss]):
            gathered = gather_from_replicas(tf.math.l2_normalize(keys, axis=-1))
        queue, pointer = memory.enqueue(self.queue, self.queue_pointer, gathered)
        self.queue.assign(queue)
        self.queue_pointer.assign(pointer)

    def _check_queue_fits_global_batch(self, keys) -> None:
        local = keys.shape[0]
        if local is None:  # unknown until run time (no drop_remainder): pretraining always knows it
            return
        global_batch = int(local) * tf.distribute.get_strategy().num_replicas_in_sync
        if self.queue_size % global_batch:
            raise ValueError(
                f"method.queue_size: the queue of {self.queue_size} keys must be a multiple of the global "
                f"batch size {global_batch} (train.batch_size), so each batch of keys replaces whole "
                "batches of the oldest (MoCo's K % batch_size == 0)"
            )
