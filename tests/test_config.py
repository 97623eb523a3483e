import ast
import configparser
import dataclasses
import hashlib
import json
import re
from pathlib import Path

import pytest

from burn_tf.config import (
    CONFIG_DIR,
    ConfigError,
    DataConfig,
    PretrainConfig,
    load_config,
    resolve_config_path,
)
from burn_tf.data import SOURCES
from burn_tf.models.larq_zoo import ZooStudentConfig
from burn_tf.schema import build_dataclass

REPO = Path(__file__).resolve().parents[1]


def test_demo_and_imagenet_configs_load():
    for path in ("demo", "imagenet/burn_stage1.yaml", REPO / "configs" / "imagenet" / "burn_stage2.yaml"):
        cfg = load_config(path)
        assert isinstance(cfg, PretrainConfig)


def test_overrides_are_typed_and_applied():
    cfg = load_config("demo", ["train.epochs=3", "method.head=dense", "views=[{crop_scale: [0.2, 1.0]}]"])
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
     ("teacher.input_size=0", "teacher.input_size"),
     # The audit of every numeric field (tests/test_config_fuzz.py draws them all):
     ("data.shuffle_buffer=-1", "data.shuffle_buffer"),
     ("teacher.random_head_width=0", "teacher.random_head_width"),
     ("train.seed=-1", "train.seed"),
     ("backbone.bn_momentum=-0.1", "backbone.bn_momentum"),
     ("backbone.bn_momentum=1.5", "backbone.bn_momentum"),
     ("backbone.bn_epsilon=0", "backbone.bn_epsilon"),
     ("backbone.pad_values=-1", "backbone.pad_values"),  # LCE pads a binary conv with 0 or 1 only
     ("backbone.pad_values=0.5", "backbone.pad_values"),
     ("optimizer.weight_decay=-0.0001", "optimizer.weight_decay"),
     ("optimizer.momentum=-0.9", "optimizer.momentum"),
     ("optimizer.lars_eta=0", "optimizer.lars_eta"),
     ("views=[{blur_kernel_frac: -0.1}]", "blur_kernel_frac"),
     ("views=[{blur_kernel_size: 0}]", "blur_kernel_size"),
     ("views=[{solarize_threshold: -1}]", "solarize_threshold")],
)
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key):
        load_config(None, [override])


def test_pad_values_takes_zero_or_one():
    for value in (0, 1):
        assert load_config(None, [f"backbone.pad_values={value}"]).backbone.pad_values == value


@pytest.mark.parametrize("override, key", [
    ("evaluation.knn_k=0", "evaluation.knn_k"),
    ("evaluation.knn_temperature=0", "evaluation.knn_temperature"),
    ("evaluation.linear_epochs=0", "evaluation.linear_epochs"),
    ("evaluation.linear_learning_rate=-0.1", "evaluation.linear_learning_rate"),
    ("evaluation.train_images=-1", "evaluation.train_images"),
    ("evaluation.test_images=0", "evaluation.test_images"),
])
def test_demo_evaluation_numbers_are_checked(override, key):
    from burn_tf.studies.demo import load_demo_config

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_demo_config(overrides=[override])


@pytest.mark.parametrize("key, value", [
    ("data_limit", 0), ("knn_temperature", 0.0), ("linear_learning_rate", -1.0),
])
def test_experiment_budget_numbers_are_checked(key, value):
    from burn_tf.studies.harness import ExperimentConfig

    with pytest.raises(ConfigError, match=key):
        build_dataclass(ExperimentConfig, {key: value}, "")


ZOO = ["backbone.kind=larq_zoo", "backbone.name=QuickNet"]


def test_a_larq_zoo_student_is_named_in_the_backbone_section():
    cfg = load_config(None, [*ZOO, "backbone.input_size=32"])
    assert cfg.backbone.is_binary and cfg.backbone.stages == (1, 2)
    assert cfg.backbone.zoo_config(stage=1) == ZooStudentConfig("QuickNet", 32, 1)


@pytest.mark.parametrize("overrides, words", [
    (["backbone.kind=larq_zoo"], ["backbone.kind=larq_zoo needs backbone.name", "QuickNet"]),
    ([*ZOO[:1], "backbone.name=MobileNet"], ["'MobileNet' is not one of the students", "QuickNetSmall"]),
    ([*ZOO[:1], "backbone.name=DoReFaNet"], ["DoReFaNet", "cannot be a binary student"]),
    ([*ZOO, "backbone.input_size=28"], ["QuickNet", "28 px", "at least 29 px"]),
    ([*ZOO, "backbone.input_size=32", "backbone.width_multiplier=0.25"], ["backbone.width_multiplier=0.25",
                                                                          "ReActNet-A setting", "QuickNet"]),
    ([*ZOO, "backbone.input_size=32", "backbone.blocks=4"], ["backbone.blocks=4"]),
    ([*ZOO, "backbone.input_size=32", "backbone.small_input_stem=true"], ["backbone.small_input_stem"]),
    (["backbone.name=QuickNet"], ["backbone.name='QuickNet'", "backbone.kind=larq_zoo"]),
    # The shipped SwAV's 16 px small crops would shrink a QuickNet map to nothing.
    ([*ZOO, "backbone.width_multiplier=1.0"], ["views[2].image_size=16", "'swav'", "QuickNet", "29 px"]),
])
def test_a_larq_zoo_student_it_cannot_be_is_refused_naming_the_key_model_and_limit(overrides, words):
    with pytest.raises(ConfigError) as err:
        load_config("swav" if "backbone.width_multiplier=1.0" in overrides else None, overrides)
    for word in words:
        assert word in str(err.value)


def test_hash_is_stable_and_sensitive():
    a, b = load_config(None), load_config(None)
    assert a.hash() == b.hash()
    assert load_config(None, ["method.temperature=0.1"]).hash() != a.hash()


def test_a_key_added_later_leaves_the_hash_of_older_runs_alone_at_its_default():
    # backbone.blocks and backbone.name came after comparison runs were logged by this hash:
    # at their defaults (13, null) the hash is the one computed without the keys; any other
    # value is another run.
    cfg = load_config("demo", ["backbone.input_size=48"])
    before_the_keys = cfg.to_dict()
    del before_the_keys["backbone"]["blocks"], before_the_keys["backbone"]["name"]
    assert cfg.hash() == hashlib.sha256(json.dumps(before_the_keys, sort_keys=True).encode()).hexdigest()[:16]
    assert load_config("demo", ["backbone.input_size=48", "backbone.blocks=4"]).hash() != cfg.hash()
    zoo = load_config(None, ["backbone.input_size=48", "backbone.kind=larq_zoo", "backbone.name=QuickNet"])
    assert zoo.hash() != load_config(None, ["backbone.input_size=48", "backbone.kind=larq_zoo",
                                            "backbone.name=BiRealNet"]).hash()


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
    monkeypatch.chdir(tmp_path)
    assert resolve_config_path("demo") == CONFIG_DIR / "demo.yaml"
    assert resolve_config_path("imagenet/burn_stage1") == CONFIG_DIR / "imagenet" / "burn_stage1.yaml"
    assert resolve_config_path("imagenet/burn_stage1.yaml") == CONFIG_DIR / "imagenet" / "burn_stage1.yaml"
    with pytest.raises(ConfigError, match="shipped configs: .*demo.yaml"):
        resolve_config_path("nope")


def test_a_path_is_a_path_from_the_current_directory(tmp_path, monkeypatch):
    # configs/ at the repository root is where the configs live: from the root,
    # configs/demo.yaml is that file; from elsewhere it is a missing file, not silently
    # the shipped demo.yaml.
    monkeypatch.chdir(REPO)
    assert resolve_config_path("configs/demo.yaml").resolve() == (REPO / "configs" / "demo.yaml").resolve()
    assert resolve_config_path("demo").resolve() == (REPO / "configs" / "demo.yaml").resolve()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"configs/demo.yaml does not exist.*shipped configs: .*imagenet/burn_stage1"):
        resolve_config_path("configs/demo.yaml")
    own = tmp_path / "demo.yaml"  # a user's file wins over the shipped config of that name
    own.write_text("train:\n  epochs: 3\n")
    assert resolve_config_path("demo.yaml") == Path("demo.yaml")
    assert load_config("demo.yaml").train.epochs == 3


def test_optional_fields_are_checked_in_both_spellings():
    @dataclasses.dataclass
    class Section:
        limit: int | None = None
        scale: float | None = None  # PEP 604: its origin is types.UnionType, not typing.Union

    assert build_dataclass(Section, {"limit": 3, "scale": 2}, "s.") == Section(3, 2.0)
    assert build_dataclass(Section, {"scale": None}, "s.") == Section()
    for values, key in (({"scale": "big"}, "s.scale"), ({"limit": "many"}, "s.limit")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            build_dataclass(Section, values, "s.")


# --- the supported Python versions: one truth in setup.cfg and scripts/setup.sh -----------

def _setup_cfg_range() -> tuple[tuple[int, int], tuple[int, int]]:
    """(lowest, highest) minor version that setup.cfg's python_requires accepts."""
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    spec = parser["options"]["python_requires"]
    low = re.search(r">=\s*3\.(\d+)", spec)
    below = re.search(r"<\s*3\.(\d+)", spec)
    assert low and below, f"setup.cfg python_requires={spec!r}: expected >=3.X,<3.Y"
    return (3, int(low.group(1))), (3, int(below.group(1)) - 1)


def _setup_sh_ranges() -> dict[str, object]:
    text = (REPO / "scripts" / "setup.sh").read_text()
    check = re.search(r"\((3), (\d+)\) <= sys\.version_info\[:2\] <= \((3), (\d+)\)", text)
    assert check, "scripts/setup.sh: pick_python's version check not found"
    candidates = re.search(r"for candidate in \$\{PYTHON:-\} (.*?); do", text).group(1).split()
    error = re.search(r"burn_tf needs Python ([^(]*)\(", text).group(1)
    return {
        "check": ((3, int(check.group(2))), (3, int(check.group(4)))),
        "candidates": sorted((3, int(c.removeprefix("python3."))) for c in candidates if c != "python3"),
        "error": sorted((3, int(m)) for m in re.findall(r"3\.(\d+)", error)),
    }


def _needs_at_least(tree: ast.AST) -> dict[str, tuple[int, int]]:
    """What in a module needs a newer Python than 3.9, and which version."""
    needs = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) == ("types", "UnionType"):
                needs["types.UnionType"] = (3, 10)
        if isinstance(node, ast.ClassDef) and any(
            "dataclass" in ast.unparse(d) for d in node.decorator_list
        ):
            # build_dataclass evaluates field types (typing.get_type_hints): `X | None`
            # evaluates only from 3.10 on, even under `from __future__ import annotations`.
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and any(
                    isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr) for n in ast.walk(item.annotation)
                ):
                    needs[f"{node.name}.{ast.unparse(item.target)}: {ast.unparse(item.annotation)}"] = (3, 10)
    return needs


def test_setup_cfg_and_setup_sh_accept_the_same_pythons():
    low, high = _setup_cfg_range()
    sh = _setup_sh_ranges()
    every = [(3, minor) for minor in range(low[1], high[1] + 1)]
    assert sh["check"] == (low, high), (sh["check"], (low, high))
    assert sh["candidates"] == every and sh["error"] == every, (sh, every)
    # TensorFlow 2.15.1 has wheels for 3.9-3.11 only.
    assert (3, 9) <= low <= high <= (3, 11)


def test_the_package_parses_and_its_configs_evaluate_on_the_lowest_supported_python():
    low, _ = _setup_cfg_range()
    needs = {}
    for path in sorted((REPO / "burn_tf").rglob("*.py")):
        source = path.read_text()
        # The grammar of the lowest version (e.g. no `match`, no `except*` on 3.9).
        tree = ast.parse(source, str(path), feature_version=low)
        needs.update({f"{path.relative_to(REPO)}: {k}": v for k, v in _needs_at_least(tree).items()})
    too_new = {k: v for k, v in needs.items() if v > low}
    assert not too_new, f"setup.cfg allows Python {low[0]}.{low[1]}, but these need newer: {too_new}"
    # schema.coerce handles both spellings of Optional: it must name types.UnionType, i.e. 3.10+.
    assert any("schema.py: types.UnionType" in k for k in needs)


def test_the_data_sources_are_one_table():
    # burn_tf.data.SOURCES is the one list of data.source kinds: the config accepts exactly
    # those, and a tfds source without a builder name is refused when the config is read.
    for kind in SOURCES:
        assert DataConfig(source=kind, name="cifar10").source == kind
    with pytest.raises(ConfigError, match=r"data\.source='cifar' is not one of \('fashion_mnist', 'tfds'"):
        DataConfig(source="cifar")
    with pytest.raises(ConfigError, match=r"data\.source=tfds needs data\.name"):
        load_config(None, ["data.source=tfds"])
