"""SwAV: swapped assignments between views (Caron et al., NeurIPS 2020).

Each view's projected feature z is scored against learnable prototypes c_k (unit
vectors); the scores of the two large crops are turned into equipartitioned soft codes Q by
Sinkhorn–Knopp, and every other crop predicts each of them (swapped prediction)::

    loss = mean_{i ∈ large, v ≠ i} CE(q_i, softmax(z_v·C / T))

Settings (``SwAVConfig``) and where they come from:

- projector 2048 → 128 (swav ``main_swav.py --hidden_mlp 2048 --feat_dim 128``), 3000
  prototypes (``--nmb_prototypes 3000``; also solo-learn's CIFAR ``swav.yaml``),
  temperature 0.1 (``--temperature 0.1``), Sinkhorn ε 0.05 and 3 iterations
  (``--epsilon 0.05 --sinkhorn_iterations 3``; paper §4, Table 9): the shared
  :func:`burn_tf.ops.targets.sinkhorn_log_assignment`.
- Prototypes: a linear layer without bias whose columns are renormalised to unit length
  after every update (``main_swav.py``: ``w = F.normalize(w, dim=1)`` before each step) and
  frozen for the first ``freeze_prototypes_steps`` (``--freeze_prototypes_niters 5005``, one
  ImageNet epoch at batch 256; solo-learn CIFAR: 2 epochs, 390 steps at batch 256, the
  default here). Frozen = no gradient reaches them.
- Queue: the large crops' features of the last ``queue_size`` images (``--queue_length
  3840``), filled from ``queue_start_step`` (swav starts it at epoch 15 on ImageNet,
  solo-learn CIFAR at epoch 50: 9750 steps at batch 256, the default here) and used once
  full (as swav: when its last row is filled). SwAV adds it when the batch is small beside
  the number of prototypes (paper §4, "small batch"): Sinkhorn then equipartitions
  batch + queue. ``queue_size: 0`` turns it off.
- One schedule over both stages. ``freeze_prototypes_steps`` and ``queue_start_step`` are
  training batches of the whole run (:meth:`SwAV.run_step`: the batches of the earlier
  stages, ``steps_before_stage``, plus this stage's ``global_step``), as swav counts
  ``iteration = epoch * len(train_loader) + it`` over its one run and keeps its queue
  (``queue<rank>.pth``) from epoch to epoch. ReActNet's two stages are that run split in
  two: stage 2 (:meth:`SwAV.init_from_previous_stage`) continues stage 1's step count (no
  second freeze, no second wait for the queue) and starts with stage 1's final queue, as
  NPID carries its bank and Z. The queue's features come from the online network stage 2
  starts from (SwAV has no separate target encoder; MoCo restarts its queue because its key
  encoder restarts), and they only enter Sinkhorn's equipartition; stage 2 replaces all of
  them within ``queue_size`` / batch steps (8 in ``configs/swav.yaml``; swav's queue spans
  15 iterations of features from older weights too).
- Multi-crop: 2 large crops at the backbone's input size and ``small_crops`` small ones
  of ``small_crop_size`` (swav ``--nmb_crops 2 6 --size_crops 224 96``; 0 = 96/224 of the
  input size). A ``views`` entry without ``image_size`` takes its crop's size from these
  (:meth:`view_sizes_for`), so ``method.small_crop_size`` alone resizes the small views.
  The views themselves are swav's ``src/multicropdataset.py`` (``configs/swav.yaml``):
  RandomResizedCrop (bilinear, scale 0.14–1 large / 0.05–0.14 small), flip,
  ``get_color_distortion(s=1.0)`` — jitter (0.8, 0.8, 0.8, 0.2) with p 0.8, grayscale 0.2 —
  and ``RandomGaussianBlur`` (p 0.5, σ 0.1–2, a 23 px kernel at both 224 and 96 px).

Under ``tf.distribute``: Sinkhorn runs on the *global* batch (scores gathered from every
replica, as swav's distributed Sinkhorn all-reduces its sums) and each replica keeps its
rows; the queue is a :func:`replica_shared_variable` of gathered features.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from burn_tf.distribute import (
    assign_on_every_replica,
    gather_in_order,
    replica_shared_variable,
)
from burn_tf.losses import swapped
from burn_tf.methods.base import MethodConfig, PretrainMethod
from burn_tf.methods.registry import register
from burn_tf.models.heads import build_head
from burn_tf.ops import diagnostics, targets
from burn_tf.schema import check_range

LARGE_CROPS = 2


@dataclasses.dataclass
class SwAVConfig(MethodConfig):
    name: str = "swav"
    projection_hidden: int = 2048
    projection_dim: int = 128
    num_prototypes: int = 3000
    temperature: float = 0.1
    sinkhorn_epsilon: float = 0.05
    sinkhorn_iterations: int = 3
    freeze_prototypes_steps: int = 390
    queue_size: int = 3840
    queue_start_step: int = 9750
    small_crops: int = 6
    small_crop_size: int = 0

    def __post_init__(self):
        for key in ("projection_hidden", "projection_dim", "num_prototypes", "sinkhorn_iterations"):
            check_range("method", key, getattr(self, key), 1)
        for key in ("temperature", "sinkhorn_epsilon"):
            check_range("method", key, getattr(self, key), 0, low_open=True)
        for key in ("freeze_prototypes_steps", "queue_size", "queue_start_step", "small_crops", "small_crop_size"):
            check_range("method", key, getattr(self, key), 0)


@register
class SwAV(PretrainMethod):
    method_name = "swav"
    Config = SwAVConfig
    loss_terms = ("swapped_prediction", "code_entropy")

    def __init__(self, backbone: tf.keras.Model, config: SwAVConfig | None = None, accumulation_steps: int = 1,
                 **kwargs):
        super().__init__(backbone, config, accumulation_steps=accumulation_steps, **kwargs)
        cfg = self.config
        self.projector = self.add_head("projector", build_head(
            "mlp", self.feature_dim, cfg.projection_dim, "swav_projector", hidden=cfg.projection_hidden))
        prototype_layer = tf.keras.layers.Dense(cfg.num_prototypes, use_bias=False, name="prototypes_fc")
        self.prototypes = self.add_head("prototypes", tf.keras.Sequential(
            [tf.keras.Input((cfg.projection_dim,)), prototype_layer], name="prototypes"))
        self.normalize_prototypes()
        if cfg.queue_size:
            self.queue = self.add_state("queue", replica_shared_variable(
                tf.zeros((LARGE_CROPS, cfg.queue_size, cfg.projection_dim)), "queue"))
            # Features pushed so far (the queue is used once this reaches its size).
            self.queue_filled = self.add_state("queue_filled", replica_shared_variable(tf.constant(0, tf.int64),
                                                                                       "queue_filled"))
        # Training batches of the earlier stages of this run: the freeze and the queue's start
        # count the whole run (run_step), as swav's one run does.
        self.steps_before_stage = self.add_state("steps_before_stage", replica_shared_variable(
            tf.constant(0, tf.int64), "steps_before_stage"))

    @classmethod
    def num_views_for(cls, config) -> int:
        return LARGE_CROPS + config.small_crops

    @classmethod
    def small_crop_size_for(cls, config, input_size: int) -> int:
        return config.small_crop_size or max(8, round(input_size * 96 / 224))

    @property
    def small_crop_size(self) -> int:
        return type(self).small_crop_size_for(self.config, self.input_size)

    @classmethod
    def view_sizes_for(cls, config, input_size: int) -> list[int]:
        return [input_size] * LARGE_CROPS + [cls.small_crop_size_for(config, input_size)] * config.small_crops

    @property
    def prototype_kernel(self) -> tf.Variable:
        return self.prototypes.layers[-1].kernel

    def normalize_prototypes(self) -> None:
        assign_on_every_replica([self.prototype_kernel], lambda w: tf.math.l2_normalize(w, axis=0), [()])

    def after_update(self) -> None:
        self.normalize_prototypes()

    def run_step(self):
        """The step of the whole run: earlier stages' batches + this stage's ``global_step``
        (what ``freeze_prototypes_steps`` and ``queue_start_step`` count)."""
        return self.steps_before_stage + self.global_step

    def init_from_previous_stage(self, previous: SwAV) -> None:
        """Stage 2 continues stage 1's run: its networks (the base's rules), its step count
        and its queue (see the module docstring)."""
        super().init_from_previous_stage(previous)
        self.steps_before_stage.assign(previous.steps_before_stage + previous.global_step)
        if self.config.queue_size:
            self.queue.assign(previous.queue)
            self.queue_filled.assign(previous.queue_filled)

    def extra_logs(self) -> dict:
        if not self.config.queue_size:
            return {}
        return {"queue_in_use": tf.cast(self.queue_in_use(), tf.float32)}

    def queue_in_use(self):
        return self.queue_filled >= self.config.queue_size

    def embed(self, views, training):
        """Unit projections of every view; views of one size go through the backbone as one
        batch (swav's per-resolution forward). Small crops skip the backbone's fixed input
        check (``Functional.call``): the ReActNet graph is fully convolutional to its
        global pooling, so it runs at any size."""
        embedded = []
        start = 0
        while start < len(views):
            size = views[start].shape[1]
            end = start + 1
            while end < len(views) and views[end].shape[1] == size:
                end += 1
            images = tf.concat(views[start:end], axis=0)
            if size == self.input_size:
                features = self.backbone(images, training=training)
            else:
                features = self.backbone.call(images, training=training)
            z = tf.math.l2_normalize(self.projector(features, training=training), axis=-1, epsilon=1e-12)
            embedded.extend(tf.split(z, end - start, axis=0))
            start = end
        return embedded

    def assignments(self, scores, every, queue_scores):
        """Sinkhorn codes of this replica's rows (``scores``), computed on the global
        batch's (``every``) and the queue's when it is in use."""
        cfg = self.config

        def sinkhorn(rows):
            return targets.sinkhorn_log_assignment(rows, cfg.sinkhorn_epsilon, cfg.sinkhorn_iterations)

        if queue_scores is None:
            log_q = sinkhorn(every)
        else:
            global_batch = tf.shape(every)[0]
            log_q = tf.cond(self.queue_in_use(),
                            lambda: sinkhorn(tf.concat([queue_scores, every], axis=0))[-global_batch:],
                            lambda: sinkhorn(every))
        ctx = tf.distribute.get_replica_context()
        replica = ctx.replica_id_in_sync_group if ctx is not None else 0
        local = tf.shape(scores)[0]
        return log_q[replica * local:(replica + 1) * local]

    def compute_losses(self, views, labels=None, training=True) -> dict:
        cfg = self.config
        embedded = self.embed(views, training)
        kernel = self.prototype_kernel
        # Frozen prototypes: the forward pass is the same, no gradient reaches them.
        frozen = self.run_step() < cfg.freeze_prototypes_steps
        kernel = tf.where(frozen, tf.stop_gradient(kernel), kernel)
        scores = [tf.matmul(z, kernel) for z in embedded]
        # Every forward pass (and its synchronized BatchNorms) before the gathers.
        every = gather_in_order([tf.stop_gradient(s) for s in scores[:LARGE_CROPS]], after=scores)
        log_codes = []
        for i in range(LARGE_CROPS):
            queue_scores = tf.matmul(self.queue[i], tf.stop_gradient(kernel)) if cfg.queue_size else None
            log_codes.append(self.assignments(scores[i], every[i], queue_scores))
        loss = swapped.swapped_prediction_loss(log_codes, scores, cfg.temperature)
        if training and cfg.queue_size:
            self.push_to_queue(embedded[:LARGE_CROPS], loss)
        entropy = tf.reduce_mean([diagnostics.entropy_of_mean(log_q) for log_q in log_codes])
        return {"loss": loss, "swapped_prediction": loss, "code_entropy": entropy}

    def push_to_queue(self, large_embeddings, after) -> None:
        """Newest first, oldest dropped; only from ``queue_start_step`` on."""
        every = gather_in_order([tf.stop_gradient(z) for z in large_embeddings], after)
        size = self.config.queue_size
        pushed = tf.stack([tf.concat([z, self.queue[i]], axis=0)[:size] for i, z in enumerate(every)])
        started = self.run_step() >= self.config.queue_start_step
        self.queue.assign(tf.where(started, pushed, self.queue))
        added = tf.cast(tf.shape(every[0])[0], tf.int64)
        self.queue_filled.assign(tf.where(started, tf.minimum(self.queue_filled + added, size), self.queue_filled))
