"""The saved (exported) backbone format: the one format every evaluator, the model card and
the export read.

It is the contract between pretraining and everything after it. Named for what it holds —
a backbone *saved to disk* — beside :mod:`burn_tf.models.trained_network` (the network a
method trains, in memory) and :mod:`burn_tf.build` (a stage's parts). An exported backbone
is a directory::

    backbone/
      backbone.keras        the Keras model (images in [0, 1] → pooled features)
      backbone.weights.h5   its weights alone
      metadata.json         what it is: architecture, stage, input size, config hash, metrics,
                            and the sha256 of every other file (``sha256``: name → hex digest)
      classifier.keras      the student's self-supervised head, put there by pretraining
                            (not by save_backbone; export --with-classifier reads it)

ReActNet-A backbones and larq-zoo students (``architecture: larq_zoo``, ``student``: the
zoo model's ``name``, ``input_size`` and ``stage``) are rebuilt from ``metadata.json`` and
only their weights are read, so loading never deserialises arbitrary objects. Other Keras models are read from the
``.keras`` file with ``safe_mode=True`` (no lambdas, no pickled code).

Integrity: loading checks every file ``metadata.json`` lists against its sha256 and names
the file that differs (a weights file edited in place still parses, and would otherwise
load silently). A directory without ``metadata.json`` is refused unless the caller passes
``allow_missing_metadata=True`` (then ``backbone.keras`` loads unverified, with ``safe_mode``).
A single ``.keras`` file is any Keras feature extractor (checked against a ``metadata.json``
beside it when there is one). Backbones of format version 1 (before checksums) load
unverified.

A pretraining run keeps one backbone per stage, ``<run>/stage{1,2}/backbone``
(:func:`find_backbone`). Writing is atomic (:mod:`burn_tf.io`): a backbone directory is
either complete or absent.

An FP ResNet pretrained by burn_tf (``backbone.kind`` resnet18 / resnet50, e.g. MoCo v2 in
``configs/demo_teacher.yaml``) is a teacher again: :func:`build_teacher_from_export` (what
``teacher.weights: <run>/stage1/backbone`` does) rebuilds the ResNet the metadata names and
reads ``backbone.weights.h5`` — JSON and HDF5 only, no pickled code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import tensorflow as tf

from burn_tf.io import atomic_output, atomic_write_json, refuse_existing
from burn_tf.models.larq_zoo import ZooStudentConfig, build_zoo_student
from burn_tf.models.reactnet import ReActNetConfig, reactnet_a
from burn_tf.models.teacher import build_teacher_backbone, freeze

FORMAT = "burn_tf-backbone"
# 2: metadata.json holds the sha256 of every file (version 1 backbones load unverified).
FORMAT_VERSION = 2
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
    zoo = getattr(model, "zoo_config", None)
    if cfg is not None or zoo is not None:
        meta.setdefault("architecture", "reactnet_a" if cfg is not None else "larq_zoo")
        meta["student"] = dataclasses.asdict(cfg if cfg is not None else zoo)
        meta["stage"] = (cfg or zoo).stage
        meta["input_size"] = (cfg or zoo).input_size
    else:
        meta.setdefault("architecture", "keras")
    with atomic_output(path, directory=True) as tmp:
        model.save(tmp / MODEL_FILE)
        model.save_weights(tmp / WEIGHTS_FILE)
        meta["sha256"] = {name: file_sha256(tmp / name) for name in (MODEL_FILE, WEIGHTS_FILE)}
        atomic_write_json(tmp / METADATA_FILE, meta)
    return path


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record_checksums(path: str | os.PathLike) -> dict:
    """Adds the sha256 of every file in the backbone directory ``path`` (e.g. a head saved
    beside it after :func:`save_backbone`) to its ``metadata.json``, rewritten atomically."""
    path = Path(path)
    meta = read_metadata(path)
    if not meta:
        raise BackboneFormatError(f"{path / METADATA_FILE}: missing — not a burn_tf backbone export")
    meta["sha256"] = {p.name: file_sha256(p) for p in sorted(path.iterdir())
                      if p.is_file() and p.name != METADATA_FILE}
    atomic_write_json(path / METADATA_FILE, meta)
    return meta


def verify_checksums(path: str | os.PathLike, meta: dict, names=None) -> None:
    """Raises :class:`BackboneFormatError` naming the first file of the backbone directory
    ``path`` (of ``names``; default all that ``meta`` lists) whose sha256 differs from
    ``metadata.json``'s, or that is missing. Format version 1 has no checksums: nothing to do."""
    path = Path(path)
    recorded = meta.get("sha256")
    if recorded is None:
        if int(meta.get("format_version", 1)) >= 2:
            raise BackboneFormatError(f"{path / METADATA_FILE}: no 'sha256' entry (format version "
                                      f"{meta.get('format_version')} records one for every file)")
        return
    if not isinstance(recorded, dict):
        raise BackboneFormatError(f"{path / METADATA_FILE}: 'sha256' must map file names to digests")
    for name in recorded if names is None else [n for n in names if n in recorded]:
        file = path / name
        if not file.is_file():
            raise BackboneFormatError(f"{file}: missing — metadata.json lists it (the export is incomplete)")
        actual = file_sha256(file)
        if actual != recorded[name]:
            raise BackboneFormatError(
                f"{file}: sha256 {actual[:16]}… differs from the {str(recorded[name])[:16]}… recorded in "
                f"{METADATA_FILE} — the file changed after export (damaged or edited); re-export it"
            )


def load_keras_file(path: str | os.PathLike, error: type[Exception] = ValueError) -> tf.keras.Model:
    """Loads a ``.keras`` file with ``safe_mode=True`` (no lambdas, no pickled code); a bad
    archive raises ``error`` naming the file."""
    try:
        return tf.keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as err:
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


def load_backbone(path: str | os.PathLike, allow_missing_metadata: bool = False) -> tuple[tf.keras.Model, dict]:
    """Loads an exported backbone (directory or ``.keras`` file) → (model, metadata).

    Every file ``metadata.json`` lists must match its sha256. A directory without
    ``metadata.json`` is refused unless ``allow_missing_metadata=True`` (its ``backbone.keras``
    then loads unverified; metadata ``{}``).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"backbone {path} does not exist")
    meta = read_metadata(path)
    if path.is_dir() and not meta and (path / MODEL_FILE).exists() and not allow_missing_metadata:
        raise BackboneFormatError(
            f"{path / METADATA_FILE}: missing, so nothing says what {path} holds or whether its files are "
            f"intact; re-export it, or load it unverified with allow_missing_metadata=True"
        )
    if meta:
        verify_checksums(path if path.is_dir() else path.parent, meta,
                         names=None if path.is_dir() else [path.name])
    if path.is_dir():
        if meta.get("architecture") in REBUILT_ARCHITECTURES:
            return _rebuild(path, meta), meta
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


# The architectures rebuilt from metadata.json: 'architecture' → (what it is, the config type of 'student').
REBUILT_ARCHITECTURES = {"reactnet_a": ("ReActNet-A", ReActNetConfig),
                         "larq_zoo": ("larq-zoo student", ZooStudentConfig)}


def _rebuild(path: Path, meta: dict) -> tf.keras.Model:
    """The network ``metadata.json``'s ``architecture`` and ``student`` describe, with the
    weights of ``backbone.weights.h5`` (no ``.keras`` file is deserialised)."""
    meta_file = path / METADATA_FILE
    what, config_type = REBUILT_ARCHITECTURES[meta["architecture"]]
    student = meta.get("student")
    if not isinstance(student, dict):
        raise BackboneFormatError(f"{meta_file}: key 'student' must be a mapping of the {what}'s config, "
                                  f"got {student!r}")
    try:
        cfg = config_type(**student)
    except (TypeError, ValueError) as err:
        raise BackboneFormatError(f"{meta_file}: bad 'student' entry for architecture "
                                  f"{meta['architecture']!r} ({err})") from None
    if isinstance(cfg, ZooStudentConfig):
        model = build_zoo_student(cfg.name, cfg.input_size, cfg.stage, model_name=meta.get("name"))
    else:
        model = reactnet_a(cfg)
    weights = path / WEIGHTS_FILE
    if not weights.exists():
        raise BackboneFormatError(f"{path}: missing {WEIGHTS_FILE}")
    try:
        model.load_weights(weights)
    except (ValueError, OSError) as err:
        raise BackboneFormatError(f"{weights}: does not fit a {what} {cfg} ({err})") from None
    return model


def resolve_backbone(backbone, allow_missing_metadata: bool = False) -> tuple[tf.keras.Model, dict]:
    """Accepts a path or a Keras feature extractor; returns (model, metadata)."""
    if isinstance(backbone, (str, os.PathLike)):
        return load_backbone(backbone, allow_missing_metadata)
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
    """The binary student's stage (1: FP kernels, 2: binary kernels) of a ReActNet-A or a
    larq-zoo student, from metadata or the model."""
    stage = (meta or {}).get("stage")
    cfg = getattr(model, "reactnet_config", None) or getattr(model, "zoo_config", None)
    if stage is None and cfg is not None:
        stage = cfg.stage
    return int(stage) if stage is not None else None


def _export_head(path: Path, feature_dim: int, meta: dict) -> tf.keras.Model:
    """The head a pretraining run saved beside its backbone (``classifier.keras``, or the
    only other ``.keras`` file — e.g. a projector), loaded with ``safe_mode``."""
    heads = sorted(p for p in path.glob("*.keras") if p.name != MODEL_FILE)
    chosen = [p for p in heads if p.name == CLASSIFIER_FILE] or heads
    if len(chosen) != 1:
        found = ", ".join(p.name for p in heads) or "none"
        raise BackboneFormatError(
            f"{path}: a teacher with its head needs {CLASSIFIER_FILE} or exactly one other head file "
            f"beside {MODEL_FILE} (found: {found})"
        )
    verify_checksums(path, meta, names=[chosen[0].name])
    head = load_keras_file(chosen[0], BackboneFormatError)
    shapes = [tuple(t.shape) for t in (*head.inputs, *head.outputs)]
    if len(head.inputs) != 1 or len(head.outputs) != 1 or shapes[0] != (None, feature_dim) or len(shapes[1]) != 2:
        raise BackboneFormatError(
            f"{chosen[0]}: a teacher head maps the {feature_dim}-d feature to logits [B, C]; this one "
            f"maps {shapes[:-1]} to {shapes[-1]}"
        )
    return head


def build_teacher_from_export(
    path: str | os.PathLike,
    kind: str,
    input_size: int | None = None,
    small_input_stem: bool = False,
    include_head: bool = False,
) -> tf.keras.Model:
    """A frozen teacher from an FP ResNet that burn_tf pretrained and exported
    (``<run>/stage1/backbone``): images in [0, 1] → pooled feature (or, ``include_head``,
    the logits of the head the run saved beside it: a supervised run's ``classifier.keras``).

    ``kind`` and ``small_input_stem`` must be what ``metadata.json`` records
    (``backbone_config``); ``input_size`` None: the size the export was trained at. Errors
    name the file that is missing, damaged or of another architecture.
    """
    path = Path(path)
    meta_file = path / METADATA_FILE
    if not path.is_dir():
        raise FileNotFoundError(f"teacher export {path} is not a directory (expected <run>/stage1/backbone)")
    if not meta_file.exists():
        hint = (f"; {path} is a run directory, pass {path / 'stage1' / 'backbone'}"
                if (path / "stage1" / "backbone").is_dir() else "")
        raise BackboneFormatError(f"{meta_file}: missing — not a burn_tf backbone export{hint}")
    meta = read_metadata(path)
    exported = meta.get("backbone_config")
    if not isinstance(exported, dict) or "kind" not in exported:
        raise BackboneFormatError(
            f"{meta_file}: no 'backbone_config' with a 'kind' ({meta.get('architecture')!r} export): only a "
            "resnet18/resnet50 backbone pretrained by burn_tf can be a teacher"
        )
    exported_stem = bool(exported.get("small_input_stem", False))
    if exported["kind"] != kind or exported_stem != bool(small_input_stem):
        raise BackboneFormatError(
            f"{meta_file}: the export is backbone.kind={exported['kind']!r} with small_input_stem="
            f"{exported_stem}, but the teacher is configured as teacher.kind={kind!r} with "
            f"teacher.small_input_stem={bool(small_input_stem)}; make them match"
        )
    verify_checksums(path, meta, names=[WEIGHTS_FILE])
    size = int(input_size or exported.get("input_size") or meta["input_shape"][0])
    backbone = build_teacher_backbone(kind, (size, size, 3), small_input_stem)
    weights = path / WEIGHTS_FILE
    if not weights.exists():
        raise BackboneFormatError(f"{weights}: missing — the export is incomplete")
    try:
        backbone.load_weights(weights)
    except Exception as err:
        raise BackboneFormatError(f"{weights}: does not load into a {kind} teacher ({err})") from None
    model = freeze(backbone, name=f"teacher_{kind}")
    if not include_head:
        return model
    head = _export_head(path, int(model.output_shape[-1]), meta)
    head.trainable = False
    inputs = tf.keras.Input(shape=model.input_shape[1:], name="images")
    # training=False in the graph: a head's BatchNorm keeps its statistics (as the backbone's).
    model = tf.keras.Model(inputs, head(model(inputs), training=False), name=f"teacher_{kind}_with_head")
    model.trainable = False
    return model
