"""Evaluation images: a source of ``(image, label)`` → unaugmented batches at a model's input size.

:func:`eval_dataset` yields float32 images in [0, 1], in source order, resized (optionally
with the ImageNet centre crop) and never augmented: what an evaluator or a memory bank's
first fill (NPID's ``bank_init: features``) sees.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

from burn_tf.data.source_info import get_source_info, with_source_info

AUTOTUNE = tf.data.AUTOTUNE
_graph_fn = tf.autograph.experimental.do_not_convert  # no AutoGraph needed in map fns


def eval_dataset(
    source: tf.data.Dataset,
    image_size: int,
    batch_size: int,
    center_crop: Optional[float] = None,
    cache: bool = False,
) -> tf.data.Dataset:
    """Batched ``(image float32 [B, S, S, 3] in [0, 1], label int64 [B])`` in source order,
    no augmentation, last partial batch kept.

    Images are resized to ``image_size``×``image_size`` (bicubic, anti-aliased).  With
    ``center_crop=f`` (e.g. 0.875) the shorter side is first resized to ``image_size / f``
    and the centre ``image_size`` square is taken (the ImageNet evaluation protocol).
    """
    size = int(image_size)
    spec = source.element_spec
    image_spec = spec[0] if isinstance(spec, tuple) else None
    if image_spec is None or image_spec.shape.rank != 3:
        raise ValueError(f"eval_dataset expects a source of (image [H, W, 3], label); got {spec}")
    fixed = image_spec.shape[0] is not None and image_spec.shape[1] is not None
    ds = source.cache() if cache else source

    def to_float(x):
        x = tf.cast(x, tf.float32)
        return x / 255.0 if image_spec.dtype == tf.uint8 else x

    def resize(x):  # x: [..., H, W, 3] float
        if center_crop is None:
            if fixed and image_spec.shape[0] == size and image_spec.shape[1] == size:
                return x
            return tf.clip_by_value(tf.image.resize(x, [size, size], "bicubic", antialias=True), 0.0, 1.0)
        shape = tf.shape(x)
        h = tf.cast(shape[-3], tf.float32)
        w = tf.cast(shape[-2], tf.float32)
        short = size / float(center_crop)
        scale = short / tf.minimum(h, w)
        new_h = tf.maximum(tf.cast(tf.round(h * scale), tf.int32), size)
        new_w = tf.maximum(tf.cast(tf.round(w * scale), tf.int32), size)
        x = tf.image.resize(x, tf.stack([new_h, new_w]), "bicubic", antialias=True)
        top = (new_h - size) // 2
        left = (new_w - size) // 2
        x = x[..., top:top + size, left:left + size, :]
        return tf.clip_by_value(x, 0.0, 1.0)

    if fixed:
        @_graph_fn
        def batched(x, y):
            return tf.ensure_shape(resize(to_float(x)), [None, size, size, 3]), y

        ds = ds.batch(batch_size).map(batched, num_parallel_calls=AUTOTUNE, deterministic=True)
    else:
        @_graph_fn
        def single(x, y):
            return tf.ensure_shape(resize(to_float(x)), [size, size, 3]), y

        ds = ds.map(single, num_parallel_calls=AUTOTUNE, deterministic=True).batch(batch_size)
    ds = ds.prefetch(AUTOTUNE)
    return with_source_info(ds, get_source_info(source))
