"""Model size and bit-operations of a (binary) Keras model, as ReActNet / Bi-Real Net count them.

    OPs = BOPs / 64 + FLOPs

where BOPs are the multiply-accumulates whose inputs are all 1 bit (an XNOR-popcount does 64
of them per 64-bit word) and FLOPs the multiply-accumulates of higher precision. Both come
from larq's own profile (``larq.models.ModelProfile(model).op_count("mac", precision)``), the
numbers ``lq.models.summary`` prints: a MAC's precision is the larger of its input's and its
kernel's bit width. So a stage-1 ReActNet-A (binary activations, FP kernels) has no BOPs;
its convolutions' 1-bit-activation MACs are reported separately as
``binary_activation_macs``.

CLI::

    python -m burn_tf.summary --stage 2 --input-size 224          # ReActNet-A, 1000-way head
    python -m burn_tf.summary --kind larq_zoo --name QuickNet --input-size 224   # a zoo student's features
    python -m burn_tf.summary --backbone runs/demo/stage2/backbone --json
    python -m burn_tf.summary --backbone model.keras --num-classes 0

With ``--json`` the last line printed is one JSON object (:func:`model_stats`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import larq as lq
import numpy as np
import tensorflow as tf

from burn_tf.models.larq_zoo import build_zoo_student
from burn_tf.models.reactnet import ReActNetConfig, reactnet_a
from burn_tf.saved_backbone import METADATA_FILE, load_backbone, load_keras_file

#: a 64-bit XNOR-popcount does 64 binary MACs: the ReActNet / Bi-Real Net convention.
BOPS_PER_OP = 64


def _layer_profiles(profile) -> list:
    """All leaf layer profiles of a larq ModelProfile (nested models flattened)."""
    leaves = []
    for lp in getattr(profile, "layer_profiles", []):
        if hasattr(lp, "layer_profiles"):
            leaves.extend(_layer_profiles(lp))
        else:
            leaves.append(lp)
    return leaves


def model_stats(model: tf.keras.Model) -> dict:
    """Parameters, weight memory and MACs by precision of ``model``; OPs = BOPs/64 + FLOPs.

    Keys: ``name``, ``input_shape``, ``output_shape``, ``trainable_params``,
    ``non_trainable_params``, ``total_params``, ``binary_params`` (1-bit weights),
    ``binary_macs`` (BOPs), ``fp_macs`` (FLOPs: every MAC of precision > 1),
    ``macs_by_precision`` ({bits: MACs}), ``binary_activation_macs`` (MACs whose input is
    1 bit, whatever the kernel), ``ops`` (BOPs/64 + FLOPs), ``total_macs``,
    ``weight_memory_bytes`` (binary weights at 1 bit, others at their width, as larq counts),
    ``fp32_memory_bytes`` and ``compression_ratio``; ``reactnet`` (its config) when the
    model is a ReActNet-A built by burn_tf.
    """
    if not model.built:
        raise ValueError(f"model {model.name!r} is not built; call it on an input first")
    profile = lq.models.ModelProfile(model)
    precisions = sorted(profile.unique_op_precisions)
    by_precision = {int(p): int(profile.op_count("mac", p)) for p in precisions}
    binary_macs = by_precision.get(1, 0)
    fp_macs = sum(n for p, n in by_precision.items() if p > 1)
    binary_activation_macs = 0
    for lp in _layer_profiles(profile):
        if lp.input_precision == 1:
            binary_activation_macs += int(lp.op_count("mac") or 0) if _counts_macs(lp) else 0
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    non_trainable = int(sum(np.prod(w.shape) for w in model.non_trainable_weights))
    memory_bits = int(profile.memory)
    fp32_bits = int(profile.fp_equivalent_memory)
    stats = {
        "name": model.name,
        "input_shape": [list(i.shape[1:]) for i in model.inputs] if len(model.inputs) > 1
        else list(model.inputs[0].shape[1:]),
        "output_shape": [list(o.shape[1:]) for o in model.outputs] if len(model.outputs) > 1
        else list(model.outputs[0].shape[1:]),
        "trainable_params": trainable,
        "non_trainable_params": non_trainable,
        "total_params": trainable + non_trainable,
        "binary_params": int(profile.weight_count(1)),
        "binary_macs": int(binary_macs),
        "fp_macs": int(fp_macs),
        "total_macs": int(binary_macs + fp_macs),
        "macs_by_precision": {str(p): n for p, n in by_precision.items()},
        "binary_activation_macs": int(binary_activation_macs),
        "ops": binary_macs / BOPS_PER_OP + fp_macs,
        "ops_formula": f"BOPs/{BOPS_PER_OP} + FLOPs",
        "weight_memory_bytes": memory_bits / 8,
        "fp32_memory_bytes": fp32_bits / 8,
        "compression_ratio": (fp32_bits / memory_bits) if memory_bits else None,
    }
    for key, attribute in (("reactnet", "reactnet_config"), ("larq_zoo", "zoo_config")):
        cfg = getattr(model, attribute, None)
        if cfg is not None:
            stats[key] = dataclasses.asdict(cfg)
    return stats


def _counts_macs(lp) -> bool:
    try:
        return lp.op_count("mac") is not None
    except (ValueError, NotImplementedError):
        return False


def summary_text(model: tf.keras.Model) -> str:
    """``lq.models.summary(model)`` as a string."""
    lines: list[str] = []
    lq.models.summary(model, print_fn=lines.append)
    return "\n".join(lines)


def readable_count(num: float) -> str:
    """A count as ``lq.models.summary`` writes it: 3 significant digits, then k / M / B / T
    (999000 → "999 k", 1234567 → "1.23 M"). larq keeps its formatter private, so it is
    written here; tests/test_summary.py checks the two agree on a model's totals."""
    num = float(f"{num:.3g}")  # round first: 999,999 is "1 M", not "1000 k"
    if num < 1000:
        return str(num).rstrip("0").rstrip(".")
    if num >= 1e15:
        return f"{num:.2E}"
    magnitude = 0
    while abs(num) >= 1000 and magnitude < 4:
        magnitude += 1
        num /= 1000.0
    return f"{num:.3g}".rstrip(".") + ["", " k", " M", " B", " T"][magnitude]


def summary_totals(model: tf.keras.Model) -> str:
    """The totals of ``lq.models.summary(model)`` without its layer table, on two lines
    (each within a 120-column console): parameters by bit width, weight memory and its
    float-32 equivalent; then MACs by bit width."""
    profile = lq.models.ModelProfile(model)
    params = ", ".join(f"{bits}-bit {readable_count(profile.weight_count(bits))}"
                       for bits in profile.unique_param_bidtwidths)
    macs = ", ".join(f"{bits}-bit {readable_count(profile.op_count('mac', bits))}"
                     for bits in profile.unique_op_precisions)
    return (f"{model.name}: {readable_count(profile.weight_count())} params ({params}), "
            f"{lq.models.memory_as_readable_str(profile.memory)} "
            f"(float-32 equivalent {lq.models.memory_as_readable_str(profile.fp_equivalent_memory)})\n"
            f"  {readable_count(profile.op_count('mac'))} MACs ({macs})")


def format_stats(stats: dict) -> str:
    """A short human-readable block: params, MACs and OPs in ReActNet's units."""
    rows = [
        ("trainable parameters", f"{stats['trainable_params']:,}"),
        ("binary MACs (BOPs)", f"{stats['binary_macs']:,}  ({stats['binary_macs'] / 1e9:.2f}×10⁹)"),
        ("FP MACs (FLOPs)", f"{stats['fp_macs']:,}  ({stats['fp_macs'] / 1e8:.2f}×10⁸)"),
        ("OPs = BOPs/64 + FLOPs", f"{stats['ops']:,.0f}  ({stats['ops'] / 1e8:.2f}×10⁸)"),
        ("weight memory", (f"{stats['weight_memory_bytes'] / 2**20:.2f} MiB "
                           f"(FP32: {stats['fp32_memory_bytes'] / 2**20:.2f} MiB)")),
    ]
    if stats["binary_activation_macs"] and not stats["binary_macs"]:
        rows.append(("1-bit-activation MACs", (f"{stats['binary_activation_macs']:,} "
                                               "(FP kernels: not XNOR-able, counted as FLOPs)")))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def load_any_model(path: str | Path) -> tf.keras.Model:
    """An exported burn_tf backbone directory or any Keras model file (``safe_mode=True``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_dir() and (path / METADATA_FILE).exists():
        model, _ = load_backbone(path)
        return model
    return load_keras_file(path, ValueError)


def build_reactnet(stage: int, input_size: int, width_multiplier: float, num_classes: int) -> tf.keras.Model:
    """A ReActNet-A with random weights (the counts do not depend on them); ``num_classes=0``: no head."""
    cfg = ReActNetConfig(stage=stage, input_size=input_size, width_multiplier=width_multiplier)
    return reactnet_a(cfg, include_top=num_classes > 0, num_classes=max(num_classes, 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m burn_tf.summary", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--kind", choices=["reactnet_a", "larq_zoo"], default="reactnet_a",
                        help="the student to build (as backbone.kind); ignored with --backbone")
    parser.add_argument("--name", help="--kind larq_zoo: the zoo model (QuickNet, BiRealNet, …)")
    parser.add_argument("--stage", type=int, choices=[1, 2], default=2)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--width-multiplier", type=float, default=1.0, help="ReActNet-A only")
    parser.add_argument("--num-classes", type=int, default=1000,
                        help="size of ReActNet-A's FP head (0: none; a larq-zoo student has none: its "
                             "pooled features); ignored with --backbone")
    parser.add_argument("--backbone", help="exported backbone directory or a Keras model file")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the stats")
    args = parser.parse_args(argv)
    try:
        if args.backbone:
            model = load_any_model(args.backbone)
        elif args.kind == "larq_zoo" or args.name is not None:
            if args.kind != "larq_zoo" or args.name is None:
                raise ValueError("a larq-zoo student needs both --kind larq_zoo and --name (e.g. QuickNet)")
            model = build_zoo_student(args.name, args.input_size, args.stage)
        else:
            model = build_reactnet(args.stage, args.input_size, args.width_multiplier, args.num_classes)
    except (ValueError, OSError) as err:  # not a model, bad option; missing or unreadable file
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary_text(model))
    stats = model_stats(model)
    print(format_stats(stats))
    if args.json:
        print(json.dumps(stats, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
