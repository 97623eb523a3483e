"""Exported backbones: the one format every evaluator, the model card and TFLite export read.

An exported backbone is a directory::

    backbone/
      backbone.keras        the Keras model (images in [0, 1] → pooled features)
      backbone.weights.h5   its weights alone
      metadata.json         what it is: architecture, stage, input size, config hash, metrics

ReActNet-A backbones are rebuilt from ``metadata.json`` and only their weights are read,
so loading never deserialises arbitrary objects. Other Keras models are read from the
``.keras`` file with ``safe_mode=True`` (no lambdas, no pickled code).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import tensorflow as tf

from burn_tf.models.reactnet import ReActNetConfig, reactnet_a

FORMAT = "burn_tf-backbone"
FORMAT_VERSION = 1
MODEL_FILE = "backbone.keras"
WEIGHTS_FILE = "backbone.weights.h5"
METADATA_FILE = "metadata.json"


class BackboneFormatError(ValueError):
    """The path is not a burn_tf backbone (or not a feature extractor)."""


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` to ``path`` via a temporary file and a rename: all or nothing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj):
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def check_feature_extractor(model: tf.keras.Model, source: str = "model") -> None:
    """Raises unless ``model`` maps one image batch [B,H,W,C] to one feature batch [B,D]."""
    if not isinstance(model, tf.keras.Model):
        raise BackboneFormatError(f"{source}: expected a tf.keras.Model, got {type(model).__name__}")
    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 4:
        shapes = [tuple(i.shape) for i in model.inputs]
        raise BackboneFormatError(
            f"{source}: a feature extractor takes one image input [B,H,W,C]; this model takes {shapes}"
        )
    if len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
        shapes = [tuple(o.shape) for o in model.outputs]
        raise BackboneFormatError(
            f"{source}: a feature extractor returns one pooled feature [B,D]; this model returns {shapes}"
        )


def save_backbone(
    model: tf.keras.Model,
    path: str | os.PathLike,
    metadata: dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Exports ``model`` (images → features) to the directory ``path``, atomically.

    Everything is written into a temporary sibling directory that is renamed into place
    only when complete; an existing ``path`` is kept unless ``overwrite=True``.
    """
    check_feature_extractor(model)
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": model.name,
        "input_shape": list(model.inputs[0].shape[1:]),
        "feature_dim": int(model.outputs[0].shape[-1]),
        **(metadata or {}),
    }
    cfg = getattr(model, "reactnet_config", None)
    if cfg is not None:
        meta.setdefault("architecture", "reactnet_a")
        meta["student"] = dataclasses.asdict(cfg)
        meta["stage"] = cfg.stage
        meta["input_size"] = cfg.input_size
    else:
        meta.setdefault("architecture", "keras")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        model.save(tmp / MODEL_FILE)
        model.save_weights(tmp / WEIGHTS_FILE)
        atomic_write_json(tmp / METADATA_FILE, meta)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def read_metadata(path: str | os.PathLike) -> dict:
    path = Path(path)
    meta_file = path / METADATA_FILE if path.is_dir() else path.with_name(METADATA_FILE)
    if not meta_file.exists():
        return {}
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as err:
        raise BackboneFormatError(f"{meta_file}: not valid JSON ({err})") from None
    if meta.get("format") != FORMAT:
        raise BackboneFormatError(f"{meta_file}: 'format' is {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


def load_backbone(path: str | os.PathLike) -> tuple[tf.keras.Model, dict]:
    """Loads an exported backbone (directory or ``.keras`` file) → (model, metadata)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"backbone {path} does not exist")
    meta = read_metadata(path)
    if path.is_dir():
        if meta.get("architecture") == "reactnet_a":
            try:
                cfg = ReActNetConfig(**meta["student"])
            except (KeyError, TypeError, ValueError) as err:
                raise BackboneFormatError(f"{path / METADATA_FILE}: bad 'student' entry ({err})") from None
            model = reactnet_a(cfg)
            weights = path / WEIGHTS_FILE
            if not weights.exists():
                raise BackboneFormatError(f"{path}: missing {WEIGHTS_FILE}")
            try:
                model.load_weights(weights)
            except (ValueError, OSError) as err:
                raise BackboneFormatError(f"{weights}: does not fit a ReActNet-A {cfg} ({err})") from None
            return model, meta
        model_file = path / MODEL_FILE
    else:
        model_file = path
    if model_file.suffix != ".keras" or not model_file.exists():
        raise BackboneFormatError(
            f"{path}: not a burn_tf backbone (expected a directory with {METADATA_FILE} and "
            f"{MODEL_FILE}, or a .keras file)"
        )
    try:
        model = tf.keras.models.load_model(model_file, compile=False, safe_mode=True)
    except Exception as err:  # Keras raises many types for a bad archive
        raise BackboneFormatError(f"{model_file}: could not be loaded as a Keras model ({err})") from None
    check_feature_extractor(model, str(model_file))
    return model, meta


def resolve_backbone(backbone) -> tuple[tf.keras.Model, dict]:
    """Accepts a path or a Keras feature extractor; returns (model, metadata)."""
    if isinstance(backbone, (str, os.PathLike)):
        return load_backbone(backbone)
    check_feature_extractor(backbone, getattr(backbone, "name", "backbone"))
    return backbone, {}
