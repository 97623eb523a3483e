"""One worker of a MultiWorkerMirroredStrategy BURN run (TF_CONFIG names the cluster and this
worker); run by tests/test_distributed.py. Every worker writes its own run directory (all
of them must take part in each checkpoint's collective reads). Prints one JSON line: the
replica count, the final step and a hash of the final student weights."""

import hashlib
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "faults"))

import tensorflow as tf
from kill_run import TINY as KILL_RUN_TINY

from burn_tf.build import build_method, checkpoint_for
from burn_tf.config import load_config
from burn_tf.distribute import make_strategy
from burn_tf.pretrain import pretrain_stage

# The faults tests' tiny run, traced (not eager), on ReActNet-A's first 2 blocks (as
# tests/distributed/replicas.py), 2 epochs of 1 step (an epoch boundary under the strategy;
# a step costs little next to the trace), a checkpoint every step.
TINY = [*KILL_RUN_TINY, "backbone.blocks=2", "train.run_eagerly=false", "train.steps_per_epoch=1",
        "train.strategy=multiworker", "train.checkpoint_every_steps=1"]


def main():
    run_dir = Path(sys.argv[1])
    cfg = load_config("demo", TINY)
    strategy = make_strategy("multiworker")  # first: collectives are configured at start-up
    metrics = pretrain_stage(cfg, 1, run_dir)
    model = build_method(cfg, 1)
    model.build_all()
    checkpoint_for(model).restore(tf.train.latest_checkpoint(str(run_dir / "stage1" / "final"))).expect_partial()
    digest = hashlib.sha256()
    for w in model.train_variables():
        digest.update(w.numpy().tobytes())
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "global_step": metrics["global_step"],
                      "weights_sha256": digest.hexdigest()}))


if __name__ == "__main__":
    main()
