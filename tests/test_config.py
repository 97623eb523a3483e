import pytest

from burn_tf.config import ConfigError, PretrainConfig, load_config


def test_demo_and_imagenet_configs_load():
    for path in ("configs/demo.yaml", "configs/imagenet/burn_stage1.yaml", "configs/imagenet/burn_stage2.yaml"):
        cfg = load_config(path)
        assert isinstance(cfg, PretrainConfig)


def test_overrides_are_typed_and_applied():
    cfg = load_config("configs/demo.yaml", ["train.epochs=3", "method.head=dense", "data.crop_scale=[0.2, 1.0]"])
    assert cfg.train.epochs == 3 and cfg.method.head == "dense" and cfg.data.crop_scale == (0.2, 1.0)


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
     ("student.stage=5", "stage"),
     ("optimizer.name=sgd", "optimizer.name"),
     ("train.jit_compile=1", "train.jit_compile")],
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
