"""RandAugment as timm / PyContrast apply it (InfoMin's views; ``randaugment_ops`` > 0).

keras-cv's ``RandAugment`` is not timm's: it applies every chosen op (no per-op probability
0.5), translates up to 100 % (timm 45 %), shears up to 1.0 (timm 0.3) and adds to the
brightness (timm multiplies by up to 1.9).  :func:`rand_augment` is timm's
``rand-n{ops}-m{magnitude}-mstd{std}`` as PyContrast copies it: the 15 ops of
``_RAND_TRANSFORMS`` with timm's level-to-argument maps, each a batched TF op (tests compare
them with the PIL calls timm makes).  It runs after the blur and before the grey conversion,
PyContrast's order (:mod:`burn_tf.data.view_augmentation`).  Left as is: timm picks bilinear
or bicubic per geometric op, TF's image transform has only bilinear; PIL's border pixels of
those ops differ.

Where it comes from: InfoMin's released code uses PyContrast datasets/RandAugment.py, a copy
of timm data/auto_augment.py, built by PyContrast datasets/util.py build_transforms, aug 'D':
``rand_augment_transform('rand-n2-m10-mstd0.5', ...)``. ``RandAugment.__call__`` picks
``num_layers`` ops uniformly with replacement from ``_RAND_TRANSFORMS``; each
``AutoAugmentOp.__call__`` runs with probability ``prob`` = 0.5, draws its level from
N(m, mstd) clipped to [0, 10] and maps it with the op's ``*_level_to_arg``. The ops work on
PIL images; here they are batched TF ops on float images in [0, 1], the point ops (equalize,
posterize, solarize, solarize_add) on the 0-255 levels PIL sees.  Each op takes
``(x [n, H, W, 3], level [n], sign [n])``; ``sign`` is timm's ``_randomly_negate`` for the
signed ops.
"""

from __future__ import annotations

import math

import tensorflow as tf

from burn_tf.data.colour import selected_indices
from burn_tf.data.views import RA_MAX_LEVEL, AugmentConfig

_PIL_L_WEIGHTS = (0.299, 0.587, 0.114)  # PIL's convert("L"), used by RandAugment's enhance ops
# PyContrast aug 'D' fills uncovered pixels with the ImageNet mean in 0-255, rounded.
_RA_FILL = tuple(round(255 * m) / 255.0 for m in (0.485, 0.456, 0.406))


def _levels(x):
    """The uint8 levels PIL works on (int32)."""
    return tf.cast(tf.round(tf.clip_by_value(x, 0.0, 1.0) * 255.0), tf.int32)


def _from_levels(q):
    return tf.cast(q, tf.float32) / 255.0


def _per_image(v):
    return tf.cast(v, tf.float32)[:, None, None, None]


def _enhance_factor(level):
    # timm _enhance_level_to_arg: range [0.1, 1.9]
    return level / RA_MAX_LEVEL * 1.8 + 0.1


def _pil_grey(x):
    r, g, b = tf.unstack(x, axis=-1)
    return (_PIL_L_WEIGHTS[0] * r + _PIL_L_WEIGHTS[1] * g + _PIL_L_WEIGHTS[2] * b)[..., None]


def _blend(degenerate, x, factor):
    """PIL ``Image.blend(degenerate, x, f)``, clipped: what ``ImageEnhance`` does."""
    f = _per_image(factor)
    return tf.clip_by_value(degenerate + f * (x - degenerate), 0.0, 1.0)


def ra_auto_contrast(x, level, sign):
    """``ImageOps.autocontrast``: each channel's [min, max] stretched to [0, 1] (a flat
    channel is left alone)."""
    lo = tf.reduce_min(x, axis=[1, 2], keepdims=True)
    hi = tf.reduce_max(x, axis=[1, 2], keepdims=True)
    span = hi - lo
    return tf.where(span > 0, (x - lo) / tf.where(span > 0, span, 1.0), x)


def ra_equalize(x, level, sign):
    """``ImageOps.equalize`` per channel, PIL's look-up table: ``step = (N - h[last]) // 255``
    (``h[last]`` the count of the highest level present), ``lut[i] = (step // 2 +
    Σ_{j<i} h[j]) // step``; identity when ``step`` is 0."""
    q = _levels(x)
    n = tf.shape(q)[0]
    planes = tf.reshape(tf.transpose(q, [0, 3, 1, 2]), [n, 3, -1])  # [n, 3, H·W]
    offsets = tf.reshape(tf.range(n * 3) * 256, [n, 3, 1])
    hist = tf.math.bincount(tf.reshape(planes + offsets, [-1]), minlength=n * 3 * 256, maxlength=n * 3 * 256)
    hist = tf.reshape(hist, [n, 3, 256])
    last = 255 - tf.argmax(tf.cast(tf.reverse(hist, axis=[2]) > 0, tf.int32), axis=2, output_type=tf.int32)
    step = (tf.reduce_sum(hist, axis=2) - tf.gather(hist, last, axis=2, batch_dims=2)) // 255
    safe_step = tf.maximum(step, 1)[..., None]
    lut = tf.minimum((safe_step // 2 + tf.cumsum(hist, axis=2, exclusive=True)) // safe_step, 255)
    lut = tf.where((step > 0)[..., None], lut, tf.range(256)[None, None, :])
    out = tf.gather(lut, planes, axis=2, batch_dims=2)
    return _from_levels(tf.transpose(tf.reshape(out, [n, 3, tf.shape(q)[1], tf.shape(q)[2]]), [0, 2, 3, 1]))


def ra_invert(x, level, sign):
    return 1.0 - x


def ra_posterize(x, level, sign):
    """timm ``_posterize_level_to_arg`` ('PosterizeTpu' in PyContrast): keep
    ``int(level / 10 · 4)`` most significant bits."""
    bits = tf.cast(tf.floor(level / RA_MAX_LEVEL * 4.0), tf.int32)
    div = tf.bitwise.left_shift(tf.ones_like(bits), 8 - bits)[:, None, None, None]
    return _from_levels(_levels(x) // div * div)


def ra_solarize(x, level, sign):
    """``ImageOps.solarize`` at ``int(level / 10 · 256)``: levels at or above it inverted
    (the others keep their float values)."""
    threshold = tf.cast(tf.floor(level / RA_MAX_LEVEL * 256.0), tf.int32)[:, None, None, None]
    return tf.where(_levels(x) >= threshold, 1.0 - x, x)


def ra_solarize_add(x, level, sign):
    """timm ``solarize_add``: ``int(level / 10 · 110)`` levels added below level 128."""
    add = tf.floor(level / RA_MAX_LEVEL * 110.0)[:, None, None, None] / 255.0
    return tf.where(_levels(x) < 128, tf.minimum(x + add, 1.0), x)


def ra_color(x, level, sign):
    """``ImageEnhance.Color``: blend with the grey (PIL "L") image."""
    return _blend(_pil_grey(x), x, _enhance_factor(level))


def ra_contrast(x, level, sign):
    """``ImageEnhance.Contrast``: blend with the image's mean grey level (PIL rounds it to a
    level)."""
    mean = tf.round(tf.reduce_mean(_pil_grey(x), axis=[1, 2, 3], keepdims=True) * 255.0) / 255.0
    return _blend(mean, x, _enhance_factor(level))


def ra_brightness(x, level, sign):
    """``ImageEnhance.Brightness``: blend with black, i.e. multiply by the factor."""
    return _blend(tf.zeros_like(x), x, _enhance_factor(level))


def ra_sharpness(x, level, sign):
    """``ImageEnhance.Sharpness``: blend with PIL's ``ImageFilter.SMOOTH`` (3×3 kernel
    [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13; PIL leaves the border pixels unfiltered)."""
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
    smooth = tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "VALID")
    smooth = tf.pad(smooth, [[0, 0], [1, 1], [1, 1], [0, 0]])
    shape = tf.shape(x)
    interior = tf.pad(tf.ones([shape[1] - 2, shape[2] - 2]), [[1, 1], [1, 1]]) > 0
    smooth = tf.where(interior[None, :, :, None], smooth, x)
    return _blend(smooth, x, _enhance_factor(level))


def _pil_affine(x, a, b, c, d, e, f):
    """PIL ``Image.transform(size, AFFINE, (a, b, c, d, e, f))``: output pixel (x, y) shows
    the input at (a·x + b·y + c, d·x + e·y + f), in PIL's continuous coordinates (pixel
    centres at +0.5), uncovered pixels filled with PyContrast's mean colour; bilinear
    (timm draws bilinear or bicubic at random: TF's transform has no bicubic)."""
    # Continuous → index coordinates: x_idx + 0.5 = a (x + 0.5) + b (y + 0.5) + c.
    ones = tf.ones_like(a)
    zeros = tf.zeros_like(a)
    transforms = tf.stack([
        a * ones, b * ones, c + 0.5 * (a + b - 1.0),
        d * ones, e * ones, f + 0.5 * (d + e - 1.0),
        zeros, zeros,
    ], axis=1)
    fill = tf.constant(_RA_FILL, tf.float32)
    # The transform fills with one number: shift the fill colour to 0 and back.
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=x - fill, transforms=transforms, output_shape=tf.shape(x)[1:3], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="CONSTANT")
    return tf.clip_by_value(out + fill, 0.0, 1.0)


def ra_rotate(x, level, sign):
    """``img.rotate(deg)`` about the centre, deg = ±level / 10 · 30 (timm
    ``_rotate_level_to_arg``); the matrix of PIL's ``Image.rotate``."""
    angle = -sign * level / RA_MAX_LEVEL * 30.0 * (math.pi / 180.0)
    cx = tf.cast(tf.shape(x)[2], tf.float32) / 2.0
    cy = tf.cast(tf.shape(x)[1], tf.float32) / 2.0
    cos, sin = tf.cos(angle), tf.sin(angle)
    return _pil_affine(x, cos, sin, cos * -cx + sin * -cy + cx, -sin, cos, -sin * -cx + cos * -cy + cy)


def _shear(level, sign):
    return sign * level / RA_MAX_LEVEL * 0.3  # timm _shear_level_to_arg: [-0.3, 0.3]


def _translate(level, sign, size):
    # timm _translate_rel_level_to_arg: [-0.45, 0.45] of the image size
    return sign * level / RA_MAX_LEVEL * 0.45 * tf.cast(size, tf.float32)


def ra_shear_x(x, level, sign):
    one, zero = tf.ones_like(level), tf.zeros_like(level)
    return _pil_affine(x, one, _shear(level, sign), zero, zero, one, zero)


def ra_shear_y(x, level, sign):
    one, zero = tf.ones_like(level), tf.zeros_like(level)
    return _pil_affine(x, one, zero, zero, _shear(level, sign), one, zero)


def ra_translate_x(x, level, sign):
    one, zero = tf.ones_like(level), tf.zeros_like(level)
    return _pil_affine(x, one, zero, _translate(level, sign, tf.shape(x)[2]), zero, one, zero)


def ra_translate_y(x, level, sign):
    one, zero = tf.ones_like(level), tf.zeros_like(level)
    return _pil_affine(x, one, zero, zero, zero, one, _translate(level, sign, tf.shape(x)[1]))


# timm / PyContrast ``_RAND_TRANSFORMS``, in their order ('PosterizeTpu' is timm's 'Posterize').
RAND_AUGMENT_OPS = {
    "AutoContrast": ra_auto_contrast,
    "Equalize": ra_equalize,
    "Invert": ra_invert,
    "Rotate": ra_rotate,
    "Posterize": ra_posterize,
    "Solarize": ra_solarize,
    "SolarizeAdd": ra_solarize_add,
    "Color": ra_color,
    "Contrast": ra_contrast,
    "Brightness": ra_brightness,
    "Sharpness": ra_sharpness,
    "ShearX": ra_shear_x,
    "ShearY": ra_shear_y,
    "TranslateXRel": ra_translate_x,
    "TranslateYRel": ra_translate_y,
}
_RA_FUNCTIONS = tuple(RAND_AUGMENT_OPS.values())


def rand_augment_params(batch, cfg: AugmentConfig, seed):
    """One RandAugment layer's draws per image: ``op`` [B] (index into
    :data:`RAND_AUGMENT_OPS`, uniform), ``apply`` [B] (probability ``randaugment_prob``),
    ``level`` [B] (N(magnitude, std) clipped to [0, 10]) and ``sign`` [B] (±1)."""
    seeds = tf.random.experimental.stateless_split(seed, 4)
    op = tf.random.stateless_uniform([batch], seeds[0], minval=0, maxval=len(_RA_FUNCTIONS), dtype=tf.int32)
    apply = tf.random.stateless_uniform([batch], seeds[1]) < cfg.randaugment_prob
    level = cfg.randaugment_magnitude + cfg.randaugment_magnitude_std * tf.random.stateless_normal([batch], seeds[2])
    level = tf.clip_by_value(level, 0.0, RA_MAX_LEVEL)
    sign = tf.where(tf.random.stateless_uniform([batch], seeds[3]) < 0.5, -1.0, 1.0)
    return op, apply, level, sign


def rand_augment(x, cfg: AugmentConfig, seed):
    """``randaugment_ops`` RandAugment layers on a batch in [0, 1]: per layer and image one op
    drawn uniformly, applied with probability ``randaugment_prob``.  Each op runs only on
    the images that drew it (gather → op → scatter)."""
    for layer in range(cfg.randaugment_ops):
        layer_seed = tf.random.experimental.stateless_fold_in(seed, layer)
        op, apply, level, sign = rand_augment_params(tf.shape(x)[0], cfg, layer_seed)
        for k, fn in enumerate(_RA_FUNCTIONS):
            x = _apply_to_subset(x, apply & (op == k), fn, level, sign)
    return x


def _apply_to_subset(x, mask, fn, *per_image):
    """``fn`` on the images ``mask`` selects (with their entries of the ``per_image``
    tensors), scattered back; nothing is computed when none is selected."""
    idx = selected_indices(mask)

    def run():
        out = fn(tf.gather_nd(x, idx), *(tf.gather_nd(v, idx) for v in per_image))
        return tf.tensor_scatter_nd_update(x, idx, out)

    return tf.cond(tf.shape(idx)[0] > 0, run, lambda: x)
