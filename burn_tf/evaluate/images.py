"""Evaluation images: one path from uint8 / float arrays to the float RGB the backbones take.

Every evaluator feeds a backbone float32 RGB images in [0, 1] at its input size:
:func:`to_float_rgb` converts (uint8 → /255, grey → 3 channels), :func:`prepare_images`
also resizes a batch (bilinear) and clips. :func:`augment_image` / :func:`image_dataset`
build the training pipelines of the probes that see augmented images (linear
``augment=True``, semi-supervised fine-tuning).

``burn_tf.data.augment.eval_dataset`` is not used here: it resizes bicubic with
anti-aliasing and expects 3-channel sources, while the evaluators' published numbers were
measured with this bilinear path (grey Fashion-MNIST at 28 px → 32 px backbones), so
switching would change every number.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf


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


def prepare_images(images, image_size: int) -> tf.Tensor:
    """A batch uint8 [N,H,W] or [N,H,W,C] (or float in [0,1]) → float32 [N,S,S,3] in [0,1]."""
    x = tf.convert_to_tensor(images)
    if x.shape.rank == 3:
        x = x[..., tf.newaxis]
    x = to_float_rgb(x)
    if x.shape[1] != image_size or x.shape[2] != image_size:
        x = tf.image.resize(x, (image_size, image_size), method="bilinear")
    return tf.clip_by_value(x, 0.0, 1.0)


def augment_image(image: tf.Tensor, seed: tf.Tensor, size: int,
                  scale: Sequence[float] = (0.08, 1.0)) -> tf.Tensor:
    """RandomResizedCrop(size, scale, ratio 3/4–4/3) + horizontal flip, stateless (seed [2])."""
    image = to_float_rgb(image)
    begin, crop, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=seed,
        min_object_covered=0.0,
        aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=tuple(float(s) for s in scale),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    image = tf.slice(image, begin, crop)
    image = tf.image.resize(image, (size, size), method="bilinear")
    image = tf.image.stateless_random_flip_left_right(image, seed=seed[::-1])
    return tf.clip_by_value(image, 0.0, 1.0)


def image_dataset(x: np.ndarray, y: np.ndarray, size: int, batch_size: int, *, augment: bool,
                  seed: int, shuffle: bool = True, crop_scale=(0.08, 1.0)) -> tf.data.Dataset:
    """(images, labels) → batches of float [B,size,size,3] images, augmented if asked."""
    ds = tf.data.Dataset.from_tensor_slices((x, np.asarray(y, np.int64)))
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    if augment:
        rng = tf.random.Generator.from_seed(seed)

        def aug(image, label):
            return augment_image(image, rng.make_seeds(1)[:, 0], size, crop_scale), label

        ds = ds.map(aug, num_parallel_calls=1)
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    ds = ds.batch(batch_size).map(lambda a, b: (prepare_images(a, size), b))
    return ds.prefetch(tf.data.AUTOTUNE)
