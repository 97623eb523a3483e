"""``method.name`` in a config → the method's class (and through it, its own ``Config``).

A method registers itself with the :func:`register` decorator in its own file;
``burn_tf.methods`` imports every method file, so the registry is complete once that
package is imported.
"""

from __future__ import annotations

from burn_tf.schema import ConfigError

_METHODS: dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: makes ``cls`` selectable as ``method: {name: cls.method_name}``."""
    name = getattr(cls, "method_name", None)
    if not name:
        raise TypeError(f"{cls.__name__} needs a class attribute method_name to be registered")
    if name in _METHODS and _METHODS[name] is not cls:
        raise TypeError(f"method name {name!r} is taken by {_METHODS[name].__name__}")
    _METHODS[name] = cls
    return cls


def method_names() -> list[str]:
    return sorted(_METHODS)


def method_class(name: str) -> type:
    """The registered class for ``name``; a ConfigError lists the valid names otherwise."""
    try:
        return _METHODS[name]
    except KeyError:
        raise ConfigError(f"method.name={name!r} is not one of {method_names()}") from None
