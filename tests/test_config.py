import dataclasses
import typing

import pytest

from burn_tf.config import ConfigError, PretrainConfig, load_config
from burn_tf.schema import build_dataclass


def test_demo_and_imagenet_configs_load():
    for path in ("configs/demo.yaml", "configs/imagenet/burn_stage1.yaml", "configs/imagenet/burn_stage2.yaml"):
        cfg = load_config(path)
        assert isinstance(cfg, PretrainConfig)


def test_overrides_are_typed_and_applied():
    cfg = load_config("configs/demo.yaml", ["train.epochs=3", "method.head=dense", "views=[{crop_scale: [0.2, 1.0]}]"])
    assert cfg.train.epochs == 3 and cfg.method.head == "dense"
    assert [v.crop_scale for v in cfg.view_configs()] == [(0.2, 1.0)]
    assert cfg.view_configs()[0].image_size == cfg.backbone.input_size == 48  # demo.yaml's student size


def test_unknown_key_lists_valid_keys(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("method:\n  temprature: 0.2\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    message = str(err.value)
    assert "method.temprature" in message and "temperature" in message and str(bad) in message


@pytest.mark.parametrize(
    "override, key",
    [("method.feature_similarity=dot", "method.feature_similarity"),
     ("train.epochs=many", "train.epochs"),
     ("backbone.stage=5", "stage"),
     ("backbone.kind=vgg", "backbone.kind"),
     ("optimizer.name=sgd", "optimizer.name"),
     ("train.jit_compile=1", "train.jit_compile"),
     ("optimizer.warmup_epochs=-5", "optimizer.warmup_epochs"),
     ("data.limit=-1", "data.limit"),
     ("teacher.input_size=0", "teacher.input_size")],
)
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key):
        load_config(None, [override])


def test_hash_is_stable_and_sensitive():
    a, b = load_config(None), load_config(None)
    assert a.hash() == b.hash()
    assert load_config(None, ["method.temperature=0.1"]).hash() != a.hash()


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_method_name_selects_its_own_config_and_its_keys():
    from burn_tf.methods import BURNConfig, S2BNNConfig

    assert isinstance(load_config("demo").method, BURNConfig)
    assert isinstance(load_config("s2bnn").method, S2BNNConfig)
    with pytest.raises(ConfigError) as err:
        load_config("s2bnn", ["method.head_width=32"])
    assert "method.head_width" in str(err.value) and "head_hidden" in str(err.value)
    with pytest.raises(ConfigError, match="burn.*s2bnn"):
        load_config(None, ["method.name=simclr"])


def test_views_one_for_all_or_one_per_view():
    cfg = load_config(None, ["views=[{blur_prob: [1.0, 0.1], solarize_prob: [0.0, 0.2]}]"])
    views = cfg.view_configs()
    assert [v.blur_prob[0] for v in views] == [1.0, 0.1] and [v.solarize_prob[0] for v in views] == [0.0, 0.2]
    cfg = load_config(None, ["views=[{blur_prob: 1.0}, {blur_prob: 0.1, image_size: 96}]"])
    assert [(v.blur_prob[0], v.image_size) for v in cfg.view_configs()] == [(1.0, 224), (0.1, 96)]
    with pytest.raises(ConfigError, match="needs 1 view"):
        load_config(None, ["method.symmetric=false", "views=[{}, {}]"])
    with pytest.raises(ConfigError, match=r"views\[1\]\.blur_prob"):
        load_config(None, ["views=[{}, {blur_prob: [0.2, 0.3]}]"])
    with pytest.raises(ConfigError, match=r"views\[0\]"):
        load_config(None, ["views=[{crop_scale: [2, 3]}]"])


def test_shipped_configs_resolve_by_name_from_anywhere(tmp_path, monkeypatch):
    from burn_tf.config import CONFIG_DIR, resolve_config_path

    monkeypatch.chdir(tmp_path)
    assert resolve_config_path("demo") == CONFIG_DIR / "demo.yaml"
    assert resolve_config_path("configs/imagenet/burn_stage1.yaml") == CONFIG_DIR / "imagenet" / "burn_stage1.yaml"
    with pytest.raises(ConfigError, match="shipped configs: .*demo.yaml"):
        resolve_config_path("nope")


def test_optional_fields_are_checked_in_both_spellings():
    @dataclasses.dataclass
    class Section:
        limit: typing.Optional[int] = None
        scale: float | None = None  # PEP 604: its origin is types.UnionType, not typing.Union

    assert build_dataclass(Section, {"limit": 3, "scale": 2}, "s.") == Section(3, 2.0)
    assert build_dataclass(Section, {"scale": None}, "s.") == Section()
    for values, key in (({"scale": "big"}, "s.scale"), ({"limit": "many"}, "s.limit")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            build_dataclass(Section, values, "s.")
