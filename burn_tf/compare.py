"""Every pretraining method of burn_tf on the same binary student, as one command:

    python -m burn_tf.compare --config configs/compare.yaml [--preset small|budget|full|grouping]
                              [--seeds N] [--rows burn,s2bnn,random] [--blocks methods,self_teacher]
                              [--out runs/compare] [--json]

A row of the table is an entry of ``table:`` in ``compare.yaml``:
``{name: <row label>, method: <method.name>, overrides: [...]}``. Its pretraining config is the
method's own shipped YAML (``configs/<method>.yaml``, or the entry's ``config:``) with
the entry's ``overrides``, then the shared budget on top: ``steps`` per stage, ``batch_size``,
``stages``, ``data_limit`` (a row's own ``data_limit`` wins), the seed. Each row keeps its
method's own augmentation (the reference views of its YAML, at the student's size; a row's
``views:`` replaces them); rows with ``shared_views: true`` (block ``shared_views``) get the
comparison's ``views`` instead. ``method: random`` is the floor: the base config's student,
never trained. A row's ``seeds:`` overrides the comparison's.

**Learning rates** (``lr_grid``): every trained row's Adam learning rate is chosen from the grid
on one seed at ``lr_fraction`` of the budget, pretraining on the training images minus the last
``validation_images`` and scored by weighted kNN with those held-out images as queries — never
the test split. A row with ``learning_rate:`` keeps that rate; one with ``lr_from: <row>`` takes
that row's choice (BURN's controls take BURN's). The grid's scores and the choices are in
``compare.json`` (``learning_rates``); a choice at the grid's smallest or largest rate is flagged
(``at_grid_edge``; "(edge)" in ``compare.md``). An empty grid keeps each config's own rate.

**Learning curves**: for the first ``curve_seeds`` seeds every trained row is also scored by
weighted kNN (test queries) at ``curve_fractions`` of its budget (stage 1's steps first, then
stage 2's), while it trains; ``compare_curves.png`` draws them.

**Statistics**: every row's kNN and linear differences to the floor and to its block's
reference row (``reference: true``: BURN), paired by seed (the seeds both rows have), with
a 95 % t interval over those seeds; ``beats_floor`` says whether the kNN difference to the
floor exceeds two paired standard deviations.

Every run is pretrained and evaluated as :mod:`burn_tf.ablate` does it (the shared code is
:mod:`burn_tf.experiment`): weighted kNN and the linear probe on ``knn_bank`` train /
``knn_queries`` test images of Fashion-MNIST, one run per seed, a seed giving every row the
same initial student.

Blocks (``blocks:`` selects them; ``--blocks`` too):

- ``methods``: every method on the shipped configs' teachers (EfficientNet-Lite0 for BURN)
  and the random-init floor;
- ``self_teacher``: rows distilling the teacher this command trains without labels;
- ``shared_views``: rows that all use the comparison's ``views`` (one augmentation for all);
- ``cld_grouping``: CLD's grouping (k-means or spectral) × number of groups, read by weighted
  kNN; only ``--preset grouping`` or ``--blocks cld_grouping`` runs it.

Teachers this command trains (``teacher_runs:``, each ``{name, config, steps, overrides}``):
a row with ``teacher: <name>`` distils the FP network that ``config`` pretrains. Each is
pretrained **once in total** (seed 0: the student rows' seeds then measure the student's
variance for one fixed teacher), evaluated as a row of its own, and given to the rows as
``teacher: {kind, small_input_stem, input_size, weights: <out>/runs/teacher_<name>/stage1/backbone}``.
Shipped: ``self`` (``demo_teacher.yaml``: MoCo v2 on an FP ResNet-18, no label) and
``supervised`` (``supervised.yaml`` on an FP ResNet-18: the supervised FP network whose
outputs supervised KL-div distils).

Writes to ``--out``: ``compare.md`` (one table per block: mean ± std over seeds, paired
differences with 95 % intervals, the chosen learning rate, pretraining minutes, needs labels?,
teacher, augmentation; then the learning-rate grid), ``compare.json``, ``compare.png`` (bar
plot), ``compare_curves.png``, ``runs.jsonl`` (finished runs: a rerun skips them; several
processes may share it) and ``steps/<row>_seed<k>.json``.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
from scipy import stats

from burn_tf.ablate import VARIANTS
from burn_tf.config import ConfigError, PretrainConfig, read_config_values
from burn_tf.experiment import (
    EvalData,
    ExperimentConfig,
    KNNCurve,
    RunLog,
    budget_overrides,
    build_run_config,
    experiment_main,
    format_mean_std,
    load_experiment_config,
    mean_std,
    pretrain_run,
    random_init_backbone,
    run_key,
)
from burn_tf.io import atomic_write_json, atomic_write_text
from burn_tf.methods.registry import method_class, method_names

DEFAULT_CONFIG = "compare.yaml"
RANDOM = "random"  # the floor's pseudo-method: the base config's student, never trained
BLOCKS = {
    "methods": "Methods (each with its own augmentation and its shipped teacher, if any)",
    "self_teacher": "Self-trained teacher (FP ResNet-18 pretrained without labels by this command)",
    "shared_views": "One shared augmentation for every method (BURN's recipe)",
    "cld_grouping": "CLD grouping study (weighted kNN)",
}
SHIPPED = "shipped"  # a row's teacher: the base config's own
LR_GRID_BLOCK = "lr_grid"  # runs.jsonl records of the learning-rate grid


@dataclasses.dataclass
class TableRow:
    """One entry of ``table:``."""

    name: str  # the row's label in the table
    method: str  # a registered method.name, or "random" (the floor)
    overrides: List[str] = dataclasses.field(default_factory=list)
    config: Optional[str] = None  # the base pretraining config; None: <method>.yaml
    block: str = "methods"
    teacher: str = SHIPPED  # shipped: the config's teacher; else the name of a teacher_runs entry
    shared_views: bool = False  # use the comparison's ``views`` instead of the method's own
    views: Optional[List[Any]] = None  # the row's own views, replacing its config's
    variant: Optional[str] = None  # a burn_tf.ablate variant whose overrides come first
    seeds: Optional[int] = None  # None: the comparison's
    data_limit: Optional[int] = None  # None: the comparison's
    learning_rate: Optional[float] = None  # a fixed Adam rate (no grid for this row)
    lr_from: Optional[str] = None  # take the rate the grid chose for this row
    reference: bool = False  # the row its block's others are compared with (BURN)

    def __post_init__(self):
        if self.block not in BLOCKS:
            raise ConfigError(f"table row {self.name!r}: block={self.block!r} is not one of {list(BLOCKS)}")
        if self.variant is not None and self.variant not in VARIANTS:
            raise ConfigError(f"table row {self.name!r}: variant={self.variant!r} is not one of {list(VARIANTS)}")
        if self.seeds is not None and self.seeds < 1:
            raise ConfigError(f"table row {self.name!r}: seeds must be >= 1, got {self.seeds}")
        if self.data_limit is not None and self.data_limit < 1:
            raise ConfigError(f"table row {self.name!r}: data_limit must be >= 1, got {self.data_limit}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ConfigError(f"table row {self.name!r}: learning_rate must be > 0, got {self.learning_rate}")
        if self.learning_rate is not None and self.lr_from is not None:
            raise ConfigError(f"table row {self.name!r}: give learning_rate or lr_from, not both")

    @property
    def base_config(self) -> str:
        return self.config or f"{self.method}.yaml"

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9]+", "_", self.name).strip("_").lower()

    @property
    def trained(self) -> bool:
        return self.method != RANDOM


@dataclasses.dataclass
class TeacherRun:
    """A teacher this command pretrains (once) for the rows with ``teacher: <name>``."""

    name: str = "self"
    config: str = "demo_teacher.yaml"
    steps: int = 64
    overrides: List[str] = dataclasses.field(default_factory=list)
    block: str = "self_teacher"  # where its own row ("<name> teacher itself") goes

    @property
    def row_name(self) -> str:
        return f"{self.name} teacher itself"


@dataclasses.dataclass
class CompareConfig(ExperimentConfig):
    """Budget, evaluation and rows of a comparison (``configs/compare.yaml``; ``presets``)."""

    table: List[TableRow] = dataclasses.field(default_factory=list)
    blocks: List[str] = dataclasses.field(default_factory=lambda: ["methods", "self_teacher"])
    rows: List[str] = dataclasses.field(default_factory=list)  # row names or methods; empty: all
    stages: List[int] = dataclasses.field(default_factory=lambda: [1])  # of a binary student
    views: List[Any] = dataclasses.field(default_factory=list)  # shared augmentation; []: BURN's recipe
    teacher_runs: List[TeacherRun] = dataclasses.field(default_factory=lambda: [TeacherRun()])
    lr_grid: List[float] = dataclasses.field(default_factory=list)  # []: each config's own rate
    lr_fraction: float = 0.25  # of the budget's steps, for a grid run
    validation_images: int = 10000  # the last training images, held out of the grid's pretraining
    curve_fractions: List[float] = dataclasses.field(default_factory=list)  # of the budget, < 1
    curve_seeds: int = 1  # seeds 0 … curve_seeds − 1 get a learning curve
    max_seeds: Optional[int] = None  # caps every row's seeds, its own too (the small preset: 1)

    def __post_init__(self):
        super().__post_init__()
        unknown = sorted(set(self.blocks) - set(BLOCKS))
        if unknown:
            raise ConfigError(f"blocks: unknown {unknown}; known: {', '.join(BLOCKS)}")
        if not self.stages or sorted(set(self.stages)) != sorted(self.stages) or not set(self.stages) <= {1, 2}:
            raise ConfigError(f"stages must be [1] or [1, 2], got {self.stages}")
        names = [r.name for r in self.table]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"table: row names must be unique; repeated: {repeated}")
        known = set(names) | {r.method for r in self.table}
        unknown = [r for r in self.rows if r not in known]
        if unknown:
            raise ConfigError(f"rows: {unknown} name no row or method of table; rows: {names}")
        teachers = [t.name for t in self.teacher_runs]
        if len(set(teachers)) != len(teachers) or SHIPPED in teachers:
            raise ConfigError(f"teacher_runs: names must be unique and not {SHIPPED!r}; got {teachers}")
        by_name = {r.name: r for r in self.table}
        for row in self.table:
            if row.teacher != SHIPPED and row.teacher not in teachers:
                raise ConfigError(f"table row {row.name!r}: teacher={row.teacher!r} is not {SHIPPED!r} or one of "
                                  f"teacher_runs {teachers}")
            source = by_name.get(row.lr_from) if row.lr_from is not None else None
            if row.lr_from is not None and (source is None or not source.trained or source.lr_from is not None):
                raise ConfigError(f"table row {row.name!r}: lr_from={row.lr_from!r} must name a trained row of "
                                  "table that chooses its own rate")
        if any(not lr > 0 for lr in self.lr_grid):
            raise ConfigError(f"lr_grid: every rate must be > 0, got {self.lr_grid}")
        if not 0 < self.lr_fraction <= 1:
            raise ConfigError(f"lr_fraction must be in (0, 1], got {self.lr_fraction}")
        if self.validation_images < 1:
            raise ConfigError(f"validation_images must be >= 1, got {self.validation_images}")
        if any(not 0 < f < 1 for f in self.curve_fractions):
            raise ConfigError(f"curve_fractions must lie in (0, 1) (the end of the budget is always scored), "
                              f"got {self.curve_fractions}")
        if self.max_seeds is not None and self.max_seeds < 1:
            raise ConfigError(f"max_seeds must be >= 1 or null, got {self.max_seeds}")
        if self.curve_seeds < 0:
            raise ConfigError(f"curve_seeds must be >= 0, got {self.curve_seeds}")

    def teacher_run(self, name: str) -> TeacherRun:
        return next(t for t in self.teacher_runs if t.name == name)

    def row_seeds(self, row: TableRow) -> int:
        seeds = row.seeds or self.seeds
        return min(seeds, self.max_seeds) if self.max_seeds else seeds


def load_compare_config(path=DEFAULT_CONFIG, preset: str | None = None) -> CompareConfig:
    """``path``'s keys, then those of ``presets.<preset>`` on top."""
    return load_experiment_config(CompareConfig, path, preset)


def selected_rows(cfg: CompareConfig) -> list[TableRow]:
    """The rows of the selected blocks (and of ``rows`` if given), in table order; a row
    whose method is not registered is an error listing the registered ones."""
    rows = [r for r in cfg.table if r.block in cfg.blocks and (not cfg.rows or {r.name, r.method} & set(cfg.rows))]
    for r in rows:
        if r.method != RANDOM and r.method not in method_names():
            raise ConfigError(f"table row {r.name!r}: method {r.method!r} is not registered; registered: "
                              f"{', '.join(method_names())} (or {RANDOM!r}: the untrained floor)")
    return rows


# What stands for ``--out`` in the run keys of rows distilling a teacher this command trains.
OUT_IN_KEYS = "<out>"


def teacher_dir(out: Path, name: str = "self") -> Path:
    return out / "runs" / f"teacher_{name}"


def teacher_config(cfg: CompareConfig, name: str = "self", values: dict | None = None) -> PretrainConfig:
    """The pretraining config of teacher ``name`` of ``teacher_runs`` (seed 0, its steps)."""
    run = cfg.teacher_run(name)
    values = values if values is not None else read_config_values(run.config)
    # The rows' shared overrides size the binary student; the teacher has its own.
    overrides = [*budget_overrides(cfg, 0, steps=run.steps, shared=False), *run.overrides]
    return build_run_config(values, overrides, f"teacher_runs {name!r}")


def row_config(cfg: CompareConfig, row: TableRow, seed: int, out: Path, values: dict | None = None,
               teacher: PretrainConfig | None = None, learning_rate: float | None = None,
               extra: tuple = ()) -> PretrainConfig:
    """The row's pretraining config: its base config, the ablation variant's and the row's
    overrides, then the shared budget, the row's own data limit, its augmentation (its
    method's, its ``views``, or the shared ``views``), ``teacher: <name>`` (the teacher this
    command trains: ``teacher`` is its config, built from ``teacher_runs`` if None), the
    learning rate (the row's fixed one, else ``learning_rate``) and ``extra`` overrides."""
    values = dict(values if values is not None else read_config_values(row.base_config))
    if row.shared_views:
        values["views"] = list(cfg.views)
    elif row.views is not None:
        values["views"] = list(row.views)
    if row.teacher != SHIPPED:
        teacher = teacher or teacher_config(cfg, row.teacher)
        values["teacher"] = {"kind": teacher.backbone.kind, "small_input_stem": teacher.backbone.small_input_stem,
                             "input_size": teacher.backbone.input_size,
                             "weights": str(teacher_dir(out, row.teacher) / "stage1" / "backbone")}
    variant = VARIANTS[row.variant].overrides if row.variant else ()
    own = [f"data.limit={row.data_limit}"] if row.data_limit is not None else []
    rate = row.learning_rate if row.learning_rate is not None else learning_rate
    if rate is not None and row.trained:
        own.append(f"optimizer.learning_rate={rate}")
    return build_run_config(values, [*variant, *row.overrides, *budget_overrides(cfg, seed), *own, *extra],
                            f"table row {row.name!r}")


def describe(row: TableRow, pcfg: PretrainConfig, teacher: PretrainConfig | None) -> dict:
    """What the table says about a row besides its numbers."""
    if row.method == RANDOM:
        return {"needs_labels": "–", "teacher": "–", "views": "–", "learning_rate": None}
    cls = method_class(row.method)
    if not cls.needs_teacher:
        who = "–"
    elif row.teacher != SHIPPED:
        who = f"{pcfg.teacher.kind} (trained here: {teacher.method.name})"
    else:
        who = f"{pcfg.teacher.kind} ({pcfg.teacher.weights or 'random'})"
    return {"needs_labels": "yes" if cls.needs_labels else "no", "teacher": who,
            "views": "shared" if row.shared_views else "own", "learning_rate": pcfg.optimizer.learning_rate}


def curve_schedule(cfg: CompareConfig, stages: list[int]) -> dict[int, dict[int, float]]:
    """{stage: {step within the stage: fraction of the budget}} of ``curve_fractions``; the
    budget is ``cfg.steps`` per stage, the stages one after the other."""
    schedule: dict[int, dict[int, float]] = {s: {} for s in stages}
    total = cfg.steps * len(stages)
    for fraction in cfg.curve_fractions:
        step = max(1, round(fraction * total))
        index = min((step - 1) // cfg.steps, len(stages) - 1)
        schedule[stages[index]][step - index * cfg.steps] = fraction
    return schedule


def run_row(cfg: CompareConfig, row: TableRow, seed: int, out: Path, data: EvalData, pcfg: PretrainConfig,
            curve: bool = False) -> dict:
    """Pretrains (unless the floor) and evaluates one row for one seed; with ``curve`` also
    the kNN learning curve (``curve``: fraction of the budget → kNN, the last point the run's
    own kNN)."""
    result = {"seed": seed, "block": row.block, "method": row.method}
    if row.method == RANDOM:
        return {**result, **data.evaluate(random_init_backbone(pcfg, seed), seed)}
    stages = [s for s in cfg.stages if s in pcfg.backbone.stages]
    schedule = curve_schedule(cfg, stages) if curve else {}
    points: list = []

    def callbacks(stage: int) -> list:
        steps = schedule.get(stage)
        return [KNNCurve(data, stage, steps, points)] if steps else []

    model, summary = pretrain_run(pcfg, stages, out / "runs" / row.slug / f"seed{seed}",
                                  out / "steps" / f"{row.slug}_seed{seed}.json", stage_callbacks=callbacks)
    result = {**result, **summary, **data.evaluate(model, seed)}
    if curve:
        result["curve"] = [{**p, "fraction": schedule[p["stage"]][p["step"]]} for p in points] + [
            {"stage": stages[-1], "step": cfg.steps, "fraction": 1.0, "knn_top1": result["knn_top1"]}]
    return result


def run_teacher(run: TeacherRun, tcfg: PretrainConfig, out: Path, data: EvalData) -> dict:
    """Pretrains a teacher of ``teacher_runs`` (once) and evaluates its backbone like a row."""
    model, summary = pretrain_run(tcfg, [1], teacher_dir(out, run.name), out / "steps" / f"teacher_{run.name}.json")
    return {"seed": 0, "block": run.block, "method": tcfg.method.name, **summary, **data.evaluate(model, 0)}


# ---------------------------------------------------------------------------- learning rates
def grid_steps(cfg: CompareConfig) -> int:
    return max(1, round(cfg.steps * cfg.lr_fraction))


def grid_config(cfg: CompareConfig, row: TableRow, out: Path, values: dict, teacher: PretrainConfig | None,
                rate: float, train_size: int) -> PretrainConfig:
    """A grid run: seed 0, ``lr_fraction`` of the steps, pretraining only on the images
    before the held-out validation ones, the learning rate ``rate``."""
    limit = train_size - cfg.validation_images
    own_limit = row.data_limit or cfg.data_limit
    limit = min(limit, own_limit) if own_limit else limit
    return row_config(cfg, row, 0, out, values, teacher, rate,
                      extra=(f"train.steps_per_epoch={grid_steps(cfg)}", f"data.limit={limit}"))


def grid_rows(cfg: CompareConfig, rows: list[TableRow]) -> list[TableRow]:
    """The rows that choose their own rate from the grid: the trained selected rows without a
    fixed rate, and the rows the selected ones take their rate from, in table order."""
    if not cfg.lr_grid:
        return []
    needed = {r.lr_from for r in rows if r.lr_from} | {r.name for r in rows if r.trained and r.lr_from is None}
    return [r for r in cfg.table if r.name in needed and r.learning_rate is None]


def choose_learning_rates(cfg: CompareConfig, rows: list[TableRow], out: Path, runs: RunLog, bases: dict,
                          teachers: dict, log=print, report_only: bool = False) -> dict[str, dict]:
    """{row name: {"learning_rate": chosen, "grid": {rate: validation kNN}, "steps": …}} for
    every row that needs the grid (:func:`grid_rows`); the best validation kNN wins (the
    smaller rate on a tie). Each grid run is a record of ``runs.jsonl`` (block ``lr_grid``).
    ``report_only``: nothing is run; a row whose grid is not complete in the log gets no
    choice (so its runs, keyed by the chosen rate, are not looked up either)."""
    choices: dict[str, dict] = {}
    to_grid = grid_rows(cfg, rows)
    if not to_grid:
        return choices
    validation = EvalData(cfg, validation=cfg.validation_images)
    train_size = validation.train_size
    for row in to_grid:
        values = bases.setdefault(row.base_config, read_config_values(row.base_config))
        teacher = teachers.get(row.teacher)
        scores, ran = {}, False
        for rate in cfg.lr_grid:
            pcfg = grid_config(cfg, row, out, values, teacher, rate, train_size)
            key_cfg = (grid_config(cfg, row, Path(OUT_IN_KEYS), values, teacher, rate, train_size)
                       if teacher is not None else pcfg)
            key = run_key(key_cfg, cfg, LR_GRID_BLOCK, cfg.stages, cfg.validation_images,
                          teacher.hash() if teacher is not None else None)
            name = f"{row.name} | lr {rate:g}"

            def grid_run(pcfg=pcfg, rate=rate):
                stages = [s for s in cfg.stages if s in pcfg.backbone.stages]
                model, summary = pretrain_run(pcfg, stages, out / "runs" / LR_GRID_BLOCK / f"{row.slug}_lr{rate:g}")
                return {"seed": 0, "block": LR_GRID_BLOCK, "method": row.method, "learning_rate": rate, **summary,
                        "validation_knn_top1": validation.knn(model)}

            if report_only:
                if (name, key) in runs.done:
                    scores[rate] = runs.done[name, key]["validation_knn_top1"]
                continue
            result, fresh = runs.run(name, key, grid_run)
            scores[rate] = result["validation_knn_top1"]
            ran = ran or fresh
            if fresh:
                log(f"  lr grid  {name:<44}: validation kNN {100 * scores[rate]:.2f}%  ({result['seconds']:.0f} s)")
        if len(scores) < len(cfg.lr_grid):
            log(f"  lr grid  {row.name}: {len(scores)} of {len(cfg.lr_grid)} rates logged, no rate chosen yet")
            continue
        best, at_edge = best_rate(scores)
        choices[row.name] = {"learning_rate": best, "grid": {f"{r:g}": scores[r] for r in sorted(scores)},
                             "at_grid_edge": at_edge,
                             "steps_per_stage": grid_steps(cfg), "validation_images": cfg.validation_images}
        if at_edge and ran:  # said by the call that ran grid runs; one that only reads the log is silent
            log(f"  lr grid  {row.name}: chose {best:g}, the edge of the grid: its best rate may lie beyond it")
    return choices


def best_rate(scores: dict[float, float]) -> tuple[float, bool]:
    """The rate with the best validation score (the smaller one on a tie) and whether it is
    the grid's smallest or largest rate, where the best rate may lie outside the grid (of nine
    rows at 0.008, the first grid's largest rate, five did better at 0.016)."""
    best = max(sorted(scores), key=lambda r: scores[r])  # sorted: the smaller rate wins a tie
    return best, len(scores) > 1 and best in (min(scores), max(scores))


def row_learning_rate(row: TableRow, choices: dict[str, dict]) -> float | None:
    source = row.lr_from or row.name
    return choices[source]["learning_rate"] if source in choices else None


# ---------------------------------------------------------------------------- statistics
def paired_difference(runs_a: list[dict], runs_b: list[dict], key: str) -> dict:
    """Row a minus row b on ``key``, paired by seed (the seeds both have): mean, sample std
    (ddof 1), n, and the 95 % t interval of the mean (NaN bounds with fewer than 2 pairs)."""
    b_by_seed = {r["seed"]: r.get(key) for r in runs_b}
    diffs = [r[key] - b_by_seed[r["seed"]] for r in runs_a
             if r["seed"] in b_by_seed and r.get(key) is not None and b_by_seed[r["seed"]] is not None]
    n = len(diffs)
    if n == 0:
        return {"n": 0, "mean": math.nan, "std": math.nan, "low": math.nan, "high": math.nan}
    mean = float(np.mean(diffs))
    if n < 2:
        return {"n": 1, "mean": mean, "std": math.nan, "low": math.nan, "high": math.nan}
    std = float(np.std(diffs, ddof=1))
    half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "low": mean - half, "high": mean + half}


def beats(difference: dict) -> bool:
    """Above zero by more than two paired standard deviations (needs 2+ pairs)."""
    return difference["n"] >= 2 and difference["mean"] > 2 * difference["std"]


def aggregate(results: list[dict], rows: list[TableRow], info: dict, teacher_runs: list[TeacherRun] = ()) -> list[dict]:
    """One row per table row (and per teacher trained here): mean ± std over seeds, and the
    paired differences to the floor and to the block's reference row (or the ``methods``
    block's, for a block without one)."""
    by_row = {name: [r for r in results if r["row"] == name] for name in
              [r.name for r in rows] + [t.row_name for t in teacher_runs]}
    floor = next((r.name for r in rows if r.method == RANDOM), None)
    references = {r.block: r.name for r in rows if r.reference}
    out = []
    for name, block in [(r.name, r.block) for r in rows] + [(t.row_name, t.block) for t in teacher_runs]:
        runs = by_row[name]
        if not runs:
            continue
        row = {"row": name, "block": block, "method": runs[0]["method"], "seeds": len(runs), **info[name]}
        for key in ("knn_top1", "linear_top1", "train_seconds"):
            row[key], row[f"{key}_std"] = mean_std([r.get(key) for r in runs])
        is_teacher = name not in {r.name for r in rows}
        reference = references.get(block, references.get("methods"))
        for label, other in (("floor", floor), ("reference", reference)):
            if is_teacher or other is None or other == name or not by_row.get(other):
                continue
            row[f"vs_{label}"] = {"row": other, **{key: paired_difference(runs, by_row[other], key)
                                                   for key in ("knn_top1", "linear_top1")}}
        if "vs_floor" in row:
            row["beats_floor"] = beats(row["vs_floor"]["knn_top1"])
        out.append(row)
    return out


def format_difference(row: dict, label: str, key: str = "knn_top1") -> str:
    """``+1.23 [−0.40, +2.86]`` (percentage points, 95 % interval), ``–`` when not paired."""
    if f"vs_{label}" not in row:
        return "–"
    d = row[f"vs_{label}"][key]
    if math.isnan(d["mean"]):
        return "–"
    text = f"{100 * d['mean']:+.2f}"
    if not math.isnan(d["low"]):
        text += f" [{100 * d['low']:+.2f}, {100 * d['high']:+.2f}]"
    return text


def format_markdown(rows: list[dict], cfg: CompareConfig, learning_rates: dict | None = None) -> str:
    lines = []
    for block, title in BLOCKS.items():
        block_rows = [r for r in rows if r["block"] == block]
        if not block_rows:
            continue
        reference = next((r["vs_reference"]["row"] for r in block_rows if "vs_reference" in r), "reference")
        lines += [f"### {title}", "",
                  f"| method | seeds | kNN top-1 (%) | linear top-1 (%) | Δ kNN vs floor, pp [95 % CI] | > floor + 2 sd? "
                  f"| Δ kNN vs {reference}, pp [95 % CI] | Adam lr | pretraining min | needs labels? | teacher | "
                  "augmentation |", "|" + "---|" * 12]
        for r in block_rows:
            lr = r.get("learning_rate")
            lines.append(" | ".join([
                f"| {r['row']}", str(r["seeds"]), format_mean_std(r, "knn_top1"), format_mean_std(r, "linear_top1"),
                format_difference(r, "floor"), ("yes" if r["beats_floor"] else "no") if "beats_floor" in r else "–",
                format_difference(r, "reference"), f"{lr:g}" if lr else "–",
                format_mean_std(r, "train_seconds", 1 / 60, 1), r["needs_labels"], r["teacher"], r["views"],
            ]) + " |")
        lines.append("")
    if learning_rates:
        grid = sorted({rate for choice in learning_rates.values() for rate in choice["grid"]}, key=float)
        lines += ["### Learning-rate grid (validation kNN top-1 %, held-out training images)", "",
                  "| row | " + " | ".join(f"lr {g}" for g in grid) + " | chosen |", "|" + "---|" * (len(grid) + 2)]
        for name, choice in learning_rates.items():
            cells = [f"{100 * choice['grid'][g]:.2f}" if g in choice["grid"] else "–" for g in grid]
            edge = " (edge)" if choice.get("at_grid_edge") else ""
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {choice['learning_rate']:g}{edge} |")
        any_choice = next(iter(learning_rates.values()))
        lines += ["", f"Grid runs: seed 0, {any_choice['steps_per_stage']} steps per stage, pretrained without the "
                      f"last {any_choice['validation_images']} training images, which are the kNN queries."
                  + (" (edge): the grid's smallest or largest rate won, so the row's best rate may lie beyond the grid."
                     if any(c.get("at_grid_edge") for c in learning_rates.values()) else ""), ""]
    teacher_rows = {t.row_name: t for t in cfg.teacher_runs}
    seeds = sorted({r["seeds"] for r in rows if r["row"] not in teacher_rows})
    teachers = "; ".join(f"'{t.row_name}': {t.steps} steps of {t.config}" + (f" with {', '.join(t.overrides)}"
                                                                              if t.overrides else "")
                         for t in cfg.teacher_runs if t.row_name in {r["row"] for r in rows})
    lines.append(
        f"{'/'.join(map(str, seeds))} seed(s) per row (mean ± std, ddof 1; differences paired by seed with a 95 % t "
        f"interval); every row: its method's shipped config, then {cfg.steps} steps × batch {cfg.batch_size} per stage "
        f"(stage(s) {cfg.stages} of the binary student) on the first {cfg.data_limit or 60000} training images, its "
        f"method's own augmentation unless 'shared'; kNN (K {min(cfg.knn_k, cfg.knn_bank)}, τ {cfg.knn_temperature}) "
        f"and a {cfg.linear_epochs}-epoch linear probe with the first {cfg.knn_bank} train images as bank / probe "
        f"data, scored on the first {cfg.knn_queries} test images. Pretraining min: wall-clock of the training steps."
        + (f" Teachers trained here, once (seed 0) and shared by every seed: {teachers}." if teachers else ""))
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_bar_plot(out: Path, rows: list[dict]) -> str:
    plt = _pyplot()
    blocks = [b for b in BLOCKS if any(r["block"] == b for r in rows)]
    heights = [sum(r["block"] == b for r in rows) for b in blocks]
    fig, axes = plt.subplots(len(blocks), 1, figsize=(9, 1.2 + 0.45 * sum(heights) + 0.6 * len(blocks)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, block in zip(axes[:, 0], blocks):
        block_rows = [r for r in rows if r["block"] == block]
        y = np.arange(len(block_rows))
        for offset, key, label in ((-0.2, "knn_top1", "weighted kNN"), (0.2, "linear_top1", "linear probe")):
            ax.barh(y + offset, [100 * r[key] for r in block_rows], height=0.4, label=label,
                    xerr=[100 * r[f"{key}_std"] for r in block_rows])
        ax.set_yticks(y, [r["row"] for r in block_rows], fontsize=8)
        ax.invert_yaxis()
        ax.set_title(BLOCKS[block], fontsize=9)
        ax.set_xlabel("top-1 (%)")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "compare.png", dpi=90)
    plt.close(fig)
    return "compare.png"


def curve_figure(results: list[dict], rows: list[TableRow]):
    """The learning-curve figure: kNN against the fraction of the budget, one line per row
    (its lowest seed with a curve), one panel per block; None when no run has a curve.
    Every line of a panel has its own colour and line style (ten colours, then dashed), so
    up to twenty rows stay apart; the legend sits beside the panel, off the lines."""
    curves = []
    for row in rows:
        runs = sorted((r for r in results if r["row"] == row.name and r.get("curve")), key=lambda r: r["seed"])
        if runs:
            curves.append((row, runs[0]["curve"]))
    if not curves:
        return None
    plt = _pyplot()
    colors = plt.get_cmap("tab10").colors
    blocks = [b for b in BLOCKS if any(row.block == b for row, _ in curves)]
    fig, axes = plt.subplots(1, len(blocks), figsize=(8.5 * len(blocks), 4.8), squeeze=False)
    floor = next((r for r in results if r.get("method") == RANDOM and r["seed"] == 0), None)
    for ax, block in zip(axes[0], blocks):
        for i, (row, curve) in enumerate((row, curve) for row, curve in curves if row.block == block):
            ax.plot([p["fraction"] for p in curve], [100 * p["knn_top1"] for p in curve],
                    color=colors[i % len(colors)], linestyle=("-", "--")[i // len(colors) % 2],
                    marker="os"[i // len(colors) % 2], label=row.name, linewidth=2.4 if row.reference else 1.2)
        if floor is not None:
            ax.axhline(100 * floor["knn_top1"], color="black", linestyle=":", label="random init (seed 0)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("fraction of the budget")
        ax.set_ylabel("weighted kNN top-1 (%), seed 0")
        ax.set_title(BLOCKS[block], fontsize=9)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def write_curve_plot(out: Path, results: list[dict], rows: list[TableRow]) -> str | None:
    """``compare_curves.png`` (:func:`curve_figure`), or None when no run has a curve."""
    fig = curve_figure(results, rows)
    if fig is None:
        return None
    fig.savefig(out / "compare_curves.png", dpi=90, bbox_inches="tight")
    _pyplot().close(fig)
    return "compare_curves.png"


# ---------------------------------------------------------------------------- driver
def run_comparison(cfg: CompareConfig, out: str | Path, figures: bool = True, log=print,
                   report_only: bool = False) -> dict:
    """Runs every (row, seed) not already in ``<out>/runs.jsonl`` — the teachers first, then
    the learning-rate grid, then the rows — and writes the tables. ``report_only``: runs
    nothing and writes the tables of what the log already has (a comparison in progress, or
    one whose processes are still running), saying what is missing."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = selected_rows(cfg)
    runs = RunLog(out / "runs.jsonl", "row")
    data = EvalData(cfg)
    results, info = [], {}
    start = time.time()
    missing: list[str] = []

    def run_or_look_up(name: str, key: str, fn: Callable[[], dict], label: str | None = None
                       ) -> tuple[dict | None, bool]:
        """``runs.run``; with ``report_only`` the logged record or None (``label`` is then
        listed as missing)."""
        if not report_only:
            return runs.run(name, key, fn)
        if (name, key) not in runs.done:
            missing.append(label or name)
        return runs.done.get((name, key)), False

    def report(name: str, result: dict) -> None:
        log(f"[{(time.time() - start) / 60:5.1f} min] {name:<36} seed {result['seed']}: kNN "
            f"{100 * result['knn_top1']:.2f}%  linear {100 * result['linear_top1']:.2f}%  ({result['seconds']:.0f} s)")

    teachers, trained_teachers = {}, []
    needed_teachers = {r.teacher for r in rows} | {r.teacher for r in grid_rows(cfg, rows)}
    for run in cfg.teacher_runs:
        if run.name not in needed_teachers:
            continue
        tcfg = teachers[run.name] = teacher_config(cfg, run.name)
        result, fresh = run_or_look_up(run.row_name, run_key(tcfg, cfg, "teacher"),
                                       lambda: run_teacher(run, tcfg, out, data))
        if result is None:
            continue
        weights = teacher_dir(out, run.name) / "stage1" / "backbone"
        if not fresh and not report_only and not weights.is_dir():
            # A log carried to another --out (or machine) without the teacher it names: its
            # rows cannot distil it, and a retrained teacher would not be the logged one.
            raise FileNotFoundError(
                f"{out / 'runs.jsonl'} logs the teacher {run.row_name!r} but its exported backbone {weights} is "
                f"missing: copy it there, or remove that teacher's line (and its rows') to train it again")
        results.append(result)
        trained_teachers.append(run)
        info[run.row_name] = {"needs_labels": "yes" if tcfg.method_class.needs_labels else "no", "teacher": "–",
                              "views": "own", "learning_rate": tcfg.optimizer.learning_rate}
        if fresh:
            report(run.row_name, result)
    bases: Dict[str, dict] = {}
    learning_rates = choose_learning_rates(cfg, rows, out, runs, bases, teachers, log, report_only)
    # Seed-major: every row's seed 0 first, so an interrupted comparison already has a table.
    for seed in range(max((cfg.row_seeds(r) for r in rows), default=0)):
        for row in rows:
            if seed >= cfg.row_seeds(row):
                continue
            values = bases.setdefault(row.base_config, read_config_values(row.base_config))
            teacher = teachers.get(row.teacher)
            rate = row_learning_rate(row, learning_rates)
            pcfg = row_config(cfg, row, seed, out, values, teacher, rate)
            teacher_hash = teacher.hash() if teacher is not None else None
            curve = row.trained and seed < cfg.curve_seeds and bool(cfg.curve_fractions)
            # A run's identity must not depend on where ``--out`` is (so logs from several
            # places can be put together): the trained teacher's path is left out of the key,
            # its config hash is in it.
            key_cfg = row_config(cfg, row, seed, Path(OUT_IN_KEYS), values, teacher, rate) if teacher else pcfg
            extra = (cfg.stages, teacher_hash) + ((tuple(cfg.curve_fractions),) if curve else ())
            key = run_key(key_cfg, cfg, row.method == RANDOM, *extra)
            if report_only and row.trained and row_learning_rate(row, learning_rates) is None and cfg.lr_grid:
                missing.append(f"{row.name} (its rate: the grid is not complete)")
                continue
            result, fresh = run_or_look_up(row.name, key, lambda: run_row(cfg, row, seed, out, data, pcfg, curve),
                                           label=f"{row.name} seed {seed}")
            if result is None:
                continue
            results.append(result)
            info[row.name] = describe(row, pcfg, teacher)
            if fresh:
                report(row.name, result)
    table = aggregate(results, rows, info, trained_teachers)
    summary = {"config": dataclasses.asdict(cfg), "rows": table, "learning_rates": learning_rates,
               "runs": results, "minutes": round((time.time() - start) / 60, 1)}
    if report_only:
        summary["missing"] = sorted(set(missing))
        log(f"{len(results)} runs logged; {len(summary['missing'])} not yet: " + "; ".join(summary["missing"]))
    text = format_markdown(table, cfg, learning_rates)
    if report_only and summary["missing"]:
        text += ("\n\n**In progress**: written from the runs logged so far (`--report`); not yet logged: "
                 + "; ".join(summary["missing"]) + ".")
    atomic_write_text(out / "compare.md", text + "\n")
    if figures and table:
        summary["figures"] = [write_bar_plot(out, table)]
        curves = write_curve_plot(out, results, rows)
        if curves:
            summary["figures"].append(curves)
    atomic_write_json(out / "compare.json", summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    return experiment_main(argv, module="compare", doc=__doc__, default_config=DEFAULT_CONFIG,
                           config_class=CompareConfig, run=run_comparison,
                           format_markdown=lambda rows, cfg: format_markdown(rows, cfg),
                           presets="small, budget, full, grouping", out="runs/compare",
                           selections={"rows": "row names or methods (default: all)",
                                       "blocks": f"known: {', '.join(BLOCKS)}"}, report=True)


if __name__ == "__main__":
    sys.exit(main())
