"""NPID: non-parametric instance discrimination with a memory bank (Wu et al., CVPR 2018).

Each image is its own class. A memory bank holds one L2-normalised feature per image of
the data set; an image's projected feature must pick its own row among the bank's
(the positive) and ``negatives`` rows drawn uniformly from the bank, by NPID's
noise-contrastive estimation (``loss: nce``, lemniscate.pytorch ``lib/NCEAverage.py`` and
``lib/NCECriterion.py``)::

    P(i|f) = exp(f·v_i/T) / Z,  h = P / (P + K/N)
    loss = −[log h(v_i) + Σ_k log(1 − h(v_nk))]        then  v_i ← normalise(m·v_i + (1 − m)·f)

with Z estimated once, from the first training batch (N × the mean of exp(f·v/T) over its
positive and sampled rows; kept in the checkpoint and carried into stage 2), or by the
non-parametric softmax (``loss: softmax``: CE([f·v_i, f·v_n1 … f·v_nK] / T, 0), the
InfoNCE form, which needs no Z).

Settings (``NPIDConfig``): projection to 128-d (NPID ``--low-dim 128``), bank momentum
0.5 (NPID §3.2, lemniscate ``--nce-m 0.5``), 4096 negatives (NPID ``--nce-k 4096``;
``negatives: 0`` = a softmax over the whole bank, CLD's CIFAR scripts ``--nce-k 0``),
temperature 0.1 — NPID's CIFAR script's (``cifar.py --nce-t 0.1``),
also CLD's NPID+CLD CIFAR setting; the NPID paper's ImageNet runs use 0.07.

The initial bank (``bank_init``). The positive is the bank row of the same image, so it
only measures something once that row holds a feature of the image. NPID's code
(lemniscate.pytorch ``lib/NCEAverage.py``/``LinearAverage.py``, CLD's copies of them)
starts from random rows, uniform in [−stdv, stdv] with stdv = 1/√(D/3), and relies on
200 epochs: every image recurs each epoch, so from the second epoch on its row is a
feature (CLD's ``train_cifar_npid_cld.py --recompute-memory`` also overwrites the bank
with eval-mode features of every image after each epoch, inside its kNN test, through
``trainFeatures = lemniscate.memory.t()``). A budget that draws fewer images than the data
set holds never revisits one: every positive would be a random row while the negatives
are partly real features, and the loss measures nothing. Hence the default
``bank_init: features``: before the first step, one no-gradient pass of the initial
network over every training image (unaugmented, in source order;
:meth:`NPID.fill_memory_bank`, called by pretraining for stage 1 — stage 2 takes stage 1's
bank, a resumed run its checkpoint's) fills each row with the image's feature.
``bank_init: random`` is NPID's code (lemniscate's uniform rows), for runs of many epochs.

Under ``tf.distribute`` (see :mod:`burn_tf.distribute`): the negatives of the global
batch are drawn from a stateless RNG seeded by ``global_step`` and each replica takes its
rows, and the bank is updated with (index, feature) gathered from every replica, so N
replicas compute what one device does on the global batch. The bank is a
:func:`replica_shared_variable` written once per step by a sparse update of the batch's
rows (:func:`update_rows`), not by assigning the whole bank, and read row by row
(:func:`read_rows`) except for the full softmax (``benchmarks/bank_update.py``).

    model = NPID(backbone, NPID.Config(), dataset_size=60000)
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from burn_tf.distribute import (
    gather_in_order,
    mean_over_replicas,
    read_rows,
    replica_shared_variable,
    scatter_rows,
    update_rows,
)
from burn_tf.losses import instance
from burn_tf.methods.base import MethodConfig, PretrainMethod
from burn_tf.methods.registry import register
from burn_tf.models.heads import build_head
from burn_tf.ops import memory
from burn_tf.schema import ConfigError, check_choice, check_range

# Salt of the stateless RNG that draws negatives (with global_step as the second word).
_NEGATIVES_SALT = 1801
BANK_INITS = ("features", "random")
LOSSES = ("nce", "softmax")


@dataclasses.dataclass
class NPIDConfig(MethodConfig):
    name: str = "npid"
    projection_dim: int = 128
    temperature: float = 0.1
    bank_momentum: float = 0.5
    negatives: int = 4096
    # features: one pass of the initial network fills every row before the first step;
    # random: lemniscate's uniform rows (see the module docstring).
    bank_init: str = "features"
    # nce: NPID's noise-contrastive estimation with Z estimated from the first batch
    # (lemniscate NCEAverage/NCECriterion); softmax: the non-parametric softmax over the
    # positive and the sampled negatives (or the whole bank with negatives 0).
    loss: str = "nce"

    def __post_init__(self):
        check_choice("method", "bank_init", self.bank_init, BANK_INITS)
        check_choice("method", "loss", self.loss, LOSSES)
        if self.loss == "nce" and not self.negatives:
            raise ConfigError("method.loss=nce needs sampled negatives (method.negatives > 0, NPID's --nce-k "
                              "4096); a softmax over the whole bank is method.loss=softmax with negatives 0")
        check_range("method", "projection_dim", self.projection_dim, 1)
        check_range("method", "temperature", self.temperature, 0, low_open=True)
        check_range("method", "bank_momentum", self.bank_momentum, 0, 1)
        check_range("method", "negatives", self.negatives, 0)


def require_index(method, index) -> tf.Tensor:
    """The batch's dataset index as int64, or a clear error when the caller gave none."""
    if index is None:
        raise ValueError(f"{type(method).__name__}.compute_losses needs index= (each image's dataset index: "
                         "multi_view_dataset(with_index=True))")
    return tf.cast(index, tf.int64)


@register
class NPID(PretrainMethod):
    method_name = "npid"
    Config = NPIDConfig
    num_views = 1
    needs_index = True
    loss_terms = ("instance", "positive_similarity")

    def __init__(self, backbone: tf.keras.Model, config: NPIDConfig | None = None, dataset_size: int | None = None,
                 accumulation_steps: int = 1, **kwargs):
        super().__init__(backbone, config, accumulation_steps=accumulation_steps, **kwargs)
        if dataset_size is None or int(dataset_size) < 1:
            raise ValueError(f"{type(self).__name__} keeps one memory-bank row per image: pass dataset_size "
                             f"(the number of images), got {dataset_size!r}")
        self.dataset_size = int(dataset_size)
        cfg = self.config
        self.projector = self.add_head("projector", build_head("dense", self.feature_dim, cfg.projection_dim,
                                                               "instance_projector"))
        # lemniscate's initial rows (NCEAverage: uniform in [−stdv, stdv], stdv = 1/√(D/3), rows of
        # unit norm on average); stateless, so the same on every replica. bank_init: features
        # overwrites them before the first step (fill_memory_bank).
        stdv = 1.0 / (cfg.projection_dim / 3.0) ** 0.5
        initial = tf.random.stateless_uniform((self.dataset_size, cfg.projection_dim), seed=(0, _NEGATIVES_SALT),
                                              minval=-stdv, maxval=stdv)
        self.memory_bank = self.add_state("memory_bank", replica_shared_variable(initial, "memory_bank"))
        # NCE's Z: negative until the first training step estimates it (lemniscate's params[2] = -1).
        self.nce_normaliser = self.add_state("nce_normaliser", replica_shared_variable(
            tf.constant(-1.0), "nce_normaliser"))

    def init_from_previous_stage(self, previous):
        super().init_from_previous_stage(previous)
        self.memory_bank.assign(previous.memory_bank)  # stage 1's features of every image
        self.nce_normaliser.assign(previous.nce_normaliser)  # Z is estimated once per run

    @property
    def fills_bank_from_images(self) -> bool:
        """True when the bank must be filled (:meth:`fill_memory_bank`) before the first step."""
        return self.config.bank_init == "features"

    def fill_memory_bank(self, images: tf.data.Dataset) -> int:
        """Every bank row ← the initial network's feature of its image, no gradient
        (``bank_init: features``). ``images`` yields batches of the training images in
        source order (row i = the i-th image, as ``multi_view_dataset(with_index=True)``
        numbers them), unaugmented at the input size. Features are computed as a training
        step computes them (BatchNorm on the batch's statistics), so the first positives
        are the same network's features; the BatchNorm moving statistics this pass would
        move are put back. Call it in the strategy's scope (cross-replica context: every
        copy of the bank is written). Returns the number of rows written."""
        state = [v for net in (self.backbone, self.projector) for v in net.non_trainable_weights]
        saved = [tf.identity(v.read_value()) for v in state]

        @tf.function
        def write(batch, start):
            features = tf.stop_gradient(self.instance_features(batch, training=True))
            scatter_rows(self.memory_bank, start + tf.range(tf.shape(features)[0], dtype=tf.int64), features)

        start = 0
        for batch in images:
            count = int(batch.shape[0])
            if start + count > self.dataset_size:
                raise ValueError(f"{type(self).__name__}.fill_memory_bank: more images than the "
                                 f"{self.dataset_size} bank rows (dataset_size)")
            write(batch, tf.constant(start, tf.int64))
            start += count
        for v, value in zip(state, saved):
            v.assign(value)
        return start

    def instance_features(self, images, training):
        return tf.math.l2_normalize(self.projector(self.backbone(images, training=training), training=training),
                                    axis=-1, epsilon=1e-12)

    def negative_index(self, local_batch):
        """[local_batch, negatives] bank rows drawn uniformly for this replica's images
        (None: every row). Drawn for the global batch from ``global_step``, so a replica's
        share is what one device draws for those images."""
        k = self.config.negatives
        if not k:
            return None
        ctx = tf.distribute.get_replica_context()
        replicas = ctx.num_replicas_in_sync if ctx is not None else 1
        replica = ctx.replica_id_in_sync_group if ctx is not None else 0
        seed = tf.stack([tf.constant(_NEGATIVES_SALT, tf.int64), tf.cast(self.global_step, tf.int64)])
        drawn = tf.random.stateless_uniform((local_batch * replicas, k), seed=seed, minval=0,
                                            maxval=self.dataset_size, dtype=tf.int64)
        return drawn[replica * local_batch:(replica + 1) * local_batch]

    def instance_loss(self, features, index, negative_index, training=True):
        """The instance loss of ``features`` against the bank. Sampled negatives: only the
        positive and negative rows are read (:func:`read_rows`, sparse); the whole bank
        only for the full softmax (``negatives: 0``), which needs every row anyway."""
        t = self.config.temperature
        if negative_index is None:
            return instance.instance_discrimination_loss(features, tf.convert_to_tensor(self.memory_bank), index, t)
        negative_rows = read_rows(self.memory_bank, tf.reshape(negative_index, [-1]))
        negative_rows = tf.reshape(negative_rows, tf.concat([tf.shape(negative_index), [-1]], axis=0))
        positive_rows = read_rows(self.memory_bank, index)
        if self.config.loss == "softmax":
            return instance.sampled_instance_loss(features, positive_rows, negative_rows, t)
        normaliser = self.normaliser(features, positive_rows, negative_rows, training)
        return instance.nce_loss(features, positive_rows, negative_rows, t, normaliser, self.dataset_size)

    def normaliser(self, features, positive_rows, negative_rows, training=True):
        """NCE's Z: the stored one, or (first training step) estimated from this batch and
        stored (averaged over replicas: the global batch's estimate). A call that does not
        train (building the model, evaluating a loss) uses the estimate without storing it."""
        estimate = instance.estimate_nce_normaliser(features, positive_rows, negative_rows, self.config.temperature,
                                                    self.dataset_size)
        estimate = mean_over_replicas({"z": estimate})["z"]
        z = tf.where(self.nce_normaliser < 0, estimate, self.nce_normaliser)
        if training:
            self.nce_normaliser.assign(z)
        return z

    def update_bank(self, index, features, after):
        """v_i ← normalise(m·v_i + (1 − m)·f_i) for the images of every replica; gathered
        after ``after`` (the loss) so collectives run in the same order on every replica.
        Reads and writes the batch's rows only (:func:`update_rows`). Returns the gathered
        index (to order a later gather after this one; later reads and writes of the bank
        follow this write in program order)."""
        every_feature, every_index = gather_in_order([tf.stop_gradient(features), tf.cast(index, tf.int64)], after)
        momentum = self.config.bank_momentum
        update_rows(self.memory_bank, every_index,
                    lambda old, new: memory.memory_bank_rows(old, new, momentum), every_feature)
        return every_index

    def compute_losses(self, views, labels=None, training=True, index=None) -> dict:
        index = require_index(self, index)
        features = self.instance_features(views[0], training)
        loss = self.instance_loss(features, index, self.negative_index(tf.shape(features)[0]), training)
        positive = tf.reduce_mean(tf.reduce_sum(features * read_rows(self.memory_bank, index), axis=-1))
        if training:
            self.update_bank(index, features, loss)
        return {"loss": loss, "instance": loss, "positive_similarity": positive}
