"""The multi-view training pipeline: a source of ``(uint8 image, label)`` → batches of N augmented views.

Everything runs inside ``tf.data`` (graph mode, AutoGraph off), vectorised over the batch,
with per-image parameters drawn by ``tf.random.stateless_*`` ops from a per-batch seed.
The per-batch seeds come from ``tf.data.Dataset.random(seed, rerandomize_each_iteration=True)``
and the shuffle is seeded too: the same seed gives the same batches in every run (as long as
the global ``tf.random.set_seed`` is the same, which tf.data folds in), and each epoch (each
new iterator) gets a new order and new augmentations.  A resumed run (``start_position``)
draws each seed as a stateless function of the position instead.

Speed: views whose configs differ only in their blur/solarize probabilities are augmented as
one batch (two views: 2B images, half the graph and the per-op overhead), in chunks of
about 2**18 output pixels (cache-sized) that are rebatched to the requested batch size, with
``num_parallel_calls=AUTOTUNE`` and prefetching.  What one augmentation does is in
:mod:`burn_tf.data.view_augmentation`.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Sequence

import tensorflow as tf

from burn_tf.data.source_info import get_source_info, with_source_info
from burn_tf.data.view_augmentation import augment_cropped_views, augment_views, crop_one_image
from burn_tf.data.views import AugmentConfig, per_view_configs

AUTOTUNE = tf.data.AUTOTUNE
# The map functions use no Python control flow on tensors: skip AutoGraph, whose
# conversion of this module made building a pipeline take seconds.
_graph_fn = tf.autograph.experimental.do_not_convert


def _chunk_size(image_size: int, batch_size: int) -> int:
    target = (1 << 18) // (image_size * image_size)
    chunk = 1 << max(3, int(math.log2(max(target, 1))))
    return min(batch_size, chunk)


def _resolve_seed(seed: int | None) -> int:
    if seed is None:
        # Python's global RNG: random unless the user seeded it (keras.utils.set_random_seed).
        return random.randrange(2**31 - 1)
    return int(seed)


def _seed_pairs(seed: int, salt: int) -> tf.data.Dataset:
    """Infinite dataset of int64 [2] seeds, the same sequence for the same seed in every run,
    a new sequence for each new iterator (epoch)."""
    return tf.data.Dataset.random(seed=seed * 4 + salt, rerandomize_each_iteration=True).batch(2)


def _positional_seeds(seed: int, salt: int, first: int) -> tf.data.Dataset:
    """Endless int64 [2] seeds, element i a stateless function of (seed, salt, first + i):
    a stream started at ``first`` continues exactly the one started at 0."""
    base = tf.constant([seed * 4 + salt, 0], tf.int64)
    return tf.data.Dataset.range(first, tf.int64.max).map(
        lambda i: tf.random.experimental.stateless_fold_in(base, i))


def _largest_divisor_up_to(n: int, limit: int) -> int:
    return max(d for d in range(1, max(1, min(n, limit)) + 1) if n % d == 0)


def _batchable_groups(views: Sequence[AugmentConfig]) -> list[list[int]]:
    """Indices of views that may be augmented as one batch: configs equal up to their
    blur/solarize probabilities (which become per-image probabilities)."""
    groups: list[list[int]] = []
    keys: list[AugmentConfig] = []
    for i, cfg in enumerate(views):
        key = dataclasses.replace(cfg, blur_prob=0.0, solarize_prob=0.0)
        for g, other in enumerate(keys):
            if other == key:
                groups[g].append(i)
                break
        else:
            keys.append(key)
            groups.append([i])
    return groups


def _split_seed(seed, n: int):
    # One group keeps the batch seed itself, so the two-view pipeline's streams are unchanged.
    return [seed] if n == 1 else list(tf.unstack(tf.random.experimental.stateless_split(seed, n)))


def multi_view_dataset(
    source: tf.data.Dataset,
    views: Sequence[AugmentConfig],
    batch_size: int,
    seed: int | None = None,
    shuffle_buffer: int = 10_000,
    drop_remainder: bool = True,
    repeat: bool = False,
    cache: bool = False,
    with_labels: bool = False,
    num_parallel_calls: int | None = AUTOTUNE,
    chunk_size: int | None = None,
    with_index: bool = False,
    start_position: int | None = None,
) -> tf.data.Dataset:
    """Batched ``(view_1, …, view_N)`` float32 ``[B, S_i, S_i, 3]`` in [0, 1], one view per
    config in ``views`` (each its own :class:`AugmentConfig`: BYOL's asymmetric blur and
    solarize, SwAV's multi-crop sizes), from a source of ``(uint8 image, label)``.

    Each view uses the first value of its pair-valued probabilities (see
    :func:`per_view_configs`). Views whose configs differ only in those probabilities are
    augmented as one batch of m·B images (half the graph and per-op overhead for two
    views). ``seed`` makes the whole pipeline (shuffle order and every augmentation)
    reproducible; each epoch still differs. ``shuffle_buffer=0`` keeps source order;
    ``repeat=True`` repeats forever; ``cache=True`` caches the decoded source in memory
    first (small data sets); ``with_labels=True`` appends the label (for monitors and the
    supervised baselines; BURN never needs it). ``chunk_size`` is how many images one
    augmentation call handles (default: about 2**18 output pixels, so the working set
    stays in cache); the result is rebatched to ``batch_size``. ``with_index=True``
    appends, last, each image's int64 position in ``source`` (NPID's memory-bank row):
    numbered before caching and shuffling, so it is stable across epochs and shuffles.
    Elements are then ``(views…, [labels,] index)``; without it the batches are unchanged.

    ``start_position`` (exact resume at any cost-free point): ``source`` is then an
    ordered, endless stream of ``(image, label, index)`` whose first element is element
    ``start_position`` of the run (``sources.seeded_record_stream``), a multiple of
    ``batch_size``. Every augmentation seed is a stateless function of ``(seed, position)``
    instead of the count of elements this iterator produced, so the stream started at
    ``k·batch_size`` yields exactly batches k, k+1, … of the stream started at 0; the index
    comes from the source; ``shuffle_buffer``, ``repeat`` and ``cache`` do not apply.
    """
    views = list(views)
    if not views:
        raise ValueError("multi_view_dataset needs at least one view config")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    seed = _resolve_seed(seed)
    spec = source.element_spec
    image_spec = spec[0] if isinstance(spec, tuple) else None
    if image_spec is None or image_spec.dtype != tf.uint8 or image_spec.shape.rank != 3:
        raise ValueError(
            "multi_view_dataset expects a source of (uint8 image [H, W, 3], int64 label); got "
            f"element_spec {spec}"
        )
    fixed = image_spec.shape[0] is not None and image_spec.shape[1] is not None
    par = {} if num_parallel_calls is None else dict(num_parallel_calls=num_parallel_calls, deterministic=True)
    groups = _batchable_groups(views)

    def output(outs, label):
        # With the index, ``label`` is the pair (label, index) carried through the pipeline.
        label, index = label if with_index else (label, None)
        outs = tuple(outs) + ((label,) if with_labels else ())
        return outs + (index,) if with_index else outs

    ds = source
    positional = start_position is not None
    if positional:
        if len(spec) != 3 or start_position < 0 or start_position % batch_size:
            raise ValueError(
                "start_position needs a stream of (image, label, index) starting at a multiple of "
                f"batch_size={batch_size}; got start_position={start_position}, element_spec {spec}"
            )
        ds = ds.map(lambda image, label, index: (image, (label, index) if with_index else label))
    elif with_index:
        ds = ds.enumerate().map(lambda i, element: (element[0], (element[1], i)))
    if cache and not positional:
        ds = ds.cache()
    if shuffle_buffer and shuffle_buffer > 1 and not positional:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat and not positional:
        ds = ds.repeat()

    def seed_stream(salt, images_per_seed):
        if positional:
            return _positional_seeds(seed, salt, start_position // images_per_seed)
        return _seed_pairs(seed, salt)

    if not fixed:
        # Crop each image on its own (sizes differ), then batch for the colour ops.
        ds = tf.data.Dataset.zip((ds, seed_stream(2, 1)))

        @_graph_fn
        def crop_views(element, s):
            image, label = element
            seeds = tf.random.experimental.stateless_split(s, len(views))
            return tuple(crop_one_image(image, cfg, seeds[i]) for i, cfg in enumerate(views)) + (label,)

        ds = ds.map(crop_views, **par)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
        ds = tf.data.Dataset.zip((ds, seed_stream(1, batch_size)))

        @_graph_fn
        def colour(element, s):
            cropped, label = element[:-1], element[-1]
            outs = [None] * len(views)
            for group, group_seed in zip(groups, _split_seed(s, len(groups)), strict=True):
                group_views = augment_cropped_views([cropped[i] for i in group], [views[i] for i in group],
                                                    group_seed)
                for i, view in zip(group, group_views, strict=True):
                    outs[i] = view
            return output(outs, label)

        ds = ds.map(colour, **par)
    else:
        # Augment in chunks small enough for the CPU caches, then rebatch (cheap: slices
        # and concatenations of whole tensors).
        largest = max(cfg.image_size for cfg in views)
        chunk = _chunk_size(largest, batch_size) if chunk_size is None else int(chunk_size)
        chunk = max(1, min(chunk, batch_size))
        if positional:  # chunks must not straddle a batch: a resume starts at a batch
            chunk = _largest_divisor_up_to(batch_size, chunk)
        ds = ds.batch(chunk, drop_remainder=drop_remainder and chunk == batch_size)
        ds = tf.data.Dataset.zip((ds, seed_stream(1, chunk)))

        @_graph_fn
        def augment_chunk(element, s):
            images, labels = element
            outs = [None] * len(views)
            for group, group_seed in zip(groups, _split_seed(s, len(groups)), strict=True):
                for i, view in zip(group, augment_views(images, [views[i] for i in group], group_seed), strict=True):
                    outs[i] = view
            return output(outs, labels)

        ds = ds.map(augment_chunk, **par)
        if chunk != batch_size:
            ds = ds.rebatch(batch_size, drop_remainder=drop_remainder)
    ds = ds.prefetch(AUTOTUNE)
    return with_source_info(ds, get_source_info(source))


def two_view_dataset(
    source: tf.data.Dataset,
    cfg: AugmentConfig | int,
    batch_size: int,
    seed: int | None = None,
    **kwargs,
) -> tf.data.Dataset:
    """Batched ``(view1, view2)`` (``(view1, view2, label)`` with ``with_labels=True``):
    :func:`multi_view_dataset` with one config whose pair-valued probabilities are
    (view 1, view 2). ``cfg`` may be an int (BURN's config at that size)."""
    if isinstance(cfg, int):
        cfg = AugmentConfig(image_size=cfg)
    return multi_view_dataset(source, per_view_configs(cfg, 2), batch_size, seed=seed, **kwargs)
