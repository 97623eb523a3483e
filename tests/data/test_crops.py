"""Random resized crops: torchvision's boxes, the batched resampling, scale and flip."""

import numpy as np
import pytest
import tensorflow as tf
from data_helpers import SEED, one_view, quiet, synthetic_source

from burn_tf.data.crops import resized_crop, sample_crop_boxes


def test_crop_boxes_follow_torchvision_get_params():
    top, left, h, w = [t.numpy() for t in sample_crop_boxes(4000, 40, 30, (0.08, 1.0), (3 / 4, 4 / 3), SEED)]
    assert (h >= 1).all() and (w >= 1).all()
    assert (top >= 0).all() and (top + h <= 40).all() and (left >= 0).all() and (left + w <= 30).all()
    area = h * w / (40 * 30)
    # areas come from U(0.08, 1) before integer rounding, or from the centre-crop fallback
    assert area.min() > 0.05 and area.max() <= 1.0
    assert 0.4 < np.median(area) < 0.7
    aspect = w / h
    assert (aspect > 0.6).all() and (aspect < 1.6).all()
    # impossible ratio → torchvision's centre-crop fallback, clamped to the ratio range
    top, left, h, w = [t.numpy() for t in sample_crop_boxes(8, 20, 20, (1.0, 1.0), (2.0, 3.0), SEED)]
    assert (w == 20).all() and (h == 10).all() and (top == 5).all() and (left == 0).all()


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_batched_resized_crop_equals_tf_image_resize_of_the_slice(interpolation):
    rng = np.random.default_rng(1)
    images = rng.random((3, 28, 28, 3)).astype(np.float32)
    boxes = [(2, 3, 20, 9), (0, 0, 28, 28), (5, 1, 4, 22)]  # up and down sampling, odd shapes
    top, left, h, w = (tf.constant(v) for v in zip(*boxes))
    for size in (32, 12):
        out = resized_crop(tf.constant(images), top, left, h, w, size, interpolation).numpy()
        for i, (t, left_, hh, ww) in enumerate(boxes):
            ref = tf.image.resize(images[i, t:t + hh, left_:left_ + ww], [size, size], interpolation, antialias=True)
            np.testing.assert_allclose(out[i], ref.numpy(), atol=2e-5)


def test_crop_really_changes_scale():
    stripes = np.zeros((1, 64, 64, 3), np.uint8)
    stripes[:, :, (np.arange(64) // 2) % 2 == 1] = 255  # vertical stripes, period 4 px

    def transitions(cfg):
        out = one_view(np.repeat(stripes, 16, 0), cfg, SEED).numpy()
        binary = out[..., 0] > 0.5
        return np.abs(np.diff(binary.astype(int), axis=2)).sum(axis=2).mean()

    full = transitions(quiet(64))
    small = transitions(quiet(64, crop_scale=(0.1, 0.1)))
    assert full > 25  # ~32 edges across the whole image
    assert small < full / 2.5  # a 10%-area crop is ~3.2x magnified
    out = one_view(stripes, quiet(64), SEED).numpy()
    np.testing.assert_allclose(out[0], stripes[0] / 255.0, atol=1e-6)  # full crop, same size


def test_flip_mirrors():
    src, images = synthetic_source(4, 16)
    out = one_view(images, quiet(16, flip_prob=1.0), SEED).numpy()
    np.testing.assert_allclose(out, images[:, :, ::-1] / 255.0, atol=1e-6)
