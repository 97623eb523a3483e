"""Fingerprints of a fixed-seed short run of every shipped method config: the check that a
restructuring moved no number.

Each config in ``configs/`` that names a method is pretrained through ``burn_tf.pretrain``
(both stages where the backbone has two) on 64 Fashion-MNIST images, 3 steps a stage, a
4-block ReActNet-A of width 0.125 at 32 px, op determinism on. The SHA-256 of every final
weight (the stage's ``final/`` checkpoint, read variable by variable in name order) is
printed as JSON, one line per config::

    python scripts/weights_fingerprint.py --out /tmp/before.json
    ... change the code ...
    python scripts/weights_fingerprint.py --compare /tmp/before.json

``--compare`` exits 1 when any config's weights differ.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import tensorflow as tf

from burn_tf.config import load_config, shipped_config_names
from burn_tf.methods import method_class
from burn_tf.pretrain import pretrain

TINY_REACTNET = ["backbone.input_size=32", "backbone.width_multiplier=0.125", "backbone.blocks=4"]
COMMON = [
    "train.batch_size=8", "train.steps_per_epoch=3", "train.epochs=1", "train.verbose=0",
    "data.limit=64", "data.shuffle_buffer=64", "optimizer.warmup_epochs=0", "train.seed=0",
]
TEACHER = ["teacher.kind=resnet18", "teacher.weights=null", "teacher.small_input_stem=true",
           "teacher.input_size=32"]


def _config(name: str):
    base = load_config(name)
    overrides = list(COMMON)
    if base.backbone.kind == "reactnet_a":  # the FP ResNet teacher configs keep their own size
        overrides += TINY_REACTNET
    if method_class(base.method.name).needs_teacher:
        overrides += TEACHER
    if hasattr(base.method, "num_groups"):  # CLD groups at most half the batch
        overrides.append("method.num_groups=4")
    return load_config(name, overrides)


def fingerprint(run_dir: Path) -> dict[str, str]:
    prints = {}
    for final in sorted(run_dir.glob("stage*/final")):
        reader = tf.train.load_checkpoint(str(final))
        digest = hashlib.sha256()
        for key in sorted(reader.get_variable_to_shape_map()):
            if key.startswith("_CHECKPOINTABLE_OBJECT_GRAPH") or "save_counter" in key:
                continue
            digest.update(key.encode())
            digest.update(reader.get_tensor(key).tobytes())
        prints[final.parent.name] = digest.hexdigest()[:16]
    return prints


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the fingerprints here (JSON)")
    parser.add_argument("--compare", help="fingerprints written before: exit 1 when any differ")
    parser.add_argument("--configs", help="comma-separated config names (default: every method config)")
    args = parser.parse_args(argv)
    tf.config.experimental.enable_op_determinism()
    names = args.configs.split(",") if args.configs else [
        n.removesuffix(".yaml") for n in shipped_config_names()
        if "/" not in n and n not in ("ablate.yaml", "compare.yaml")]
    result = {}
    for name in names:
        tf.keras.utils.set_random_seed(0)
        tf.keras.backend.clear_session()
        with tempfile.TemporaryDirectory() as tmp:
            pretrain(_config(name), Path(tmp) / "run", "all")
            result[name] = fingerprint(Path(tmp) / "run")
        print(json.dumps({name: result[name]}), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    if args.compare:
        before = json.loads(Path(args.compare).read_text())
        moved = {k: (before.get(k), v) for k, v in result.items() if before.get(k) != v}
        print("same weights" if not moved else f"moved: {json.dumps(moved)}")
        return 1 if moved else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
