"""The harness every study runs its runs through (``python -m burn_tf.studies.ablate``,
``python -m burn_tf.studies.compare``): a budget config with presets, one pretraining config
per (run, seed) with that budget imposed, the pretraining run itself, the demo's evaluation
(weighted kNN and a linear probe on Fashion-MNIST test), a ``runs.jsonl`` log that lets a
rerun skip finished runs, mean ± std over seeds and the studies' command line. The studies
use it as one module (``harness.RunLog``, ``harness.pretrain_run``, …).

Each run is pretrained through :func:`burn_tf.pretrain.pretrain_stage` — the code the CLI
runs — and its exported backbone is evaluated by :func:`burn_tf.studies.demo.evaluate_features`,
so a study's numbers are the demo's numbers for another config.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from burn_tf.callbacks import StepRecorder
from burn_tf.config import (
    ConfigError,
    PretrainConfig,
    apply_overrides,
    config_from_dict,
    read_config_values,
)
from burn_tf.data import load_fashion_mnist_arrays
from burn_tf.evaluate.features import extract_features
from burn_tf.evaluate.knn import knn_accuracy
from burn_tf.evaluate.metrics import seed_std
from burn_tf.io import atomic_write_json, file_lock
from burn_tf.models.trained_network import build_backbone
from burn_tf.pretrain import pretrain_stage
from burn_tf.saved_backbone import load_backbone
from burn_tf.schema import build_dataclass
from burn_tf.studies.demo import DemoEvalConfig, evaluate_features


@dataclasses.dataclass
class ExperimentConfig:
    """The budget every run of an experiment shares, and its evaluation. Subclasses add
    what they run (the ablation's variants, the comparison's rows)."""

    overrides: list[str] = dataclasses.field(default_factory=list)  # key=value for every run
    seeds: int = 3
    steps: int = 64  # per stage
    batch_size: int = 128
    data_limit: int | None = 20000  # pretrain on the first N training images
    # None: every image — all training images but the held-out ones as bank / probe data, all
    # 10,000 test images (or all held-out ones) as queries; a number: the first N (a quick check).
    knn_bank: int | None = None
    knn_queries: int | None = None
    # The last N training images: the validation split every choice is made on (never trained on).
    validation_images: int = 10000
    knn_k: int = 200
    knn_temperature: float = 0.07
    linear_epochs: int = 10
    linear_learning_rate: float = 0.1
    run_eagerly: bool = False  # tiny presets: skip tracing the train step

    def __post_init__(self):
        for key in ("seeds", "steps", "batch_size", "knn_bank", "knn_queries", "knn_k", "linear_epochs",
                    "validation_images"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.data_limit is not None and self.data_limit < 1:
            raise ConfigError(f"data_limit must be >= 1 (or null for all), got {self.data_limit}")
        for key in ("knn_temperature", "linear_learning_rate"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key} must be > 0, got {getattr(self, key)}")


def load_experiment_config(cls: type, path, preset: str | None = None):
    """``cls`` built from ``path``'s keys, then those of ``presets.<preset>`` on top."""
    values = read_config_values(path)
    presets = values.pop("presets", {}) or {}
    if preset is not None:
        if preset not in presets:
            raise ConfigError(f"preset {preset!r} is not one of {sorted(presets)}")
        values.update(presets[preset])
    return build_dataclass(cls, values, "")


def budget_overrides(cfg: ExperimentConfig, seed: int, steps: int | None = None, shared: bool = True) -> list[str]:
    """The ``--set`` overrides that give a run the experiment's budget and seed (and, with
    ``shared``, the experiment's ``overrides``)."""
    return [
        *(cfg.overrides if shared else ()), f"train.seed={seed}", f"train.batch_size={cfg.batch_size}",
        f"train.steps_per_epoch={steps or cfg.steps}", "train.epochs=1", "train.verbose=0",
        f"train.run_eagerly={str(cfg.run_eagerly).lower()}",
        f"data.limit={'null' if cfg.data_limit is None else cfg.data_limit}",
    ]


def build_run_config(values: dict, overrides: Sequence[str], what: str) -> PretrainConfig:
    """``values`` (a pretraining config's keys, not modified) with ``overrides``; a
    ConfigError names the run (``what``)."""
    try:
        return config_from_dict(apply_overrides(copy.deepcopy(values), list(overrides)))
    except ConfigError as err:
        raise ConfigError(f"{what}: {err}") from None


def run_key(pcfg: PretrainConfig, cfg: ExperimentConfig, *extra) -> str:
    """Identity of a finished run: its pretraining config, what else defines it and the
    evaluation's size (a rerun with the same key is skipped)."""
    blob = json.dumps([pcfg.hash(), *extra, cfg.knn_bank, cfg.knn_queries, cfg.linear_epochs], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


TEST, VALIDATION = "test", "validation"  # the two splits a number can come from


class EvalData:
    """The kNN bank / probe training images and the queries, loaded once. ``validation`` N > 0:
    the queries are the *last* N training images (the validation split every choice is made on;
    runs scored on it pretrain on ``data.limit`` ≤ 60000 − N images, :meth:`check_held_out`),
    the bank the training images before them; else the queries are the test images, the bank
    all training images. ``knn_bank`` / ``knn_queries`` (None: all) take the first N of either;
    :attr:`split` and :meth:`describe` say where the numbers come from."""

    def __init__(self, cfg: ExperimentConfig, validation: int = 0):
        x_train, y_train = load_fashion_mnist_arrays("train")
        self.train_size = len(x_train)
        self.split = VALIDATION if validation else TEST
        self.bank_pool = self.train_size - validation  # the images a bank may take
        if validation and validation >= self.train_size:
            raise ConfigError(f"validation_images {validation} leaves no training image (of {self.train_size})")
        if cfg.knn_bank is not None and cfg.knn_bank > self.bank_pool:
            raise ConfigError(f"knn_bank {cfg.knn_bank} overlaps the {validation} held-out validation images "
                              f"(at most {self.bank_pool})")
        bank = cfg.knn_bank or self.bank_pool
        self.x_bank, self.y_bank = x_train[:bank], y_train[:bank]
        if validation:
            first = self.bank_pool
            held_out = slice(first, first + min(cfg.knn_queries or validation, validation))
            self.x_query, self.y_query = x_train[held_out], y_train[held_out]
            self.query_images = f"train[{held_out.start}:{held_out.stop}]"
        else:
            x_test, y_test = load_fashion_mnist_arrays("test")
            self.x_query, self.y_query = x_test[: cfg.knn_queries], y_test[: cfg.knn_queries]
            self.query_images = f"test[0:{len(self.x_query)}]"
        self.eval_cfg = DemoEvalConfig(knn_k=min(cfg.knn_k, len(self.x_bank)), knn_temperature=cfg.knn_temperature,
                                       linear_epochs=cfg.linear_epochs,
                                       linear_learning_rate=cfg.linear_learning_rate)

    def describe(self) -> dict:
        """Where the numbers come from: the split, the bank / probe and query images."""
        return {"split": self.split, "bank_images": f"train[0:{len(self.x_bank)}]", "query_images": self.query_images}

    def check_held_out(self, pcfg: PretrainConfig, what: str) -> None:
        """A ConfigError naming ``what`` when a run scored on the validation split would
        pretrain on its queries (``data.limit`` null or over the images before them)."""
        if self.split == VALIDATION and (pcfg.data.limit is None or pcfg.data.limit > self.bank_pool):
            raise ConfigError(f"{what}: data.limit={pcfg.data.limit} would pretrain on the held-out validation "
                              f"images {self.query_images}; at most {self.bank_pool}")

    def features(self, model: tf.keras.Model) -> tuple[np.ndarray, np.ndarray]:
        """``model``'s features of the bank and of the queries."""
        return extract_features(model, self.x_bank), extract_features(model, self.x_query)

    def knn(self, model: tf.keras.Model) -> float:
        """Weighted-kNN top-1 only (no probe): cheap enough for learning curves."""
        bank, query = self.features(model)
        result = knn_accuracy(bank, self.y_bank, query, self.y_query, k=self.eval_cfg.knn_k,
                              temperature=self.eval_cfg.knn_temperature, num_classes=10, ks=(1,))
        return float(result["top1"])

    def evaluate(self, model: tf.keras.Model, seed: int) -> dict:
        """kNN and linear top-1, and the split they come from."""
        bank, query = self.features(model)
        return {**evaluate_features(bank, self.y_bank, query, self.y_query, self.eval_cfg, seed=seed),
                "split": self.split}


class KNNCurve(tf.keras.callbacks.Callback):
    """Scores the student being trained (``model.backbone``, inference mode) by weighted kNN
    on ``data`` after the given batches of the stage (1-based step numbers), into ``points``
    as ``{"stage", "step", "knn_top1"}``: a learning curve without stopping the run."""

    def __init__(self, data: EvalData, stage: int, steps: Sequence[int], points: list):
        super().__init__()
        self.data, self.stage, self.steps, self.points = data, stage, set(int(s) for s in steps), points
        self._batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1
        if self._batches in self.steps:
            knn_top1 = self.data.knn(self.model.backbone)
            self.points.append({"stage": self.stage, "step": self._batches, "knn_top1": knn_top1})


def random_init_backbone(pcfg: PretrainConfig, seed: int) -> tf.keras.Model:
    """The student ``pcfg`` would start stage 1 from, never trained (the floor)."""
    tf.keras.utils.set_random_seed(seed + 1)  # what pretrain_stage does before building stage 1
    return build_backbone(pcfg.backbone, 1, name="random_student")


_STAGE_KEYS = (
    "target_collapsed",
    "collapse_step",
    "target_entropy_min",
    "target_entropy_fraction_min",
    "kl_min",
    "train_seconds",
)


def pretrain_run(
    pcfg: PretrainConfig,
    stages: Sequence[int],
    run_dir: Path,
    steps_path: Path | None = None,
    stage_callbacks: Callable[[int], list] | None = None,
) -> tuple[tf.keras.Model, dict]:
    """Pretrains ``stages`` of ``pcfg`` in ``run_dir`` (a stage 2 continues the stage 1
    already there); returns the last stage's exported backbone and a summary: the last
    stage's collapse metrics (methods with a moving target report them), the first and last
    step's loss, ``train_seconds`` summed over the stages, the exported weights'
    :func:`weights_sha256` (what proves a rerun bit-identical). Every step's scalars go to
    ``steps_path`` (JSON, the stages one after the other). ``stage_callbacks(stage)`` gives
    more Keras callbacks for a stage (e.g. :class:`KNNCurve`)."""
    records, summary, seconds = [], {}, 0.0
    for stage in stages:
        recorder = StepRecorder()
        extra = [recorder, *(stage_callbacks(stage) if stage_callbacks else ())]
        metrics = pretrain_stage(pcfg, stage, run_dir, overwrite=True, extra_callbacks=extra)
        summary = {k: metrics[k] for k in _STAGE_KEYS if k in metrics}
        seconds += metrics.get("train_seconds", 0.0)
        records.extend({**r, "stage": stage} for r in recorder.records)
    summary["train_seconds"] = round(seconds, 1)
    if records:
        summary["loss_first"], summary["loss_last"] = records[0]["loss"], records[-1]["loss"]
    if steps_path is not None:
        atomic_write_json(steps_path, records)
    model, _ = load_backbone(run_dir / f"stage{stages[-1]}" / "backbone")
    summary["weights_sha256"] = weights_sha256(model)
    return model, summary


def weights_sha256(model: tf.keras.Model) -> str:
    """The sha256 of a model's weight values (shapes, dtypes and bytes, in order): equal for
    bit-identical weights whatever file format they were saved in."""
    digest = hashlib.sha256()
    for array in model.get_weights():
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _git_revision() -> str | None:
    """The git commit of burn_tf's checkout (``+`` when its package tree has changes), or None
    outside a checkout."""
    root = Path(__file__).resolve().parents[2]  # burn_tf/studies/harness.py → the checkout
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "burn_tf"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+" if dirty else "")


_REVISION_AT_IMPORT: list = []
_CODE_AT_IMPORT: list = []


def code_tree_hash(root: Path | None = None) -> str:
    """The sha256 (first 16 hex digits) of burn_tf's source: every ``*.py`` file under
    ``root`` (default: the imported package), its path and its bytes, in path order. Two
    processes get the same hash exactly when they run the same code, committed or not."""
    root = Path(root) if root is not None else Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def code_version() -> str:
    """:func:`code_tree_hash` of the code this process imported (read once, at the first call,
    which :class:`RunLog` makes when it is created): every run key and record carries it."""
    if not _CODE_AT_IMPORT:
        _CODE_AT_IMPORT.append(code_tree_hash())
    return _CODE_AT_IMPORT[0]


def source_revision() -> str | None:
    """The commit burn_tf was imported from in this process (read once, at the first call
    after import, which :class:`RunLog` makes when it is created): each experiment record
    says which code produced it, even if the checkout moves on while the process runs."""
    if not _REVISION_AT_IMPORT:
        _REVISION_AT_IMPORT.append(_git_revision())
    return _REVISION_AT_IMPORT[0]


def versioned_key(config_key: str, code: str) -> str:
    """A run's key: its config key (:func:`run_key`) and the code version that ran it."""
    return hashlib.sha256(json.dumps([config_key, code]).encode()).hexdigest()[:16]


class CodeVersionError(ValueError):
    """Runs of another code version offered for reuse are not bit-identical to this code's."""


#: What :meth:`RunLog.run` adds to a run's own result (with the log's name field).
RECORD_FIELDS = ("key", "config_key", "code_version", "code", "seconds")


class RunLog:
    """``runs.jsonl``: one line per finished run, ``{<name_field>, "key", "config_key",
    "code_version", …}``. A run already logged under the same name and key is not run again.
    ``key`` hashes the config key (:func:`run_key`) *and* the code version (:func:`code_version`):
    a run of other code is never taken for this code's unless :meth:`accept_version` proved
    that version bit-identical on a rerun sample (:meth:`other_versions` counts the others).

    Several processes on one machine may share one log (one ``--out``, disjoint
    ``--rows``/``--variants``): each run is done under a lock of its own (``<log>.locks/``), and
    the log is re-read once the lock is held, so a run another process has finished — or is
    still running: the lock waits for it — is taken from the log instead of being run twice
    into the same run directory. A last call over every run then only assembles the table."""

    def __init__(self, path: Path, name_field: str):
        source_revision()  # the code this process runs, before the checkout can move on
        self.code_version = code_version()
        self.versions = [self.code_version]  # this code's, then versions proved identical
        self.path, self.name_field = Path(path), name_field
        self.locks = self.path.with_name(self.path.name + ".locks")
        self.locks.mkdir(parents=True, exist_ok=True)
        self.done = {}
        self._read()

    def _read(self) -> None:
        # Under the append lock: a line another process is writing is never read half-written.
        with file_lock(self.locks / "runs.jsonl.lock"):
            text = self.path.read_text() if self.path.exists() else ""
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                # Two runs may share a pretraining config (a floor is never trained): the
                # name is part of the identity.
                self.done[record[self.name_field], record["key"]] = record
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(
                    f"{self.path}: line {number} is not a run record ({err}); remove it to run that run again"
                ) from None

    def lookup(self, name: str, config_key: str) -> dict | None:
        """The logged record of run ``name`` with ``config_key`` made by this code or by a
        version proved identical (:meth:`accept_version`), or None."""
        for version in self.versions:
            record = self.done.get((name, versioned_key(config_key, version)))
            if record is not None:
                return record
        return None

    def run(self, name: str, config_key: str, fn: Callable[[], dict]) -> tuple[dict, bool]:
        """(the logged result, False) or (``fn()`` with its keys, code version and seconds, True)."""
        record = self.lookup(name, config_key)
        if record is not None:
            return record, False
        key = versioned_key(config_key, self.code_version)
        lock_name = hashlib.sha256(json.dumps([name, key]).encode()).hexdigest()[:16]
        with file_lock(self.locks / f"{lock_name}.lock"):
            self._read()
            record = self.lookup(name, config_key)
            if record is not None:
                return record, False
            start = time.time()
            result = {**fn(), self.name_field: name, "key": key, "config_key": config_key,
                      "code_version": self.code_version, "code": source_revision()}  # RECORD_FIELDS
            result["seconds"] = round(time.time() - start, 1)
            with file_lock(self.locks / "runs.jsonl.lock"), self.path.open("a") as f:
                f.write(json.dumps(result) + "\n")
        self.done[name, key] = result
        return result, True

    def accept_version(self, version: str, name: str, config_key: str, fn: Callable[[], dict]) -> dict:
        """Reuse the runs of code ``version`` if a repeated sample proves it bit-identical:
        run ``name`` (``config_key``, ``fn`` as for :meth:`run`) must be logged under
        ``version``; it is run again under this code (or taken from the log if already run)
        and both records' ``weights_sha256`` must be equal. Then every run of ``version``
        counts as this code's; else a :class:`CodeVersionError` says which differ."""
        if version in self.versions:
            return {"version": version, "sample": name, "identical": True}
        old = self.done.get((name, versioned_key(config_key, version)))
        if old is None:
            raise CodeVersionError(f"{self.path}: no run {name!r} of code version {version} to repeat; "
                                   f"versions logged: {sorted(self.other_versions())}")
        new, _ = self.run(name, config_key, fn)
        if "weights_sha256" not in old or old["weights_sha256"] != new.get("weights_sha256"):
            raise CodeVersionError(
                f"{self.path}: run {name!r} of code version {version} is not bit-identical under this code "
                f"({self.code_version}): exported weights {str(old.get('weights_sha256'))[:16]} vs "
                f"{str(new.get('weights_sha256'))[:16]}; its runs are not reused")
        self.versions.append(version)
        return {"version": version, "sample": name, "identical": True, "weights_sha256": new["weights_sha256"]}

    def other_versions(self) -> dict[str, int]:
        """{code version: logged runs} of the versions this log does not count (None: records
        from before code versions were recorded)."""
        counts: dict[str, int] = {}
        for record in self.done.values():
            version = record.get("code_version")
            if version not in self.versions:
                counts[str(version)] = counts.get(str(version), 0) + 1
        return counts


def mean_std(values) -> tuple[float, float]:
    """Mean and sample std over seeds (:func:`~burn_tf.evaluate.metrics.seed_std`: ddof 1, 0 for
    one value) of the finite values; NaNs if none."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return float("nan"), float("nan")
    return float(np.mean(values)), seed_std(values)


def format_mean_std(row: dict, key: str, scale: float = 100.0, digits: int = 2) -> str:
    """``row[key] ± row[key_std]`` (``–`` when missing), scaled (100: a fraction in %)."""
    m, s = row.get(key, float("nan")), row.get(f"{key}_std", float("nan"))
    return "–" if m is None or math.isnan(m) else f"{scale * m:.{digits}f} ± {scale * s:.{digits}f}"


def experiment_main(
    argv: list[str] | None,
    *,
    module: str,
    doc: str,
    default_config: str,
    config_class: type,
    run: Callable,
    format_markdown: Callable,
    selections: dict[str, str],
    presets: str,
    out: str,
    report: bool = False,
) -> int:
    """The command line of a study (``python -m burn_tf.studies.<module>``): ``--config``,
    ``--preset``, ``--seeds``, one comma-separated option per list key of ``selections``
    (key → help), ``--out``, ``--no-figures``, ``--json``, and with ``report`` ``--report``
    (``run(…, report_only=True)``: the tables of the runs already logged, nothing run). Exit
    status 2 on a bad config."""
    parser = argparse.ArgumentParser(
        prog=f"python -m burn_tf.studies.{module}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", default=default_config, help=f"the YAML (default: the shipped {default_config})")
    parser.add_argument("--preset", default=None, help=f"a preset of the config ({presets})")
    parser.add_argument("--seeds", type=int, default=None)
    for key, help_text in selections.items():
        parser.add_argument(f"--{key}", default=None, help=f"comma-separated; {help_text}")
    parser.add_argument("--out", default=out)
    parser.add_argument("--no-figures", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the summary rows as JSON")
    if report:
        parser.add_argument(
            "--report",
            action="store_true",
            help="run nothing: write the tables of the runs already in --out's runs.jsonl",
        )
    args = parser.parse_args(argv)
    try:
        cfg = load_experiment_config(config_class, args.config, args.preset)
        changes = {"seeds": args.seeds} if args.seeds is not None else {}
        for key in selections:
            if getattr(args, key):
                changes[key] = [v.strip() for v in getattr(args, key).split(",") if v.strip()]
        cfg = dataclasses.replace(cfg, **changes)
        options = {"report_only": True} if report and args.report else {}
        summary = run(
            cfg,
            args.out,
            figures=not args.no_figures,
            log=(lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else print,
            **options,
        )
    except (ConfigError, OSError, FloatingPointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary["rows"], indent=2))
    else:
        print(format_markdown(summary["rows"], cfg))
        print(f"\n{summary['minutes']} min; table and figures in {args.out}")
    return 0
