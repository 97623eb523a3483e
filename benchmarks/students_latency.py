"""LCE latency of each student of the students study (``configs/students.yaml``), for its table.

    .venv/bin/python benchmarks/students_latency.py [--config configs/students.yaml] [--sizes 48 224]
                                                    [--runs 30] [--warmup 5] [--threads 1]
                                                    [--out benchmarks/results/students/latency.json]

Each student's stage-2 network (random weights: size and speed do not depend on training),
as :func:`burn_tf.studies.students.pretrain_config` builds it, at each size, converted by
Larq Compute Engine (:func:`burn_tf.export.to_tflite`) and timed in LCE's interpreter
(:func:`burn_tf.export.latency.lce_latency_ms`): one image, median of ``--runs`` runs. On x86
LCE runs its portable kernels — its binary kernels are optimised for Arm64 — so the figures
rank the students on this machine; they are not a device's latency (the study's table puts
larq-zoo's published Arm64 figures beside them). Time it with nothing else running (a
timing benchmark: never two at once). Writes ``--out`` (atomically) and prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from burn_tf.config import read_config_values
from burn_tf.export import tflite_op_counts, to_tflite
from burn_tf.export.latency import lce_latency_ms
from burn_tf.io import atomic_write_json
from burn_tf.models.trained_network import build_backbone
from burn_tf.studies.students import load_students_config, pretrain_config, selected_students


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="students.yaml")
    parser.add_argument("--preset", default="full")
    parser.add_argument("--sizes", type=int, nargs="+", default=None,
                        help="input sizes (default: the study's and its flatbuffer_size)")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/students/latency.json")
    args = parser.parse_args(argv)

    cfg = load_students_config(args.config, args.preset)
    base = read_config_values(cfg.base)
    result: dict = {"machine": platform.machine(), "runtime": "larq_compute_engine Interpreter (x86: portable kernels)",
                    "threads": args.threads, "runs": args.runs, "warmup": args.warmup,
                    "weights": "random (size and speed do not depend on training)", "students": {}}
    start = time.time()
    for student in selected_students(cfg):
        pcfg = pretrain_config(cfg, student, 0, base)
        sizes = args.sizes or sorted({pcfg.backbone.input_size, cfg.flatbuffer_size})
        timings = {}
        for size in sizes:
            backbone = build_backbone(dataclasses.replace(pcfg.backbone, input_size=size), 2, name=student.name)
            flatbuffer = to_tflite(backbone)
            timing = lce_latency_ms(flatbuffer, args.threads, args.runs, args.warmup)
            ops = tflite_op_counts(flatbuffer)
            timings[str(size)] = {**timing, "bytes": len(flatbuffer), "lce_bconv2d": ops.get("LceBconv2d", 0)}
            print(f"{student.name:<16} {size:>4} px: {timing['median_ms']:8.2f} ms (p10 {timing['p10_ms']:.2f}, "
                  f"p90 {timing['p90_ms']:.2f})  {len(flatbuffer) / 2**20:6.2f} MiB  "
                  f"{timings[str(size)]['lce_bconv2d']} LceBconv2d", flush=True)
        result["students"][student.name] = timings
    try:
        result["load_average"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    result["seconds"] = round(time.time() - start, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(args.out), result)
    print(json.dumps({"out": args.out, "load_average": result.get("load_average")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
