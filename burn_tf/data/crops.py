"""Random resized crops: torchvision's crop boxes and the resampling matrices that cut and resize a batch.

**RandomResizedCrop — by hand.**  ``keras_cv.layers.RandomResizedCrop`` samples scale and
ratio differently (no torchvision 10-trial rejection with centre-crop fallback) and resizes
with ``crop_and_resize`` (bilinear, no anti-aliasing).  Here the box sampler is
torchvision's ``get_params`` vectorised (10 trials per image, first valid one, else the
centre-crop fallback; integer boxes).  For same-sized images the crop + resize of a whole
batch is two batched matmuls with per-image resampling matrices built from the Keys cubic
kernel (a = −0.5) widened when down-sampling — the same kernel, anti-aliasing and border
renormalisation as ``tf.image.resize(..., "bicubic", antialias=True)`` (which is what PIL's
BICUBIC does); a test checks equality with ``tf.image.resize`` of the sliced crop.  The
horizontal flip is folded into the column matrix (free).  Images of varying size (image
folders) are cropped one by one with ``tf.image.resize`` on the slice
(:func:`burn_tf.data.view_augmentation.crop_one_image`).

**RandomErasing — by hand.**  torchvision's ``RandomErasing.get_params`` vectorised the same
way (:func:`random_erasing`): 10 tries of an area fraction and a log-uniform aspect ratio,
the first box that fits, else the image is left alone.
"""

from __future__ import annotations

import math

import tensorflow as tf

_N_TRIALS = 10  # torchvision RandomResizedCrop.get_params


def sample_crop_boxes(batch, height, width, scale, ratio, seed):
    """torchvision ``RandomResizedCrop.get_params``, vectorised over a batch.

    ``height``/``width`` are the source size (scalars, may be tensors).  Returns int32
    ``(top, left, crop_h, crop_w)``, each ``[batch]``.
    """
    seeds = tf.random.experimental.stateless_split(seed, 4)
    h_f = tf.cast(height, tf.float32)
    w_f = tf.cast(width, tf.float32)
    area = h_f * w_f
    target_area = area * tf.random.stateless_uniform(
        [batch, _N_TRIALS], seeds[0], minval=scale[0], maxval=scale[1]
    )
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = tf.exp(tf.random.stateless_uniform([batch, _N_TRIALS], seeds[1], minval=log_lo, maxval=log_hi))
    w = tf.round(tf.sqrt(target_area * aspect))  # round-half-even, as Python's round()
    h = tf.round(tf.sqrt(target_area / aspect))
    valid = (w > 0) & (w <= w_f) & (h > 0) & (h <= h_f)
    first = tf.argmax(tf.cast(valid, tf.int32), axis=1, output_type=tf.int32)
    any_valid = tf.reduce_any(valid, axis=1)
    h_sel = tf.gather(h, first, axis=1, batch_dims=1)
    w_sel = tf.gather(w, first, axis=1, batch_dims=1)
    # centre-crop fallback
    in_ratio = w_f / h_f
    fb_w = tf.where(in_ratio < ratio[0], w_f, tf.where(in_ratio > ratio[1], tf.round(h_f * ratio[1]), w_f))
    fb_h = tf.where(in_ratio < ratio[0], tf.round(w_f / ratio[0]), h_f)
    fb_h = tf.minimum(fb_h, h_f)
    fb_w = tf.minimum(fb_w, w_f)
    crop_h = tf.cast(tf.where(any_valid, h_sel, fb_h), tf.int32)
    crop_w = tf.cast(tf.where(any_valid, w_sel, fb_w), tf.int32)
    hi = tf.cast(height, tf.int32)
    wi = tf.cast(width, tf.int32)
    u_top = tf.random.stateless_uniform([batch], seeds[2])
    u_left = tf.random.stateless_uniform([batch], seeds[3])
    top_rand = tf.cast(tf.floor(u_top * tf.cast(hi - crop_h + 1, tf.float32)), tf.int32)
    left_rand = tf.cast(tf.floor(u_left * tf.cast(wi - crop_w + 1, tf.float32)), tf.int32)
    top = tf.where(any_valid, tf.minimum(top_rand, hi - crop_h), (hi - crop_h) // 2)
    left = tf.where(any_valid, tf.minimum(left_rand, wi - crop_w), (wi - crop_w) // 2)
    return top, left, crop_h, crop_w


def _cubic(x):
    """Keys cubic kernel, a = -0.5 (PIL BICUBIC; tf 'keyscubic'). x >= 0."""
    return tf.where(
        x < 1.0,
        (1.5 * x - 2.5) * x * x + 1.0,
        tf.where(x < 2.0, ((-0.5 * x + 2.5) * x - 4.0) * x + 2.0, tf.zeros_like(x)),
    )


def _triangle(x):
    return tf.maximum(1.0 - x, 0.0)


def resize_matrices(start, length, in_size, out_size, interpolation="bicubic", antialias=True):
    """Per-image resampling matrices ``[B, out_size, in_size]`` mapping the input interval
    ``[start, start + length)`` onto ``out_size`` pixels (scale_and_translate semantics:
    half-pixel centres, kernel widened by the down-sampling factor, weights renormalised
    over the pixels inside the interval)."""
    kernel, radius = (_cubic, 2.0) if interpolation == "bicubic" else (_triangle, 1.0)
    start = tf.cast(start, tf.float32)[:, None, None]
    length = tf.cast(length, tf.float32)[:, None, None]
    inv_scale = length / float(out_size)
    kernel_scale = tf.maximum(inv_scale, 1.0) if antialias else tf.ones_like(inv_scale)
    out_pos = tf.range(out_size, dtype=tf.float32)[None, :, None]
    sample = (out_pos + 0.5) * inv_scale  # relative to start
    rel = tf.range(in_size, dtype=tf.float32)[None, None, :] - start  # pixel index in crop
    x = tf.abs(rel + 0.5 - sample) / kernel_scale
    inside = (rel >= 0.0) & (rel < length) & (x < radius)
    weights = tf.where(inside, kernel(x), 0.0)
    total = tf.reduce_sum(weights, axis=2, keepdims=True)
    return weights / tf.where(tf.abs(total) > 1e-12, total, 1.0)


def resized_crop(images, top, left, crop_h, crop_w, size, interpolation="bicubic", flip=None,
                 antialias=True):
    """Crop ``images`` (``[B, H, W, C]`` float) to per-image boxes and resize to
    ``size``×``size`` with two batched matmuls; ``flip`` ([B] bool) mirrors horizontally."""
    shape = tf.shape(images)
    in_h = images.shape[1] if images.shape[1] is not None else shape[1]
    in_w = images.shape[2] if images.shape[2] is not None else shape[2]
    rows = resize_matrices(top, crop_h, in_h, size, interpolation, antialias)  # [B, S, H]
    cols = resize_matrices(left, crop_w, in_w, size, interpolation, antialias)  # [B, S, W]
    if flip is not None:
        cols = tf.where(flip[:, None, None], tf.reverse(cols, axis=[1]), cols)
    tmp = tf.einsum("bsh,bhwc->bswc", rows, images)
    return tf.einsum("btw,bswc->bstc", cols, tmp)


def random_erasing(images, scale, ratio, value, seed, apply):
    """torchvision ``RandomErasing`` on a batch ``[B, H, W, C]``: on the images where
    ``apply`` ([B] bool) holds, a box of ``scale`` of the area and aspect ratio in ``ratio``
    (log-uniform; h = round(√(area·r)), w = round(√(area/r)), the first of 10 tries with
    h < H and w < W, top ~ U{0 … H − h}, left ~ U{0 … W − w}) is set to ``value`` (one
    level per channel); an image none of whose tries fits is left alone, as torchvision."""
    seeds = tf.random.experimental.stateless_split(seed, 4)
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    h_f, w_f = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    area = h_f * w_f * tf.random.stateless_uniform([batch, _N_TRIALS], seeds[0], minval=scale[0], maxval=scale[1])
    aspect = tf.exp(tf.random.stateless_uniform([batch, _N_TRIALS], seeds[1], minval=math.log(ratio[0]),
                                                maxval=math.log(ratio[1])))
    h = tf.round(tf.sqrt(area * aspect))
    w = tf.round(tf.sqrt(area / aspect))
    valid = (h < h_f) & (w < w_f)
    first = tf.argmax(tf.cast(valid, tf.int32), axis=1, output_type=tf.int32)
    h = tf.gather(h, first, axis=1, batch_dims=1)
    w = tf.gather(w, first, axis=1, batch_dims=1)
    erase = apply & tf.reduce_any(valid, axis=1)
    top = tf.floor(tf.random.stateless_uniform([batch], seeds[2]) * (h_f - h + 1.0))
    left = tf.floor(tf.random.stateless_uniform([batch], seeds[3]) * (w_f - w + 1.0))
    rows = tf.range(h_f)[None, :]
    cols = tf.range(w_f)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + h)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + w)[:, None])
    box = in_rows[:, :, None] & in_cols[:, None, :] & erase[:, None, None]
    fill = tf.cast(tf.reshape(value, [1, 1, 1, -1]), images.dtype)
    return tf.where(box[..., None], fill, images)
