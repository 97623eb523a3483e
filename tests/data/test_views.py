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



def test_blur_sigma_is_rescaled_from_the_reference_size():
    """σ 0.1–2 px of a 224 px crop is the same blur relative to a 48 px view: σ × 48/224."""
    cfg = AugmentConfig(image_size=48)
    assert cfg.blur_sigma_size == 224
    assert cfg.pixel_sigma == pytest.approx((0.1 * 48 / 224, 2.0 * 48 / 224))
    assert AugmentConfig(image_size=224).pixel_sigma == pytest.approx((0.1, 2.0))
    assert AugmentConfig(image_size=48, blur_sigma_size=32).pixel_sigma == pytest.approx((0.15, 3.0))
    assert AugmentConfig(image_size=48, blur_sigma_size=None).pixel_sigma == (0.1, 2.0)
    with pytest.raises(ValueError, match="blur_sigma_size"):
        AugmentConfig(image_size=48, blur_sigma_size=0)
    with pytest.raises(ValueError, match="erasing_value"):
        AugmentConfig(image_size=48, erasing_value=(0.5, 0.5))


# ------------------------------------------------------------ shipped views = reference code
# Each row's views in its shipped YAML, transcribed from its released code (file and lines
# below; the YAMLs' comments cite the same). Every entry lists every key of RECIPE_KEYS; the
# rest keep the AugmentConfig defaults (flip 0.5, ratio 3/4-4/3, blur sigma 0.1-2 px of a
# blur_sigma_size crop, kernel 10 % of the size). torchvision's RandomResizedCrop defaults to
# bilinear; PIL's GaussianBlur(radius) is sigma in pixels of the image it blurs.
RECIPE_KEYS = ("crop_scale", "interpolation", "jitter_prob", "brightness", "contrast", "saturation", "hue",
               "grayscale_prob", "grayscale_first", "blur_prob", "blur_sigma_size", "solarize_prob",
               "randaugment_ops", "erasing_prob")
COLOUR_04 = dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
COLOUR_08 = dict(brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2)
NO_EXTRAS = dict(randaugment_ops=0, grayscale_first=False, erasing_prob=0.0)
# MoCo v2's --aug-plus (facebookresearch/moco main_moco.py l. 225-234).
MOCO_AUG_PLUS = dict(crop_scale=(0.2, 1.0), interpolation="bilinear", jitter_prob=0.8, **COLOUR_04,
                     grayscale_prob=0.2, blur_prob=(0.5, 0.5), blur_sigma_size=224, solarize_prob=(0.0, 0.0),
                     **NO_EXTRAS)
REFERENCE_VIEWS = {
    # naver-ai/burn: the AugmentConfig defaults (burn_tf.data.views' docstring).
    "demo": [dict(crop_scale=(0.08, 1.0), interpolation="bicubic", jitter_prob=0.6, **COLOUR_04, grayscale_prob=0.2,
                  blur_prob=(0.2, 0.2), blur_sigma_size=224, solarize_prob=(0.0, 0.0), **NO_EXTRAS)],
    # BYOL Table 6 / solo-learn asymmetric.yaml: asymmetric blur and solarize.
    "byol": [dict(crop_scale=(0.08, 1.0), interpolation="bicubic", jitter_prob=0.8, brightness=0.4, contrast=0.4,
                  saturation=0.2, hue=0.1, grayscale_prob=0.2, blur_prob=(1.0, 0.1), blur_sigma_size=224,
                  solarize_prob=(0.0, 0.2), **NO_EXTRAS)],
    # google-research/simclr data_util.py, colour strength 1.0.
    "simclr_v2": [dict(crop_scale=(0.08, 1.0), interpolation="bicubic", jitter_prob=0.8, **COLOUR_08,
                       grayscale_prob=0.2, blur_prob=(0.5, 0.5), blur_sigma_size=224, solarize_prob=(0.0, 0.0),
                       **NO_EXTRAS)],
    "moco_v2": [MOCO_AUG_PLUS],
    # lemniscate.pytorch main.py: grey, then ColorJitter(0.4, 0.4, 0.4, 0.4) always; no blur.
    "npid": [dict(crop_scale=(0.2, 1.0), interpolation="bilinear", jitter_prob=1.0, brightness=0.4, contrast=0.4,
                  saturation=0.4, hue=0.4, grayscale_prob=0.2, grayscale_first=True, blur_prob=(0.0, 0.0),
                  blur_sigma_size=224, solarize_prob=(0.0, 0.0), randaugment_ops=0, erasing_prob=0.0)],
    # torchvision ImageNet training: crop and flip only.
    "supervised": [dict(crop_scale=(0.08, 1.0), interpolation="bilinear", jitter_prob=0.0, **COLOUR_04,
                        grayscale_prob=0.0, blur_prob=(0.0, 0.0), blur_sigma_size=224, solarize_prob=(0.0, 0.0),
                        **NO_EXTRAS)],
    # PyContrast datasets/util.py aug 'D' with the MoCo queue (crops 0.2-1).
    "infomin": [dict(MOCO_AUG_PLUS, **COLOUR_08, randaugment_ops=2)],
    # swav src/multicropdataset.py l. 30-85 and main_swav.py --nmb_crops 2 6 --size_crops 224 96
    # --min_scale_crops 0.14 0.05 --max_scale_crops 1 0.14: get_color_distortion(s=1.0), PIL blur
    # p 0.5 (sigma in pixels of the 224 or 96 px crop).
    "swav": [dict(crop_scale=(0.14, 1.0), interpolation="bilinear", jitter_prob=0.8, **COLOUR_08,
                  grayscale_prob=0.2, blur_prob=(0.5, 0.5), blur_sigma_size=224, solarize_prob=(0.0, 0.0),
                  **NO_EXTRAS)] * 2
    + [dict(crop_scale=(0.05, 0.14), interpolation="bilinear", jitter_prob=0.8, **COLOUR_08, grayscale_prob=0.2,
            blur_prob=(0.5, 0.5), blur_sigma_size=96, solarize_prob=(0.0, 0.0), **NO_EXTRAS)] * 6,
    # szq0214/S2-BNN Distillation_only/step1/main_moco.py l. 258-270 (--aug-plus, "lite": jitter
    # p 0.6, blur p 0.2).
    "s2bnn": [dict(MOCO_AUG_PLUS, jitter_prob=0.6, blur_prob=(0.2, 0.2))],
    # frank-xwang/CLD-UnsupervisedLearning datasets/dataloader.py l. 41-48 (no --aug-plus):
    # ColorJitter(0.4, 0.4, 0.4, 0.4) always, then grey; no blur.
    "cld_npid": [dict(crop_scale=(0.2, 1.0), interpolation="bilinear", jitter_prob=1.0, brightness=0.4,
                      contrast=0.4, saturation=0.4, hue=0.4, grayscale_prob=0.2, blur_prob=(0.0, 0.0),
                      blur_sigma_size=224, solarize_prob=(0.0, 0.0), **NO_EXTRAS)],
    # The same file l. 27-50 with --aug-plus --erasing (scripts/cifar/train_cifar10_moco_cld.sh):
    # MoCo v2's aug at 32 px (PIL blur sigma in pixels of the 32 px image), then
    # RandomErasing(p=1.0); three views (train_cifar_moco_cld.py l. 258-274).
    "cld_moco": [dict(MOCO_AUG_PLUS, blur_sigma_size=32, erasing_prob=1.0)],
}
# Views each row's method takes (one YAML entry serves them all where the table has one).
VIEWS_NEEDED = {"demo": 1, "byol": 2, "simclr_v2": 2, "moco_v2": 2, "npid": 1, "supervised": 1, "infomin": 2,
                "swav": 8, "s2bnn": 1, "cld_npid": 2, "cld_moco": 3}


@pytest.mark.parametrize("config", sorted(REFERENCE_VIEWS))
def test_shipped_views_match_their_reference_code(config):
    from burn_tf.config import load_config

    cfg = load_config(config, overrides=["backbone.input_size=48"])
    views = cfg.views
    assert views, f"{config}.yaml has no explicit views"
    assert len(views) == len(REFERENCE_VIEWS[config])
    assert len(cfg.view_configs()) == VIEWS_NEEDED[config]
    for i, (view, want) in enumerate(zip(views, REFERENCE_VIEWS[config])):
        assert set(RECIPE_KEYS) <= set(want), f"table entry {config}[{i}] misses {set(RECIPE_KEYS) - set(want)}"
        got = {key: getattr(view, key) for key in want}
        assert got == want, f"{config} views[{i}]"
        assert view.flip_prob == 0.5 and view.crop_ratio == pytest.approx((3 / 4, 4 / 3))
        assert view.blur_sigma == (0.1, 2.0)
    # Every large view at the student's size: a 48 px run gets 48 px views.
    assert views[0].image_size == 48
