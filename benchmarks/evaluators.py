"""Times the evaluators' hot loops: weighted kNN and one SVM cost sweep.

    python benchmarks/evaluators.py [--json] [--bank 60000] [--queries 10000] [--dim 1024]

* weighted kNN (``burn_tf.evaluate.knn.weighted_knn``): a bank of 60k and 10k queries of
  1024-d random float32 features, k = 200, τ = 0.07 (the size of Fashion-MNIST with a
  full-width ReActNet-A feature). Goal on the 2-core reference CPU: ≤ 10 s.
* SVM cost sweep (``burn_tf.evaluate.svm_classifiers.cost_sweep``): random features with a planted
  linear multi-hot signal, a handful of costs, 3-fold cross-validation.

Figures are printed, never asserted. With ``--json`` the last line is one JSON object with
``knn_seconds`` (and ``svm_sweep_seconds`` when the SVM evaluator is importable).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np


def bench_knn(bank: int, queries: int, dim: int, k: int, chunk_size: int | None, classes: int = 10):
    import tensorflow as tf

    from burn_tf.evaluate.knn import weighted_knn

    rng = np.random.default_rng(0)
    train = rng.standard_normal((bank, dim), dtype=np.float32)
    labels = rng.integers(0, classes, bank)
    test = rng.standard_normal((queries, dim), dtype=np.float32)
    # Warm-up on a small slice: builds the tf.function graph once.
    weighted_knn(train[: 4 * k], labels[: 4 * k], test[:8], k=k, chunk_size=chunk_size)
    start, cpu_start = time.perf_counter(), time.process_time()
    predictions, scores = weighted_knn(train, labels, test, k=k, chunk_size=chunk_size)
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    assert predictions.shape == (queries,) and scores.shape == (queries, classes)
    return {
        "knn_seconds": round(seconds, 3),
        # CPU time of this process (all threads): what the kNN costs regardless of other
        # jobs on the machine; wall ≈ cpu / cores on an otherwise idle machine.
        "knn_cpu_seconds": round(cpu_seconds, 3),
        "knn_gflop": round(2.0 * bank * queries * dim / 1e9, 1),
        "knn_gflops_per_s": round(2.0 * bank * queries * dim / seconds / 1e9, 1),
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count(),
        "knn_chunk_size": chunk_size if chunk_size is not None else "auto",
    }


def bench_svm(n: int = 2000, dim: int = 256, classes: int = 5, costs=(0.01, 0.1, 1.0, 10.0)):
    try:
        from burn_tf.evaluate.svm_classifiers import cost_sweep
    except ImportError as err:
        return {"svm_sweep": f"not available ({err})"}
    rng = np.random.default_rng(1)
    features = rng.standard_normal((n, dim)).astype(np.float32)
    planted = rng.standard_normal((dim, classes)).astype(np.float32)
    logits = features @ planted
    labels = (logits > np.quantile(logits, 0.8, axis=0)).astype(np.int64)
    labels[np.arange(n), np.argmax(logits, axis=1)] = 1  # every item has ≥ 1 label
    start = time.perf_counter()
    sweep = cost_sweep(features, labels, list(costs), folds=3)
    seconds = time.perf_counter() - start
    summary = sweep
    if isinstance(sweep, dict) and "best_cost" in sweep:
        summary = {"best_cost": sweep["best_cost"],
                   "best_cv_ap": [round(float(v), 4) for v in sweep.get("best_cv_ap", [])]}
    return {"svm_sweep_seconds": round(seconds, 3),
            "svm_sweep_shape": f"{n}x{dim}, {classes} labels, {len(costs)} costs, 3 folds",
            "svm_sweep_result": _short(summary, 200)}


def _short(value, limit: int = 120) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    parser.add_argument("--bank", type=int, default=60000)
    parser.add_argument("--queries", type=int, default=10000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("-k", type=int, default=200)
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--skip-svm", action="store_true")
    args = parser.parse_args(argv)

    result = {"load_average_1min": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}
    result.update(bench_knn(args.bank, args.queries, args.dim, args.k, args.chunk_size))
    if not args.skip_svm:
        result.update(bench_svm())

    print(f"weighted kNN: bank {args.bank} × queries {args.queries} × {args.dim}-d, k {args.k}")
    rows = [
        ("knn_seconds", result["knn_seconds"], "goal ≤ 10 s on the 2-core reference CPU"),
        ("knn_cpu_seconds", result["knn_cpu_seconds"], "process CPU time, all threads"),
        ("knn GFLOP (matmul)", result["knn_gflop"], ""),
        ("knn GFLOP/s", result["knn_gflops_per_s"], ""),
        ("svm_sweep_seconds", result.get("svm_sweep_seconds", result.get("svm_sweep", "skipped")),
         result.get("svm_sweep_shape", "")),
        ("load average (1 min)", result["load_average_1min"],
         f"{result['cpus']} CPUs, at start; other jobs skew wall times"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"  {name.ljust(width)}  {str(value):>12}  {note}")
    if args.json:
        print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
