"""The view config: one :class:`AugmentConfig` per augmented view, BURN's released values by default.

The authors' released BURN code (naver-ai/burn) uses torchvision on PIL images:
``RandomResizedCrop(S, scale=(0.08, 1), interpolation=BICUBIC)`` → ``RandomHorizontalFlip()``
→ ``RandomApply([ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.6)`` → ``RandomGrayscale(0.2)`` →
Gaussian blur σ∈[0.1, 2] with p 0.2 → solarize with p 0.  :class:`AugmentConfig`'s defaults
are exactly that; every number is a field, the two views have their own blur/solarize
probabilities (:func:`per_view_configs` turns one config into one per view).  What each field
does is in the modules that apply it: :mod:`~burn_tf.data.crops`, :mod:`~burn_tf.data.colour`,
:mod:`~burn_tf.data.randaugment`, in the order of :mod:`~burn_tf.data.view_augmentation`.
"""

from __future__ import annotations

import dataclasses

RA_MAX_LEVEL = 10.0  # timm _LEVEL_DENOM, PyContrast _MAX_LEVEL: RandAugment magnitudes run 0..10


def _pair(value, name) -> tuple[float, float]:
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

    ``blur_sigma`` is in pixels of an image of ``blur_sigma_size`` pixels, the size the
    reference recipe blurs at (224: the ImageNet recipes; 96: SwAV's small crops; 32: CLD's
    CIFAR scripts): the blur applied has σ × ``image_size`` / ``blur_sigma_size``
    (:attr:`pixel_sigma`), the same blur relative to the image at any input size (σ 0.1–2 px
    at 224 is 0.02–0.43 px at 48). ``null``: σ in pixels of ``image_size`` as given.

    ``erasing_prob`` > 0 adds torchvision's ``RandomErasing`` last (CLD-MoCo's ``--erasing``:
    ``RandomErasing(p=1.0)`` after ``Normalize``): a box of ``erasing_scale`` of the area and
    aspect ratio in ``erasing_ratio`` (log-uniform, 10 tries, else nothing) filled with
    ``erasing_value`` (an [0, 1] grey level or RGB triple; the default is the model's
    normalisation mean, i.e. the 0 that torchvision writes after ``Normalize``).
    """

    image_size: int = 224
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    interpolation: str = "bicubic"  # "bicubic" (PIL/torchvision BICUBIC) or "bilinear"
    flip_prob: float = 0.5
    jitter_prob: float = 0.6
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_prob: float = 0.2
    blur_prob: tuple[float, float] = (0.2, 0.2)
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel_frac: float = 0.1
    blur_kernel_size: int | None = None
    # The image size blur_sigma is given at (BURN's released code: 224 px ImageNet crops).
    blur_sigma_size: int | None = 224
    solarize_prob: tuple[float, float] = (0.0, 0.0)
    solarize_threshold: float = 0.5
    # NPID / InstDisc / MoCo v1 grey the image before the colour jitter (lemniscate main.py).
    grayscale_first: bool = False
    # RandAugment as timm/PyContrast ``rand-n{ops}-m{magnitude}-mstd{std}``, each chosen op
    # applied with ``randaugment_prob`` (InfoMin: n2 m10 mstd0.5, p 0.5); 0 ops: off.
    randaugment_ops: int = 0
    randaugment_magnitude: float = 10.0
    randaugment_magnitude_std: float = 0.5
    randaugment_prob: float = 0.5
    # torchvision RandomErasing (defaults scale (0.02, 0.33), ratio (0.3, 3.3)); 0: off.
    erasing_prob: float = 0.0
    erasing_scale: tuple[float, float] = (0.02, 0.33)
    erasing_ratio: tuple[float, float] = (0.3, 3.3)
    # 0 after the models' Normalize (ImageNet mean, burn_tf.models.reactnet.IMAGENET_MEAN).
    erasing_value: tuple[float, float, float] = (0.485, 0.456, 0.406)

    def __post_init__(self):
        self.image_size = int(self.image_size)
        if self.image_size < 8:
            raise ValueError(f"image_size must be at least 8, got {self.image_size}")
        self.crop_scale = _pair(self.crop_scale, "crop_scale")
        self.crop_ratio = _pair(self.crop_ratio, "crop_ratio")
        self.blur_prob = _pair(self.blur_prob, "blur_prob")
        self.blur_sigma = _pair(self.blur_sigma, "blur_sigma")
        self.solarize_prob = _pair(self.solarize_prob, "solarize_prob")
        self.erasing_scale = _pair(self.erasing_scale, "erasing_scale")
        self.erasing_ratio = _pair(self.erasing_ratio, "erasing_ratio")
        value = self.erasing_value
        value = (value,) * 3 if isinstance(value, (int, float)) else tuple(float(v) for v in value)
        if len(value) != 3 or not all(0.0 <= v <= 1.0 for v in value):
            raise ValueError(f"erasing_value must be a level in [0, 1] or three of them, got {self.erasing_value!r}")
        self.erasing_value = value
        if not 0.0 < self.erasing_scale[0] <= self.erasing_scale[1] <= 1.0:
            raise ValueError(f"erasing_scale must satisfy 0 < lo <= hi <= 1, got {self.erasing_scale}")
        if not 0.0 < self.erasing_ratio[0] <= self.erasing_ratio[1]:
            raise ValueError(f"erasing_ratio must satisfy 0 < lo <= hi, got {self.erasing_ratio}")
        if self.blur_sigma_size is not None:
            if int(self.blur_sigma_size) != self.blur_sigma_size or self.blur_sigma_size < 1:
                raise ValueError(f"blur_sigma_size must be a whole number of pixels >= 1 (or null), "
                                 f"got {self.blur_sigma_size}")
            self.blur_sigma_size = int(self.blur_sigma_size)
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
            "erasing_prob": self.erasing_prob,
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
    def pixel_sigma(self) -> tuple[float, float]:
        """The blur's σ range in pixels of ``image_size``: ``blur_sigma`` × ``image_size`` /
        ``blur_sigma_size`` (as given when ``blur_sigma_size`` is null)."""
        if self.blur_sigma_size is None:
            return self.blur_sigma
        scale = self.image_size / self.blur_sigma_size
        return (self.blur_sigma[0] * scale, self.blur_sigma[1] * scale)

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
    def burn(cls, image_size: int = 224, **overrides) -> AugmentConfig:
        """The authors' released BURN augmentation at ``image_size`` (= the defaults)."""
        return cls(image_size=image_size, **overrides)

    @classmethod
    def from_dict(cls, d: dict) -> AugmentConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown AugmentConfig keys {sorted(unknown)}; valid: {sorted(names)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}


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
