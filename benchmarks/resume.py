"""What does a resume late in a run cost before training continues? (issue 18)

    python benchmarks/resume.py [--json] [--steps 50 400] [--batch-size 256] [--size 32] [--repeats 3]

On Fashion-MNIST train (60,000 images) with the demo's BURN views, measures the time to
the first batch out of the training pipeline (``build.build_train_dataset``: build it,
then draw one batch) when it starts at step k, for each k, and prints
``resume_over_fresh_start`` = that time over the time at step 0. Goal: flat in k, <= 1.5.
For comparison it also times the sequential path (a shuffle buffer, then ``skip(k)``: what
tfds and compressed TFRecord sources still do, and what every source did before), whose
cost grows with k. Times are medians of ``--repeats`` interleaved runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import load_average

from burn_tf.build import build_source, build_train_dataset, stream_seed
from burn_tf.config import load_config
from burn_tf.data import multi_view_dataset


def first_batch_seconds(make_dataset) -> float:
    start = time.perf_counter()
    batch = next(iter(make_dataset()))
    batch[0].numpy()
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--steps", type=int, nargs="+", default=[50, 400])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-sequential", action="store_true", help="skip timing the sequential path")
    args = parser.parse_args(argv)

    cfg = load_config("demo", [f"train.batch_size={args.batch_size}", f"backbone.input_size={args.size}",
                               "data.limit=null", "train.steps_per_epoch=null"])
    source = build_source(cfg)  # 60,000 images, read once into memory

    def indexed(k):
        return lambda: build_train_dataset(cfg, start_step=k, source=source)[0]

    def sequential(k):
        def make():
            ds = multi_view_dataset(source, cfg.view_configs(), args.batch_size, seed=stream_seed(cfg, 1),
                                    shuffle_buffer=cfg.data.shuffle_buffer, repeat=True)
            return ds.skip(k) if k else ds
        return make

    cases = {("indexed", k): indexed(k) for k in [0, *args.steps]}
    if not args.no_sequential:
        cases.update({("sequential", k): sequential(k) for k in [0, *args.steps]})
    first_batch_seconds(indexed(0))  # warm-up: imports, first traces
    times = {key: [] for key in cases}
    load_start = load_average()
    for _ in range(args.repeats):
        for key, make in cases.items():
            times[key].append(first_batch_seconds(make))
    median = {key: statistics.median(v) for key, v in times.items()}
    result = {"images": int(source.cardinality()), "batch_size": args.batch_size, "image_size": args.size,
              "repeats": args.repeats, "load_average_start": load_start, "load_average_end": load_average()}
    for path in ("indexed", "sequential"):
        if (path, 0) not in median:
            continue
        fresh = median[(path, 0)]
        result[path] = {
            "fresh_start_s": round(fresh, 3),
            **{f"resume_at_step_{k}_s": round(median[(path, k)], 3) for k in args.steps},
            **{f"resume_over_fresh_start_at_step_{k}": round(median[(path, k)] / fresh, 2) for k in args.steps},
        }
    result["resume_over_fresh_start"] = {k: result["indexed"][f"resume_over_fresh_start_at_step_{k}"]
                                         for k in args.steps}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for path in ("indexed", "sequential"):
            if path in result:
                row = result[path]
                print(f"{path:10s} fresh start {row['fresh_start_s']:.3f} s; " + "; ".join(
                    f"resume at step {k}: {row[f'resume_at_step_{k}_s']:.3f} s "
                    f"(x{row[f'resume_over_fresh_start_at_step_{k}']})" for k in args.steps))
        print(f"resume_over_fresh_start: {result['resume_over_fresh_start']} "
              f"(load average {load_start:.1f} -> {result['load_average_end']:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
