"""One augmentation of a batch: the per-view probabilities and the order of the chain."""

import numpy as np
import pytest
from data_helpers import SEED, one_view, quiet, synthetic_source

from burn_tf.data import AugmentConfig, augment_views, per_view_configs


def test_two_views_per_view_probabilities():
    _, images = synthetic_source(8, 28)
    cfg = quiet(28, solarize_prob=(0.0, 1.0))
    v1, v2 = (v.numpy() for v in augment_views(images, per_view_configs(cfg, 2), SEED))
    np.testing.assert_allclose(v1, images / 255.0, atol=1e-6)  # full crop, nothing else
    np.testing.assert_allclose(v2, np.where(v1 >= 0.5, 1.0 - v1, v1), atol=1e-6)


def test_infomin_views_grey_after_randaugment():
    # PyContrast aug 'D': jitter → blur → RandAugment → grey. Grey last, every view is grey
    # even where a geometric op filled in the (coloured) mean.
    _, images = synthetic_source(16, 32, seed=8)
    cfg = AugmentConfig(image_size=32, randaugment_ops=2, randaugment_prob=1.0, grayscale_prob=1.0)
    out = one_view(images, cfg, SEED).numpy()
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
    out = one_view(images, cfg, SEED).numpy()
    np.testing.assert_allclose(out[..., 0], out[..., 1], atol=1e-5)
    late = one_view(images, quiet(16, grayscale_prob=1.0, jitter_prob=1.0, hue=0.4), SEED).numpy()
    assert not np.allclose(out, late, atol=1e-3)  # the order matters (hue changes the luma)
