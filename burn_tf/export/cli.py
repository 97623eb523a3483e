"""``python -m burn_tf.export``: export a run's (or any) backbone for deployment.

A user's mistake (no such backbone or run, a directory that is not a backbone, an existing
output without ``--overwrite``, an impossible option) ends in one ``error: …`` line on
stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from burn_tf.export.errors import ExportError
from burn_tf.export.exporter import (
    EXPORT_FORMATS,
    default_output,
    export_model,
    report_path,
)
from burn_tf.export.model_card import write_model_card
from burn_tf.export.tflite import CONVERTERS
from burn_tf.saved_backbone import BackboneFormatError, find_backbone, read_metadata


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
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
    parser.add_argument(
        "--converter",
        default="keras",
        choices=CONVERTERS,
        help="keras: lce.convert_keras_model; savedmodel: signature SavedModel → lce.convert_saved_model",
    )
    parser.add_argument(
        "--check-samples", type=int, default=4, help="random images for the tflite-vs-Keras check (0: skip)"
    )
    parser.add_argument("--out", help="output file (directory for savedmodel); default under <run>/export/")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--no-model-card", action="store_true", help="do not (re)write <run>/MODEL_CARD.md")
    args = parser.parse_args(argv)
    if not args.run_dir and not args.backbone:
        parser.error("give --run-dir or --backbone")
    if args.check_samples < 0:
        parser.error(f"--check-samples must be 0 or more, got {args.check_samples}")
    return args


def _print_report(out: Path, report: dict) -> None:
    print(f"wrote {out} ({report['bytes']:,} bytes); report {report_path(out)}")
    if "lce_ops" in report:
        counts = report["op_counts"]
        lce_ops = ", ".join(f"{op}×{counts[op]}" for op in report["lce_ops"]) or "none"
        print(f"LCE ops: {lce_ops}")
    if "check" in report:
        c = report["check"]
        ref = c["reference_bconv"]
        print(
            f"tflite vs Keras on {c['n_inputs']} random images: max abs err {c['max_abs_err']:.3g}, "
            f"max rel err {c['max_rel_err']:.3g} (LCE reference bconv kernel: "
            f"{ref['max_abs_err']:.3g} / {ref['max_rel_err']:.3g}); "
            f"exact: {c['exact']} (reference kernel: {c['exact_reference_bconv']})"
        )
        flips = sorted(set(c["sign_flip_inputs"]) | set(ref["sign_flip_inputs"]))
        if flips:
            print(
                f"  inputs {flips} differ by a float-rounding sign flip (a pre-sign value within "
                f"{c['sign_margin_tolerance']:g} of 0); without them: max rel err "
                f"{c['max_rel_err_without_sign_flips']:.3g}, reference kernel "
                f"{ref['max_rel_err_without_sign_flips']:.3g}"
            )
    for w in report["warnings"]:
        print(f"warning: {w}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
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
        out = (
            Path(args.out)
            if args.out
            else default_output(
                args.format,
                run_dir=args.run_dir,
                backbone=source,
                stage=stage,
                name=source.stem,
                with_classifier=args.with_classifier,
                int8_io=args.int8_io,
            )
        )
        report = export_model(
            source,
            out,
            args.format,
            with_classifier=args.with_classifier,
            int8_io=args.int8_io,
            int8_range=args.int8_range,
            allow_fp=args.allow_fp,
            overwrite=args.overwrite,
            converter=args.converter,
            check_samples=args.check_samples,
        )
    except ModuleNotFoundError as err:
        if not (err.name or "").startswith("larq_compute_engine"):
            raise
        print(
            f"error: --format {args.format} needs the optional larq_compute_engine (pip install 'burn_tf[export]')",
            file=sys.stderr,
        )
        return 2
    except (ExportError, BackboneFormatError, OSError) as err:  # OSError: missing, existing, unreadable
        print(f"error: {err}", file=sys.stderr)
        return 2
    _print_report(out, report)
    if args.run_dir and not args.no_model_card:
        print(f"model card: {write_model_card(args.run_dir)}")
    return 0
