"""InfoMin (Tian et al., "What Makes for Good Views for Contrastive Learning?", NeurIPS
2020) as in the BURN supplement (Sec. 2, Tables 1–2, Figs. 1–2): MoCo v2 with InfoMin's
stronger augmentation and a smaller number of negatives.

- InfoMin Aug (PyContrast ``datasets/util.py``, ``aug == 'D'``) adds to MoCo v2's views a
  RandAugment of 2 ops at magnitude 10 of 10 with standard deviation 0.5
  (``rand-n2-m10-mstd0.5``), colour jitter (0.8, 0.8, 0.8, 0.2) with p = 0.8 and Gaussian
  blur with p = 0.5. The jitter and blur are view settings (``configs/infomin.yaml``); the
  RandAugment runs here, on the augmented views during training, with keras-cv's
  ``RandAugment`` (its magnitude in [0, 1]: m / 10; value range [0, 1]). In PyContrast it
  sits between blur and grayscale; here it follows the whole view pipeline (the data
  pipeline has no RandAugment).
- Temperature 0.15 (PyContrast's InfoMin runs, ``moco_aug_D_mlp_0.15``), 2-layer MLP head,
  key-encoder momentum 0.999 as MoCo v2. InfoMin's JigSaw branch is left out.
- ``negatives_fraction``: the queue holds ``queue_size × negatives_fraction`` keys. The BURN
  supplement (Sec. 2.1, Fig. 2) finds that InfoMin with ReActNet does best with 1/16 of the
  65,536 negatives (worse with all of them, unlike a ResNet-50): the default.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from burn_tf.methods.moco import MoCoV2, MoCoV2Config
from burn_tf.methods.registry import register
from burn_tf.schema import ConfigError, check_range


@dataclasses.dataclass
class InfoMinConfig(MoCoV2Config):
    name: str = "infomin"
    temperature: float = 0.15
    # BURN supplement Fig. 2: 1/16 of the 65,536 negatives is best for a binary network.
    negatives_fraction: float = 1.0 / 16.0
    # RandAugment (PyContrast rand-n2-m10-mstd0.5): ops per image, magnitude and its
    # standard deviation in keras-cv's [0, 1] scale (timm's levels / 10).
    randaugment_ops: int = 2
    randaugment_magnitude: float = 1.0
    randaugment_magnitude_std: float = 0.05

    def __post_init__(self):
        super().__post_init__()
        check_range("method", "negatives_fraction", self.negatives_fraction, 0, 1, low_open=True)
        negatives = self.queue_size * self.negatives_fraction
        if negatives < 1 or abs(negatives - round(negatives)) > 1e-6:
            raise ConfigError(
                f"method.negatives_fraction={self.negatives_fraction} of method.queue_size={self.queue_size} "
                f"is {negatives:g} keys; it must be a whole number >= 1"
            )
        check_range("method", "randaugment_ops", self.randaugment_ops, 0)
        check_range("method", "randaugment_magnitude", self.randaugment_magnitude, 0, 1)
        check_range("method", "randaugment_magnitude_std", self.randaugment_magnitude_std, 0)


@register
class InfoMin(MoCoV2):
    method_name = "infomin"
    Config = InfoMinConfig

    def __init__(self, backbone: tf.keras.Model, config: InfoMinConfig | None = None, accumulation_steps: int = 1,
                 **kwargs):
        super().__init__(backbone, config, accumulation_steps=accumulation_steps, **kwargs)
        cfg = self.config
        self.randaugment = None
        if cfg.randaugment_ops > 0:
            # keras-cv is imported here, not at module level: importing it takes seconds and
            # only InfoMin needs it.
            import keras_cv

            self.randaugment = keras_cv.layers.RandAugment(
                value_range=(0, 1), augmentations_per_image=cfg.randaugment_ops,
                magnitude=cfg.randaugment_magnitude, magnitude_stddev=cfg.randaugment_magnitude_std,
                rate=1.0, name="infomin_randaugment")

    @classmethod
    def negatives_in_queue(cls, config) -> int:
        return int(round(config.queue_size * config.negatives_fraction))

    def augment_views(self, views, training):
        if not training or self.randaugment is None:
            return views
        return [self.randaugment(view, training=True) for view in views]
