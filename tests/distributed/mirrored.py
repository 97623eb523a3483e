"""Every two-replica comparison of tests/test_distributed.py in one process: TensorFlow
starts once, the CPU is split into 2 logical devices once, and one MirroredStrategy
(replicas.two_cpus) serves every case — each process of its own cost a TensorFlow import
and a strategy. Prints one JSON line, ``{case: result}``; a case that raises gets
``{"error": its traceback}`` and the later cases still run.

    python tests/distributed/mirrored.py burn:2 contrastive/moco_v2 bank/npid … mixed

Cases: replicas.py's as they are (``burn:2``, ``burn:1:sinkhorn``, ``mixed`` …);
``contrastive/<case>`` contrastive_replicas.py's (``moco_v2``, ``simclr_v2:each_step`` …);
``bank/<method>`` npid_replicas.py's (``npid``, ``cld``, ``cld_moco``, ``swav``). Each case
sets its own seeds; ``mixed`` changes the dtype policy of the layers it builds, so it goes
last.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# replicas splits the CPU into 2 logical devices at import (the others import it), before
# any TensorFlow operation initialises the devices.
import contrastive_replicas
import npid_replicas
import replicas
import tensorflow as tf


def run_case(case: str) -> dict:
    family, _, name = case.rpartition("/")
    tf.keras.utils.set_random_seed(0)
    if family == "contrastive":
        return contrastive_replicas.run_case(name)
    if family == "bank":
        return npid_replicas.compare(name)
    if family:
        raise ValueError(f"unknown case family {family!r} in {case!r}")
    return replicas.run_case(name)


def main():
    results = {}
    for case in sys.argv[1:]:
        start = time.perf_counter()
        try:
            results[case] = run_case(case)
        except Exception:  # reported to the test of that case
            results[case] = {"error": traceback.format_exc()}
        results[case]["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
