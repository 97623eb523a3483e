"""Convert a PyTorch checkpoint to a Keras weights file, without torch.

    python -m burn_tf.convert --arch resnet50 --checkpoint moco_v2_800ep_pretrain.pth.tar \
        --out moco_v2_r50.weights.h5

The output holds the weights of the backbone built by
``burn_tf.models.teacher.build_teacher_backbone(arch, small_input_stem=...)``; pass it to
``burn_tf.convert.pretrained_teacher.build_teacher(arch, weights=OUT)``. MoCo's
``module.encoder_q.`` / DataParallel's ``module.`` prefixes are handled, classifier weights
(``fc``, ``_fc``) ignored. The file is
written atomically and an existing one is kept unless ``--overwrite``. A user's mistake (a
missing or unreadable checkpoint, one that does not fit ``--arch``, an existing ``--out``)
ends in one ``error: …`` line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from burn_tf.convert.converters import (
    EFFICIENTNET_IGNORE,
    RESNET_IGNORE,
    CheckpointMismatchError,
    assign_state_dict,
)
from burn_tf.convert.torch_checkpoint import (
    CheckpointFormatError,
    UnsafeCheckpointError,
    load_torch_state_dict,
)
from burn_tf.io import atomic_output, refuse_existing
from burn_tf.models import efficientnet_lite, resnet
from burn_tf.models.teacher import build_teacher_backbone

ARCHS = ("resnet50", "resnet18", "efficientnet_lite0")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m burn_tf.convert", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", required=True, choices=ARCHS)
    p.add_argument("--checkpoint", required=True, help="PyTorch checkpoint (.pth, .pth.tar, .pt)")
    p.add_argument("--out", required=True, help="Keras weights file to write (*.weights.h5 or *.h5)")
    p.add_argument("--key", default=None, help="entry holding the state_dict (default: auto)")
    p.add_argument("--prefix", default=None, help="key prefix of the backbone (default: auto)")
    p.add_argument("--small-input-stem", action="store_true", help="ResNet with the 3x3/1 stem, no max-pool")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    args = p.parse_args(argv)
    if not (args.out.endswith(".h5")):
        p.error(f"--out must end with .weights.h5 or .h5, got {args.out!r}")
    return args


def convert(args: argparse.Namespace) -> list[str]:
    """Run the conversion described by ``args``; returns the ignored checkpoint keys."""
    refuse_existing(args.out, args.overwrite, "--overwrite")
    state_dict = load_torch_state_dict(args.checkpoint, key=args.key)
    model = build_teacher_backbone(args.arch, (None, None, 3), small_input_stem=args.small_input_stem)
    if args.arch == "efficientnet_lite0":
        name_map, ignore = efficientnet_lite.torch_name_map(model), EFFICIENTNET_IGNORE
    else:
        name_map, ignore = resnet.torch_name_map(model), RESNET_IGNORE
    ignored = assign_state_dict(state_dict, model, name_map, ignore, args.prefix, source=args.checkpoint)

    with atomic_output(args.out) as tmp:  # same file name, so Keras sees the .h5 suffix
        model.save_weights(tmp)
    return ignored


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        ignored = convert(args)
    # OSError: a missing, unreadable or existing file; KeyError: no such --key entry
    except (CheckpointFormatError, CheckpointMismatchError, UnsafeCheckpointError, OSError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    shown = [k for k in ignored if not k.endswith("num_batches_tracked")]
    counters = len(ignored) - len(shown)
    msg = f"wrote {args.out} ({args.arch})"
    if shown:
        msg += f"; ignored {', '.join(shown[:6])}{' …' if len(shown) > 6 else ''}"
    if counters:
        msg += f"; ignored {counters} BatchNorm num_batches_tracked counters"
    print(msg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
