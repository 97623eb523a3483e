"""What every evaluator shares: reading a backbone, extracting features, writing results."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import tensorflow as tf

from burn_tf.backbone import resolve_backbone  # noqa: F401  (re-exported)
from burn_tf.io import atomic_write_json  # noqa: F401  (re-exported)


def backbone_input_size(model: tf.keras.Model) -> int:
    """Square input size the backbone expects (its first input's height)."""
    size = model.inputs[0].shape[1]
    if size is None:
        raise ValueError(f"backbone {model.name!r} has no fixed input size; pass image_size")
    return int(size)


def prepare_images(images: np.ndarray, image_size: int) -> tf.Tensor:
    """uint8 [N,H,W] or [N,H,W,C] (or float in [0,1]) → float32 [N,S,S,3] in [0,1]."""
    x = tf.convert_to_tensor(images)
    if x.shape.rank == 3:
        x = x[..., tf.newaxis]
    if x.dtype == tf.uint8:
        x = tf.cast(x, tf.float32) / 255.0
    x = tf.cast(x, tf.float32)
    if x.shape[-1] == 1:
        x = tf.repeat(x, 3, axis=-1)
    if x.shape[1] != image_size or x.shape[2] != image_size:
        x = tf.image.resize(x, (image_size, image_size), method="bilinear")
    return tf.clip_by_value(x, 0.0, 1.0)


def _traced_forward(model: tf.keras.Model, size: int):
    """One traced inference function per model and size, for any batch size: tracing a
    binary net costs seconds, so it must not happen per call or per last short batch."""
    cache = model.__dict__.setdefault("_burn_tf_forward", {})
    if size not in cache:
        spec = tf.TensorSpec([None, size, size, 3], tf.float32)
        cache[size] = tf.function(lambda batch: model(batch, training=False), input_signature=[spec])
    return cache[size]


def extract_features(
    model: tf.keras.Model,
    images: np.ndarray | tf.data.Dataset,
    batch_size: int = 256,
    image_size: int | None = None,
) -> np.ndarray:
    """Features of ``images`` (numpy array or a dataset of image batches / (image, label)).

    Runs the model in inference mode (BatchNorm uses its moving statistics) batch by batch,
    so a 60k-image set never sits in memory as float images.
    """
    size = image_size or backbone_input_size(model)
    forward = _traced_forward(model, size)
    outputs = []
    if isinstance(images, tf.data.Dataset):
        for batch in images:
            if isinstance(batch, (tuple, list)):
                batch = batch[0]
            outputs.append(forward(prepare_images(batch, size)).numpy())
    else:
        images = np.asarray(images)
        if len(images) == 0:
            raise ValueError("no images to extract features from")
        for start in range(0, len(images), batch_size):
            outputs.append(forward(prepare_images(images[start : start + batch_size], size)).numpy())
    return np.concatenate(outputs, axis=0).astype(np.float32)


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def write_results(out_dir: str | os.PathLike | None, task: str, result: dict) -> Path | None:
    """Writes ``<out_dir>/<task>.json`` atomically (if an out_dir is given); returns the path."""
    if out_dir is None:
        return None
    path = Path(out_dir) / f"{task}.json"
    atomic_write_json(path, result)
    return path


def format_table(rows: Iterable[dict], columns: list[str] | None = None) -> str:
    """A plain text table of dict rows (floats with 4 significant decimals)."""
    rows = list(rows)
    if not rows:
        return "(empty)"
    columns = columns or list(rows[0].keys())

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "nan" if math.isnan(v) else f"{v:.4f}"
        return str(v)

    table = [columns] + [[cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_json_last_line(result: dict) -> None:
    print(json.dumps(result, sort_keys=True, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
