"""Per-step cost of writing a memory bank: the old whole-variable assign vs the sparse
scatter NPID and CLD now use (issue 18).

    python benchmarks/bank_update.py [--json] [--rows 60000 1281167] [--dim 128] [--batch 256]
                                     [--replicas 1 2]

One step's bank write as ``NPID.update_bank`` does it — read the batch's rows, mix them
with the new features (momentum 0.5, renormalise), write them back — into a
:func:`burn_tf.distribute.replica_shared_variable` of ``rows`` × ``dim`` float32, in a
``tf.function``:

- ``assign``: ``bank.assign(tf.tensor_scatter_nd_update(bank, index, rows))`` (the code
  before issue 18: a new bank-sized tensor every step, written back whole — under
  MirroredStrategy the first replica's whole bank is broadcast to every device);
- ``scatter``: ``update_rows(bank, index, mix, features)`` (a sparse read and a
  ``Variable.scatter_update`` of the batch's rows, in place; under MirroredStrategy in
  cross-replica context, each device updating its own copy).

``--replicas 2`` runs the same write in replica context under MirroredStrategy over 2
logical CPU devices (every replica passes the same gathered batch, as the methods do).
Both variants of a size are timed in interleaved rounds of one run (median), and
``assign_over_scatter`` is their ratio. Sizes: Fashion-MNIST/CIFAR (60,000 rows) and
ImageNet-1k (1,281,167 rows), 128-d (NPID's ``--low-dim 128``).
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

from burn_tf.distribute import replica_shared_variable, update_rows  # noqa: E402
from burn_tf.ops.memory import memory_bank_rows  # noqa: E402


def write_functions(strategy, rows: int, dim: int, batch: int) -> dict:
    """{"assign": step, "scatter": step}: one bank write of ``batch`` rows per call."""
    with strategy.scope():
        banks = {name: replica_shared_variable(tf.math.l2_normalize(tf.random.normal((rows, dim)), -1), f"bank_{name}")
                 for name in ("assign", "scatter")}
    index = tf.random.shuffle(tf.range(rows, dtype=tf.int64))[:batch]
    features = tf.math.l2_normalize(tf.random.normal((batch, dim)), -1)

    def assign(bank):
        new = memory_bank_rows(tf.gather(bank, index), features, 0.5)
        bank.assign(tf.tensor_scatter_nd_update(bank, index[:, None], new))

    def scatter(bank):
        update_rows(bank, index, lambda old, new: memory_bank_rows(old, new, 0.5), features)

    steps = {}
    for name, write in (("assign", assign), ("scatter", scatter)):
        bank = banks[name]

        @tf.function
        def step(write=write, bank=bank):
            strategy.run(write, args=(bank,))
            return tf.constant(0)  # something to force to host; the write ran before the return

        steps[name] = step
    return steps


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rows", type=int, nargs="+", default=[60_000, 1_281_167])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--batch", type=int, default=256, help="rows written per step (the global batch)")
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2], choices=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    results = []
    for replicas in args.replicas:
        strategy = (tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]) if replicas == 2
                    else tf.distribute.get_strategy())
        for rows in args.rows:
            steps = write_functions(strategy, rows, args.dim, args.batch)
            medians = interleaved_medians(steps, repeats=args.repeats, rounds=args.rounds)
            results.append({
                "replicas": replicas, "rows": rows, "dim": args.dim, "batch": args.batch,
                "bank_mb": round(rows * args.dim * 4 / 2 ** 20, 1),
                "assign_ms": round(medians["assign"] * 1e3, 3), "scatter_ms": round(medians["scatter"] * 1e3, 3),
                "assign_over_scatter": round(medians["assign"] / medians["scatter"], 1),
            })
            del steps
    out = {"load_average": load_average(), "results": results}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"bank write per step, batch {args.batch}, {args.dim}-d float32 (load average {out['load_average']:.1f})")
        print(f"{'replicas':>8} {'rows':>10} {'bank MB':>8} {'assign ms':>10} {'scatter ms':>11} {'ratio':>7}")
        for r in results:
            print(f"{r['replicas']:>8} {r['rows']:>10} {r['bank_mb']:>8} {r['assign_ms']:>10.3f} "
                  f"{r['scatter_ms']:>11.3f} {r['assign_over_scatter']:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
