"""Samples/s of the BURN train step on 1 vs 2 replicas (MirroredStrategy over logical CPU
devices), and where a 2-replica step's wall time goes.

    python benchmarks/scaling.py [--json] [--batch-size 32] [--config demo] [--set key=value …]

The same global batch, model and step function (what ``model.fit`` runs) on: the default
strategy (one device) and MirroredStrategy over 2 logical devices. Prints
``two_over_one`` = samples/s with 2 replicas ÷ with 1. The split of the 2-replica step:
``allreduce_ms`` is the all-reduce of one step's gradients alone (tensors shaped like the
trainable variables, summed over the replicas in a step function of its own — TensorFlow
exposes no per-step breakdown short of the profiler), ``compute_ms`` = step − all-reduce.

Logical CPU devices share the process's thread pools: one replica already uses every core
through intra-op parallelism, so on a CPU two replicas cannot beat one — the figure
measures the overhead of the replica machinery (per-replica graphs, merge calls, the
all-reduce), not a speed-up. On 2 GPUs the same command measures real scaling.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tensorflow as tf

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(_cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

from _timing import interleaved_medians, load_average  # noqa: E402
from burn_step import train_step_function  # noqa: E402

from burn_tf.config import load_config  # noqa: E402


def allreduce_function(strategy, variables):
    shapes = [v.shape for v in variables]

    @tf.function
    def reduce_all():
        def replica():
            grads = [tf.ones(s) for s in shapes]
            return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, grads)[0]
        return strategy.run(replica)

    return reduce_all


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--config", default="demo")
    parser.add_argument("--batch-size", type=int, default=32, help="global batch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    cfg = load_config(args.config, ["teacher.weights=null", f"train.batch_size={args.batch_size}", *args.overrides])
    size = cfg.backbone.input_size

    one = tf.distribute.get_strategy()
    two = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")][:2])
    _, step_one, n = train_step_function(cfg, one, args.batch_size, size, stage=2)
    model_two, step_two, _ = train_step_function(cfg, two, args.batch_size, size, stage=2)
    reduce_two = allreduce_function(two, model_two.train_variables())
    t = interleaved_medians({"one": step_one, "two": step_two, "allreduce": reduce_two}, args.repeats)
    result = {
        "samples_per_s_one_replica": round(n / t["one"], 1),
        "samples_per_s_two_replicas": round(n / t["two"], 1),
        "two_over_one": round(t["one"] / t["two"], 3),
        "step_ms_two_replicas": round(1000 * t["two"], 1),
        "allreduce_ms": round(1000 * t["allreduce"], 2),
        "compute_ms": round(1000 * (t["two"] - t["allreduce"]), 1),
        "allreduce_fraction": round(t["allreduce"] / t["two"], 4),
        "gradient_mib": round(sum(v.shape.num_elements() * 4 for v in model_two.train_variables()) / 2**20, 2),
        "global_batch": args.batch_size, "images_per_step": n, "input_size": size,
        "cores": os.cpu_count(), "load_average": load_average(),
    }
    print(f"1 replica   {result['samples_per_s_one_replica']:8.1f} samples/s")
    print(f"2 replicas  {result['samples_per_s_two_replicas']:8.1f} samples/s   two_over_one {result['two_over_one']}")
    print(f"2-replica step {result['step_ms_two_replicas']} ms: all-reduce {result['allreduce_ms']} ms "
          f"({result['gradient_mib']} MiB of gradients), compute and the rest {result['compute_ms']} ms")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
