"""Evaluation images: the one path from unaugmented images to the float RGB a model takes.

Every evaluator, and a memory bank's first fill (NPID's ``bank_init: features``), feeds a
backbone float32 RGB images in [0, 1] at its input size, never augmented, through one
function: :func:`prepare_images` (a batch of arrays: uint8 → /255, grey → three channels,
resized, clipped), which :func:`eval_dataset` applies to a source of ``(image, label)`` in
source order.  Both resize with one kernel (:func:`resize_to_input`): bilinear, anti-aliased
when shrinking.  The probes' augmented training images are built in
:mod:`burn_tf.evaluate.images`.
"""

from __future__ import annotations

import tensorflow as tf

from burn_tf.data.source_info import get_source_info, with_source_info

AUTOTUNE = tf.data.AUTOTUNE
_graph_fn = tf.autograph.experimental.do_not_convert  # no AutoGraph needed in map fns


def to_float_rgb(images) -> tf.Tensor:
    """uint8 / float image(s) [H,W] or [..., H,W,1|3] → float32 [..., H,W,3] (uint8 / 255).

    A rank-2 input is one grey image; otherwise the last axis is the channel axis.
    """
    x = tf.convert_to_tensor(images)
    if x.shape.rank == 2:
        x = x[..., tf.newaxis]
    if x.dtype == tf.uint8:
        x = tf.cast(x, tf.float32) / 255.0
    x = tf.cast(x, tf.float32)
    if x.shape[-1] == 1:
        x = tf.repeat(x, 3, axis=-1)
    return x


# The one resize kernel of unaugmented images: bilinear, anti-aliased when shrinking. Why:
# the reference implementations evaluate through torchvision's `Resize`, whose default
# interpolation is bilinear, on PIL images (PIL widens the filter when it shrinks an image:
# anti-aliased); and every evaluator here (the kNN of the demo and the experiment commands,
# the linear and layer-wise probes, semi-supervised fine-tuning, clustering, retrieval,
# t-SNE) has always resized bilinear (Fashion-MNIST at 28 px → 32 px backbones). Enlarging
# runs tf's plain bilinear op: anti-aliasing changes nothing there but the float rounding,
# so those figures keep their bits.
def _bilinear(x, height, width):
    shape = tf.shape(x)
    in_h = x.shape[-3] if x.shape[-3] is not None else shape[-3]
    in_w = x.shape[-2] if x.shape[-2] is not None else shape[-2]
    size = tf.stack([height, width]) if isinstance(height, tf.Tensor) or isinstance(width, tf.Tensor) else (
        height, width)
    shrinking = (in_h > height) | (in_w > width)

    def shrink():
        return tf.image.resize(x, size, "bilinear", antialias=True)

    def enlarge():
        return tf.image.resize(x, size, "bilinear")

    if isinstance(shrinking, bool):
        return shrink() if shrinking else enlarge()
    return tf.cond(shrinking, shrink, enlarge)


def resize_to_input(x, image_size: int, center_crop: float | None = None) -> tf.Tensor:
    """Float images ``[..., H, W, 3]`` → ``[..., S, S, 3]`` clipped to [0, 1] (S = ``image_size``),
    resized bilinear (anti-aliased when shrinking; unchanged at S×S).  With ``center_crop=f``
    (e.g. 0.875) the shorter side is first resized to ``S / f`` and the centre S×S square is
    taken (the ImageNet evaluation protocol)."""
    size = int(image_size)
    if center_crop is None:
        if x.shape[-3] == size and x.shape[-2] == size:
            return tf.clip_by_value(x, 0.0, 1.0)
        return tf.clip_by_value(_bilinear(x, size, size), 0.0, 1.0)
    shape = tf.shape(x)
    h = tf.cast(shape[-3], tf.float32)
    w = tf.cast(shape[-2], tf.float32)
    short = size / float(center_crop)
    scale = short / tf.minimum(h, w)
    new_h = tf.maximum(tf.cast(tf.round(h * scale), tf.int32), size)
    new_w = tf.maximum(tf.cast(tf.round(w * scale), tf.int32), size)
    x = _bilinear(x, new_h, new_w)
    top = (new_h - size) // 2
    left = (new_w - size) // 2
    x = x[..., top:top + size, left:left + size, :]
    return tf.clip_by_value(x, 0.0, 1.0)


def prepare_images(images, image_size: int, center_crop: float | None = None) -> tf.Tensor:
    """A batch uint8 [N,H,W] or [N,H,W,C] (or float in [0,1]) → float32 [N,S,S,3] in [0,1]
    (:func:`resize_to_input`)."""
    x = tf.convert_to_tensor(images)
    if x.shape.rank == 3:
        x = x[..., tf.newaxis]
    return resize_to_input(to_float_rgb(x), image_size, center_crop)


def eval_dataset(
    source: tf.data.Dataset,
    image_size: int,
    batch_size: int,
    center_crop: float | None = None,
    cache: bool = False,
) -> tf.data.Dataset:
    """Batched ``(image float32 [B, S, S, 3] in [0, 1], label int64 [B])`` in source order,
    no augmentation, last partial batch kept: :func:`prepare_images` of the source's images
    (``center_crop`` as :func:`resize_to_input`)."""
    size = int(image_size)
    spec = source.element_spec
    image_spec = spec[0] if isinstance(spec, tuple) else None
    if image_spec is None or image_spec.shape.rank != 3:
        raise ValueError(f"eval_dataset expects a source of (image [H, W, 3], label); got {spec}")
    fixed = image_spec.shape[0] is not None and image_spec.shape[1] is not None
    ds = source.cache() if cache else source

    if fixed:
        @_graph_fn
        def batched(x, y):
            return tf.ensure_shape(prepare_images(x, size, center_crop), [None, size, size, 3]), y

        ds = ds.batch(batch_size).map(batched, num_parallel_calls=AUTOTUNE, deterministic=True)
    else:
        @_graph_fn
        def single(x, y):
            return tf.ensure_shape(prepare_images(x[tf.newaxis], size, center_crop)[0], [size, size, 3]), y

        ds = ds.map(single, num_parallel_calls=AUTOTUNE, deterministic=True).batch(batch_size)
    ds = ds.prefetch(AUTOTUNE)
    return with_source_info(ds, get_source_info(source))
