"""Exported backbones: the one format every evaluator, the model card and TFLite export read.

An exported backbone is a directory::

    backbone/
      backbone.keras        the Keras model (images in [0, 1] → pooled features)
      backbone.weights.h5   its weights alone
      metadata.json         what it is: architecture, stage, input size, config hash, metrics

ReActNet-A backbones are rebuilt from ``metadata.json`` and only their weights are read,
so loading never deserialises arbitrary objects. Other Keras models are read from the
``.keras`` file with ``safe_mode=True`` (no lambdas, no pickled code).

Deployment export (:func:`export_model`, CLI ``python -m burn_tf.export``) writes one file
(or SavedModel directory) from a backbone — optionally composed with the ``classifier.keras``
next to it — plus a report ``<out>.json``::

    python -m burn_tf.export --run-dir runs/demo --format tflite        # stage 2, LCE
    python -m burn_tf.export --run-dir runs/demo --format keras --with-classifier
    python -m burn_tf.export --backbone runs/demo/stage2/backbone --format savedmodel --out sm

``tflite`` goes through Larq Compute Engine (``larq_compute_engine.convert_keras_model``):
binary convolutions become bit-packed ``LceBconv2d`` ops fed by ``LceQuantize``; the report
lists the op types found in the flatbuffer and the error of LCE's interpreter against Keras
on random inputs (:func:`check_tflite`). A stage-1 model (full-precision kernels) is refused
for that binary export unless ``--allow-fp``. Nothing is overwritten without
``--overwrite``; every file is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from burn_tf.models.reactnet import ReActNetConfig, reactnet_a

FORMAT = "burn_tf-backbone"
FORMAT_VERSION = 1
MODEL_FILE = "backbone.keras"
WEIGHTS_FILE = "backbone.weights.h5"
METADATA_FILE = "metadata.json"


class BackboneFormatError(ValueError):
    """The path is not a burn_tf backbone (or not a feature extractor)."""


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask would, for every thread)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _umask_mode(path: str | os.PathLike, directory: bool = False) -> None:
    """Gives a temporary file/dir (created 0600/0700) the mode a plain open/mkdir would."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` via a temporary file and a rename: all or nothing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        _umask_mode(tmp)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically, like :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


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
    _umask_mode(tmp, directory=True)
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


def load_keras_file(path: str | os.PathLike, error: type[Exception] = ValueError) -> tf.keras.Model:
    """Loads a ``.keras`` file with ``safe_mode=True`` (no lambdas, no pickled code); a bad
    archive raises ``error`` naming the file."""
    try:
        return tf.keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as err:  # noqa: BLE001  (Keras raises many types for a bad archive)
        raise error(f"{path}: could not be loaded as a Keras model ({err})") from None


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
    model = load_keras_file(model_file, BackboneFormatError)
    check_feature_extractor(model, str(model_file))
    return model, meta


def resolve_backbone(backbone) -> tuple[tf.keras.Model, dict]:
    """Accepts a path or a Keras feature extractor; returns (model, metadata)."""
    if isinstance(backbone, (str, os.PathLike)):
        return load_backbone(backbone)
    check_feature_extractor(backbone, getattr(backbone, "name", "backbone"))
    return backbone, {}


# --------------------------------------------------------------------------------------
# Deployment export: .keras file, SavedModel, LCE .tflite
# --------------------------------------------------------------------------------------

EXPORT_FORMATS = ("keras", "savedmodel", "tflite")
CONVERTERS = ("keras", "savedmodel")
CLASSIFIER_FILE = "classifier.keras"


class ExportError(ValueError):
    """The requested export cannot be made (wrong stage, missing file, bad option)."""


def _refuse_existing(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite (overwrite=True) to replace it")


def _replace_into(tmp: Path, path: Path) -> None:
    """Moves the finished ``tmp`` (file or directory) to ``path``, replacing what is there."""
    if path.is_dir() and not path.is_symlink():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        if tmp.is_dir() and (path.exists() or path.is_symlink()):
            path.unlink()  # a file where a directory goes: rename cannot replace it
        os.replace(tmp, path)


def save_keras_file(model: tf.keras.Model, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """``model.save`` to a single ``.keras`` file, atomically; keeps an existing file."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ExportError(f"{path}: a Keras model file must end in .keras")
    _refuse_existing(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        model.save(tmp / path.name)
        _refuse_existing(path, overwrite)
        _replace_into(tmp / path.name, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _serving_function(model: tf.keras.Model, batch_size: int | None = None):
    spec = tf.TensorSpec([batch_size, *model.inputs[0].shape[1:]], model.inputs[0].dtype, name="image")

    @tf.function(input_signature=[spec])
    def serve(image):
        return {"output": model(image, training=False)}

    return serve


def _write_signature_savedmodel(model: tf.keras.Model, directory: Path) -> None:
    # Only the variables and one inference signature: no per-layer Keras traces, which
    # make Keras' own SavedModel export of a ReActNet-A ~2x slower (measured).
    serve = _serving_function(model)
    module = tf.Module()
    module.model_variables = list(model.variables)
    module.serve = serve
    tf.saved_model.save(module, str(directory), signatures={"serving_default": serve.get_concrete_function()})


def save_savedmodel(model: tf.keras.Model, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """A TensorFlow SavedModel for serving / other converters, atomically.

    It holds the variables and one signature ``serving_default(image) -> {"output"}``
    (inference mode, any batch size): load it with ``tf.saved_model.load`` or TF Serving.
    It is not a Keras model — the ``.keras`` file is (``--format keras``).
    """
    path = Path(path)
    _refuse_existing(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    _umask_mode(tmp, directory=True)
    try:
        _write_signature_savedmodel(model, tmp)
        _refuse_existing(path, overwrite)
        _replace_into(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _all_layers(model: tf.keras.Model) -> list:
    """Every layer of ``model``, nested models included (not the model itself)."""
    layers = []
    for layer in model.layers:
        layers.append(layer)
        if isinstance(layer, tf.keras.Model):
            layers.extend(_all_layers(layer))
    return layers


def _has_int8_quantization(model: tf.keras.Model) -> bool:
    """Whether the graph carries int8 quantization (tfmot wrappers / fake-quant layers)."""
    for layer in _all_layers(model):
        name = type(layer).__name__
        if name.startswith("Quantize") or "FakeQuant" in name:
            return True
    return False


def to_tflite(
    model: tf.keras.Model,
    *,
    int8_io: bool = False,
    int8_range: Sequence[float] | None = None,
    converter: str = "keras",
) -> bytes:
    """Converts ``model`` with Larq Compute Engine; returns the flatbuffer.

    ``converter="keras"``: ``larq_compute_engine.convert_keras_model`` (Keras SavedModel
    export, then LCE's MLIR converter). ``"savedmodel"``: a signature-only SavedModel, then
    ``larq_compute_engine.convert_saved_model`` — the same converter, ~2-3x faster to trace.

    ``int8_io``: int8 input and output tensors (LCE's ``inference_input_type`` /
    ``inference_output_type``). LCE can only do that for an int8-quantized model: one trained
    with fake quantization, or ``int8_range=(min, max)`` (LCE's
    ``experimental_default_int8_range``: dummy ranges for every tensor without one — for
    latency tests, not for accuracy).
    """
    import larq_compute_engine as lce

    if converter not in CONVERTERS:
        raise ExportError(f"converter {converter!r} is not one of {CONVERTERS}")
    if int8_io and int8_range is None and not _has_int8_quantization(model):
        raise ExportError(
            f"model {model.name!r}: int8 inputs/outputs need an int8-quantized model, and this one "
            "has no quantization ranges. Train it with fake quantization, or pass "
            "--int8-range MIN MAX (LCE's experimental_default_int8_range: dummy ranges, only "
            "for latency measurements — accuracy is lost)"
        )
    io_type = tf.int8 if int8_io else tf.float32
    kwargs = {"inference_input_type": io_type, "inference_output_type": io_type}
    if int8_range is not None:
        lo, hi = (float(v) for v in int8_range)
        if not lo < hi:
            raise ExportError(f"--int8-range: MIN must be < MAX, got {lo} {hi}")
        kwargs["experimental_default_int8_range"] = (lo, hi)
    if converter == "keras":
        flatbuffer = lce.convert_keras_model(model, **kwargs)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            _write_signature_savedmodel(model, Path(tmp))
            flatbuffer = lce.convert_saved_model(tmp, **kwargs)
    if int8_io:
        # convert_keras_model's fallback path ignores the I/O types of an unquantized model.
        types = tflite_io_types(flatbuffer)
        if set(types["inputs"] + types["outputs"]) != {"INT8"}:
            raise ExportError(f"model {model.name!r}: LCE did not give int8 inputs/outputs ({types})")
    return bytes(flatbuffer)


def _schema():
    from larq_compute_engine.mlir.python import tflite_schema

    return tflite_schema


def _read_flatbuffer(tflite_bytes: bytes):
    schema = _schema()
    return schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytearray(tflite_bytes), 0))


def tflite_op_counts(tflite_bytes: bytes) -> dict[str, int]:
    """Op type → number of operators in the flatbuffer (builtins by name, custom ops by code)."""
    schema = _schema()
    builtin = {v: k for k, v in vars(schema.BuiltinOperator).items() if k.isupper()}
    fb = _read_flatbuffer(tflite_bytes)
    counts: dict[str, int] = {}
    for subgraph in fb.subgraphs or []:
        for op in subgraph.operators or []:
            code = fb.operatorCodes[op.opcodeIndex]
            if code.customCode:
                name = code.customCode.decode() if isinstance(code.customCode, bytes) else str(code.customCode)
            else:
                number = max(code.builtinCode or 0, code.deprecatedBuiltinCode or 0)
                name = builtin.get(number, f"BUILTIN_{number}")
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def tflite_io_types(tflite_bytes: bytes) -> dict[str, list[str]]:
    schema = _schema()
    names = {v: k for k, v in vars(schema.TensorType).items() if k.isupper()}
    sg = _read_flatbuffer(tflite_bytes).subgraphs[0]
    return {
        "inputs": [names.get(sg.tensors[i].type, str(sg.tensors[i].type)) for i in sg.inputs],
        "outputs": [names.get(sg.tensors[i].type, str(sg.tensors[i].type)) for i in sg.outputs],
    }


def lce_small_map_bconvs(model: tf.keras.Model) -> list[str]:
    """Binary convs that LCE 0.16's optimized kernels get wrong.

    Measured (this stack, x86): with zero padding (``pad_values=0``, padding "same") the
    optimized ``LceBconv2d`` kernel returns wrong values when its input map is smaller than
    the kernel (e.g. a 3x3 conv on a 2x2 or 1x1 map); the reference kernel
    (``use_reference_bconv=True``) is exact. A ReActNet-A has such maps below 96 px input
    (its last stage is input/32 pixels wide). One-padding (``pad_values=1``) is not affected.
    """
    import larq as lq

    names = []
    for layer in _all_layers(model):
        if not isinstance(layer, lq.layers.QuantConv2D):
            continue
        quantizer = getattr(layer, "input_quantizer", None)
        if getattr(quantizer, "precision", None) != 1 or layer.kernel_quantizer is None:
            continue
        if layer.padding != "same" or float(getattr(layer, "pad_values", 0.0)) != 0.0:
            continue
        try:
            h, w = layer.input_shape[1:3]
        except (AttributeError, RuntimeError):  # shared layer: several input shapes
            continue
        kh, kw = layer.kernel_size
        if (kh > 1 or kw > 1) and ((h is not None and h < kh) or (w is not None and w < kw)):
            names.append(layer.name)
    return names


def _quantize(x: np.ndarray, scale, zero_point) -> np.ndarray:
    return np.clip(np.round(x / scale + zero_point), -128, 127).astype(np.int8)


def _run_tflite(tflite_bytes: bytes, inputs: np.ndarray, num_threads: int = 1,
                use_reference_bconv: bool = False) -> np.ndarray:
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    interpreter = Interpreter(tflite_bytes, num_threads=num_threads, use_reference_bconv=use_reference_bconv)
    x = np.asarray(inputs, dtype=np.float32)
    if interpreter.input_types[0] == np.int8:
        x = _quantize(x, interpreter.input_scales[0], interpreter.input_zero_points[0])
    y = np.asarray(interpreter.predict(x))
    if interpreter.output_types[0] == np.int8:
        y = (y.astype(np.float32) - interpreter.output_zero_points[0]) * interpreter.output_scales[0]
    return y.astype(np.float32)


def _errors(y: np.ndarray, ref: np.ndarray, near_zero: np.ndarray, rel_tolerance: float) -> dict:
    """Errors of ``y`` against ``ref``; failures on near-zero-margin inputs may be excused.

    A failing input is put down to a float-rounding sign flip (``sign_flip_inputs``) only if
    it has a pre-sign value near 0 and failures are rare (at most a quarter of the inputs,
    at least one): a real conversion error fails (nearly) every input.
    """
    diff = np.abs(y.reshape(ref.shape) - ref).reshape(len(ref), -1)
    scale = float(np.max(np.abs(ref))) or 1.0
    per_sample = diff.max(axis=1) / scale
    failing = per_sample > rel_tolerance
    excused = failing & near_zero
    if failing.sum() > max(1, len(ref) // 4):
        excused[:] = False
    kept = ~excused
    return {
        "max_abs_err": float(diff.max()),
        "mean_abs_err": float(diff.mean()),
        "max_rel_err": float(per_sample.max()),
        "per_input_rel_err": [float(v) for v in per_sample],
        "sign_flip_inputs": [int(i) for i in np.flatnonzero(excused)],
        "max_rel_err_without_sign_flips": float(per_sample[kept].max()) if kept.any() else None,
        "exact": not bool((failing & kept).any()),
    }


def sign_margins(model: tf.keras.Model, inputs: np.ndarray) -> np.ndarray | None:
    """Per input: the smallest |value before sign| over every binarized conv input.

    A binary network amplifies rounding: where a pre-sign value is within float rounding
    of 0 (measured: 7e-8 in one image of 192), the converted model may take the other sign
    and that image's output moves a lot, although the conversion is right. ``None`` when
    the model's layers cannot be probed.
    """
    import larq as lq

    convs = [
        layer for layer in _all_layers(model)
        if isinstance(layer, lq.layers.QuantConv2D)
        and getattr(getattr(layer, "input_quantizer", None), "precision", None) == 1
    ]
    if not convs:
        return np.full(len(inputs), np.inf)
    try:
        probe = tf.keras.Model(model.inputs, [layer.input for layer in convs])
        values = probe(inputs, training=False)
    except (ValueError, AttributeError, TypeError):
        return None
    values = values if isinstance(values, (list, tuple)) else [values]
    margins = np.full(len(inputs), np.inf)
    for layer, value in zip(convs, values):
        shift = getattr(layer.input_quantizer, "bias", None)
        pre_sign = value.numpy() + (shift.numpy() if shift is not None else 0.0)
        margins = np.minimum(margins, np.abs(pre_sign).reshape(len(inputs), -1).min(axis=1))
    return margins


def check_tflite(keras_model: tf.keras.Model, tflite_bytes: bytes, inputs: np.ndarray,
                 num_threads: int = 1, rel_tolerance: float = 1e-3,
                 sign_margin_tolerance: float = 1e-5) -> dict:
    """Runs ``tflite_bytes`` in LCE's interpreter on ``inputs`` and compares with Keras.

    Returns ``max_abs_err``, ``mean_abs_err`` and ``max_rel_err`` (max |tflite - keras|
    divided by max |keras|: relative to the output's scale, not element by element, which
    is meaningless near 0) and ``exact`` for LCE's default (optimized) kernels, the same
    under ``reference_bconv`` (LCE's reference binary-conv kernel), ``exact_reference_bconv``,
    the op counts, ``lce_small_map_bconvs`` (layers where LCE's optimized kernel is known to
    be wrong) and ``sign_margins`` (:func:`sign_margins`).

    ``exact``: every input within ``rel_tolerance``, except a rare input (≤ 1/4 of them)
    with a pre-sign value within ``sign_margin_tolerance`` of 0, listed in
    ``sign_flip_inputs``: there a float-rounding sign flip is legitimate (measured: 1 input
    in 192 at 32 px, a pre-sign value of 7e-8). int8 inputs/outputs are quantized /
    dequantized with the model's own scales.
    """
    x = np.asarray(inputs, dtype=np.float32)
    ref = np.asarray(keras_model(x, training=False), dtype=np.float32)
    margins = sign_margins(keras_model, x)
    near_zero = np.zeros(len(x), bool) if margins is None else margins < sign_margin_tolerance
    optimized = _errors(_run_tflite(tflite_bytes, x, num_threads), ref, near_zero, rel_tolerance)
    reference = _errors(_run_tflite(tflite_bytes, x, num_threads, use_reference_bconv=True), ref,
                        near_zero, rel_tolerance)
    return {
        "n_inputs": len(x),
        "input_range": [float(x.min()), float(x.max())],
        "output_abs_max": float(np.max(np.abs(ref))),
        **optimized,
        "reference_bconv": reference,
        "exact_reference_bconv": reference["exact"],
        "sign_margins": None if margins is None else [float(m) for m in margins],
        "io_types": tflite_io_types(tflite_bytes),
        "op_counts": tflite_op_counts(tflite_bytes),
        "lce_small_map_bconvs": lce_small_map_bconvs(keras_model),
        "rel_tolerance": rel_tolerance,
        "sign_margin_tolerance": sign_margin_tolerance,
    }


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
    cfg = getattr(backbone, "reactnet_config", None)
    if cfg is not None:
        model.reactnet_config = cfg
    return model


def model_stage(model: tf.keras.Model, meta: dict | None = None) -> int | None:
    """ReActNet-A stage (1: FP kernels, 2: binary kernels) from metadata or the model."""
    stage = (meta or {}).get("stage")
    if stage is None and getattr(model, "reactnet_config", None) is not None:
        stage = model.reactnet_config.stage
    return int(stage) if stage is not None else None


def check_binary_export(model: tf.keras.Model, meta: dict | None, source: str, allow_fp: bool) -> dict:
    """Refuses a model without binary weights for the LCE export unless ``allow_fp``."""
    from burn_tf.summary import model_stats

    stats = model_stats(model)
    stage = model_stage(model, meta)
    if allow_fp:
        return stats
    if stage == 1:
        raise ExportError(
            f"{source} is a stage-1 ReActNet-A (binary activations, full-precision kernels): "
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
    """``<run>/export/stage{N}[_classifier][_int8io].{keras,tflite}`` (SavedModel: ``…_savedmodel/``)."""
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
    found and :func:`check_tflite` on ``check_samples`` random images in [0, 1].
    """
    from burn_tf.summary import model_stats

    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"format {fmt!r} is not one of {EXPORT_FORMATS}")
    if int8_io and fmt != "tflite":
        raise ExportError("int8 inputs/outputs exist only for --format tflite")
    out = Path(out)
    _refuse_existing(out, overwrite)
    _refuse_existing(report_path(out), overwrite)
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
        import larq_compute_engine as lce

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
        _refuse_existing(out, overwrite)
        atomic_write_bytes(out, flatbuffer)
    report["bytes"] = path_size(out)
    atomic_write_json(report_path(out), report)
    return report


def path_size(path: str | os.PathLike) -> int:
    """Size in bytes of a file, or of every file under a directory."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m burn_tf.export",
        description="Export a pretrained ReActNet-A backbone (.keras, SavedModel or LCE .tflite).",
    )
    parser.add_argument("--run-dir", help="run directory of python -m burn_tf.pretrain")
    parser.add_argument("--stage", type=int, choices=[1, 2],
                        help="which stage's backbone (default: stage 2 if present, else 1)")
    parser.add_argument("--backbone", help="an exported backbone directory or .keras file (instead of the run's)")
    parser.add_argument("--format", default="tflite", choices=EXPORT_FORMATS)
    parser.add_argument("--with-classifier", action="store_true",
                        help="compose the backbone with its classifier.keras (features → logits)")
    parser.add_argument("--int8-io", action="store_true", help="int8 input and output tensors (tflite)")
    parser.add_argument("--int8-range", type=float, nargs=2, metavar=("MIN", "MAX"),
                        help="LCE experimental_default_int8_range for an unquantized model (latency tests only)")
    parser.add_argument("--allow-fp", action="store_true",
                        help="export a model without binary weights (stage 1) as full precision")
    parser.add_argument("--converter", default="keras", choices=CONVERTERS,
                        help="keras: lce.convert_keras_model; savedmodel: signature SavedModel → lce.convert_saved_model")
    parser.add_argument("--check-samples", type=int, default=4,
                        help="random images for the tflite-vs-Keras check (0: skip)")
    parser.add_argument("--out", help="output file (directory for savedmodel); default under <run>/export/")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--no-model-card", action="store_true", help="do not (re)write <run>/MODEL_CARD.md")
    args = parser.parse_args(argv)
    if not args.run_dir and not args.backbone:
        parser.error("give --run-dir or --backbone")
    try:
        stage = args.stage
        if args.backbone:
            source = Path(args.backbone)
            if not source.exists():
                raise FileNotFoundError(f"backbone {source} does not exist")
            if stage is None:
                stage = read_metadata(source).get("stage")
        else:
            source, stage = find_backbone(args.run_dir, args.stage)
        out = Path(args.out) if args.out else default_output(
            args.format, run_dir=args.run_dir, backbone=source, stage=stage, name=source.stem,
            with_classifier=args.with_classifier, int8_io=args.int8_io,
        )
        report = export_model(
            source, out, args.format, with_classifier=args.with_classifier, int8_io=args.int8_io,
            int8_range=args.int8_range, allow_fp=args.allow_fp, overwrite=args.overwrite,
            converter=args.converter, check_samples=args.check_samples,
        )
    except (ExportError, BackboneFormatError, FileExistsError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({report['bytes']:,} bytes); report {report_path(out)}")
    if "lce_ops" in report:
        counts = report["op_counts"]
        lce_ops = ", ".join(f"{op}×{counts[op]}" for op in report["lce_ops"]) or "none"
        print(f"LCE ops: {lce_ops}")
    if "check" in report:
        c = report["check"]
        ref = c["reference_bconv"]
        print(f"tflite vs Keras on {c['n_inputs']} random images: max abs err {c['max_abs_err']:.3g}, "
              f"max rel err {c['max_rel_err']:.3g} (LCE reference bconv kernel: "
              f"{ref['max_abs_err']:.3g} / {ref['max_rel_err']:.3g}); "
              f"exact: {c['exact']} (reference kernel: {c['exact_reference_bconv']})")
        flips = sorted(set(c["sign_flip_inputs"]) | set(ref["sign_flip_inputs"]))
        if flips:
            print(f"  inputs {flips} differ by a float-rounding sign flip (a pre-sign value within "
                  f"{c['sign_margin_tolerance']:g} of 0); without them: max rel err "
                  f"{c['max_rel_err_without_sign_flips']:.3g}, reference kernel "
                  f"{ref['max_rel_err_without_sign_flips']:.3g}")
    for w in report["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    if args.run_dir and not args.no_model_card:
        from burn_tf.model_card import write_model_card

        print(f"model card: {write_model_card(args.run_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
