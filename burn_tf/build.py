"""What a pretraining stage trains, built from the config in one direction:
:func:`build_stage` returns a :class:`StageParts` — the distribution strategy, the data
source and the training stream, the method (with its teacher), its optimizer and the
checkpoint — and the stage loop (:mod:`burn_tf.pretrain`) asks that bundle, not the config,
for what it needs later (the stream from a resumed step, stage 1's state for stage 2, the
float32 backbone to export). The builders it uses are public for the tests and notebooks.

Everything here is built before the run directory is touched, so a mistake in the config,
the data or the teacher weights never costs an existing run.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import tensorflow as tf

from burn_tf.config import ConfigError, PretrainConfig
from burn_tf.convert.pretrained_teacher import build_teacher
from burn_tf.data import (
    MissingLabelError,
    eval_dataset,
    get_source_info,
    multi_view_dataset,
    seeded_record_stream,
    with_source_info,
)
from burn_tf.data.sources import source_from_data_config
from burn_tf.distribute import (
    dtype_policy,
    float32_outputs,
    make_strategy,
    shard_by_data,
    synchronize_batchnorm,
)
from burn_tf.methods import PretrainMethod
from burn_tf.models.trained_network import build_backbone
from burn_tf.optim import build_optimizer
from burn_tf.rundir import check_previous_stage
from burn_tf.saved_backbone import build_teacher_from_export


def build_source(cfg: PretrainConfig) -> tf.data.Dataset:
    """The configured source. A method that needs no labels reads none (an unlabelled
    TFRecord or tfds split is fine); one that needs them is refused, before the run
    directory is touched, a source that has none (:func:`check_labelled`)."""
    d = cfg.data
    needs_labels = cfg.method_class.needs_labels
    try:
        source = source_from_data_config(d, read_labels=needs_labels)
    except MissingLabelError as err:
        where = f"data.path={d.path!r}" if d.source == "tfrecord" else f"data.name={d.name!r}"
        raise ConfigError(
            f"method.name={cfg.method.name!r} needs labels, but data.source={d.source} with {where} has "
            f"none: {err}. Set data.label_key to the label feature, or choose a method that needs no labels"
        ) from None
    if needs_labels:
        check_labelled(cfg, source)
    if d.limit is not None:
        source = with_source_info(source.take(d.limit), get_source_info(source))
    return source


def check_labelled(cfg: PretrainConfig, source: tf.data.Dataset) -> None:
    """Refuses (before the run directory is touched) a method that needs labels on a source
    known to have none: a flat image folder (a TFRecord or tfds source without the label
    feature is refused by :func:`build_source`). Examples that lack a label in a labelled
    source (label −1) fail the method's first step."""
    info = get_source_info(source)
    if cfg.data.source == "image_folder" and info is not None and not info.class_names:
        raise ConfigError(
            f"method.name={cfg.method.name!r} needs labels, but data.source=image_folder with "
            f"data.path={cfg.data.path!r} is a flat folder of unlabelled images; put each class in its "
            "own sub-folder (path/<class>/<image>) or choose a method that needs no labels"
        )


def stream_seed(cfg: PretrainConfig, stage: int) -> int:
    """The seed of stage ``stage``'s data stream (order and augmentations): a stage-2 run
    sees other orders and crops than stage 1's."""
    return cfg.train.seed * 8 + stage


def build_train_dataset(cfg: PretrainConfig, start_step: int = 0, source: tf.data.Dataset | None = None,
                        stage: int = 1) -> tuple[tf.data.Dataset, int]:
    """The method's views (and labels, if it needs them), endless; returns (dataset,
    steps per epoch). The dataset's first batch is batch ``start_step`` of the run.

    A source that can read a record by its index (Fashion-MNIST, image folders,
    uncompressed TFRecords, whole tfds splits: ``source_info.reader``) is streamed by
    :func:`~burn_tf.data.seeded_record_stream`: each epoch a permutation seeded by
    (seed, epoch), augmentations seeded by (seed, position). Starting at ``start_step``
    then reads, decodes and augments only what comes from there — a resume late in a run
    costs what a fresh start costs — and gives exactly the batches of an uninterrupted
    run. Other sources (tfds split slices, compressed TFRecords) go through a shuffle buffer and skip
    the batches before ``start_step``, which re-runs the pipeline for each of them.
    """
    source = build_source(cfg) if source is None else source
    steps = cfg.train.steps_per_epoch
    if steps is None:
        n = int(source.cardinality())
        if n < 0:
            raise ConfigError(
                "the size of this data source is unknown; set train.steps_per_epoch"
            )
        steps = n // cfg.train.batch_size
        if steps < 1:
            raise ConfigError(
                f"data has {n} images, fewer than train.batch_size={cfg.train.batch_size}"
            )
    info = get_source_info(source)
    seed = stream_seed(cfg, stage)
    batch = cfg.train.batch_size
    kwargs = {"with_labels": cfg.method_class.needs_labels, "with_index": cfg.method_class.needs_index}
    if info is not None and info.reader is not None:
        stream = seeded_record_stream(source, seed, start_position=start_step * batch, num_records=cfg.data.limit,
                                      shuffle=cfg.data.shuffle_buffer > 1, strict=cfg.data.strict)
        ds = multi_view_dataset(stream, cfg.view_configs(), batch, seed=seed, start_position=start_step * batch,
                                **kwargs)
    else:
        ds = multi_view_dataset(
            source, cfg.view_configs(), batch, seed=seed, shuffle_buffer=cfg.data.shuffle_buffer,
            drop_remainder=True, repeat=True, **kwargs,
        )
        ds = ds.skip(start_step) if start_step else ds
    return ds, steps


def dataset_size(cfg: PretrainConfig) -> int:
    """Images in the (limited) source: the rows of a ``needs_index`` method's memory bank."""
    n = int(build_source(cfg).cardinality())
    if n < 0 and cfg.data.limit is not None:
        n = cfg.data.limit  # at most this many: rows past the source's end stay unused
    if n < 0:
        raise ConfigError(
            f"method {cfg.method.name!r} keeps one memory-bank row per image, but the size of this "
            "data source is unknown; set data.limit"
        )
    return n


def build_teacher_from_config(cfg: PretrainConfig, include_head: bool = False) -> tf.keras.Model:
    t = cfg.teacher
    if t.weights is not None and Path(t.weights).is_dir():
        # A ResNet burn_tf pretrained itself (<run>/stage1/backbone): at the size it was
        # trained at unless teacher.input_size says otherwise.
        return build_teacher_from_export(t.weights, t.kind, t.input_size, t.small_input_stem, include_head)
    size = cfg.teacher.input_size or cfg.backbone.input_size
    return build_teacher(
        cfg.teacher.kind, cfg.teacher.weights, (size, size, 3), small_input_stem=cfg.teacher.small_input_stem,
        include_head=include_head, random_head_width=cfg.teacher.random_head_width,
    )


def build_method(cfg: PretrainConfig, stage: int, teacher: tf.keras.Model | None = None) -> PretrainMethod:
    """The method of ``cfg`` for ``stage`` (backbone binarized accordingly), not compiled.
    A teacher is built only if the method needs one (pass ``teacher`` to reuse one).

    Call it inside the strategy's scope to train under one. ``train.mixed_precision``: the
    backbones compute in float16 (outputs cast to float32), the method's heads and losses in
    float32. ``train.sync_batchnorm``: the backbone's BatchNorms use global-batch statistics.
    """
    cls = cfg.method_class
    mixed = cfg.train.mixed_precision
    with dtype_policy(mixed):
        # The teacher first, then the backbone: the order fixes which random numbers
        # initialise the backbone (the same student for the same seed as before the
        # method framework).
        if cls.needs_teacher and teacher is None:
            teacher = build_teacher_from_config(cfg, include_head=cls.teacher_includes_head)
        backbone = build_backbone(cfg.backbone, stage)
    if mixed:
        backbone = float32_outputs(backbone)
        teacher = float32_outputs(teacher) if teacher is not None else None
    if cfg.train.sync_batchnorm:
        synchronize_batchnorm(backbone)
    # A method whose config depends on the batch it sees (CLD's groups) checks it here,
    # before the run directory is touched.
    check_batch_size = getattr(cfg.method, "check_batch_size", None)
    if check_batch_size is not None:
        check_batch_size(cfg.train.batch_size)
    kwargs = dict(accumulation_steps=cfg.optimizer.accumulation_steps, name=f"{cls.method_name}_stage{stage}")
    if cls.needs_index:
        kwargs["dataset_size"] = dataset_size(cfg)
    if cls.needs_teacher:
        return cls(teacher, backbone, cfg.method, **kwargs)
    return cls(backbone, cfg.method, **kwargs)


def fill_initial_bank(model: PretrainMethod, cfg: PretrainConfig) -> None:
    """A memory bank that must hold real features before the first step (NPID's
    ``bank_init: features``) gets one no-gradient pass of the initial network over the
    training images, unaugmented, in source order (row i = image i). Batches close to
    ``train.batch_size`` and of nearly equal size, so BatchNorm never sees a tiny last batch."""
    if not getattr(model, "fills_bank_from_images", False):
        return
    n = model.dataset_size
    batch = -(-n // -(-n // cfg.train.batch_size))  # n split into ceil(n / batch_size) near-equal batches
    images = eval_dataset(build_source(cfg), model.input_size, batch).map(lambda image, _: image)
    start = time.time()
    rows = model.fill_memory_bank(images)
    if cfg.train.verbose:
        print(f"memory bank: {rows} of {n} rows filled with the initial network's features "
              f"(method.bank_init=features) in {time.time() - start:.1f} s")


def build_training_optimizer(cfg: PretrainConfig, steps_per_epoch: int):
    """The configured optimizer; with ``train.mixed_precision`` wrapped in a dynamic
    LossScaleOptimizer (the step scales the loss, unscales the gradients, skips a step
    whose gradients overflow and lowers the scale)."""
    optimizer = build_optimizer(cfg.optimizer, steps_per_epoch, cfg.train.epochs)
    if cfg.train.mixed_precision:
        optimizer = tf.keras.mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer


def strategy_for(cfg: PretrainConfig) -> tf.distribute.Strategy:
    """``train.strategy`` as a strategy, checked against the global batch."""
    strategy = make_strategy(cfg.train.strategy, cfg.train.tpu)
    replicas = strategy.num_replicas_in_sync
    if cfg.train.batch_size % replicas:
        raise ConfigError(
            f"train.batch_size={cfg.train.batch_size} is the global batch and must divide evenly over "
            f"the {replicas} replicas of train.strategy={cfg.train.strategy}"
        )
    return strategy


def checkpoint_for(model: PretrainMethod, optimizer=None, epoch=None) -> tf.train.Checkpoint:
    """A checkpoint of what the method says it holds, plus the optimizer and epoch."""
    parts = model.checkpoint_parts()
    if optimizer is not None:
        parts["optimizer"] = optimizer
    if epoch is not None:
        parts["epoch"] = epoch
    return tf.train.Checkpoint(**parts)


def init_from_previous_stage(model: PretrainMethod, cfg: PretrainConfig, previous_final: Path,
                             teacher=None) -> None:
    """Alg. 1 line 13: stage 2 starts from stage 1's final state (for BURN φ **and** θ)."""
    check_previous_stage(previous_final)
    previous = build_method(cfg, stage=1, teacher=teacher)
    previous.build_all()
    checkpoint_for(previous).restore(tf.train.latest_checkpoint(str(previous_final))).expect_partial()
    model.build_all()
    model.init_from_previous_stage(previous)


# ---------------------------------------------------------------------------- one stage's parts
@dataclasses.dataclass
class StageParts:
    """What stage ``stage`` of ``cfg`` trains (:func:`build_stage`): the method, compiled with
    its optimizer inside ``strategy``'s scope; the training stream from step 0 and its steps
    per epoch; the checkpoint of the method, the optimizer and ``epoch`` (the epoch counter
    Keras resumes from)."""

    cfg: PretrainConfig
    stage: int
    strategy: tf.distribute.Strategy
    source: tf.data.Dataset
    dataset: tf.data.Dataset
    steps_per_epoch: int
    model: PretrainMethod
    optimizer: tf.keras.optimizers.Optimizer
    epoch: tf.Variable
    checkpoint: tf.train.Checkpoint

    @property
    def teacher(self) -> tf.keras.Model | None:
        """The method's frozen teacher (reused by stage 1's method built for a transfer)."""
        return getattr(self.model, "teacher_backbone", None)

    def stream_from(self, step: int) -> tf.data.Dataset:
        """The training stream whose first batch is batch ``step`` of the run, sharded for
        the strategy (:func:`~burn_tf.distribute.shard_by_data`). The stream is a seeded
        function of the position, so a resumed run sees exactly the batches an uninterrupted
        one sees next (a tf.data iterator cannot be checkpointed once tf.distribute wraps it)."""
        dataset = self.dataset
        if step:
            dataset, _ = build_train_dataset(self.cfg, start_step=step, source=self.source, stage=self.stage)
        return shard_by_data(dataset)

    def start_from_previous_stage(self, previous_final: Path) -> None:
        """Stage 2's start: stage 1's final state (:func:`init_from_previous_stage`)."""
        with self.strategy.scope():
            init_from_previous_stage(self.model, self.cfg, previous_final, self.teacher)

    def fill_initial_bank(self) -> None:
        """Stage 1's start for a method whose memory bank begins with real features
        (:func:`fill_initial_bank`); nothing for the others."""
        with self.strategy.scope():
            fill_initial_bank(self.model, self.cfg)

    def export_backbone(self) -> tf.keras.Model:
        """The trained backbone as it is exported: float32 (what the evaluators and the
        converters read) — under ``train.mixed_precision`` a float32 copy with its weights."""
        if not self.cfg.train.mixed_precision:
            return self.model.backbone
        backbone = build_backbone(self.cfg.backbone, self.stage)
        backbone.set_weights(self.model.backbone.get_weights())
        return backbone


def build_stage(cfg: PretrainConfig, stage: int) -> StageParts:
    """Everything stage ``stage`` of ``cfg`` trains, in the order that fixes which random
    numbers initialise what: the strategy (checked against the global batch), the source and
    its training stream, then in the strategy's scope the method (teacher first), its
    optimizer, the compiled model, the epoch counter and the checkpoint."""
    strategy = strategy_for(cfg)
    source = build_source(cfg)
    dataset, steps_per_epoch = build_train_dataset(cfg, source=source, stage=stage)
    with strategy.scope():
        model = build_method(cfg, stage)
        optimizer = build_training_optimizer(cfg, steps_per_epoch)
        model.compile(optimizer=optimizer, jit_compile=cfg.train.jit_compile, run_eagerly=cfg.train.run_eagerly)
        epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        checkpoint = checkpoint_for(model, optimizer, epoch)
    return StageParts(cfg=cfg, stage=stage, strategy=strategy, source=source, dataset=dataset,
                      steps_per_epoch=steps_per_epoch, model=model, optimizer=optimizer, epoch=epoch,
                      checkpoint=checkpoint)
