"""Malformed configs, generated: every refusal is a ConfigError that names the key it is
about — never a TypeError, KeyError or a traceback from deep inside TensorFlow."""

import copy
import dataclasses
import math
import typing

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from burn_tf.build import build_method, build_training_optimizer
from burn_tf.config import (
    AugmentConfig,
    BackboneConfig,
    ConfigError,
    DataConfig,
    OptimizerConfig,
    TeacherConfig,
    TrainConfig,
    config_from_dict,
    read_config_values,
)
from burn_tf.data.pipeline import multi_view_dataset
from burn_tf.methods.registry import method_class, method_names
from burn_tf.pretrain import stages_of

BASE = read_config_values("demo")
BASE["train"].update(strategy="default", checkpoint_every_steps=0)

garbage = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


@st.composite
def malformed(draw):
    """The demo config with 1-3 mutations: a value replaced by garbage, an unknown key added,
    or a whole section replaced."""
    values = copy.deepcopy(BASE)
    touched = []
    for _ in range(draw(st.integers(1, 3))):
        section = draw(st.sampled_from(sorted(values)))
        kind = draw(st.sampled_from(["value", "value", "value", "unknown", "section"]))
        if kind == "section" or not isinstance(values[section], dict):
            values[section] = draw(garbage)
            touched.append((section, None))
        elif kind == "unknown" or not values[section]:  # an emptied section has no key to replace
            taken = values[section]
            key = draw(st.text("abcdefghij_", min_size=1, max_size=8).filter(lambda k, taken=taken: k not in taken))
            values[section][key] = draw(garbage)
            touched.append((section, key))
        else:
            key = draw(st.sampled_from(sorted(values[section])))
            values[section][key] = draw(garbage)
            touched.append((section, key))
    return values, touched


def _names_a_touched_key(message: str, touched) -> bool:
    for section, key in touched:
        if key is not None and key in message:
            return True
        if key is None and section in message:
            return True
    return False


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(malformed())
def test_malformed_configs_fail_with_a_config_error_naming_the_key(case):
    values, touched = case
    try:
        cfg = config_from_dict(values)
        stages_of(cfg, "all")
    except ConfigError as err:
        message = str(err)
        # A mutation can also surface through a key it affects (views need the method's
        # view count): the message names a key of a touched section at least.
        assert _names_a_touched_key(message, touched) or any(s in message for s, _ in touched), (message, touched)
        return
    # Accepted: then every number is finite and every size positive.
    for section in ("train", "optimizer", "backbone", "method"):
        for key, value in vars(getattr(cfg, section)).items():
            if isinstance(value, float):
                assert math.isfinite(value), f"{section}.{key}={value} was accepted"


@pytest.mark.parametrize("override, key", [
    ("train.strategy=gpu", "train.strategy"),
    ("train.checkpoint_every_steps=-1", "train.checkpoint_every_steps"),
    ("train.keep_checkpoints=0", "train.keep_checkpoints"),
    ("train.steps_per_epoch=0", "train.steps_per_epoch"),
    ("train.mixed_precision=maybe", "train.mixed_precision"),
])
def test_new_train_keys_are_checked(override, key):
    from burn_tf.config import load_config

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config("demo", [override])


# --- every number of every section, drawn negative or zero ----------------------------------
# A negative number is refused with a ConfigError naming its key (no field here means
# anything by one, except the few listed); zero is refused by name or gives a config whose
# part it configures builds and runs (model, optimizer step, augmented views, pipeline).

TINY = read_config_values("demo", [
    "teacher.kind=resnet18", "teacher.weights=null", "teacher.small_input_stem=true",
    "teacher.input_size=32", "backbone.input_size=32", "backbone.width_multiplier=0.125",
    "method.head_width=16", "train.batch_size=4", "train.verbose=0", "data.limit=8",
])
# Fields where a negative number is meaningful, and why: none (backbone.pad_values, the value
# a binary conv pads its input with, is 0 or 1: the only two LCE's binary conv takes).
NEGATIVE_ALLOWED: set[tuple[str, str]] = set()


def _numeric_fields(cls) -> list[tuple[str, type]]:
    """(name, int | float | tuple) of every number-valued field (Optional or not, pairs)."""
    hints = typing.get_type_hints(cls)
    fields = []
    for f in dataclasses.fields(cls):
        args = [a for a in typing.get_args(hints[f.name]) if a is not type(None)] or [hints[f.name]]
        kind = args[0]
        if kind in (int, float):
            fields.append((f.name, kind))
        elif typing.get_origin(kind) is tuple and set(typing.get_args(kind)) == {float}:
            fields.append((f.name, tuple))
    return fields


SECTIONS = {"data": DataConfig, "teacher": TeacherConfig, "train": TrainConfig, "backbone": BackboneConfig,
            "optimizer": OptimizerConfig, "views": AugmentConfig}
NUMERIC_KEYS = sorted(
    [(section, name, kind) for section, cls in SECTIONS.items() for name, kind in _numeric_fields(cls)]
    + [(f"method:{m}", name, kind) for m in method_names() for name, kind in _numeric_fields(method_class(m).Config)]
)


def test_the_numeric_field_list_is_complete():
    # A new numeric field joins the draw below by itself; this guards the type walk.
    keys = {(s, n) for s, n, _ in NUMERIC_KEYS}
    assert {("optimizer", "warmup_epochs"), ("data", "limit"), ("teacher", "input_size"),
            ("views", "crop_scale"), ("method:burn", "temperature"), ("train", "seed")} <= keys
    assert len(NUMERIC_KEYS) > 80


def _images(n=8, size=28):
    rng = np.random.default_rng(0)
    return tf.data.Dataset.from_tensor_slices(
        (rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), np.arange(n) % 10))


def _exercise(cfg, section: str) -> None:
    """Builds and runs the part of ``cfg`` that ``section`` configures."""
    if section in ("data", "views"):
        batch = next(iter(multi_view_dataset(
            _images(), cfg.view_configs(), cfg.train.batch_size, seed=cfg.train.seed,
            shuffle_buffer=cfg.data.shuffle_buffer)))
        assert all(np.isfinite(v.numpy()).all() for v in batch)
    elif section == "train":
        tf.keras.utils.set_random_seed(cfg.train.seed + 1)
        stages_of(cfg, "all")
    elif section == "optimizer":
        optimizer = build_training_optimizer(cfg, steps_per_epoch=2)
        weight = tf.Variable(tf.ones((3, 3)))
        optimizer.apply_gradients([(tf.fill((3, 3), 0.5), weight)])
        assert np.isfinite(weight.numpy()).all()
    else:  # backbone, teacher, method: the method's networks are built
        build_method(cfg, stage=1).build_all()


def _with(section: str, name: str, kind, number) -> dict:
    """The tiny config with ``section.name`` (``method:<name>``: that method's key) = number."""
    value = [number, number] if kind is tuple else number
    values = copy.deepcopy(TINY)
    if section == "views":
        values["views"] = [{name: value}]
    elif section.startswith("method:"):
        method = section.split(":")[1]
        # The tiny batch of 4 takes at most 2 CLD groups and 2 split-BatchNorm groups (MoCo's
        # shuffled BN, default 8); every other key is drawn alone.
        fits_batch = {"burn": {"head_width": 16}, "cld": {"num_groups": 2}}.get(method, {})
        if "bn_splits" in {f.name for f in dataclasses.fields(method_class(method).Config)}:
            fits_batch = {**fits_batch, "bn_splits": 2}
        values["method"] = {"name": method, **fits_batch, name: value}
    else:
        values[section][name] = value
    return values


def _negative(kind):
    return st.integers(-10**6, -1) if kind is int else st.floats(-1e6, -1e-6)


@pytest.mark.parametrize("section, name, kind", NUMERIC_KEYS, ids=[f"{s}.{n}" for s, n, _ in NUMERIC_KEYS])
@settings(max_examples=3, deadline=None)
@given(data=st.data())
def test_negative_numbers_are_refused_by_name(section, name, kind, data):
    number = data.draw(_negative(kind))
    try:
        config_from_dict(_with(section, name, kind, number))
    except ConfigError as err:
        assert name in str(err), (str(err), section, name, number)
        return
    assert (section, name) in NEGATIVE_ALLOWED, f"{section}.{name}={number} was accepted"


# Few examples: an accepted zero of a model key builds the tiny method (~1-3 s each).
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(NUMERIC_KEYS), negative=st.booleans(), data=st.data())
def test_zero_or_allowed_numbers_are_refused_by_name_or_work(key, negative, data):
    section, name, kind = key
    if negative and key[:2] in NEGATIVE_ALLOWED:
        number = data.draw(_negative(kind))
    else:
        number = kind(0) if kind is not tuple else 0.0
    try:
        cfg = config_from_dict(_with(section, name, kind, number))
    except ConfigError as err:
        assert name in str(err), (str(err), section, name, number)
        return
    _exercise(cfg, section.split(":")[0])
