"""python -m burn_tf.evaluate <task> --backbone PATH [--data NAME] [--protocol NAME] [--out DIR] [--set k=v …] [--json]

A thin layer over the Python API: ``--set key=value`` becomes a keyword argument of the
task's function ``<task>(backbone, …)`` in its module (``burn_tf.evaluate.TASKS``: ``knn`` →
``burn_tf.evaluate.knn``, ``detect`` → ``burn_tf.evaluate.detection``; values parsed as
YAML: 0.1, [1, 2], true);
``--protocol`` is ``--set protocol=…`` for the tasks that have one (layerwise: fast | seed).

A user mistake (unknown task, missing or invalid backbone path, missing data_dir, bad
``--set`` key or value) ends in one ``error: …`` line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from pathlib import Path

import yaml

from burn_tf.evaluate import TASKS
from burn_tf.evaluate.common import print_json_last_line

USAGE_ERROR = 2
# What the evaluators raise for bad input (their messages name the path, key or value):
# FileNotFoundError also covers SourceNotFoundError (missing data_dir / data set),
# ValueError covers BackboneFormatError and DetectionConfigError; FloatingPointError is a
# diverged training (too high a learning rate).
USER_ERRORS = (FileNotFoundError, ValueError, TypeError, FloatingPointError)


class UsageError(Exception):
    """A command line the evaluators cannot run (reported as one ``error:`` line)."""


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: one line too, same exit code
        raise UsageError(message)


def parse_overrides(pairs: list[str], fn, task: str) -> dict:
    params = inspect.signature(fn).parameters
    valid = [n for n, p in params.items() if n != "backbone" and p.kind != p.VAR_KEYWORD]
    kwargs = {}
    for pair in pairs:
        if "=" not in pair:
            raise UsageError(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        if key not in valid:
            raise UsageError(f"{task}: unknown --set key {key!r}; valid keys: {', '.join(valid)}")
        try:
            kwargs[key] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise UsageError(f"--set {key}: cannot parse {value!r} ({str(err).splitlines()[0]})") from None
    return kwargs


def run(argv: list[str] | None = None) -> int:
    parser = _ArgumentParser(prog="python -m burn_tf.evaluate", description=__doc__,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("--backbone", required=True, help="exported backbone directory or .keras file")
    parser.add_argument("--data", default=None, help="data set name (task-specific; default: embedded)")
    parser.add_argument("--protocol", default=None, help="evaluation protocol (task-specific, "
                        "e.g. layerwise: fast | seed)")
    parser.add_argument("--out", default=None, help="directory for <task>.json and plots "
                        "(default: <backbone>/../eval when the backbone is a directory)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", action="store_true", help="print the result as JSON on the last line")
    args = parser.parse_args(argv)

    module = importlib.import_module(TASKS[args.task])
    fn = getattr(module, args.task)
    kwargs = parse_overrides(args.overrides, fn, args.task)
    params = inspect.signature(fn).parameters
    if args.data is not None:
        if "data" not in params:
            raise UsageError(f"{args.task} takes no --data")
        kwargs["data"] = args.data
    if args.protocol is not None:
        if "protocol" not in params:
            raise UsageError(f"{args.task} takes no --protocol")
        kwargs["protocol"] = args.protocol
    if not Path(args.backbone).exists():
        raise UsageError(f"--backbone {args.backbone}: no such file or directory")
    kwargs["out_dir"] = args.out if args.out is not None else str(Path(args.backbone).parent / "eval")
    try:
        result = fn(args.backbone, **kwargs)
    except USER_ERRORS as err:
        given = [pair.split("=", 1)[0] for pair in args.overrides]
        hint = f" (given --set {', '.join(given)})" if isinstance(err, TypeError) and given else ""
        raise UsageError(f"{args.task}: {err}{hint}") from None
    print(module.format_result(result))
    if args.json:
        print_json_last_line(result)
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except UsageError as err:
        message = " ".join(str(err).split())  # one line, whatever the evaluator's message held
        print(f"error: {message}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
