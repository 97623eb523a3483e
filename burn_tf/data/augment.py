"""Multi-view augmentation (BURN's released config by default) and the evaluation pipeline.

The authors' released BURN code (naver-ai/burn) uses torchvision on PIL images:
``RandomResizedCrop(S, scale=(0.08, 1), interpolation=BICUBIC)`` → ``RandomHorizontalFlip()``
→ ``RandomApply([ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.6)`` → ``RandomGrayscale(0.2)`` →
Gaussian blur σ∈[0.1, 2] with p 0.2 → solarize with p 0.  :class:`AugmentConfig`'s defaults
are exactly that; every number is a field, the two views have their own blur/solarize
probabilities.

What is used and what is written by hand, and why
-------------------------------------------------
No keras-cv layer is used: each one checked differs from torchvision's semantics (below),
and they are slow outside compiled graphs.  Everything here is plain TF ops on whole
batches inside ``tf.data`` (graph mode, AutoGraph off), vectorised over the batch, with
per-image parameters drawn by ``tf.random.stateless_*`` ops from a per-batch seed.  The
per-batch seeds come from ``tf.data.Dataset.random(seed, rerandomize_each_iteration=True)``
and the shuffle is seeded too: the same seed gives the same batches in every run (as long
as the global ``tf.random.set_seed`` is the same, which tf.data folds in), and each epoch
(each new iterator) gets a new order and new augmentations.

* **RandomResizedCrop — by hand.**  ``keras_cv.layers.RandomResizedCrop`` samples scale
  and ratio differently (no torchvision 10-trial rejection with centre-crop fallback) and
  resizes with ``crop_and_resize`` (bilinear, no anti-aliasing).  Here the box sampler is
  torchvision's ``get_params`` vectorised (10 trials per image, first valid one, else the
  centre-crop fallback; integer boxes).  For same-sized images the crop + resize of a whole
  batch is two batched matmuls with per-image resampling matrices built from the Keys
  cubic kernel (a = −0.5) widened when down-sampling — the same kernel, anti-aliasing and
  border renormalisation as ``tf.image.resize(..., "bicubic", antialias=True)`` (which is
  what PIL's BICUBIC does); a test checks equality with ``tf.image.resize`` of the sliced
  crop.  The horizontal flip is folded into the column matrix (free).  Images of varying
  size (image folders) are cropped one by one with ``tf.image.resize`` on the slice.
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
  of the output size, odd (23 at 224 px, 3 at 28–32 px); σ is in pixels as in the
  released code.

* **RandAugment — by hand** (InfoMin's views; ``randaugment_ops`` > 0).  keras-cv's
  ``RandAugment`` is not timm's: it applies every chosen op (no per-op probability 0.5),
  translates up to 100 % (timm 45 %), shears up to 1.0 (timm 0.3) and adds to the
  brightness (timm multiplies by up to 1.9).  :func:`rand_augment` is timm's
  ``rand-n{ops}-m{magnitude}-mstd{std}`` as PyContrast copies it: the 15 ops of
  ``_RAND_TRANSFORMS`` with timm's level-to-argument maps, each a batched TF op (tests
  compare them with the PIL calls timm makes).  It runs after the blur and before the grey
  conversion, PyContrast's order.  Left as is: timm picks bilinear or bicubic per geometric
  op, TF's image transform has only bilinear; PIL's border pixels of those ops differ.
* **Grey first** (``grayscale_first``): NPID / InstDisc grey the image before the jitter.

Speed: the two views are augmented as one batch of 2B images (half the graph and the per-op
overhead), in chunks of about 2**18 output pixels (cache-sized) that are rebatched to the
requested batch size, with ``num_parallel_calls=AUTOTUNE`` and prefetching.  Differences
from the PyTorch original that remain: PIL rounds to uint8 after every step, this stays in
float32; random streams differ (the distributions are the same).

Output views are float32 in [0, 1] (models normalise inside themselves).
"""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Optional, Sequence, Tuple, Union

import tensorflow as tf

from burn_tf.data.sources import _attach, get_source_info

AUTOTUNE = tf.data.AUTOTUNE
# The map functions use no Python control flow on tensors: skip AutoGraph, whose
# conversion of this module made building a pipeline take seconds.
_graph_fn = tf.autograph.experimental.do_not_convert

_GREY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision rgb_to_grayscale
_PIL_L_WEIGHTS = (0.299, 0.587, 0.114)  # PIL's convert("L"), used by RandAugment's enhance ops
RA_MAX_LEVEL = 10.0  # timm _LEVEL_DENOM, PyContrast _MAX_LEVEL: magnitudes run 0..10
# PyContrast aug 'D' fills uncovered pixels with the ImageNet mean in 0-255, rounded.
_RA_FILL = tuple(round(255 * m) / 255.0 for m in (0.485, 0.456, 0.406))
_N_TRIALS = 10  # torchvision RandomResizedCrop.get_params


def _pair(value, name) -> Tuple[float, float]:
    if isinstance(value, (int, float)):
        return (float(value), float(value))
    value = tuple(float(v) for v in value)
    if len(value) != 2:
        raise ValueError(f"{name} must be a number or a pair, got {value!r}")
    return value


@dataclasses.dataclass
class AugmentConfig:
    """Two-view augmentation settings; defaults = BURN's released config at ``image_size``.

    Pair-valued ``blur_prob`` and ``solarize_prob`` are (view 1, view 2); a single number
    applies to both.  ``blur_kernel_frac`` sets the Gaussian kernel size as a fraction of
    ``image_size`` (odd, at least 3); ``blur_kernel_size`` overrides it.
    """

    image_size: int = 224
    crop_scale: Tuple[float, float] = (0.08, 1.0)
    crop_ratio: Tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    interpolation: str = "bicubic"  # "bicubic" (PIL/torchvision BICUBIC) or "bilinear"
    flip_prob: float = 0.5
    jitter_prob: float = 0.6
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_prob: float = 0.2
    blur_prob: Tuple[float, float] = (0.2, 0.2)
    blur_sigma: Tuple[float, float] = (0.1, 2.0)
    blur_kernel_frac: float = 0.1
    blur_kernel_size: Optional[int] = None
    solarize_prob: Tuple[float, float] = (0.0, 0.0)
    solarize_threshold: float = 0.5
    # NPID / InstDisc / MoCo v1 grey the image before the colour jitter (lemniscate main.py).
    grayscale_first: bool = False
    # RandAugment as timm/PyContrast ``rand-n{ops}-m{magnitude}-mstd{std}``, each chosen op
    # applied with ``randaugment_prob`` (InfoMin: n2 m10 mstd0.5, p 0.5); 0 ops: off.
    randaugment_ops: int = 0
    randaugment_magnitude: float = 10.0
    randaugment_magnitude_std: float = 0.5
    randaugment_prob: float = 0.5

    def __post_init__(self):
        self.image_size = int(self.image_size)
        if self.image_size < 8:
            raise ValueError(f"image_size must be at least 8, got {self.image_size}")
        self.crop_scale = _pair(self.crop_scale, "crop_scale")
        self.crop_ratio = _pair(self.crop_ratio, "crop_ratio")
        self.blur_prob = _pair(self.blur_prob, "blur_prob")
        self.blur_sigma = _pair(self.blur_sigma, "blur_sigma")
        self.solarize_prob = _pair(self.solarize_prob, "solarize_prob")
        if not 0.0 < self.crop_scale[0] <= self.crop_scale[1] <= 1.0:
            raise ValueError(f"crop_scale must satisfy 0 < lo <= hi <= 1, got {self.crop_scale}")
        if not 0.0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise ValueError(f"crop_ratio must satisfy 0 < lo <= hi, got {self.crop_ratio}")
        if not 0.0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ValueError(f"blur_sigma must satisfy 0 < lo <= hi, got {self.blur_sigma}")
        if self.interpolation not in ("bicubic", "bilinear"):
            raise ValueError(f"interpolation must be 'bicubic' or 'bilinear', got {self.interpolation!r}")
        probs = {
            "flip_prob": self.flip_prob, "jitter_prob": self.jitter_prob,
            "grayscale_prob": self.grayscale_prob,
            "blur_prob": self.blur_prob[0], "blur_prob[1]": self.blur_prob[1],
            "solarize_prob": self.solarize_prob[0], "solarize_prob[1]": self.solarize_prob[1],
        }
        for name, p in probs.items():
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue}")
        if int(self.randaugment_ops) != self.randaugment_ops or self.randaugment_ops < 0:
            raise ValueError(f"randaugment_ops must be a whole number >= 0, got {self.randaugment_ops}")
        self.randaugment_ops = int(self.randaugment_ops)
        if not 0.0 <= self.randaugment_magnitude <= RA_MAX_LEVEL:
            raise ValueError(f"randaugment_magnitude must be in [0, {RA_MAX_LEVEL:g}] (timm's levels), "
                             f"got {self.randaugment_magnitude}")
        if self.randaugment_magnitude_std < 0:
            raise ValueError(f"randaugment_magnitude_std must be >= 0, got {self.randaugment_magnitude_std}")
        if not 0.0 <= self.randaugment_prob <= 1.0:
            raise ValueError(f"randaugment_prob must be in [0, 1], got {self.randaugment_prob}")
        if self.blur_kernel_frac < 0:
            raise ValueError(f"blur_kernel_frac must be >= 0, got {self.blur_kernel_frac}")
        if self.blur_kernel_size is not None and self.blur_kernel_size < 3:
            raise ValueError(f"blur_kernel_size must be >= 3 (or null), got {self.blur_kernel_size}")
        if not 0.0 <= self.solarize_threshold <= 1.0:
            raise ValueError(f"solarize_threshold must be in [0, 1], got {self.solarize_threshold}")

    @property
    def kernel_size(self) -> int:
        """Gaussian blur kernel size (odd, ≥ 3): 23 at 224 px, 3 at 28–32 px."""
        if self.blur_kernel_size is not None:
            k = int(self.blur_kernel_size)
        else:
            k = 2 * (int(self.blur_kernel_frac * self.image_size) // 2) + 1
        k = max(3, k if k % 2 else k + 1)
        return min(k, 2 * ((self.image_size - 1) // 2) + 1)  # reflect padding needs k//2 < S

    @classmethod
    def burn(cls, image_size: int = 224, **overrides) -> "AugmentConfig":
        """The authors' released BURN augmentation at ``image_size`` (= the defaults)."""
        return cls(image_size=image_size, **overrides)

    @classmethod
    def from_dict(cls, d: dict) -> "AugmentConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown AugmentConfig keys {sorted(unknown)}; valid: {sorted(names)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}


# ---------------------------------------------------------------------- random crops


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


# ---------------------------------------------------------------------- colour ops


def _grey(x):
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


def _subset(mask):
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
        grey = _grey(x)
        mean = tf.reduce_mean(grey, axis=[1, 2, 3])
        c_grey = tf.where(op == 2, 1.0 - f, 0.0)
        c_const = tf.where(op == 1, (1.0 - f) * mean, 0.0)
        x = tf.clip_by_value(
            f[:, None, None, None] * x + c_grey[:, None, None, None] * grey + c_const[:, None, None, None],
            0.0, 1.0,
        )
        if use_hue:
            idx = _subset(op == 3)
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
    idx = _subset(apply)
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
    idx = _subset(apply)
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


def _coin(seed, batch, p):
    return tf.random.stateless_uniform([batch], seed) < p


# ---------------------------------------------------------------------- RandAugment
#
# timm's RandAugment as InfoMin's released code uses it (PyContrast datasets/RandAugment.py,
# a copy of timm data/auto_augment.py; built by PyContrast datasets/util.py
# build_transforms, aug 'D': ``rand_augment_transform('rand-n2-m10-mstd0.5', ...)``):
# ``RandAugment.__call__`` picks ``num_layers`` ops uniformly with replacement from
# ``_RAND_TRANSFORMS``; each ``AutoAugmentOp.__call__`` runs with probability ``prob`` = 0.5,
# draws its level from N(m, mstd) clipped to [0, 10] and maps it with the op's
# ``*_level_to_arg``. The ops work on PIL images; here they are batched TF ops on float
# images in [0, 1], the point ops (equalize, posterize, solarize, solarize_add) on the
# 0-255 levels PIL sees.  Each op takes ``(x [n, H, W, 3], level [n], sign [n])``; ``sign``
# is timm's ``_randomly_negate`` for the signed ops.


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
    idx = _subset(mask)

    def run():
        out = fn(tf.gather_nd(x, idx), *(tf.gather_nd(v, idx) for v in per_image))
        return tf.tensor_scatter_nd_update(x, idx, out)

    return tf.cond(tf.shape(idx)[0] > 0, run, lambda: x)


# ---------------------------------------------------------------------- pipelines


def _post_crop(x, cfg: AugmentConfig, seeds, blur_prob, solarize_prob):
    """Colour jitter, grey, blur, RandAugment, solarize on cropped float images in [0, 1].
    ``blur_prob`` / ``solarize_prob``: a number, or per-image probabilities [B]."""
    batch = tf.shape(x)[0]

    def grayscale(x):
        if cfg.grayscale_prob <= 0:
            return x
        m = tf.cast(_coin(seeds[2], batch, cfg.grayscale_prob), x.dtype)[:, None, None, None]
        # exact select (m is 0 or 1); ~5x faster on CPU than tf.where with a broadcast mask
        return m * _grey(x) + (1.0 - m) * x

    # Where the grey conversion goes: before the jitter (NPID), after RandAugment (InfoMin:
    # PyContrast jitter → blur → RandAugment → grey), else after the jitter (the others;
    # grey and blur commute, both being linear per image).
    if cfg.grayscale_first:
        x = grayscale(x)
    if cfg.jitter_prob > 0 and (cfg.brightness or cfg.contrast or cfg.saturation or cfg.hue):
        x = color_jitter(x, cfg, seeds[0], apply=_coin(seeds[1], batch, cfg.jitter_prob))
    if not cfg.grayscale_first and not cfg.randaugment_ops:
        x = grayscale(x)
    if max(cfg.blur_prob) > 0:
        sigma = tf.random.stateless_uniform([batch], seeds[3], minval=cfg.blur_sigma[0], maxval=cfg.blur_sigma[1])
        x = gaussian_blur(x, sigma, cfg.kernel_size, apply=_coin(seeds[4], batch, blur_prob))
    if cfg.randaugment_ops:
        # Its own stream (folded from the jitter's seed): the other draws stay as they were.
        x = rand_augment(x, cfg, tf.random.experimental.stateless_fold_in(seeds[0], 1))
        if not cfg.grayscale_first:
            x = grayscale(x)
    if max(cfg.solarize_prob) > 0:
        x = solarize(x, cfg.solarize_threshold, apply=_coin(seeds[5], batch, solarize_prob))
    return tf.clip_by_value(x, 0.0, 1.0)


_N_SEEDS = 8  # crop, flip, then _post_crop's six


def _to_unit_float(images):
    images = tf.convert_to_tensor(images)
    x = tf.cast(images, tf.float32)
    return x / 255.0 if images.dtype == tf.uint8 else x


def _augment(x, cfg: AugmentConfig, seed, blur_prob, solarize_prob):
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), _N_SEEDS)
    batch = tf.shape(x)[0]
    height = x.shape[1] if x.shape[1] is not None else tf.shape(x)[1]
    width = x.shape[2] if x.shape[2] is not None else tf.shape(x)[2]
    top, left, crop_h, crop_w = sample_crop_boxes(batch, height, width, cfg.crop_scale, cfg.crop_ratio, seeds[0])
    flip = _coin(seeds[1], batch, cfg.flip_prob)
    x = resized_crop(x, top, left, crop_h, crop_w, cfg.image_size, cfg.interpolation, flip=flip)
    x = tf.clip_by_value(x, 0.0, 1.0)
    return _post_crop(x, cfg, seeds[2:], blur_prob, solarize_prob)


def augment_batch(images, cfg: AugmentConfig, seed, view: int = 0):
    """One augmented view of a batch of same-sized images.

    ``images``: ``[B, H, W, 3]`` uint8 (0–255) or float (0–1); ``seed``: int64/int32
    ``[2]``; ``view``: 0 or 1 (selects the per-view blur/solarize probabilities).
    Returns float32 ``[B, S, S, 3]`` in [0, 1].  The random draws do not depend on the
    probabilities, so two configs that differ only in one probability give identical
    results on the images that op leaves alone.
    """
    return _augment(_to_unit_float(images), cfg, seed, cfg.blur_prob[view], cfg.solarize_prob[view])


def _per_view(probs, batch):
    return tf.repeat(tf.constant(probs, tf.float32), tf.stack([batch, batch]))


def augment_two_views(images, cfg: AugmentConfig, seed):
    """Both views of a batch, ``(view1, view2)``, each float32 ``[B, S, S, 3]`` in [0, 1].

    The two views are augmented as one batch of 2B images (independent parameters per
    image; view 1 uses ``blur_prob[0]``/``solarize_prob[0]``, view 2 the second values):
    half the graph and half the per-op overhead of two calls."""
    x = _to_unit_float(images)
    batch = tf.shape(x)[0]
    both = _augment(
        tf.concat([x, x], axis=0), cfg, seed,
        _per_view(cfg.blur_prob, batch), _per_view(cfg.solarize_prob, batch),
    )
    return both[:batch], both[batch:]


def _crop_single(image, cfg: AugmentConfig, seed):
    """Per-image RandomResizedCrop + flip for images of varying size: slice, then
    ``tf.image.resize`` (anti-aliased) on the slice.  Returns float32 [S, S, 3]."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
    shape = tf.shape(image)
    top, left, crop_h, crop_w = sample_crop_boxes(1, shape[0], shape[1], cfg.crop_scale, cfg.crop_ratio, seeds[0])
    crop = image[top[0]:top[0] + crop_h[0], left[0]:left[0] + crop_w[0], :]
    crop = tf.cast(crop, tf.float32) / 255.0
    out = tf.image.resize(crop, [cfg.image_size, cfg.image_size], method=cfg.interpolation, antialias=True)
    flip = _coin(seeds[1], 1, cfg.flip_prob)[0]
    out = tf.cond(flip, lambda: tf.reverse(out, axis=[1]), lambda: out)
    out = tf.clip_by_value(out, 0.0, 1.0)
    out.set_shape([cfg.image_size, cfg.image_size, 3])
    return out


def _chunk_size(image_size: int, batch_size: int) -> int:
    target = (1 << 18) // (image_size * image_size)
    chunk = 1 << max(3, int(math.log2(max(target, 1))))
    return min(batch_size, chunk)


def _resolve_seed(seed: Optional[int]) -> int:
    if seed is None:
        # Python's global RNG: random unless the user seeded it (keras.utils.set_random_seed).
        return random.randrange(2**31 - 1)
    return int(seed)


def _seed_pairs(seed: int, salt: int) -> tf.data.Dataset:
    """Infinite dataset of int64 [2] seeds, the same sequence for the same seed in every run,
    a new sequence for each new iterator (epoch)."""
    return tf.data.Dataset.random(seed=seed * 4 + salt, rerandomize_each_iteration=True).batch(2)


def _positional_seeds(seed: int, salt: int, first: int) -> tf.data.Dataset:
    """Endless int64 [2] seeds, element i a stateless function of (seed, salt, first + i):
    a stream started at ``first`` continues exactly the one started at 0."""
    base = tf.constant([seed * 4 + salt, 0], tf.int64)
    return tf.data.Dataset.range(first, tf.int64.max).map(
        lambda i: tf.random.experimental.stateless_fold_in(base, i))


def _largest_divisor_up_to(n: int, limit: int) -> int:
    return max(d for d in range(1, max(1, min(n, limit)) + 1) if n % d == 0)


def per_view_configs(cfg: AugmentConfig, num_views: int) -> list[AugmentConfig]:
    """One config per view from a config whose pair-valued probabilities are (view 1,
    view 2): view i gets ``blur_prob[min(i, 1)]`` and ``solarize_prob[min(i, 1)]``
    (views past the second take the second values, as BYOL's and SwAV's extra crops do)."""
    if num_views < 1:
        raise ValueError(f"num_views must be >= 1, got {num_views}")
    return [
        dataclasses.replace(cfg, blur_prob=cfg.blur_prob[min(i, 1)], solarize_prob=cfg.solarize_prob[min(i, 1)])
        for i in range(num_views)
    ]


def _batchable_groups(views: Sequence[AugmentConfig]) -> list[list[int]]:
    """Indices of views that may be augmented as one batch: configs equal up to their
    blur/solarize probabilities (which become per-image probabilities)."""
    groups: list[list[int]] = []
    keys: list[AugmentConfig] = []
    for i, cfg in enumerate(views):
        key = dataclasses.replace(cfg, blur_prob=0.0, solarize_prob=0.0)
        for g, other in enumerate(keys):
            if other == key:
                groups[g].append(i)
                break
        else:
            keys.append(key)
            groups.append([i])
    return groups


def _group_probs(views: Sequence[AugmentConfig], group: Sequence[int], batch):
    """Per-image blur and solarize probabilities of a group's stacked views ([m·B] each)."""
    blur = tf.repeat(tf.constant([views[i].blur_prob[0] for i in group], tf.float32),
                     tf.fill([len(group)], batch))
    solarize = tf.repeat(tf.constant([views[i].solarize_prob[0] for i in group], tf.float32),
                         tf.fill([len(group)], batch))
    return blur, solarize


def _split_seed(seed, n: int):
    # One group keeps the batch seed itself, so the two-view pipeline's streams are unchanged.
    return [seed] if n == 1 else list(tf.unstack(tf.random.experimental.stateless_split(seed, n)))


def multi_view_dataset(
    source: tf.data.Dataset,
    views: Sequence[AugmentConfig],
    batch_size: int,
    seed: Optional[int] = None,
    shuffle_buffer: int = 10_000,
    drop_remainder: bool = True,
    repeat: bool = False,
    cache: bool = False,
    with_labels: bool = False,
    num_parallel_calls: Optional[int] = AUTOTUNE,
    chunk_size: Optional[int] = None,
    with_index: bool = False,
    start_position: Optional[int] = None,
) -> tf.data.Dataset:
    """Batched ``(view_1, …, view_N)`` float32 ``[B, S_i, S_i, 3]`` in [0, 1], one view per
    config in ``views`` (each its own :class:`AugmentConfig`: BYOL's asymmetric blur and
    solarize, SwAV's multi-crop sizes), from a source of ``(uint8 image, label)``.

    Each view uses the first value of its pair-valued probabilities (see
    :func:`per_view_configs`). Views whose configs differ only in those probabilities are
    augmented as one batch of m·B images (half the graph and per-op overhead for two
    views). ``seed`` makes the whole pipeline (shuffle order and every augmentation)
    reproducible; each epoch still differs. ``shuffle_buffer=0`` keeps source order;
    ``repeat=True`` repeats forever; ``cache=True`` caches the decoded source in memory
    first (small data sets); ``with_labels=True`` appends the label (for monitors and the
    supervised baselines; BURN never needs it). ``chunk_size`` is how many images one
    augmentation call handles (default: about 2**18 output pixels, so the working set
    stays in cache); the result is rebatched to ``batch_size``. ``with_index=True``
    appends, last, each image's int64 position in ``source`` (NPID's memory-bank row):
    numbered before caching and shuffling, so it is stable across epochs and shuffles.
    Elements are then ``(views…, [labels,] index)``; without it the batches are unchanged.

    ``start_position`` (exact resume at any cost-free point): ``source`` is then an
    ordered, endless stream of ``(image, label, index)`` whose first element is element
    ``start_position`` of the run (``sources.seeded_record_stream``), a multiple of
    ``batch_size``. Every augmentation seed is a stateless function of ``(seed, position)``
    instead of the count of elements this iterator produced, so the stream started at
    ``k·batch_size`` yields exactly batches k, k+1, … of the stream started at 0; the index
    comes from the source; ``shuffle_buffer``, ``repeat`` and ``cache`` do not apply.
    """
    views = list(views)
    if not views:
        raise ValueError("multi_view_dataset needs at least one view config")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    seed = _resolve_seed(seed)
    spec = source.element_spec
    image_spec = spec[0] if isinstance(spec, tuple) else None
    if image_spec is None or image_spec.dtype != tf.uint8 or image_spec.shape.rank != 3:
        raise ValueError(
            "multi_view_dataset expects a source of (uint8 image [H, W, 3], int64 label); got "
            f"element_spec {spec}"
        )
    fixed = image_spec.shape[0] is not None and image_spec.shape[1] is not None
    par = {} if num_parallel_calls is None else dict(num_parallel_calls=num_parallel_calls, deterministic=True)
    groups = _batchable_groups(views)

    def output(outs, label):
        # With the index, ``label`` is the pair (label, index) carried through the pipeline.
        label, index = label if with_index else (label, None)
        outs = tuple(outs) + ((label,) if with_labels else ())
        return outs + (index,) if with_index else outs

    ds = source
    positional = start_position is not None
    if positional:
        if len(spec) != 3 or start_position < 0 or start_position % batch_size:
            raise ValueError(
                "start_position needs a stream of (image, label, index) starting at a multiple of "
                f"batch_size={batch_size}; got start_position={start_position}, element_spec {spec}"
            )
        ds = ds.map(lambda image, label, index: (image, (label, index) if with_index else label))
    elif with_index:
        ds = ds.enumerate().map(lambda i, element: (element[0], (element[1], i)))
    if cache and not positional:
        ds = ds.cache()
    if shuffle_buffer and shuffle_buffer > 1 and not positional:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat and not positional:
        ds = ds.repeat()

    def seed_stream(salt, images_per_seed):
        if positional:
            return _positional_seeds(seed, salt, start_position // images_per_seed)
        return _seed_pairs(seed, salt)

    if not fixed:
        # Crop each image on its own (sizes differ), then batch for the colour ops.
        ds = tf.data.Dataset.zip((ds, seed_stream(2, 1)))

        @_graph_fn
        def crop_views(element, s):
            image, label = element
            seeds = tf.random.experimental.stateless_split(s, len(views))
            return tuple(_crop_single(image, cfg, seeds[i]) for i, cfg in enumerate(views)) + (label,)

        ds = ds.map(crop_views, **par)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
        ds = tf.data.Dataset.zip((ds, seed_stream(1, batch_size)))

        @_graph_fn
        def colour(element, s):
            cropped, label = element[:-1], element[-1]
            batch = tf.shape(cropped[0])[0]
            outs = [None] * len(views)
            for group, group_seed in zip(groups, _split_seed(s, len(groups))):
                seeds = tf.random.experimental.stateless_split(group_seed, _N_SEEDS - 2)
                blur, solarize = _group_probs(views, group, batch)
                stacked = _post_crop(tf.concat([cropped[i] for i in group], axis=0), views[group[0]], seeds,
                                     blur, solarize)
                for j, i in enumerate(group):
                    outs[i] = stacked[j * batch:(j + 1) * batch]
            return output(outs, label)

        ds = ds.map(colour, **par)
    else:
        # Augment in chunks small enough for the CPU caches, then rebatch (cheap: slices
        # and concatenations of whole tensors).
        largest = max(cfg.image_size for cfg in views)
        chunk = _chunk_size(largest, batch_size) if chunk_size is None else int(chunk_size)
        chunk = max(1, min(chunk, batch_size))
        if positional:  # chunks must not straddle a batch: a resume starts at a batch
            chunk = _largest_divisor_up_to(batch_size, chunk)
        ds = ds.batch(chunk, drop_remainder=drop_remainder and chunk == batch_size)
        ds = tf.data.Dataset.zip((ds, seed_stream(1, chunk)))

        @_graph_fn
        def augment_views(element, s):
            images, labels = element
            x = _to_unit_float(images)
            batch = tf.shape(x)[0]
            outs = [None] * len(views)
            for group, group_seed in zip(groups, _split_seed(s, len(groups))):
                blur, solarize = _group_probs(views, group, batch)
                stacked = _augment(tf.concat([x] * len(group), axis=0), views[group[0]], group_seed, blur, solarize)
                for j, i in enumerate(group):
                    outs[i] = stacked[j * batch:(j + 1) * batch]
            return output(outs, labels)

        ds = ds.map(augment_views, **par)
        if chunk != batch_size:
            ds = ds.rebatch(batch_size, drop_remainder=drop_remainder)
    ds = ds.prefetch(AUTOTUNE)
    return _attach(ds, get_source_info(source))


def two_view_dataset(
    source: tf.data.Dataset,
    cfg: Union[AugmentConfig, int],
    batch_size: int,
    seed: Optional[int] = None,
    **kwargs,
) -> tf.data.Dataset:
    """Batched ``(view1, view2)`` (``(view1, view2, label)`` with ``with_labels=True``):
    :func:`multi_view_dataset` with one config whose pair-valued probabilities are
    (view 1, view 2). ``cfg`` may be an int (BURN's config at that size)."""
    if isinstance(cfg, int):
        cfg = AugmentConfig(image_size=cfg)
    return multi_view_dataset(source, per_view_configs(cfg, 2), batch_size, seed=seed, **kwargs)


def eval_dataset(
    source: tf.data.Dataset,
    image_size: int,
    batch_size: int,
    center_crop: Optional[float] = None,
    cache: bool = False,
) -> tf.data.Dataset:
    """Batched ``(image float32 [B, S, S, 3] in [0, 1], label int64 [B])`` in source order,
    no augmentation, last partial batch kept.

    Images are resized to ``image_size``×``image_size`` (bicubic, anti-aliased).  With
    ``center_crop=f`` (e.g. 0.875) the shorter side is first resized to ``image_size / f``
    and the centre ``image_size`` square is taken (the ImageNet evaluation protocol).
    """
    size = int(image_size)
    spec = source.element_spec
    image_spec = spec[0] if isinstance(spec, tuple) else None
    if image_spec is None or image_spec.shape.rank != 3:
        raise ValueError(f"eval_dataset expects a source of (image [H, W, 3], label); got {spec}")
    fixed = image_spec.shape[0] is not None and image_spec.shape[1] is not None
    ds = source.cache() if cache else source

    def to_float(x):
        x = tf.cast(x, tf.float32)
        return x / 255.0 if image_spec.dtype == tf.uint8 else x

    def resize(x):  # x: [..., H, W, 3] float
        if center_crop is None:
            if fixed and image_spec.shape[0] == size and image_spec.shape[1] == size:
                return x
            return tf.clip_by_value(tf.image.resize(x, [size, size], "bicubic", antialias=True), 0.0, 1.0)
        shape = tf.shape(x)
        h = tf.cast(shape[-3], tf.float32)
        w = tf.cast(shape[-2], tf.float32)
        short = size / float(center_crop)
        scale = short / tf.minimum(h, w)
        new_h = tf.maximum(tf.cast(tf.round(h * scale), tf.int32), size)
        new_w = tf.maximum(tf.cast(tf.round(w * scale), tf.int32), size)
        x = tf.image.resize(x, tf.stack([new_h, new_w]), "bicubic", antialias=True)
        top = (new_h - size) // 2
        left = (new_w - size) // 2
        x = x[..., top:top + size, left:left + size, :]
        return tf.clip_by_value(x, 0.0, 1.0)

    if fixed:
        @_graph_fn
        def batched(x, y):
            return tf.ensure_shape(resize(to_float(x)), [None, size, size, 3]), y

        ds = ds.batch(batch_size).map(batched, num_parallel_calls=AUTOTUNE, deterministic=True)
    else:
        @_graph_fn
        def single(x, y):
            return tf.ensure_shape(resize(to_float(x)), [size, size, 3]), y

        ds = ds.map(single, num_parallel_calls=AUTOTUNE, deterministic=True).batch(batch_size)
    ds = ds.prefetch(AUTOTUNE)
    return _attach(ds, get_source_info(source))
