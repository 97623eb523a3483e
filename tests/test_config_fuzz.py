"""Malformed configs, generated: every refusal is a ConfigError that names the key it is
about — never a TypeError, KeyError or a traceback from deep inside TensorFlow."""

import copy
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from burn_tf.config import ConfigError, config_from_dict, read_config_values
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
            key = draw(st.text("abcdefghij_", min_size=1, max_size=8).filter(lambda k: k not in values[section]))
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
