"""What every evaluator does first and last: read the backbone, describe it, shape and write
its result.

Every evaluator returns :func:`evaluator_result`: the keys :data:`COMMON_KEYS` — ``task``,
``data``, ``backbone`` (:func:`backbone_info`: name, feature size, input size, path and export
metadata), ``protocol`` (a dict naming its ``source``, the seed paper's protocol, and the
settings that ran) and ``seconds`` (wall time of the whole evaluation) — then its own
metrics (and phase timings such as ``extract_seconds``).

``resolve_backbone`` (an exported path or a Keras model → model, metadata) and
``atomic_write_json`` are imported here for the evaluators. ``extract_features`` lives in
:mod:`burn_tf.evaluate.features` and is importable from here too (the demo uses it).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import tensorflow as tf

from burn_tf.evaluate.features import extract_features  # noqa: F401  (re-exported: svm uses common.extract_features)
from burn_tf.io import atomic_write_json
from burn_tf.saved_backbone import resolve_backbone  # noqa: F401  (re-exported)

COMMON_KEYS = ("task", "data", "backbone", "protocol", "seconds")


def backbone_info(backbone, model: tf.keras.Model, meta: dict,
                  default_architecture: str | None = None, input_size: int | None = None) -> dict:
    """The ``"backbone"`` entry of a result: name, feature size, path, export metadata.

    With ``default_architecture`` the entry always names an architecture (metadata first);
    ``input_size`` (the size the evaluator fed) is recorded when the metadata has none.
    """
    info = {"name": model.name, "feature_dim": int(model.outputs[0].shape[-1])}
    if default_architecture is not None:
        info["architecture"] = meta.get("architecture", default_architecture)
    if isinstance(backbone, (str, os.PathLike)):
        info["path"] = os.fspath(backbone)
    for key in ("architecture", "stage", "method", "input_size"):
        if key in meta:
            info[key] = meta[key]
    if input_size is not None:
        info.setdefault("input_size", int(input_size))
    return info


def evaluator_result(task: str, *, data: str, backbone: dict, protocol: dict, seconds: float,
                     **metrics) -> dict:
    """The one result shape of every evaluator: :data:`COMMON_KEYS` first, then ``metrics``.

    ``protocol`` must name its ``source`` (the paper / code the settings follow) and
    ``backbone`` is :func:`backbone_info`'s entry; ``seconds`` is rounded to 10 ms.
    """
    if not isinstance(protocol, dict) or not protocol.get("source"):
        raise ValueError(f"{task}: the result's protocol must be a dict naming its 'source', got {protocol!r}")
    missing = [key for key in ("name", "feature_dim") if key not in backbone]
    if missing:
        raise ValueError(f"{task}: the result's backbone entry lacks {missing} "
                         f"(feature_dim and name come from backbone_info), got {backbone!r}")
    return {"task": task, "data": data, "backbone": backbone, "protocol": protocol,
            "seconds": round(float(seconds), 2), **metrics}


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
