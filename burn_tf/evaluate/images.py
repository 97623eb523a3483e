"""The probes' training images: augmented crops and the ``tf.data`` pipeline of arrays they train on.

Every evaluator feeds a backbone float32 RGB images in [0, 1] at its input size through the
one evaluation-image path of the data layer, :func:`burn_tf.data.eval_images.prepare_images`
(bilinear, anti-aliased when shrinking). What is evaluation-specific stays here:
:func:`augment_image` / :func:`image_dataset` build the training pipelines of the probes
that see augmented images (linear ``augment=True``, semi-supervised fine-tuning).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from burn_tf.data.eval_images import prepare_images, to_float_rgb


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
