"""Exported backbones: the one format every evaluator, the model card and the export read.

It is the contract between pretraining and everything after it. An exported backbone is
a directory::

    backbone/
      backbone.keras        the Keras model (images in [0, 1] → pooled features)
      backbone.weights.h5   its weights alone
      metadata.json         what it is: architecture, stage, input size, config hash, metrics
      classifier.keras      the student's self-supervised head, put there by pretraining
                            (not by save_backbone; export --with-classifier reads it)

ReActNet-A backbones are rebuilt from ``metadata.json`` and only their weights are read,
so loading never deserialises arbitrary objects. Other Keras models are read from the
``.keras`` file with ``safe_mode=True`` (no lambdas, no pickled code).

A pretraining run keeps one backbone per stage, ``<run>/stage{1,2}/backbone``
(:func:`find_backbone`). Writing is atomic (:mod:`burn_tf.io`): a backbone directory is
either complete or absent.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import tensorflow as tf

from burn_tf.io import atomic_output, atomic_write_json, refuse_existing
from burn_tf.models.reactnet import ReActNetConfig, reactnet_a

FORMAT = "burn_tf-backbone"
FORMAT_VERSION = 1
MODEL_FILE = "backbone.keras"
WEIGHTS_FILE = "backbone.weights.h5"
METADATA_FILE = "metadata.json"
CLASSIFIER_FILE = "classifier.keras"


class BackboneFormatError(ValueError):
    """The path is not a burn_tf backbone (or not a feature extractor)."""


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
    refuse_existing(path, overwrite)
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
    with atomic_output(path, directory=True) as tmp:
        model.save(tmp / MODEL_FILE)
        model.save_weights(tmp / WEIGHTS_FILE)
        atomic_write_json(tmp / METADATA_FILE, meta)
    return path


def load_keras_file(path: str | os.PathLike, error: type[Exception] = ValueError) -> tf.keras.Model:
    """Loads a ``.keras`` file with ``safe_mode=True`` (no lambdas, no pickled code); a bad
    archive raises ``error`` naming the file."""
    try:
        return tf.keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as err:  # noqa: BLE001  (Keras raises many types for a bad archive)
        raise error(f"{path}: could not be loaded as a Keras model ({err})") from None


def read_metadata(path: str | os.PathLike) -> dict:
    """``metadata.json`` of a backbone directory (or of the directory holding a ``.keras``
    file); ``{}`` when there is none, :class:`BackboneFormatError` when it is not ours."""
    path = Path(path)
    meta_file = path / METADATA_FILE if path.is_dir() else path.with_name(METADATA_FILE)
    if not meta_file.exists():
        return {}
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as err:
        raise BackboneFormatError(f"{meta_file}: not valid JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise BackboneFormatError(f"{meta_file}: 'format' is {found!r}, expected {FORMAT!r}")
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
    model = load_keras_file(model_file, BackboneFormatError)
    check_feature_extractor(model, str(model_file))
    return model, meta


def resolve_backbone(backbone) -> tuple[tf.keras.Model, dict]:
    """Accepts a path or a Keras feature extractor; returns (model, metadata)."""
    if isinstance(backbone, (str, os.PathLike)):
        return load_backbone(backbone)
    check_feature_extractor(backbone, getattr(backbone, "name", "backbone"))
    return backbone, {}


def find_backbone(run_dir: str | os.PathLike, stage: int | None = None) -> tuple[Path, int]:
    """``<run>/stage{N}/backbone``: the given stage, else the highest one present."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    stages = [stage] if stage is not None else [2, 1]
    for s in stages:
        path = run_dir / f"stage{s}" / "backbone"
        if path.is_dir():
            return path, s
    wanted = f"stage{stage}/backbone" if stage is not None else "stage2/backbone or stage1/backbone"
    raise FileNotFoundError(f"{run_dir}: no exported backbone ({wanted}); run python -m burn_tf.pretrain first")


def model_stage(model: tf.keras.Model, meta: dict | None = None) -> int | None:
    """ReActNet-A stage (1: FP kernels, 2: binary kernels) from metadata or the model."""
    stage = (meta or {}).get("stage")
    if stage is None and getattr(model, "reactnet_config", None) is not None:
        stage = model.reactnet_config.stage
    return int(stage) if stage is not None else None
