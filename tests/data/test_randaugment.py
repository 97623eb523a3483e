"""RandAugment: timm's ops, levels and draws, checked against the PIL calls timm makes."""

import numpy as np
import tensorflow as tf
from data_helpers import SEED, quiet

from burn_tf.data.randaugment import (
    RAND_AUGMENT_OPS,
    ra_brightness,
    ra_posterize,
    ra_rotate,
    ra_shear_x,
    ra_shear_y,
    ra_solarize,
    ra_translate_x,
    ra_translate_y,
    rand_augment,
    rand_augment_params,
)

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
        got = RAND_AUGMENT_OPS[name](x, level, sign).numpy() * 255
        for i in range(3):
            want = np.asarray(reference(Image.fromarray(images[i])), np.float32)
            # PIL rounds to a level after each step; the float version differs by < 1.5 levels.
            np.testing.assert_allclose(got[i], want, atol=1.5, err_msg=name)
    # The levels map as timm's: posterize keeps int(m / 10 · 4) bits, solarize at int(m / 10 · 256).
    from PIL import ImageOps
    for m in (9.6, 7.0):
        got = ra_posterize(x[:1], tf.constant([m]), sign[:1]).numpy()[0] * 255
        np.testing.assert_allclose(got, ImageOps.posterize(Image.fromarray(images[0]), int(m / 10 * 4)), atol=1e-3)
        got = ra_solarize(x[:1], tf.constant([m]), sign[:1]).numpy()[0] * 255
        np.testing.assert_allclose(got, ImageOps.solarize(Image.fromarray(images[0]), int(m / 10 * 256)), atol=1e-3)


def test_randaugment_brightness_is_multiplicative():
    x = tf.constant(np.stack([np.zeros((8, 8, 3)), np.full((8, 8, 3), 0.4)]), tf.float32)
    out = ra_brightness(x, tf.constant([10.0, 10.0]), tf.ones([2])).numpy()
    assert out[0].max() == 0.0  # black stays black (keras-cv's brightness is additive)
    np.testing.assert_allclose(out[1], 0.4 * 1.9, atol=1e-6)
    half = ra_brightness(x, tf.constant([5.0, 5.0]), tf.ones([2])).numpy()
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
        left = ra_translate_x(x, tf.constant([level]), tf.constant([1.0])).numpy()
        assert columns(left).tolist() == list(range(18 - shift, 22 - shift))
        right = ra_translate_x(x, tf.constant([level]), tf.constant([-1.0])).numpy()
        assert columns(right).tolist() == list(range(18 + shift, 22 + shift))
    # Uncovered pixels get PyContrast's fill colour.
    np.testing.assert_allclose(left[0, 0, -1] * 255, RA_FILL, atol=1e-3)
    down = ra_translate_y(x, tf.constant([10.0]), tf.constant([-1.0])).numpy()
    assert np.flatnonzero(down[0, :, 20, 0] > 0.9).tolist() == list(range(17, 20))  # 9 px = 0.45 · 20
    # Shear and rotation against PIL's own transform (bilinear, PyContrast's fill): equal but
    # for the pixels at the border of the covered area (PIL's bilinear border handling).
    yy, xx = np.mgrid[0:20, 0:40]
    smooth = np.stack([xx * 6, yy * 12, (xx + yy) * 4], -1).astype(np.uint8)
    pil = Image.fromarray(smooth)
    xs = tf.constant(smooth[None] / 255.0, tf.float32)
    fill = dict(resample=Image.BILINEAR, fillcolor=tuple(int(v) for v in RA_FILL))
    cases = [(ra_shear_x, pil.transform(pil.size, Image.AFFINE, (1, 0.3, 0, 0, 1, 0), **fill)),
             (ra_shear_y, pil.transform(pil.size, Image.AFFINE, (1, 0, 0, 0.3, 1, 0), **fill)),
             (ra_rotate, pil.rotate(30, **fill))]
    for op, reference in cases:
        got = op(xs, tf.constant([10.0]), tf.constant([1.0])).numpy()[0] * 255
        close = np.abs(got - np.asarray(reference, np.float32)).max(-1) <= 1.5
        assert close.mean() > 0.9, (op.__name__, close.mean())  # 0.94-0.98; the mirrored op: < 0.05


def ra_config(**kw):
    return quiet(16, randaugment_ops=1, **kw)


def test_randaugment_draws_timm_m10_mstd05_ops_uniformly_at_probability_half():
    op, apply, level, sign = (t.numpy() for t in rand_augment_params(6000, ra_config(), SEED))
    assert abs(apply.mean() - 0.5) < 0.025
    counts = np.bincount(op, minlength=15)
    assert len(RAND_AUGMENT_OPS) == 15 and counts.min() > 300 and counts.max() < 500  # 400 each
    assert level.max() <= 10.0 and abs((level == 10.0).mean() - 0.5) < 0.03  # N(10, 0.5) clipped
    assert abs(level[level < 10].mean() - (10 - 0.5 * np.sqrt(2 / np.pi))) < 0.03
    assert abs((sign > 0).mean() - 0.5) < 0.025


def test_randaugment_leaves_half_the_images_alone():
    # Noise in [0.2, 0.8]: every op changes it except solarize (threshold ≥ 245 levels), so
    # one layer at p 0.5 leaves 0.5 + 0.5 / 15 of the images unchanged.
    x = tf.constant(np.random.default_rng(7).uniform(0.2, 0.8, (1500, 8, 8, 3)), tf.float32)
    out = rand_augment(x, ra_config(), SEED).numpy()
    unchanged = np.all(np.abs(out - x.numpy()) < 1e-6, axis=(1, 2, 3))
    assert abs(unchanged.mean() - (0.5 + 0.5 / 15)) < 0.04, unchanged.mean()
    # Each image got the op it drew; of those that drew one, only solarize left them alone.
    op, apply, level, sign = rand_augment_params(1500, ra_config(), tf.random.experimental.stateless_fold_in(SEED, 0))
    assert set(op.numpy()[apply.numpy() & unchanged]) == {list(RAND_AUGMENT_OPS).index("Solarize")}
    for i in np.flatnonzero(apply.numpy())[:30]:
        fn = list(RAND_AUGMENT_OPS.values())[op[i]]
        want = fn(x[i:i + 1], level[i:i + 1], sign[i:i + 1]).numpy()[0]
        np.testing.assert_allclose(out[i], want, atol=1e-5)
    assert np.array_equal(rand_augment(x, ra_config(randaugment_prob=0.0), SEED).numpy(), x.numpy())
