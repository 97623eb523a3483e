"""Strict dataclass configs: YAML mappings checked key by key, errors that name the key.

Every config section of burn_tf is a dataclass; :func:`build_dataclass` turns a mapping into
one, refusing unknown keys (listing the valid ones) and values of the wrong type. It is
the lowest layer of the package, so models, methods and the top-level config share it.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Optional, Union


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key."""


def to_plain(obj):
    """Dataclasses, tuples and lists → plain dicts and lists (YAML/JSON-safe)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def _resolve(annotation):
    if isinstance(annotation, str):
        # Our own annotations under `from __future__ import annotations`.
        annotation = eval(annotation, vars(typing) | {"Optional": Optional})
    return annotation


def coerce(value: Any, annotation, key: str):
    """Checks a YAML value against a dataclass field type (the small set used here)."""
    annotation = _resolve(annotation)
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):  # Optional[float] and float | None alike
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        if len(args) > 1 and isinstance(value, (list, tuple)):
            # e.g. Union[float, Tuple[float, float]]: a list picks the tuple form.
            tuple_like = [a for a in args if typing.get_origin(a) in (tuple, list) or a in (tuple, list)]
            if tuple_like:
                return coerce(value, tuple_like[0], key)
        return coerce(value, args[0], key)
    if dataclasses.is_dataclass(annotation):
        return build_dataclass(annotation, value, key + ".")
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    if annotation is tuple or origin is tuple:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            # A number for a pair (e.g. one blur probability for both views): the
            # dataclass's own check expands or refuses it.
            return float(value)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        item_types = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        if item_types and all(a is float for a in item_types):
            return tuple(coerce(v, float, f"{key}[{i}]") for i, v in enumerate(value))
        return tuple(value)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        (item,) = typing.get_args(annotation) or (Any,)
        return [coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    return value


def build_dataclass(cls, values: Any, prefix: str = ""):
    """``cls(**values)`` with every key and value checked; errors name ``prefix + key``."""
    if dataclasses.is_dataclass(values) and isinstance(values, cls):
        return values
    where = prefix.rstrip(".") or "the top level"
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(prefix + str(k) for k in unknown)}; valid keys in "
            f"{where}: {', '.join(fields)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {name: coerce(value, hints[name], prefix + name) for name, value in values.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        message = str(err)
        # Dataclass checks name their field; add the section when they do not.
        if prefix and not message.startswith(prefix):
            message = f"{prefix.rstrip('.')}: {message}"
        raise ConfigError(message) from None


def check_choice(section: str, key: str, value, valid) -> None:
    if value not in valid:
        raise ConfigError(f"{section}.{key}={value!r} is not one of {tuple(valid)}")


def check_range(section: str, key: str, value, low=None, high=None, low_open=False) -> None:
    """Raises naming ``section.key`` unless low ≤ value ≤ high (low < value with low_open)."""
    bad = (low is not None and (value <= low if low_open else value < low)) or (
        high is not None and value > high
    )
    if bad:
        lo = "" if low is None else (f"> {low}" if low_open else f">= {low}")
        hi = "" if high is None else f"<= {high}"
        raise ConfigError(f"{section}.{key} must be {' and '.join(x for x in (lo, hi) if x)}, got {value!r}")
