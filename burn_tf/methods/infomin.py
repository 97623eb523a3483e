"""InfoMin (Tian et al., "What Makes for Good Views for Contrastive Learning?", NeurIPS
2020) as in the BURN supplement (Sec. 2, Tables 1–2, Figs. 1–2): MoCo v2 with InfoMin's
stronger augmentation and a smaller number of negatives.

- InfoMin Aug (PyContrast ``datasets/util.py`` ``build_transforms``, ``aug == 'D'``, with the
  MoCo queue: crops of 20–100 %) is a view setting (``configs/infomin.yaml``, ``views:``):
  crop, flip, colour jitter (0.8, 0.8, 0.8, 0.2) with p 0.8, Gaussian blur with p 0.5, then
  timm's RandAugment ``rand-n2-m10-mstd0.5`` — 2 ops drawn uniformly from timm's 15
  (``_RAND_TRANSFORMS``), each applied with probability 0.5 at a level drawn from N(10,
  0.5) clipped to [0, 10] on timm's 0–10 scale (translate ±45 % of the size, shear ±0.3,
  rotate ±30°, brightness/contrast/colour/sharpness × 1.9) — then grayscale with p 0.2.
  The RandAugment runs in the data pipeline (:func:`burn_tf.data.randaugment.rand_augment`,
  ``AugmentConfig.randaugment_*``) at that place; this class adds none, so InfoMin given
  other views is MoCo v2 at InfoMin's temperature and negatives.
- Temperature 0.15 (PyContrast's InfoMin runs, ``moco_aug_D_mlp_0.15``), 2-layer MLP head,
  key-encoder momentum from ``tau_start`` to ``tau_end`` (cosine) as MoCo v2 (PyContrast:
  0.999 fixed over 800 ImageNet epochs; the shipped YAML anneals 0.99 → 0.999 as solo-learn's
  CIFAR MoCo v2+, since 0.999 barely moves the key encoder in a few hundred steps).
  InfoMin's JigSaw branch is left out.
- ``negatives_fraction``: the queue holds ``queue_size × negatives_fraction`` keys. The BURN
  supplement (Sec. 2.1, Fig. 2) finds that InfoMin with ReActNet does best with 1/16 of the
  65,536 negatives (worse with all of them, unlike a ResNet-50): the default.
"""

from __future__ import annotations

import dataclasses

from burn_tf.methods.moco import MoCoV2, MoCoV2Config
from burn_tf.methods.registry import register
from burn_tf.schema import ConfigError, check_range


@dataclasses.dataclass
class InfoMinConfig(MoCoV2Config):
    name: str = "infomin"
    temperature: float = 0.15
    # BURN supplement Fig. 2: 1/16 of the 65,536 negatives is best for a binary network.
    negatives_fraction: float = 1.0 / 16.0

    def __post_init__(self):
        super().__post_init__()
        check_range("method", "negatives_fraction", self.negatives_fraction, 0, 1, low_open=True)
        negatives = self.queue_size * self.negatives_fraction
        if negatives < 1 or abs(negatives - round(negatives)) > 1e-6:
            raise ConfigError(
                f"method.negatives_fraction={self.negatives_fraction} of method.queue_size={self.queue_size} "
                f"is {negatives:g} keys; it must be a whole number >= 1"
            )


@register
class InfoMin(MoCoV2):
    method_name = "infomin"
    Config = InfoMinConfig

    @classmethod
    def negatives_in_queue(cls, config) -> int:
        return int(round(config.queue_size * config.negatives_fraction))
