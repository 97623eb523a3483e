"""python -m burn_tf.evaluate <task> --backbone PATH [--data NAME] [--out DIR] [--set k=v …] [--json]

A thin layer over the Python API: ``--set key=value`` becomes a keyword argument of
``burn_tf.evaluate.<task>(backbone, …)`` (values parsed as YAML: 0.1, [1, 2], true).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys

import yaml

from burn_tf.evaluate import TASKS
from burn_tf.evaluate.common import print_json_last_line


def parse_overrides(pairs: list[str], fn, task: str) -> dict:
    params = inspect.signature(fn).parameters
    valid = [n for n, p in params.items() if n != "backbone" and p.kind != p.VAR_KEYWORD]
    kwargs = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        if key not in valid:
            raise SystemExit(f"{task}: unknown key {key!r}; valid keys: {', '.join(valid)}")
        kwargs[key] = yaml.safe_load(value)
    return kwargs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m burn_tf.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("--backbone", required=True, help="exported backbone directory or .keras file")
    parser.add_argument("--data", default=None, help="data set name (task-specific; default: embedded)")
    parser.add_argument("--out", default=None, help="directory for <task>.json and plots "
                        "(default: <backbone>/../eval when the backbone is a directory)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", action="store_true", help="print the result as JSON on the last line")
    args = parser.parse_args(argv)

    module = importlib.import_module(f"burn_tf.evaluate.{args.task}")
    fn = getattr(module, args.task)
    kwargs = parse_overrides(args.overrides, fn, args.task)
    params = inspect.signature(fn).parameters
    if args.data is not None:
        if "data" not in params:
            raise SystemExit(f"{args.task} takes no --data")
        kwargs["data"] = args.data
    out = args.out
    if out is None:
        from pathlib import Path

        backbone = Path(args.backbone)
        out = str((backbone.parent if backbone.is_dir() else backbone.parent) / "eval")
    kwargs["out_dir"] = out
    result = fn(args.backbone, **kwargs)
    print(module.format_result(result))
    if args.json:
        print_json_last_line(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
