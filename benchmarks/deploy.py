"""Deployment size and latency: binary ReActNet-A (LCE) vs the FP32 ResNet-50 teacher.

    .venv/bin/python benchmarks/deploy.py [--json] [--runs 20] [--warmup 3]

Student: ReActNet-A stage 2 (binary weights and activations), 224 px, no head, converted
by Larq Compute Engine (bit-packed LceBconv2d ops). Teacher: keras.applications.ResNet50
(weights=None, include_top=False, pooling="avg"), 224 px, FP32, converted by the plain
TFLite converter (``--teacher-converter lce`` for LCE's). Both carry **random weights**:
file size and speed depend on the architecture only, not on what the weights learned.

Latency: single image, LCE's Python interpreter (a TFLite interpreter with the LCE ops
registered), 1 and 2 threads, median of ``--runs`` runs after ``--warmup`` warm-up runs.
On x86 LCE runs its portable kernels — its hand-optimised binary kernels target Arm64 —
so these latencies say little about a phone or a Raspberry Pi (see the printed note).
Figures only: nothing here is asserted. With ``--json`` the last line is one JSON object
(``size_ratio`` = teacher bytes ÷ student bytes, ``student_ms``, ``teacher_ms`` at 1
thread, ``student_ms_2threads``, ``teacher_ms_2threads`` …).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from burn_tf.export import tflite_op_counts, to_tflite
from burn_tf.export.latency import lce_latency_ms
from burn_tf.io import atomic_write_bytes
from burn_tf.models.reactnet import ReActNetConfig, reactnet_a
from burn_tf.summary import model_stats

ARM_NOTE = """\
LCE's fast binary kernels are written for Arm (aarch64, e.g. Raspberry Pi 4/5, phones); on
x86 the interpreter falls back to portable kernels, so the latencies above are NOT what a
device achieves. To measure on an Arm64 board:
  1. write the flatbuffers:  python benchmarks/deploy.py --out-dir deploy_models
  2a. LCE's benchmark binary (build it from github.com/larq/compute-engine, v0.16):
        bazel build -c opt --config=aarch64 //larq_compute_engine/tflite/benchmark:lce_benchmark_model
      copy bazel-bin/larq_compute_engine/tflite/benchmark/lce_benchmark_model and the .tflite
      files to the board, then
        ./lce_benchmark_model --graph=reactnet_a_stage2_224.tflite --num_threads=1 --num_runs=50
        ./lce_benchmark_model --graph=resnet50_fp32_224.tflite --num_threads=1 --num_runs=50
      (Android: --config=android_arm64 and adb push; see LCE's docs "Benchmarking").
  2b. or, where a larq-compute-engine wheel exists for the board's Python, run this script
      there: python benchmarks/deploy.py --tflite-dir deploy_models"""


def student_model(input_size: int) -> tf.keras.Model:
    return reactnet_a(ReActNetConfig(stage=2, input_size=input_size), include_top=False)


def teacher_model(input_size: int) -> tf.keras.Model:
    return tf.keras.applications.ResNet50(weights=None, include_top=False, pooling="avg",
                                          input_shape=(input_size, input_size, 3))


def convert_teacher(model: tf.keras.Model, converter: str) -> bytes:
    if converter == "lce":
        return to_tflite(model, converter="savedmodel")
    tflite = tf.lite.TFLiteConverter.from_keras_model(model)
    return tflite.convert()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--converter", default="savedmodel", choices=["keras", "savedmodel"],
                        help="LCE converter path for the student (see burn_tf.export.tflite.to_tflite)")
    parser.add_argument("--teacher-converter", default="tflite", choices=["tflite", "lce"])
    parser.add_argument("--xnnpack", action="store_true",
                        help="also time both models with TFLite's XNNPACK delegate (FP ops)")
    parser.add_argument("--out-dir", help="also write the two .tflite files here")
    parser.add_argument("--tflite-dir", help="read the two .tflite files from here instead of converting")
    args = parser.parse_args(argv)

    s = args.input_size
    names = {"student": f"reactnet_a_stage2_{s}.tflite", "teacher": f"resnet50_fp32_{s}.tflite"}
    result: dict = {"input_size": s, "weights": "random (size and speed do not depend on training)",
                    "machine": platform.machine(), "runtime": "larq_compute_engine Interpreter"}
    flatbuffers = {}
    if args.tflite_dir:
        for key, name in names.items():
            flatbuffers[key] = (Path(args.tflite_dir) / name).read_bytes()
    else:
        student = student_model(s)
        teacher = teacher_model(s)
        result["student_stats"] = {k: model_stats(student)[k] for k in
                                   ("trainable_params", "binary_macs", "fp_macs", "ops")}
        result["teacher_stats"] = {k: model_stats(teacher)[k] for k in
                                   ("trainable_params", "binary_macs", "fp_macs", "ops")}
        t = time.time()
        flatbuffers["student"] = to_tflite(student, converter=args.converter)
        result["student_convert_s"] = round(time.time() - t, 1)
        t = time.time()
        flatbuffers["teacher"] = convert_teacher(teacher, args.teacher_converter)
        result["teacher_convert_s"] = round(time.time() - t, 1)
        if args.out_dir:
            for key, name in names.items():
                atomic_write_bytes(Path(args.out_dir) / name, flatbuffers[key])
    ops = tflite_op_counts(flatbuffers["student"])
    result["student_lce_ops"] = {op: n for op, n in ops.items() if op.startswith("Lce")}
    result["student_bytes"] = len(flatbuffers["student"])
    result["teacher_bytes"] = len(flatbuffers["teacher"])
    result["size_ratio"] = result["teacher_bytes"] / result["student_bytes"]

    for key in ("student", "teacher"):
        for threads in args.threads:
            timing = lce_latency_ms(flatbuffers[key], threads, args.runs, args.warmup)
            suffix = "" if threads == 1 else f"_{threads}threads"
            result[f"{key}_ms{suffix}"] = timing["median_ms"]
            result[f"{key}_latency{suffix}"] = timing
            if args.xnnpack:
                timing = lce_latency_ms(flatbuffers[key], threads, args.runs, args.warmup, use_xnnpack=True)
                result[f"{key}_xnnpack_ms{suffix}"] = timing["median_ms"]
    try:
        result["load_average"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass

    print(f"ReActNet-A stage 2 vs ResNet-50 FP32, {s}x{s}, random weights "
          "(file size and speed do not depend on training)")
    print(f"  student (LCE, binary): {result['student_bytes'] / 2**20:8.2f} MiB   "
          f"LCE ops {result['student_lce_ops']}")
    print(f"  teacher (TFLite FP32): {result['teacher_bytes'] / 2**20:8.2f} MiB")
    print(f"  size ratio teacher/student: {result['size_ratio']:.1f}x")
    for threads in args.threads:
        suffix = "" if threads == 1 else f"_{threads}threads"
        line = (f"  {threads} thread(s): student {result['student_ms' + suffix]:8.1f} ms   "
                f"teacher {result['teacher_ms' + suffix]:8.1f} ms (median of {args.runs})")
        if args.xnnpack:
            line += (f"   XNNPACK: student {result['student_xnnpack_ms' + suffix]:.1f} ms, "
                     f"teacher {result['teacher_xnnpack_ms' + suffix]:.1f} ms")
        print(line)
    if "load_average" in result:
        print(f"  machine {result['machine']}, load average {result['load_average']} "
              f"({os.cpu_count()} CPUs): a shared machine inflates and scatters these times")
    print()
    print(ARM_NOTE)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
