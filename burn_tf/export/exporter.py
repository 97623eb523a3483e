"""Deployment export of a backbone: one ``.keras`` file, SavedModel or LCE ``.tflite`` plus a report.

:func:`export_model` reads an exported backbone (:mod:`burn_tf.saved_backbone`), optionally
composes it with the ``classifier.keras`` next to it, writes it in the requested format
(refusing a stage-1 model for the binary TFLite export unless ``allow_fp``) and writes the
report ``<out>.json``: source, stage, file size, :func:`burn_tf.summary.model_stats` and,
for ``tflite``, the op counts and :func:`burn_tf.export.tflite.check_tflite`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from burn_tf.export.errors import OVERWRITE_HINT, ExportError
from burn_tf.export.savedmodel import save_savedmodel
from burn_tf.export.tflite import (
    check_tflite,
    lce_small_map_bconvs,
    tflite_op_counts,
    to_tflite,
)
from burn_tf.io import (
    atomic_output,
    atomic_write_bytes,
    atomic_write_json,
    path_size,
    refuse_existing,
)
from burn_tf.saved_backbone import (
    CLASSIFIER_FILE,
    load_keras_file,
    model_stage,
    resolve_backbone,
)
from burn_tf.summary import model_stats

EXPORT_FORMATS = ("keras", "savedmodel", "tflite")


def save_keras_file(model: tf.keras.Model, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """``model.save`` to a single ``.keras`` file, atomically; keeps an existing file."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ExportError(f"{path}: a Keras model file must end in .keras")
    refuse_existing(path, overwrite, OVERWRITE_HINT)
    with atomic_output(path) as tmp:
        model.save(tmp)
        refuse_existing(path, overwrite, OVERWRITE_HINT)  # appeared while we were writing
    return path


def compose_with_classifier(backbone: tf.keras.Model, classifier_path: str | os.PathLike) -> tf.keras.Model:
    """backbone (images → features) followed by the classifier at ``classifier_path``."""
    classifier_path = Path(classifier_path)
    if not classifier_path.exists():
        raise ExportError(
            f"{classifier_path} does not exist: --with-classifier needs the student's head, "
            f"written by the pretraining code next to the backbone"
        )
    classifier = load_keras_file(classifier_path, ExportError)
    feature_dim = int(backbone.outputs[0].shape[-1])
    expected = classifier.inputs[0].shape[-1] if classifier.inputs else None
    if expected is not None and int(expected) != feature_dim:
        raise ExportError(
            f"{classifier_path}: takes {int(expected)}-d features, the backbone gives {feature_dim}-d"
        )
    outputs = classifier(backbone.outputs[0], training=False)
    model = tf.keras.Model(backbone.inputs, outputs, name=f"{backbone.name}_with_classifier")
    for attribute in ("reactnet_config", "zoo_config"):  # what the student is (its stage, for the export)
        if getattr(backbone, attribute, None) is not None:
            setattr(model, attribute, getattr(backbone, attribute))
    return model


def student_kind(model: tf.keras.Model, meta: dict | None) -> str:
    """What the binary student is, for messages: ReActNet-A or the larq-zoo model's name."""
    zoo = getattr(model, "zoo_config", None)
    if zoo is not None or (meta or {}).get("architecture") == "larq_zoo":
        name = zoo.name if zoo is not None else (meta or {}).get("student", {}).get("name", "student")
        return f"larq-zoo {name}"
    return "ReActNet-A"


def check_binary_export(model: tf.keras.Model, meta: dict | None, source: str, allow_fp: bool) -> dict:
    """Refuses a model without binary weights for the LCE export unless ``allow_fp``;
    returns its :func:`~burn_tf.summary.model_stats`."""
    stats = model_stats(model)
    stage = model_stage(model, meta)
    if allow_fp:
        return stats
    if stage == 1:
        raise ExportError(
            f"{source} is a stage-1 {student_kind(model, meta)} (binary activations, full-precision kernels): "
            "LCE has no binary weights to bit-pack, so it would not be a binary model. Export "
            "the stage-2 backbone (--stage 2), or pass --allow-fp to export stage 1 as a "
            "full-precision model"
        )
    if stats["binary_macs"] == 0:
        raise ExportError(
            f"{source} ({model.name}) has no binary (1-bit × 1-bit) convolutions: the LCE "
            "export would not be a binary model. Pass --allow-fp to export it anyway"
        )
    return stats


def default_output(
    fmt: str,
    *,
    run_dir: str | os.PathLike | None = None,
    backbone: str | os.PathLike | None = None,
    stage: int | None = None,
    name: str = "model",
    with_classifier: bool = False,
    int8_io: bool = False,
) -> Path:
    """``<run>/export/stage{N}[_classifier][_int8io].{keras,tflite}`` (SavedModel: ``…_savedmodel/``);
    without a run, ``export/`` next to the backbone and ``name`` instead of ``stage{N}`` when
    the stage is unknown."""
    base = Path(run_dir) / "export" if run_dir is not None else Path(backbone).resolve().parent / "export"
    stem = f"stage{stage}" if stage is not None else name
    stem += "_classifier" if with_classifier else ""
    stem += "_int8io" if int8_io else ""
    return base / {"keras": f"{stem}.keras", "savedmodel": f"{stem}_savedmodel", "tflite": f"{stem}.tflite"}[fmt]


def report_path(out: str | os.PathLike) -> Path:
    """Where the export report of ``out`` goes: ``<out>.json``."""
    out = Path(out)
    return out.with_name(out.name + ".json")


def export_model(
    source: str | os.PathLike | tf.keras.Model,
    out: str | os.PathLike,
    fmt: str = "tflite",
    *,
    with_classifier: bool = False,
    int8_io: bool = False,
    int8_range: Sequence[float] | None = None,
    allow_fp: bool = False,
    overwrite: bool = False,
    converter: str = "keras",
    check_samples: int = 4,
    seed: int = 0,
) -> dict:
    """Exports a backbone (directory, ``.keras`` or model) to ``out`` in ``fmt``; returns the report.

    The report (also written to ``<out>.json``) holds the source, stage, format, file size,
    :func:`burn_tf.summary.model_stats` and, for ``tflite``, the op counts, the LCE ops
    found and :func:`~burn_tf.export.tflite.check_tflite` on ``check_samples`` random images
    in [0, 1].
    """
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"format {fmt!r} is not one of {EXPORT_FORMATS}")
    if int8_io and fmt != "tflite":
        raise ExportError("int8 inputs/outputs exist only for --format tflite")
    out = Path(out)
    refuse_existing(out, overwrite, OVERWRITE_HINT)
    refuse_existing(report_path(out), overwrite, OVERWRITE_HINT)
    model, meta = resolve_backbone(source)
    source_name = str(source) if isinstance(source, (str, os.PathLike)) else model.name
    if with_classifier:
        if not isinstance(source, (str, os.PathLike)):
            raise ExportError("with_classifier needs a backbone path (its classifier.keras is read from there)")
        src = Path(source)
        model = compose_with_classifier(model, (src if src.is_dir() else src.parent) / CLASSIFIER_FILE)
    stage = model_stage(model, meta)
    if fmt == "tflite":
        stats = check_binary_export(model, meta, source_name, allow_fp)
    else:
        stats = model_stats(model)
    report: dict[str, Any] = {
        "source": source_name,
        "output": str(out),
        "format": fmt,
        "stage": stage,
        "with_classifier": with_classifier,
        "architecture": meta.get("architecture", "reactnet_a" if stage else "keras"),
        "stats": stats,
        "warnings": [],
    }
    if fmt == "keras":
        save_keras_file(model, out, overwrite=overwrite)
    elif fmt == "savedmodel":
        save_savedmodel(model, out, overwrite=overwrite)
    else:
        import larq_compute_engine as lce  # optional extra, only for its version here

        flatbuffer = to_tflite(model, int8_io=int8_io, int8_range=int8_range, converter=converter)
        ops = tflite_op_counts(flatbuffer)
        report.update(
            converter=converter,
            lce_version=getattr(lce, "__version__", "?"),
            int8_io=int8_io,
            int8_range=list(int8_range) if int8_range is not None else None,
            op_counts=ops,
            lce_ops=sorted(op for op in ops if op.startswith("Lce")),
        )
        if stats["binary_macs"] and "LceBconv2d" not in ops:
            report["warnings"].append("no LceBconv2d in the flatbuffer: the binary convs were not bit-packed")
        small = lce_small_map_bconvs(model)
        if small:
            report["warnings"].append(
                f"LCE 0.16's optimized binary-conv kernel is wrong (measured) on zero-padded maps "
                f"smaller than the kernel: {len(small)} layers ({', '.join(small[:4])}"
                f"{', …' if len(small) > 4 else ''}). Run this model with LCE's reference bconv "
                f"kernel (Interpreter(use_reference_bconv=True)), or train with pad_values=1 or a "
                f"larger input (≥ 96 px for ReActNet-A)"
            )
        if check_samples:
            rng = np.random.default_rng(seed)
            x = rng.uniform(0.0, 1.0, (check_samples, *model.inputs[0].shape[1:])).astype(np.float32)
            report["check"] = check_tflite(model, flatbuffer, x)
        refuse_existing(out, overwrite, OVERWRITE_HINT)
        atomic_write_bytes(out, flatbuffer)
    report["bytes"] = path_size(out)
    atomic_write_json(report_path(out), report)
    return report
