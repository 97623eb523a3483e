"""Two-view augmentation and the evaluation pipeline."""

import numpy as np
import pytest
import tensorflow as tf
from data_helpers import real_fashion_available, solid, write_image

from burn_tf.data import (
    AugmentConfig,
    augment_batch,
    augment_two_views,
    eval_dataset,
    image_folder,
    two_view_dataset,
    two_view_throughput,
)
from burn_tf.data import augment as A

SEED = tf.constant([3, 4], tf.int64)


def synthetic_source(n=64, size=28, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    labels = np.arange(n, dtype=np.int64) % 10
    return tf.data.Dataset.from_tensor_slices((images, labels)), images


def quiet(size, **kw):
    """Only the crop (full image, square) unless re-enabled: to test one op at a time."""
    base = dict(
        image_size=size, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=0.0,
        jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0, solarize_prob=0.0,
    )
    base.update(kw)
    return AugmentConfig(**base)


def first(ds):
    return [t.numpy() for t in next(iter(ds))]


# ------------------------------------------------------------------------------ config


def test_config_defaults_are_burns_released_values():
    cfg = AugmentConfig.burn(224)
    assert cfg.crop_scale == (0.08, 1.0) and cfg.crop_ratio == pytest.approx((3 / 4, 4 / 3))
    assert cfg.interpolation == "bicubic" and cfg.flip_prob == 0.5
    assert (cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue) == (0.4, 0.4, 0.4, 0.1)
    assert cfg.jitter_prob == 0.6 and cfg.grayscale_prob == 0.2
    assert cfg.blur_prob == (0.2, 0.2) and cfg.blur_sigma == (0.1, 2.0)
    assert cfg.solarize_prob == (0.0, 0.0)
    assert cfg.kernel_size == 23
    assert [AugmentConfig(image_size=s).kernel_size for s in (28, 32, 64, 96)] == [3, 3, 7, 9]
    cfg2 = AugmentConfig.from_dict({"image_size": 32, "blur_prob": [1.0, 0.1], "solarize_prob": 0.2})
    assert cfg2.blur_prob == (1.0, 0.1) and cfg2.solarize_prob == (0.2, 0.2)
    assert AugmentConfig.from_dict(cfg2.to_dict()) == cfg2
    with pytest.raises(ValueError, match="crop_scale"):
        AugmentConfig(image_size=32, crop_scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="unknown AugmentConfig keys"):
        AugmentConfig.from_dict({"image_size": 32, "colour": 1})


# ------------------------------------------------------------------------------- crops


def test_crop_boxes_follow_torchvision_get_params():
    top, left, h, w = [t.numpy() for t in A.sample_crop_boxes(4000, 40, 30, (0.08, 1.0), (3 / 4, 4 / 3), SEED)]
    assert (h >= 1).all() and (w >= 1).all()
    assert (top >= 0).all() and (top + h <= 40).all() and (left >= 0).all() and (left + w <= 30).all()
    area = h * w / (40 * 30)
    # areas come from U(0.08, 1) before integer rounding, or from the centre-crop fallback
    assert area.min() > 0.05 and area.max() <= 1.0
    assert 0.4 < np.median(area) < 0.7
    aspect = w / h
    assert (aspect > 0.6).all() and (aspect < 1.6).all()
    # impossible ratio → torchvision's centre-crop fallback, clamped to the ratio range
    top, left, h, w = [t.numpy() for t in A.sample_crop_boxes(8, 20, 20, (1.0, 1.0), (2.0, 3.0), SEED)]
    assert (w == 20).all() and (h == 10).all() and (top == 5).all() and (left == 0).all()


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_batched_resized_crop_equals_tf_image_resize_of_the_slice(interpolation):
    rng = np.random.default_rng(1)
    images = rng.random((3, 28, 28, 3)).astype(np.float32)
    boxes = [(2, 3, 20, 9), (0, 0, 28, 28), (5, 1, 4, 22)]  # up and down sampling, odd shapes
    top, left, h, w = (tf.constant(v) for v in zip(*boxes))
    for size in (32, 12):
        out = A.resized_crop(tf.constant(images), top, left, h, w, size, interpolation).numpy()
        for i, (t, l, hh, ww) in enumerate(boxes):
            ref = tf.image.resize(images[i, t:t + hh, l:l + ww], [size, size], interpolation, antialias=True)
            np.testing.assert_allclose(out[i], ref.numpy(), atol=2e-5)


def test_crop_really_changes_scale():
    stripes = np.zeros((1, 64, 64, 3), np.uint8)
    stripes[:, :, (np.arange(64) // 2) % 2 == 1] = 255  # vertical stripes, period 4 px

    def transitions(cfg):
        out = augment_batch(np.repeat(stripes, 16, 0), cfg, SEED).numpy()
        binary = out[..., 0] > 0.5
        return np.abs(np.diff(binary.astype(int), axis=2)).sum(axis=2).mean()

    full = transitions(quiet(64))
    small = transitions(quiet(64, crop_scale=(0.1, 0.1)))
    assert full > 25  # ~32 edges across the whole image
    assert small < full / 2.5  # a 10%-area crop is ~3.2x magnified
    out = augment_batch(stripes, quiet(64), SEED).numpy()
    np.testing.assert_allclose(out[0], stripes[0] / 255.0, atol=1e-6)  # full crop, same size


def test_flip_mirrors():
    src, images = synthetic_source(4, 16)
    out = augment_batch(images, quiet(16, flip_prob=1.0), SEED).numpy()
    np.testing.assert_allclose(out, images[:, :, ::-1] / 255.0, atol=1e-6)


# -------------------------------------------------------------------------- colour ops


def test_adjust_hue_matches_tf_image():
    rng = np.random.default_rng(2)
    x = rng.random((4, 9, 9, 3)).astype(np.float32)
    x[0, 0, 0] = [0.5, 0.5, 0.5]  # grey pixel: no hue
    deltas = np.array([0.1, -0.1, 0.5, -0.03], np.float32)
    got = A.adjust_hue(tf.constant(x), tf.constant(deltas)).numpy()
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
    factors, hue, order = [t.numpy() for t in A.jitter_params(6, cfg, SEED)]
    assert (factors >= 0.6).all() and (factors <= 1.4).all() and (np.abs(hue) <= 0.1).all()
    assert all(sorted(o) == [0, 1, 2, 3] for o in order)
    assert len({tuple(o) for o in order}) > 1  # random order per image
    got = A.color_jitter(tf.constant(x), cfg, SEED).numpy()
    for i in range(6):
        np.testing.assert_allclose(got[i], reference_jitter(x[i], factors[i], hue[i], order[i]), atol=3e-5)
    # apply mask: unselected images untouched
    mask = tf.constant([True, False, True, False, False, True])
    masked = A.color_jitter(tf.constant(x), cfg, SEED, apply=mask).numpy()
    np.testing.assert_array_equal(masked[1], x[1])
    np.testing.assert_allclose(masked[0], got[0], atol=1e-6)


def test_grayscale_forced():
    _, images = synthetic_source(8, 28)
    out = augment_batch(images, AugmentConfig(image_size=28, grayscale_prob=1.0), SEED).numpy()
    np.testing.assert_allclose(out[..., 0], out[..., 1], atol=1e-6)
    np.testing.assert_allclose(out[..., 0], out[..., 2], atol=1e-6)
    assert out.std() > 0.05


def test_solarize_forced():
    _, images = synthetic_source(8, 32, seed=4)
    base_cfg = AugmentConfig(image_size=32, solarize_prob=(0.0, 0.0))
    sol_cfg = AugmentConfig(image_size=32, solarize_prob=(1.0, 1.0))
    base = augment_batch(images, base_cfg, SEED).numpy()
    sol = augment_batch(images, sol_cfg, SEED).numpy()
    np.testing.assert_allclose(sol, np.where(base >= 0.5, 1.0 - base, base), atol=1e-6)
    assert (sol <= 0.5 + 1e-6).all()


def test_blur_forced_and_kernel():
    _, images = synthetic_source(8, 32, seed=5)
    sharp = augment_batch(images, quiet(32), SEED).numpy()
    blurred = augment_batch(images, quiet(32, blur_prob=1.0, blur_sigma=(1.5, 2.0)), SEED).numpy()
    tv = lambda a: np.abs(np.diff(a, axis=1)).mean() + np.abs(np.diff(a, axis=2)).mean()  # noqa: E731
    assert tv(blurred) < 0.6 * tv(sharp)
    assert abs(blurred.mean() - sharp.mean()) < 0.01
    # one image against a plain numpy separable blur with reflect padding
    x = sharp[:2]
    sigma = np.array([0.7, 1.9], np.float32)
    got = A.gaussian_blur(tf.constant(x), tf.constant(sigma), 5).numpy()
    for i in range(2):
        k = np.exp(-0.5 * (np.arange(-2, 3) / sigma[i]) ** 2)
        k /= k.sum()
        p = np.pad(x[i], ((2, 2), (2, 2), (0, 0)), mode="reflect")
        rows = sum(k[j] * p[j:j + 32] for j in range(5))
        ref = sum(k[j] * rows[:, j:j + 32] for j in range(5))
        np.testing.assert_allclose(got[i], ref, atol=1e-5)
    # the per-view probability: view 0 forced, view 1 off
    cfg = quiet(32, blur_prob=(1.0, 0.0))
    np.testing.assert_allclose(augment_batch(images, cfg, SEED, view=1).numpy(), sharp, atol=1e-6)


# --------------------------------------------------------------------------- pipelines


@pytest.mark.parametrize("size", [28, 32])
def test_two_view_shapes_dtypes_ranges(size):
    source, _ = synthetic_source(52, 28)
    ds = two_view_dataset(source, AugmentConfig(image_size=size), batch_size=16, seed=0)
    spec = ds.element_spec
    assert spec[0].shape.as_list() == [16, size, size, 3] and spec[0].dtype == tf.float32
    batches = list(ds.as_numpy_iterator())
    assert len(batches) == 3  # remainder of 4 dropped
    for v1, v2 in batches:
        for v in (v1, v2):
            assert v.shape == (16, size, size, 3) and v.dtype == np.float32
            assert v.min() >= 0.0 and v.max() <= 1.0
        assert not np.allclose(v1, v2)  # two different views


@pytest.mark.skipif(not real_fashion_available(), reason="Debian package dataset-fashion-mnist not installed")
def test_two_view_on_real_fashion_mnist():
    from burn_tf.data import fashion_mnist

    ds = two_view_dataset(fashion_mnist("test").take(64), AugmentConfig(image_size=32), 32, seed=0)
    (v1, v2), _ = list(ds.as_numpy_iterator())
    assert v1.shape == v2.shape == (32, 32, 32, 3) and v1.dtype == np.float32
    assert 0.0 <= min(v1.min(), v2.min()) and max(v1.max(), v2.max()) <= 1.0
    assert 0.05 < v1.mean() < 0.9 and v1.std() > 0.05


def test_two_view_deterministic_under_seed():
    source, _ = synthetic_source(40, 28)
    cfg = AugmentConfig(image_size=32, solarize_prob=(0.0, 0.2))
    ds1 = two_view_dataset(source, cfg, 8, seed=7, shuffle_buffer=40)
    run1 = list(ds1.as_numpy_iterator())
    run2 = list(two_view_dataset(source, cfg, 8, seed=7, shuffle_buffer=40).as_numpy_iterator())
    other = list(two_view_dataset(source, cfg, 8, seed=8, shuffle_buffer=40).as_numpy_iterator())
    assert len(run1) == len(run2) == 5
    for (a1, a2), (b1, b2) in zip(run1, run2):
        np.testing.assert_array_equal(a1, b1)
        np.testing.assert_array_equal(a2, b2)
    assert not np.allclose(run1[0][0], other[0][0])
    # a new epoch (new iterator) of the same dataset gets a new order and new augmentations
    epoch2 = list(ds1.as_numpy_iterator())
    assert not np.allclose(run1[0][0], epoch2[0][0])


def test_two_view_remainder_repeat_labels_and_chunks():
    source, _ = synthetic_source(20, 28)
    cfg = AugmentConfig(image_size=28)
    kept = list(two_view_dataset(
        source, cfg, 8, seed=0, drop_remainder=False, shuffle_buffer=0, with_labels=True,
    ).as_numpy_iterator())
    assert [b[0].shape[0] for b in kept] == [8, 8, 4]
    assert np.concatenate([b[2] for b in kept]).tolist() == [i % 10 for i in range(20)]
    rep = two_view_dataset(source, cfg, 8, seed=0, repeat=True, chunk_size=3)
    assert rep.element_spec[0].shape.as_list() == [8, 28, 28, 3]  # static after rebatching
    shapes = [b[0].shape[0] for b in rep.take(6)]
    assert shapes == [8] * 6


def test_two_view_on_image_folder_of_varying_sizes(tmp_path):
    for i, (h, w) in enumerate([(20, 30), (40, 25), (28, 28), (50, 60)]):
        write_image(tmp_path / "c" / f"{i}.png", solid(h, w, (60 * i, 100, 200 - 40 * i)))
    source = image_folder(tmp_path)
    ds = two_view_dataset(source, AugmentConfig(image_size=32), 2, seed=1, with_labels=True)
    batches = list(ds.as_numpy_iterator())
    assert len(batches) == 2
    for v1, v2, y in batches:
        assert v1.shape == v2.shape == (2, 32, 32, 3) and v1.dtype == np.float32
        assert 0.0 <= v1.min() and v1.max() <= 1.0 and (y == 0).all()
    assert ds.source_info is source.source_info


def test_eval_dataset_deterministic_and_resized():
    source, images = synthetic_source(10, 28)
    same = list(eval_dataset(source, 28, 4).as_numpy_iterator())
    assert [b[0].shape[0] for b in same] == [4, 4, 2]
    np.testing.assert_allclose(np.concatenate([b[0] for b in same]), images / 255.0, atol=1e-7)
    assert np.concatenate([b[1] for b in same]).tolist() == list(range(10))
    up = list(eval_dataset(source, 32, 4).as_numpy_iterator())
    assert up[0][0].shape == (4, 32, 32, 3) and up[0][0].dtype == np.float32
    assert 0.0 <= up[0][0].min() and up[0][0].max() <= 1.0
    again = list(eval_dataset(source, 32, 4).as_numpy_iterator())
    np.testing.assert_array_equal(up[1][0], again[1][0])


def test_eval_dataset_varying_sizes_center_crop(tmp_path):
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, 20:60] = 255  # white centre square, black sides
    write_image(tmp_path / "a.png", img)
    write_image(tmp_path / "b.png", solid(30, 20, (10, 20, 30)))
    ds = eval_dataset(image_folder(tmp_path), 16, 8, center_crop=1.0)
    (x, y), = list(ds.as_numpy_iterator())
    assert x.shape == (2, 16, 16, 3) and y.tolist() == [-1, -1]
    assert x[0][:, 1:-1].min() > 0.95  # the centre square only (edge columns mix)
    np.testing.assert_allclose(x[1][8, 8], np.array([10, 20, 30]) / 255.0, atol=1e-3)


def test_augment_two_views_per_view_probabilities_and_throughput():
    _, images = synthetic_source(8, 28)
    cfg = quiet(28, solarize_prob=(0.0, 1.0))
    v1, v2 = (v.numpy() for v in augment_two_views(images, cfg, SEED))
    np.testing.assert_allclose(v1, images / 255.0, atol=1e-6)  # full crop, nothing else
    np.testing.assert_allclose(v2, np.where(v1 >= 0.5, 1.0 - v1, v1), atol=1e-6)
    source, _ = synthetic_source(32, 28)
    r = two_view_throughput(28, batch_size=8, seconds=0.2, source=source, warmup_batches=1)
    assert r["batches"] >= 1 and r["pairs_per_s"] > 0 and r["views_per_s"] == 2 * r["pairs_per_s"]


# ------------------------------------------------------------------------- RandAugment
# InfoMin's RandAugment is timm's rand-n2-m10-mstd0.5 with per-op probability 0.5
# (PyContrast datasets/util.py aug 'D', datasets/RandAugment.py): checked against PIL, which
# those ops call.

RA_FILL = np.array([124, 116, 104], np.float32)  # PyContrast's img_mean


def pil_ops():
    from PIL import ImageEnhance, ImageOps

    solarize_add = [min(255, i + 110) if i < 128 else i for i in range(256)] * 3
    return {  # each op at magnitude 10, as PIL computes it
        "AutoContrast": ImageOps.autocontrast, "Equalize": ImageOps.equalize, "Invert": ImageOps.invert,
        "Posterize": lambda im: ImageOps.posterize(im, 4), "Solarize": lambda im: ImageOps.solarize(im, 256),
        "SolarizeAdd": lambda im: im.point(solarize_add),
        "Color": lambda im: ImageEnhance.Color(im).enhance(1.9),
        "Contrast": lambda im: ImageEnhance.Contrast(im).enhance(1.9),
        "Brightness": lambda im: ImageEnhance.Brightness(im).enhance(1.9),
        "Sharpness": lambda im: ImageEnhance.Sharpness(im).enhance(1.9),
    }


def test_randaugment_colour_ops_match_pil_at_magnitude_10():
    from PIL import Image

    images = np.random.default_rng(6).integers(0, 256, (3, 20, 24, 3), dtype=np.uint8)
    images[2, :, :, 1] = 77  # a flat channel: autocontrast and equalize leave it
    x = tf.constant(images / 255.0, tf.float32)
    level, sign = tf.fill([3], 10.0), tf.ones([3])
    for name, reference in pil_ops().items():
        got = A.RAND_AUGMENT_OPS[name](x, level, sign).numpy() * 255
        for i in range(3):
            want = np.asarray(reference(Image.fromarray(images[i])), np.float32)
            # PIL rounds to a level after each step; the float version differs by < 1.5 levels.
            np.testing.assert_allclose(got[i], want, atol=1.5, err_msg=name)
    # The levels map as timm's: posterize keeps int(m / 10 · 4) bits, solarize at int(m / 10 · 256).
    from PIL import ImageOps
    for m in (9.6, 7.0):
        got = A.ra_posterize(x[:1], tf.constant([m]), sign[:1]).numpy()[0] * 255
        np.testing.assert_allclose(got, ImageOps.posterize(Image.fromarray(images[0]), int(m / 10 * 4)), atol=1e-3)
        got = A.ra_solarize(x[:1], tf.constant([m]), sign[:1]).numpy()[0] * 255
        np.testing.assert_allclose(got, ImageOps.solarize(Image.fromarray(images[0]), int(m / 10 * 256)), atol=1e-3)


def test_randaugment_brightness_is_multiplicative():
    x = tf.constant(np.stack([np.zeros((8, 8, 3)), np.full((8, 8, 3), 0.4)]), tf.float32)
    out = A.ra_brightness(x, tf.constant([10.0, 10.0]), tf.ones([2])).numpy()
    assert out[0].max() == 0.0  # black stays black (keras-cv's brightness is additive)
    np.testing.assert_allclose(out[1], 0.4 * 1.9, atol=1e-6)
    half = A.ra_brightness(x, tf.constant([5.0, 5.0]), tf.ones([2])).numpy()
    np.testing.assert_allclose(half[1], 0.4 * 1.0, atol=1e-6)  # level 5: factor 1.0


def test_randaugment_translate_moves_by_at_most_45_percent_and_shear_is_03():
    from PIL import Image

    image = np.zeros((1, 20, 40, 3), np.float32)
    image[0, 8:12, 18:22] = 1.0  # a white square, columns 18-21
    x = tf.constant(image)

    def columns(out):
        white = out[0, 10, :, 0] > 0.9
        return np.flatnonzero(white)

    for level, shift in ((10.0, 18), (5.0, 9)):  # 0.45 · 40 px at level 10
        left = A.ra_translate_x(x, tf.constant([level]), tf.constant([1.0])).numpy()
        assert columns(left).tolist() == list(range(18 - shift, 22 - shift))
        right = A.ra_translate_x(x, tf.constant([level]), tf.constant([-1.0])).numpy()
        assert columns(right).tolist() == list(range(18 + shift, 22 + shift))
    # Uncovered pixels get PyContrast's fill colour.
    np.testing.assert_allclose(left[0, 0, -1] * 255, RA_FILL, atol=1e-3)
    down = A.ra_translate_y(x, tf.constant([10.0]), tf.constant([-1.0])).numpy()
    assert np.flatnonzero(down[0, :, 20, 0] > 0.9).tolist() == list(range(17, 20))  # 9 px = 0.45 · 20
    # Shear and rotation against PIL's own transform (bilinear, PyContrast's fill): equal but
    # for the pixels at the border of the covered area (PIL's bilinear border handling).
    yy, xx = np.mgrid[0:20, 0:40]
    smooth = np.stack([xx * 6, yy * 12, (xx + yy) * 4], -1).astype(np.uint8)
    pil = Image.fromarray(smooth)
    xs = tf.constant(smooth[None] / 255.0, tf.float32)
    fill = dict(resample=Image.BILINEAR, fillcolor=tuple(int(v) for v in RA_FILL))
    cases = [(A.ra_shear_x, pil.transform(pil.size, Image.AFFINE, (1, 0.3, 0, 0, 1, 0), **fill)),
             (A.ra_shear_y, pil.transform(pil.size, Image.AFFINE, (1, 0, 0, 0.3, 1, 0), **fill)),
             (A.ra_rotate, pil.rotate(30, **fill))]
    for op, reference in cases:
        got = op(xs, tf.constant([10.0]), tf.constant([1.0])).numpy()[0] * 255
        close = np.abs(got - np.asarray(reference, np.float32)).max(-1) <= 1.5
        assert close.mean() > 0.9, (op.__name__, close.mean())  # 0.94-0.98; the mirrored op: < 0.05


def ra_config(**kw):
    return quiet(16, randaugment_ops=1, **kw)


def test_randaugment_draws_timm_m10_mstd05_ops_uniformly_at_probability_half():
    op, apply, level, sign = (t.numpy() for t in A.rand_augment_params(6000, ra_config(), SEED))
    assert abs(apply.mean() - 0.5) < 0.025
    counts = np.bincount(op, minlength=15)
    assert len(A.RAND_AUGMENT_OPS) == 15 and counts.min() > 300 and counts.max() < 500  # 400 each
    assert level.max() <= 10.0 and abs((level == 10.0).mean() - 0.5) < 0.03  # N(10, 0.5) clipped
    assert abs(level[level < 10].mean() - (10 - 0.5 * np.sqrt(2 / np.pi))) < 0.03
    assert abs((sign > 0).mean() - 0.5) < 0.025


def test_randaugment_leaves_half_the_images_alone():
    # Noise in [0.2, 0.8]: every op changes it except solarize (threshold ≥ 245 levels), so
    # one layer at p 0.5 leaves 0.5 + 0.5 / 15 of the images unchanged.
    x = tf.constant(np.random.default_rng(7).uniform(0.2, 0.8, (1500, 8, 8, 3)), tf.float32)
    out = A.rand_augment(x, ra_config(), SEED).numpy()
    unchanged = np.all(np.abs(out - x.numpy()) < 1e-6, axis=(1, 2, 3))
    assert abs(unchanged.mean() - (0.5 + 0.5 / 15)) < 0.04, unchanged.mean()
    # Each image got the op it drew; of those that drew one, only solarize left them alone.
    op, apply, level, sign = A.rand_augment_params(1500, ra_config(), tf.random.experimental.stateless_fold_in(SEED, 0))
    assert set(op.numpy()[apply.numpy() & unchanged]) == {list(A.RAND_AUGMENT_OPS).index("Solarize")}
    for i in np.flatnonzero(apply.numpy())[:30]:
        fn = list(A.RAND_AUGMENT_OPS.values())[op[i]]
        want = fn(x[i:i + 1], level[i:i + 1], sign[i:i + 1]).numpy()[0]
        np.testing.assert_allclose(out[i], want, atol=1e-5)
    assert np.array_equal(A.rand_augment(x, ra_config(randaugment_prob=0.0), SEED).numpy(), x.numpy())


def test_infomin_views_grey_after_randaugment():
    # PyContrast aug 'D': jitter → blur → RandAugment → grey. Grey last, every view is grey
    # even where a geometric op filled in the (coloured) mean.
    _, images = synthetic_source(16, 32, seed=8)
    cfg = AugmentConfig(image_size=32, randaugment_ops=2, randaugment_prob=1.0, grayscale_prob=1.0)
    out = augment_batch(images, cfg, SEED).numpy()
    np.testing.assert_allclose(out[..., 0], out[..., 2], atol=1e-6)
    with pytest.raises(ValueError, match="randaugment_magnitude"):
        AugmentConfig(randaugment_magnitude=11)
    with pytest.raises(ValueError, match="randaugment_prob"):
        AugmentConfig(randaugment_prob=1.5)


def test_grayscale_first_greys_before_the_jitter():
    # NPID's order (lemniscate main.py): grey, then ColorJitter; a hue shift of a grey image
    # does nothing, so grey-first outputs stay grey whatever the jitter.
    _, images = synthetic_source(8, 16, seed=9)
    cfg = quiet(16, grayscale_prob=1.0, grayscale_first=True, jitter_prob=1.0, hue=0.4)
    out = augment_batch(images, cfg, SEED).numpy()
    np.testing.assert_allclose(out[..., 0], out[..., 1], atol=1e-5)
    late = augment_batch(images, quiet(16, grayscale_prob=1.0, jitter_prob=1.0, hue=0.4), SEED).numpy()
    assert not np.allclose(out, late, atol=1e-3)  # the order matters (hue changes the luma)


# ------------------------------------------------------------ shipped views = reference code
# Each method's views in its shipped YAML, as its released code builds them (the files each
# row was checked against are in the YAMLs' comments). Fields not listed keep the
# AugmentConfig defaults (flip 0.5, ratio 3/4-4/3, blur sigma 0.1-2, kernel 10 % of the size).
COLOUR_04 = dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
COLOUR_08 = dict(brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2)
NO_RA = dict(randaugment_ops=0, grayscale_first=False)
REFERENCE_VIEWS = {
    # BYOL Table 6 / solo-learn asymmetric.yaml: asymmetric blur and solarize.
    "byol": [dict(crop_scale=(0.08, 1.0), interpolation="bicubic", jitter_prob=0.8, brightness=0.4, contrast=0.4,
                  saturation=0.2, hue=0.1, grayscale_prob=0.2, blur_prob=(1.0, 0.1), solarize_prob=(0.0, 0.2),
                  **NO_RA)],
    # google-research/simclr data_util.py, colour strength 1.0.
    "simclr_v2": [dict(crop_scale=(0.08, 1.0), interpolation="bicubic", jitter_prob=0.8, **COLOUR_08,
                       grayscale_prob=0.2, blur_prob=(0.5, 0.5), solarize_prob=(0.0, 0.0), **NO_RA)],
    # facebookresearch/moco main_moco.py --aug-plus.
    "moco_v2": [dict(crop_scale=(0.2, 1.0), interpolation="bilinear", jitter_prob=0.8, **COLOUR_04,
                     grayscale_prob=0.2, blur_prob=(0.5, 0.5), solarize_prob=(0.0, 0.0), **NO_RA)],
    # lemniscate.pytorch main.py: grey, then ColorJitter(0.4, 0.4, 0.4, 0.4) always.
    "npid": [dict(crop_scale=(0.2, 1.0), interpolation="bilinear", jitter_prob=1.0, brightness=0.4, contrast=0.4,
                  saturation=0.4, hue=0.4, grayscale_prob=0.2, grayscale_first=True, blur_prob=(0.0, 0.0),
                  solarize_prob=(0.0, 0.0), randaugment_ops=0)],
    # torchvision ImageNet training: crop and flip only.
    "supervised": [dict(crop_scale=(0.08, 1.0), interpolation="bilinear", flip_prob=0.5, jitter_prob=0.0,
                        grayscale_prob=0.0, blur_prob=(0.0, 0.0), solarize_prob=(0.0, 0.0), **NO_RA)],
    # PyContrast datasets/util.py aug 'D' with the MoCo queue (crops 0.2-1).
    "infomin": [dict(crop_scale=(0.2, 1.0), interpolation="bilinear", jitter_prob=0.8, **COLOUR_08,
                     grayscale_prob=0.2, blur_prob=(0.5, 0.5), solarize_prob=(0.0, 0.0), randaugment_ops=2,
                     randaugment_magnitude=10.0, randaugment_magnitude_std=0.5, randaugment_prob=0.5,
                     grayscale_first=False)],
    # swav src/multicropdataset.py: get_color_distortion(s=1.0), blur p 0.5 with a 23 px kernel.
    "swav": [dict(crop_scale=(0.14, 1.0), interpolation="bilinear", jitter_prob=0.8, **COLOUR_08,
                  grayscale_prob=0.2, blur_prob=(0.5, 0.5), blur_kernel_frac=0.1, **NO_RA)] * 2
    + [dict(crop_scale=(0.05, 0.14), interpolation="bilinear", jitter_prob=0.8, **COLOUR_08, grayscale_prob=0.2,
            blur_prob=(0.5, 0.5), blur_kernel_frac=0.24, **NO_RA)] * 4,
}


@pytest.mark.parametrize("method", sorted(REFERENCE_VIEWS))
def test_shipped_method_views_match_their_reference_code(method):
    from burn_tf.config import load_config

    cfg = load_config(method, overrides=["backbone.input_size=48"])
    views = cfg.views
    assert len(views) == len(REFERENCE_VIEWS[method])
    for i, (view, want) in enumerate(zip(views, REFERENCE_VIEWS[method])):
        got = {key: getattr(view, key) for key in want}
        assert got == want, f"{method} views[{i}]"
        assert view.flip_prob == 0.5 and view.crop_ratio == pytest.approx((3 / 4, 4 / 3))
        assert view.blur_sigma == (0.1, 2.0)
    # Every large view at the student's size: a 48 px run gets 48 px views.
    assert views[0].image_size == 48
