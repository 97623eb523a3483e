"""The view config: BURN's defaults, its checks, and every shipped method's views."""

import pytest

from burn_tf.data.views import AugmentConfig


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
