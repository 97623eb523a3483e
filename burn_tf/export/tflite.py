"""LCE TFLite: conversion with Larq Compute Engine, reading the flatbuffer, checking it against Keras.

:func:`to_tflite` goes through ``larq_compute_engine``: binary convolutions become
bit-packed ``LceBconv2d`` ops fed by ``LceQuantize``. :func:`tflite_op_counts` and
:func:`tflite_io_types` read the flatbuffer; :func:`check_tflite` runs it in LCE's
interpreter (optimized and reference binary-conv kernels) and compares with Keras;
:func:`lce_small_map_bconvs` names the layers LCE 0.16's optimized kernel gets wrong and
:func:`sign_margins` says which inputs may legitimately flip a sign.

``larq_compute_engine`` is an optional extra (``pip install burn_tf[export]``), so it is
imported inside the functions that need it: the rest of burn_tf imports without it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import larq as lq
import numpy as np
import tensorflow as tf

from burn_tf.export.errors import ExportError
from burn_tf.export.savedmodel import write_signature_savedmodel

#: keras: lce.convert_keras_model; savedmodel: signature SavedModel → lce.convert_saved_model
CONVERTERS = ("keras", "savedmodel")


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
    import larq_compute_engine as lce  # optional extra: see the module docstring

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
            write_signature_savedmodel(model, Path(tmp))
            flatbuffer = lce.convert_saved_model(tmp, **kwargs)
    if int8_io:
        # convert_keras_model's fallback path ignores the I/O types of an unquantized model.
        types = tflite_io_types(flatbuffer)
        if set(types["inputs"] + types["outputs"]) != {"INT8"}:
            raise ExportError(f"model {model.name!r}: LCE did not give int8 inputs/outputs ({types})")
    return bytes(flatbuffer)


def _schema():
    from larq_compute_engine.mlir.python import tflite_schema  # optional extra

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
    # optional extra: see the module docstring
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
