"""Colour ops on batches in [0, 1]: ColorJitter, grey, Gaussian blur, solarize, and the per-image coins.

No keras-cv layer is used: each one checked differs from torchvision's semantics, and they
are slow outside compiled graphs.  Every op here is plain TF on a whole batch, with
per-image parameters drawn by ``tf.random.stateless_*`` ops from a seed.

* **ColorJitter — by hand.**  keras-cv's ``RandomColorJitter`` differs from torchvision:
  additive brightness, per-channel-mean contrast (``tf.image.adjust_contrast``), its own
  factor mappings, fixed order.  torchvision draws brightness/contrast/saturation factors
  in [max(0, 1−s), 1+s] and a hue shift in [−h, h], applies the four in a random order per
  image, brightness = ``clip(f·x)``, contrast = blend with the mean grey level, saturation
  = blend with the per-pixel grey image, hue = shift in HSV.  For each of the four order
  slots the three blends are one formula with per-image coefficients; the hue shift runs
  only on the images whose slot holds it (gather → shift → scatter), written as one
  element-wise RGB formula (``tf.image.rgb_to_hsv`` was the slowest op of the pipeline);
  a test checks it against ``tf.image.adjust_hue`` and the whole jitter against a plain
  per-image reference.  Only the images selected by ``jitter_prob`` are computed.
* **Grayscale, solarize — by hand** (ITU-R 601 weights 0.2989, 0.587, 0.114 as
  torchvision; solarize inverts x ≥ threshold, PIL's ``ImageOps.solarize`` at 128/255 ≈ 0.5).
* **Gaussian blur — by hand.**  Per-image σ needs per-image kernels: the selected images
  are moved to the channel axis and blurred with two separable ``tf.nn.depthwise_conv2d``
  after reflect padding (torchvision's padding).  Kernel size as SimCLR/torchvision: 10%
  of the output size, odd (23 at 224 px, 3 at 28–32 px); σ is in pixels of the view,
  the reference's σ rescaled to the view's size (:attr:`AugmentConfig.pixel_sigma`).
"""

from __future__ import annotations

import tensorflow as tf

from burn_tf.data.views import AugmentConfig

_GREY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision rgb_to_grayscale


def to_grey(x):
    r, g, b = tf.unstack(x, axis=-1)
    return (_GREY_WEIGHTS[0] * r + _GREY_WEIGHTS[1] * g + _GREY_WEIGHTS[2] * b)[..., None]


def adjust_hue(x, delta):
    """Hue shift by a per-image ``delta`` ([B], fraction of the colour circle), the same
    result as ``tf.image.adjust_hue`` / torchvision (RGB → HSV, h += delta mod 1, → RGB),
    written as one element-wise RGB formula: value and chroma are unchanged by a hue
    shift, so RGB comes back from (h, v, chroma) directly.  ~3× faster on CPU than
    ``tf.image.rgb_to_hsv`` + ``hsv_to_rgb``."""
    r, g, b = tf.unstack(x, axis=-1)
    v = tf.maximum(tf.maximum(r, g), b)
    chroma = v - tf.minimum(tf.minimum(r, g), b)
    safe = tf.where(chroma > 0, chroma, 1.0)
    h = tf.where(v == r, (g - b) / safe, tf.where(v == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    h = h + 6.0 * tf.cast(delta, x.dtype)[:, None, None]  # hue in sixths of the circle
    channels = []
    for offset in (5.0, 3.0, 1.0):  # R, G, B
        k = tf.math.floormod(offset + h, 6.0)
        channels.append(v - chroma * tf.clip_by_value(tf.minimum(k, 4.0 - k), 0.0, 1.0))
    return tf.stack(channels, axis=-1)


def selected_indices(mask):
    """Indices ``[n, 1]`` of the True entries of a [B] mask (for gather / scatter)."""
    return tf.where(mask)


def jitter_params(batch, cfg: AugmentConfig, seed):
    """Per-image ColorJitter parameters: ``factors`` [B, 3] (brightness, contrast,
    saturation), ``hue`` [B] and ``order`` [B, 4] (a permutation of 0..3 per image:
    0 brightness, 1 contrast, 2 saturation, 3 hue)."""
    seeds = tf.random.experimental.stateless_split(seed, 5)

    def factor(s, amount):
        return tf.random.stateless_uniform([batch], s, minval=max(0.0, 1.0 - amount), maxval=1.0 + amount)

    factors = tf.stack(
        [factor(seeds[0], cfg.brightness), factor(seeds[1], cfg.contrast), factor(seeds[2], cfg.saturation)],
        axis=1,
    )
    hue = tf.random.stateless_uniform([batch], seeds[3], minval=-cfg.hue, maxval=cfg.hue)
    order = tf.argsort(tf.random.stateless_uniform([batch, 4], seeds[4]), axis=1, stable=True)
    return factors, hue, tf.cast(order, tf.int32)


def apply_jitter(x, factors, hue, order, use_hue=True):
    """Apply ColorJitter with given per-image parameters (see :func:`jitter_params`).

    Brightness, contrast and saturation are all ``clip(f*x + (1-f)*target)`` (target 0,
    the image's mean grey level, the per-pixel grey image), so each slot is one blend with
    per-image coefficients; the hue shift (HSV) runs only on the images whose slot holds
    it (gather → shift → scatter)."""
    n = tf.shape(x)[0]
    all_factors = tf.concat([factors, tf.ones([n, 1], factors.dtype)], axis=1)
    for slot in range(4):
        op = order[:, slot]
        f = tf.gather(all_factors, op, batch_dims=1)
        grey = to_grey(x)
        mean = tf.reduce_mean(grey, axis=[1, 2, 3])
        c_grey = tf.where(op == 2, 1.0 - f, 0.0)
        c_const = tf.where(op == 1, (1.0 - f) * mean, 0.0)
        x = tf.clip_by_value(
            f[:, None, None, None] * x + c_grey[:, None, None, None] * grey + c_const[:, None, None, None],
            0.0, 1.0,
        )
        if use_hue:
            idx = selected_indices(op == 3)
            shifted = adjust_hue(tf.gather_nd(x, idx), tf.gather_nd(hue, idx))
            x = tf.tensor_scatter_nd_update(x, idx, shifted)
    return x


def color_jitter(x, cfg: AugmentConfig, seed, apply=None):
    """torchvision ``ColorJitter`` on a batch in [0, 1]: per-image factors and a per-image
    random order of (brightness, contrast, saturation, hue).  ``apply`` ([B] bool) selects
    the images that are jittered (the others pass through unchanged, and are not computed)."""
    factors, hue, order = jitter_params(tf.shape(x)[0], cfg, seed)
    use_hue = cfg.hue > 0
    if apply is None:
        return apply_jitter(x, factors, hue, order, use_hue)
    idx = selected_indices(apply)
    sub = apply_jitter(
        tf.gather_nd(x, idx), tf.gather_nd(factors, idx), tf.gather_nd(hue, idx),
        tf.gather_nd(order, idx), use_hue,
    )
    return tf.tensor_scatter_nd_update(x, idx, sub)


def gaussian_kernels(sigma, kernel_size):
    """Per-image normalised 1-D Gaussian kernels ``[B, K]`` (torchvision's formula)."""
    half = (kernel_size - 1) / 2.0
    pos = tf.linspace(-half, half, kernel_size)[None, :]
    k = tf.exp(-0.5 * tf.square(pos / sigma[:, None]))
    return k / tf.reduce_sum(k, axis=1, keepdims=True)


def _blur_all(x, kernels, kernel_size):
    shape = tf.shape(x)
    b, h, w, c = shape[0], shape[1], shape[2], shape[3]
    pad = kernel_size // 2
    y = tf.transpose(x, [1, 2, 0, 3])  # [H, W, B, C]: one depthwise channel per (image, c)
    y = tf.reshape(y, [1, h, w, b * c])
    y = tf.pad(y, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    k_t = tf.transpose(tf.repeat(kernels, repeats=c, axis=0))  # [K, B*C]
    y = tf.nn.depthwise_conv2d(y, k_t[:, None, :, None], [1, 1, 1, 1], "VALID")
    y = tf.nn.depthwise_conv2d(y, k_t[None, :, :, None], [1, 1, 1, 1], "VALID")
    y = tf.reshape(y, [h, w, b, c])
    return tf.transpose(y, [2, 0, 1, 3])


def gaussian_blur(x, sigma, kernel_size, apply=None):
    """Blur each image of ``x`` [B, S, S, C] with its own σ ([B]); reflect padding as
    torchvision.  Images with ``apply`` False are returned unchanged (and not computed)."""
    kernels = gaussian_kernels(sigma, kernel_size)
    if apply is None:
        return _blur_all(x, kernels, kernel_size)
    idx = selected_indices(apply)
    return tf.cond(
        tf.shape(idx)[0] > 0,
        lambda: tf.tensor_scatter_nd_update(
            x, idx, _blur_all(tf.gather_nd(x, idx), tf.gather_nd(kernels, idx), kernel_size)
        ),
        lambda: x,
    )


def solarize(x, threshold=0.5, apply=None):
    out = tf.where(x >= threshold, 1.0 - x, x)
    if apply is None:
        return out
    return tf.where(apply[:, None, None, None], out, x)


def coin_flips(seed, batch, p):
    return tf.random.stateless_uniform([batch], seed) < p
