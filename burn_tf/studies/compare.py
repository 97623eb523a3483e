"""Every pretraining method of burn_tf on the same binary student, as one command:

    python -m burn_tf.studies.compare --config configs/compare.yaml [--preset small|budget|full|grouping]
                                      [--seeds N] [--rows burn,s2bnn,random] [--blocks methods,self_teacher]
                                      [--out runs/compare] [--json] [--report]

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

Every run is pretrained and evaluated as :mod:`burn_tf.studies.ablate` does it (the shared code
is :mod:`burn_tf.studies.harness`): weighted kNN and the linear probe on ``knn_bank`` train /
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
import sys
import time
from collections.abc import Callable
from pathlib import Path

from burn_tf.config import PretrainConfig, read_config_values
from burn_tf.io import atomic_write_json, atomic_write_text
from burn_tf.methods.registry import method_class
from burn_tf.studies import harness
from burn_tf.studies.ablate import VARIANTS
from burn_tf.studies.compare_config import (
    BLOCKS,
    DEFAULT_CONFIG,
    RANDOM,
    SHIPPED,
    CompareConfig,
    TableRow,
    TeacherRun,
    selected_rows,
)
from burn_tf.studies.compare_report import aggregate, format_markdown, write_bar_plot, write_curve_plot

LR_GRID_BLOCK = "lr_grid"  # runs.jsonl records of the learning-rate grid


# What stands for ``--out`` in the run keys of rows distilling a teacher this command trains.
OUT_IN_KEYS = "<out>"


def teacher_dir(out: Path, name: str = "self") -> Path:
    return out / "runs" / f"teacher_{name}"


def teacher_config(cfg: CompareConfig, name: str = "self", values: dict | None = None) -> PretrainConfig:
    """The pretraining config of teacher ``name`` of ``teacher_runs`` (seed 0, its steps)."""
    run = cfg.teacher_run(name)
    values = values if values is not None else read_config_values(run.config)
    # The rows' shared overrides size the binary student; the teacher has its own.
    overrides = [*harness.budget_overrides(cfg, 0, steps=run.steps, shared=False), *run.overrides]
    return harness.build_run_config(values, overrides, f"teacher_runs {name!r}")


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
    return harness.build_run_config(values, [*variant, *row.overrides, *harness.budget_overrides(cfg, seed), *own,
                                             *extra], f"table row {row.name!r}")


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


def run_row(cfg: CompareConfig, row: TableRow, seed: int, out: Path, data: harness.EvalData, pcfg: PretrainConfig,
            curve: bool = False) -> dict:
    """Pretrains (unless the floor) and evaluates one row for one seed; with ``curve`` also
    the kNN learning curve (``curve``: fraction of the budget → kNN, the last point the run's
    own kNN)."""
    result = {"seed": seed, "block": row.block, "method": row.method}
    if row.method == RANDOM:
        return {**result, **data.evaluate(harness.random_init_backbone(pcfg, seed), seed)}
    stages = [s for s in cfg.stages if s in pcfg.backbone.stages]
    schedule = curve_schedule(cfg, stages) if curve else {}
    points: list = []

    def callbacks(stage: int) -> list:
        steps = schedule.get(stage)
        return [harness.KNNCurve(data, stage, steps, points)] if steps else []

    model, summary = harness.pretrain_run(pcfg, stages, out / "runs" / row.slug / f"seed{seed}",
                                          out / "steps" / f"{row.slug}_seed{seed}.json", stage_callbacks=callbacks)
    result = {**result, **summary, **data.evaluate(model, seed)}
    if curve:
        result["curve"] = [{**p, "fraction": schedule[p["stage"]][p["step"]]} for p in points] + [
            {"stage": stages[-1], "step": cfg.steps, "fraction": 1.0, "knn_top1": result["knn_top1"]}]
    return result


def run_teacher(run: TeacherRun, tcfg: PretrainConfig, out: Path, data: harness.EvalData) -> dict:
    """Pretrains a teacher of ``teacher_runs`` (once) and evaluates its backbone like a row."""
    model, summary = harness.pretrain_run(tcfg, [1], teacher_dir(out, run.name),
                                          out / "steps" / f"teacher_{run.name}.json")
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


def choose_learning_rates(cfg: CompareConfig, rows: list[TableRow], out: Path, runs: harness.RunLog, bases: dict,
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
    validation = harness.EvalData(cfg, validation=cfg.validation_images)
    train_size = validation.train_size
    for row in to_grid:
        values = bases.setdefault(row.base_config, read_config_values(row.base_config))
        teacher = teachers.get(row.teacher)
        scores, ran = {}, False
        for rate in cfg.lr_grid:
            pcfg = grid_config(cfg, row, out, values, teacher, rate, train_size)
            key_cfg = (grid_config(cfg, row, Path(OUT_IN_KEYS), values, teacher, rate, train_size)
                       if teacher is not None else pcfg)
            key = harness.run_key(key_cfg, cfg, LR_GRID_BLOCK, cfg.stages, cfg.validation_images,
                                  teacher.hash() if teacher is not None else None)
            name = f"{row.name} | lr {rate:g}"

            def grid_run(pcfg=pcfg, rate=rate, row=row):
                stages = [s for s in cfg.stages if s in pcfg.backbone.stages]
                model, summary = harness.pretrain_run(pcfg, stages,
                                                      out / "runs" / LR_GRID_BLOCK / f"{row.slug}_lr{rate:g}")
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




def run_comparison(cfg: CompareConfig, out: str | Path, figures: bool = True, log=print,
                   report_only: bool = False) -> dict:
    """Runs every (row, seed) not already in ``<out>/runs.jsonl`` — the teachers first, then
    the learning-rate grid, then the rows — and writes the tables. ``report_only``: runs
    nothing and writes the tables of what the log already has (a comparison in progress, or
    one whose processes are still running), saying what is missing."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = selected_rows(cfg)
    runs = harness.RunLog(out / "runs.jsonl", "row")
    data = harness.EvalData(cfg)
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
        result, fresh = run_or_look_up(run.row_name, harness.run_key(tcfg, cfg, "teacher"),
                                       lambda run=run, tcfg=tcfg: run_teacher(run, tcfg, out, data))
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
    bases: dict[str, dict] = {}
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
            key = harness.run_key(key_cfg, cfg, row.method == RANDOM, *extra)
            if report_only and row.trained and row_learning_rate(row, learning_rates) is None and cfg.lr_grid:
                missing.append(f"{row.name} (its rate: the grid is not complete)")
                continue
            def this_run(row=row, seed=seed, pcfg=pcfg, curve=curve):
                return run_row(cfg, row, seed, out, data, pcfg, curve)

            result, fresh = run_or_look_up(row.name, key, this_run, label=f"{row.name} seed {seed}")
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
    return harness.experiment_main(argv, module="compare", doc=__doc__, default_config=DEFAULT_CONFIG,
                                   config_class=CompareConfig, run=run_comparison,
                                   format_markdown=lambda rows, cfg: format_markdown(rows, cfg),
                                   presets="small, budget, full, grouping", out="runs/compare",
                                   selections={"rows": "row names or methods (default: all)",
                                               "blocks": f"known: {', '.join(BLOCKS)}"}, report=True)


if __name__ == "__main__":
    sys.exit(main())
