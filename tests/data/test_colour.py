"""Colour ops: hue, ColorJitter against torchvision's semantics, grey, solarize, blur."""

import numpy as np
import tensorflow as tf
from data_helpers import SEED, one_view, quiet, synthetic_source

from burn_tf.data import AugmentConfig
from burn_tf.data.colour import adjust_hue, color_jitter, gaussian_blur, jitter_params


def test_adjust_hue_matches_tf_image():
    rng = np.random.default_rng(2)
    x = rng.random((4, 9, 9, 3)).astype(np.float32)
    x[0, 0, 0] = [0.5, 0.5, 0.5]  # grey pixel: no hue
    deltas = np.array([0.1, -0.1, 0.5, -0.03], np.float32)
    got = adjust_hue(tf.constant(x), tf.constant(deltas)).numpy()
    for i, d in enumerate(deltas):
        np.testing.assert_allclose(got[i], tf.image.adjust_hue(x[i], float(d)).numpy(), atol=2e-5)


def reference_jitter(img, factors, hue, order):
    """torchvision ColorJitter on one float image, written plainly."""
    grey_w = np.array([0.2989, 0.587, 0.114], np.float32)
    for op in order:
        grey = (img * grey_w).sum(-1, keepdims=True)
        if op == 0:
            img = np.clip(factors[0] * img, 0, 1)
        elif op == 1:
            img = np.clip(factors[1] * img + (1 - factors[1]) * grey.mean(), 0, 1)
        elif op == 2:
            img = np.clip(factors[2] * img + (1 - factors[2]) * grey, 0, 1)
        else:
            img = tf.image.adjust_hue(img, float(hue)).numpy()
    return img


def test_color_jitter_matches_torchvision_semantics():
    rng = np.random.default_rng(3)
    x = rng.random((6, 10, 10, 3)).astype(np.float32)
    cfg = AugmentConfig(image_size=10)
    factors, hue, order = [t.numpy() for t in jitter_params(6, cfg, SEED)]
    assert (factors >= 0.6).all() and (factors <= 1.4).all() and (np.abs(hue) <= 0.1).all()
    assert all(sorted(o) == [0, 1, 2, 3] for o in order)
    assert len({tuple(o) for o in order}) > 1  # random order per image
    got = color_jitter(tf.constant(x), cfg, SEED).numpy()
    for i in range(6):
        np.testing.assert_allclose(got[i], reference_jitter(x[i], factors[i], hue[i], order[i]), atol=3e-5)
    # apply mask: unselected images untouched
    mask = tf.constant([True, False, True, False, False, True])
    masked = color_jitter(tf.constant(x), cfg, SEED, apply=mask).numpy()
    np.testing.assert_array_equal(masked[1], x[1])
    np.testing.assert_allclose(masked[0], got[0], atol=1e-6)


def test_grayscale_forced():
    _, images = synthetic_source(8, 28)
    out = one_view(images, AugmentConfig(image_size=28, grayscale_prob=1.0), SEED).numpy()
    np.testing.assert_allclose(out[..., 0], out[..., 1], atol=1e-6)
    np.testing.assert_allclose(out[..., 0], out[..., 2], atol=1e-6)
    assert out.std() > 0.05


def test_solarize_forced():
    _, images = synthetic_source(8, 32, seed=4)
    base_cfg = AugmentConfig(image_size=32, solarize_prob=(0.0, 0.0))
    sol_cfg = AugmentConfig(image_size=32, solarize_prob=(1.0, 1.0))
    base = one_view(images, base_cfg, SEED).numpy()
    sol = one_view(images, sol_cfg, SEED).numpy()
    np.testing.assert_allclose(sol, np.where(base >= 0.5, 1.0 - base, base), atol=1e-6)
    assert (sol <= 0.5 + 1e-6).all()


def test_blur_forced_and_kernel():
    _, images = synthetic_source(8, 32, seed=5)
    sharp = one_view(images, quiet(32), SEED).numpy()
    blurred = one_view(images, quiet(32, blur_prob=1.0, blur_sigma=(1.5, 2.0), blur_sigma_size=None), SEED).numpy()
    tv = lambda a: np.abs(np.diff(a, axis=1)).mean() + np.abs(np.diff(a, axis=2)).mean()  # noqa: E731
    assert tv(blurred) < 0.6 * tv(sharp)
    assert abs(blurred.mean() - sharp.mean()) < 0.01
    # one image against a plain numpy separable blur with reflect padding
    x = sharp[:2]
    sigma = np.array([0.7, 1.9], np.float32)
    got = gaussian_blur(tf.constant(x), tf.constant(sigma), 5).numpy()
    for i in range(2):
        k = np.exp(-0.5 * (np.arange(-2, 3) / sigma[i]) ** 2)
        k /= k.sum()
        p = np.pad(x[i], ((2, 2), (2, 2), (0, 0)), mode="reflect")
        rows = sum(k[j] * p[j:j + 32] for j in range(5))
        ref = sum(k[j] * rows[:, j:j + 32] for j in range(5))
        np.testing.assert_allclose(got[i], ref, atol=1e-5)
    # the per-view probability: view 0 forced, view 1 off
    cfg = quiet(32, blur_prob=(1.0, 0.0))
    np.testing.assert_allclose(one_view(images, cfg, SEED, view=1).numpy(), sharp, atol=1e-6)
