"""The table of data sources: a source built by its kind's name, or from a data config.

``SOURCES`` maps each ``data.source`` kind to its function (one module each:
:mod:`~burn_tf.data.source_fashion_mnist`, :mod:`~burn_tf.data.source_tfds`,
:mod:`~burn_tf.data.source_image_folder`, :mod:`~burn_tf.data.source_tfrecord`); the config
checks ``data.source`` against it and pretraining builds through
:func:`source_from_data_config`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import tensorflow as tf

from burn_tf.data.source_fashion_mnist import fashion_mnist
from burn_tf.data.source_image_folder import image_folder
from burn_tf.data.source_tfds import tfds_source
from burn_tf.data.source_tfrecord import tfrecord

SOURCES: dict[str, Callable[..., tf.data.Dataset]] = {
    "fashion_mnist": fashion_mnist,
    "tfds": tfds_source,
    "image_folder": image_folder,
    "tfrecord": tfrecord,
}

# How a data config's fields (``burn_tf.config.DataConfig``: ``data.*``) become the arguments
# of each source in SOURCES, given the feature keys to pass (image_key, label_key). With
# SOURCES the one table of the data sources: the config checks ``data.source`` against
# SOURCES and pretraining builds through :func:`source_from_data_config`. ``data.strict``
# also decodes every file once up front (``validate``), so a corrupt or truncated one is named
# before a run directory is touched, not in the middle of an epoch.
_ARGUMENTS_FROM_DATA_CONFIG: dict[str, Callable[..., dict]] = {
    "fashion_mnist": lambda data, keys: {"split": data.split, "root": data.path},
    "tfds": lambda data, keys: {"name": data.name, "split": data.split, "data_dir": data.data_dir, **keys},
    "image_folder": lambda data, keys: {"path": data.path, "strict": data.strict, "validate": data.strict},
    "tfrecord": lambda data, keys: {"files": data.path, "strict": data.strict, "validate": data.strict, **keys},
}


def source_from_data_config(data, read_labels: bool = True) -> tf.data.Dataset:
    """The source a data config describes (``data``: a ``burn_tf.config.DataConfig``, read
    by its fields). ``data.image_key`` / ``data.label_key`` (None: the source's defaults)
    name the features of a tfds or TFRecord source; ``read_labels=False`` reads no label
    (label -1), so a source without a label feature is fine. ``data.limit`` is the caller's."""
    keys = {}
    if data.image_key is not None:
        keys["image_key"] = data.image_key
    if not read_labels:
        keys["label_key"] = None
    elif data.label_key is not None:
        keys["label_key"] = data.label_key
    if data.source not in _ARGUMENTS_FROM_DATA_CONFIG:
        raise ValueError(f"unknown data source kind {data.source!r}; valid kinds: {', '.join(sorted(SOURCES))}")
    return source_from_config(data.source, **_ARGUMENTS_FROM_DATA_CONFIG[data.source](data, keys))


def source_from_config(kind: str, **kwargs) -> tf.data.Dataset:
    """Build a source by name: ``"fashion_mnist"``, ``"tfds"``, ``"image_folder"`` or
    ``"tfrecord"``; ``kwargs`` go to the matching function."""
    try:
        fn = SOURCES[kind]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown data source kind {kind!r}; valid kinds: {', '.join(sorted(SOURCES))}"
        ) from None
    signature = inspect.signature(fn)
    try:
        signature.bind(**kwargs)
    except TypeError as e:
        raise TypeError(
            f"data source {kind!r}: {e}; accepted arguments: {list(signature.parameters)}"
        ) from None
    return fn(**kwargs)
