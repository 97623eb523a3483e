"""One augmentation of a batch: crop and flip, then jitter, grey, blur, RandAugment, solarize and erasing.

The order is each method's reference: the crop and flip, then ColorJitter → grey → blur →
solarize (BURN, BYOL, SimCLR, MoCo); **grey first** (``grayscale_first``) for NPID /
InstDisc, which grey the image before the jitter; RandAugment after the blur and grey last
for InfoMin (PyContrast's jitter → blur → RandAugment → grey).  Grey and blur commute (both
linear per image).

The views whose configs differ only in their blur and solarize probabilities are augmented
as one batch of m·B images with per-image probabilities (:func:`augment_views`; half the
graph and per-op overhead for two views); the random draws do not depend on the
probabilities.  Images of varying size are cropped one by one (:func:`crop_one_image`) and
the rest of the chain runs on the batch (:func:`augment_cropped_views`).  PIL rounds to
uint8 after every step, this stays in float32; random streams differ from PyTorch's (the
distributions are the same).  Output views are float32 in [0, 1] (models normalise inside
themselves).
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from burn_tf.data.colour import coin_flips, color_jitter, gaussian_blur, solarize, to_grey
from burn_tf.data.crops import random_erasing, resized_crop, sample_crop_boxes
from burn_tf.data.randaugment import rand_augment
from burn_tf.data.views import AugmentConfig


def _per_image_probabilities(views: Sequence[AugmentConfig], batch):
    """Per-image blur and solarize probabilities of views stacked as one batch ([m·B] each)."""
    blur = tf.repeat(tf.constant([view.blur_prob[0] for view in views], tf.float32),
                     tf.fill([len(views)], batch))
    solarize = tf.repeat(tf.constant([view.solarize_prob[0] for view in views], tf.float32),
                         tf.fill([len(views)], batch))
    return blur, solarize


def _post_crop(x, views: Sequence[AugmentConfig], seeds):
    """Colour jitter, grey, blur, RandAugment, solarize on the cropped float images in [0, 1]
    of ``views`` stacked as one batch (view i is the i-th block): every op follows the first
    view's config but the blur and solarize, which each image draws with its view's
    probability (an op runs when any view may apply it)."""
    cfg = views[0]
    batch = tf.shape(x)[0]
    blur_prob, solarize_prob = _per_image_probabilities(views, batch // len(views))

    def grayscale(x):
        if cfg.grayscale_prob <= 0:
            return x
        m = tf.cast(coin_flips(seeds[2], batch, cfg.grayscale_prob), x.dtype)[:, None, None, None]
        # exact select (m is 0 or 1); ~5x faster on CPU than tf.where with a broadcast mask
        return m * to_grey(x) + (1.0 - m) * x

    # Where the grey conversion goes: before the jitter (NPID), after RandAugment (InfoMin:
    # PyContrast jitter → blur → RandAugment → grey), else after the jitter (the others;
    # grey and blur commute, both being linear per image).
    if cfg.grayscale_first:
        x = grayscale(x)
    if cfg.jitter_prob > 0 and (cfg.brightness or cfg.contrast or cfg.saturation or cfg.hue):
        x = color_jitter(x, cfg, seeds[0], apply=coin_flips(seeds[1], batch, cfg.jitter_prob))
    if not cfg.grayscale_first and not cfg.randaugment_ops:
        x = grayscale(x)
    if any(view.blur_prob[0] > 0 for view in views):
        # σ in pixels of this view's size (blur_sigma is given at blur_sigma_size).
        low, high = cfg.pixel_sigma
        sigma = tf.random.stateless_uniform([batch], seeds[3], minval=low, maxval=high)
        x = gaussian_blur(x, sigma, cfg.kernel_size, apply=coin_flips(seeds[4], batch, blur_prob))
    if cfg.randaugment_ops:
        # Its own stream (folded from the jitter's seed): the other draws stay as they were.
        x = rand_augment(x, cfg, tf.random.experimental.stateless_fold_in(seeds[0], 1))
        if not cfg.grayscale_first:
            x = grayscale(x)
    # Any view, not the first one's only: BYOL's first view never solarizes, its second does.
    if any(view.solarize_prob[0] > 0 for view in views):
        x = solarize(x, cfg.solarize_threshold, apply=coin_flips(seeds[5], batch, solarize_prob))
    x = tf.clip_by_value(x, 0.0, 1.0)
    if cfg.erasing_prob > 0:
        # Last, as CLD's RandomErasing after Normalize; its own stream (folded from the
        # solarize seed): the other draws stay as they were.
        erase_seed = tf.random.experimental.stateless_fold_in(seeds[5], 1)
        x = random_erasing(x, cfg.erasing_scale, cfg.erasing_ratio, cfg.erasing_value, erase_seed,
                           coin_flips(tf.random.experimental.stateless_fold_in(seeds[5], 2), batch, cfg.erasing_prob))
    return x


N_SEEDS = 8  # crop, flip, then _post_crop's six


def to_unit_float(images):
    """uint8 images (0–255) → float32 in [0, 1]; float images are cast to float32 as they are."""
    images = tf.convert_to_tensor(images)
    x = tf.cast(images, tf.float32)
    return x / 255.0 if images.dtype == tf.uint8 else x


def _split_views(stacked, num_views: int):
    batch = tf.shape(stacked)[0] // num_views
    return tuple(stacked[j * batch:(j + 1) * batch] for j in range(num_views))


def augment_views(images, views: Sequence[AugmentConfig], seed) -> tuple:
    """The views of a batch of same-sized images, one per config of ``views``: a tuple of
    float32 ``[B, S, S, 3]`` in [0, 1] (what the pipeline calls for each group of views).

    ``images``: ``[B, H, W, 3]`` uint8 (0–255) or float (0–1); ``seed``: int64/int32 ``[2]``;
    ``views``: configs equal up to their blur and solarize probabilities (each view uses the
    first value of its pairs: :func:`~burn_tf.data.views.per_view_configs` makes them from
    one config).  The views are augmented as one batch of m·B images with independent
    parameters per image.  The random draws do not depend on the probabilities, so two
    configs that differ only in one probability give identical results on the images that
    op leaves alone.
    """
    x = to_unit_float(images)
    x = tf.concat([x] * len(views), axis=0)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), N_SEEDS)
    batch = tf.shape(x)[0]
    height = x.shape[1] if x.shape[1] is not None else tf.shape(x)[1]
    width = x.shape[2] if x.shape[2] is not None else tf.shape(x)[2]
    cfg = views[0]
    top, left, crop_h, crop_w = sample_crop_boxes(batch, height, width, cfg.crop_scale, cfg.crop_ratio, seeds[0])
    flip = coin_flips(seeds[1], batch, cfg.flip_prob)
    x = resized_crop(x, top, left, crop_h, crop_w, cfg.image_size, cfg.interpolation, flip=flip)
    x = tf.clip_by_value(x, 0.0, 1.0)
    return _split_views(_post_crop(x, views, seeds[2:]), len(views))


def augment_cropped_views(crops: Sequence[tf.Tensor], views: Sequence[AugmentConfig], seed) -> tuple:
    """The chain after the crop (jitter, grey, blur, RandAugment, solarize) on views already
    cropped (:func:`crop_one_image`, images of varying size): ``crops[i]`` float
    ``[B, S, S, 3]`` is view i, cropped with ``views[i]``; configs as :func:`augment_views`."""
    seeds = tf.random.experimental.stateless_split(seed, N_SEEDS - 2)
    return _split_views(_post_crop(tf.concat(list(crops), axis=0), views, seeds), len(views))


def crop_one_image(image, cfg: AugmentConfig, seed):
    """Per-image RandomResizedCrop + flip for images of varying size: slice, then
    ``tf.image.resize`` (anti-aliased) on the slice.  Returns float32 [S, S, 3]."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
    shape = tf.shape(image)
    top, left, crop_h, crop_w = sample_crop_boxes(1, shape[0], shape[1], cfg.crop_scale, cfg.crop_ratio, seeds[0])
    crop = image[top[0]:top[0] + crop_h[0], left[0]:left[0] + crop_w[0], :]
    crop = tf.cast(crop, tf.float32) / 255.0
    out = tf.image.resize(crop, [cfg.image_size, cfg.image_size], method=cfg.interpolation, antialias=True)
    flip = coin_flips(seeds[1], 1, cfg.flip_prob)[0]
    out = tf.cond(flip, lambda: tf.reverse(out, axis=[1]), lambda: out)
    out = tf.clip_by_value(out, 0.0, 1.0)
    out.set_shape([cfg.image_size, cfg.image_size, 3])
    return out
