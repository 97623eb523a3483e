"""Every pretraining method of burn_tf on the same binary student, as one command:

    python -m burn_tf.studies.compare --config configs/compare.yaml [--preset small|full|grouping]
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

**Learning rates** (``lr_grid``, :mod:`~burn_tf.studies.compare_grid`): every trained row's Adam
rate is chosen on the validation split — the mean weighted kNN of ``lr_grid_seeds`` seeds at
``lr_fraction`` of the budget (step-counted settings scaled alike), pretrained on the training
images minus the last ``validation_images``, which are the queries; a rate at the grid's edge
widens the grid (``lr_grid_extensions``). A row with ``learning_rate:`` keeps that rate; one
with ``lr_from: <row>`` takes that row's choice (BURN's controls take BURN's). The scores and
choices are in ``compare.json`` (``learning_rates``, with their ``split``); a choice still at an
edge is flagged (``at_grid_edge``; "(edge)" in ``compare.md``). An empty grid keeps each
config's own rate.

**Seeds**: every row runs seeds 0 … ``seeds`` − 1; the same-seeds rule then gives a row whose
paired kNN interval against its block's reference spans zero, and that reference, seeds up to
``seeds_if_unsure`` (``compare.json`` → ``seed_rule``).

**One code version**: a run's key hashes its config and the code version (the source tree's
hash, :func:`burn_tf.studies.harness.code_version`); ``compare.json`` names it and counts the
logged runs of other versions it did not use. ``reuse_code_version`` reuses another version's
runs after one sample (``reuse_sample``'s seed 0) reruns with bit-identical exported weights.

**Learning curves**: for the first ``curve_seeds`` seeds every trained row is also scored by
weighted kNN (test queries; no choice is made from them) at ``curve_fractions`` of its budget
(stage 1's steps first, then stage 2's), while it trains; ``compare_curves.png`` draws them.

**Statistics**: every row's kNN and linear differences to the floor and to its block's
reference row (``reference: true``: BURN), paired by seed (the seeds both rows have), with
a 95 % t interval over those seeds; ``beats_floor`` says whether the kNN difference to the
floor exceeds two paired standard deviations.

Every run is pretrained and evaluated as :mod:`burn_tf.studies.ablate` does it (the shared code
is :mod:`burn_tf.studies.harness`): weighted kNN and the linear probe with ``knn_bank`` train
images as bank / probe data and ``knn_queries`` test images as queries (null: all 60,000 and
all 10,000), one run per seed, a seed giving every row the same initial student.

Blocks (``blocks:`` selects them; ``--blocks`` too):

- ``methods``: every method on the shipped configs' teachers (EfficientNet-Lite0 for BURN)
  and the random-init floor;
- ``self_teacher``: rows distilling the teacher this command trains without labels;
- ``shared_views``: rows that all use the comparison's ``views`` (one augmentation for all);
- ``cld_grouping``: CLD's grouping (k-means or spectral) × number of groups, read by weighted
  kNN; only ``--preset grouping`` or ``--blocks cld_grouping`` runs it.

Teachers this command trains (``teacher_runs:``, each ``{name, config, steps, overrides,
seeds}``): a row with ``teacher: <name>`` distils the FP network that ``config`` pretrains,
its seed i distilling teacher seed i mod ``seeds`` (:mod:`~burn_tf.studies.compare_rows`), so a
row's seeds measure the teacher's variance too. Each teacher seed is evaluated as a seed of a
row of its own and given to the rows as ``teacher: {kind, small_input_stem, input_size,
weights: <out>/runs/teacher_<name>_seed<k>/stage1/backbone}``. Every distillation row of the
table runs with both teachers (``compare.json`` → ``teacher_pairs``).
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
from burn_tf.studies import harness
from burn_tf.studies.compare_config import (
    BLOCKS,
    DEFAULT_CONFIG,
    RANDOM,
    SHIPPED,
    CompareConfig,
    TableRow,
    selected_rows,
)
from burn_tf.studies.compare_grid import choose_learning_rates, grid_rows, row_learning_rate
from burn_tf.studies.compare_report import (
    aggregate,
    format_markdown,
    paired_difference,
    reference_of,
    write_bar_plot,
    write_curve_plot,
)
from burn_tf.studies.compare_rows import (
    config_key,
    describe,
    distillation_pairs,
    row_config,
    teacher_config,
    teacher_dir,
)


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
        model = harness.random_init_backbone(pcfg, seed)
        return {**result, "weights_sha256": harness.weights_sha256(model), **data.evaluate(model, seed)}
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


def run_teacher(name: str, seed: int, tcfg: PretrainConfig, block: str, out: Path, data: harness.EvalData) -> dict:
    """Pretrains seed ``seed`` of teacher ``name`` of ``teacher_runs`` and evaluates its
    backbone like a row."""
    model, summary = harness.pretrain_run(tcfg, [1], teacher_dir(out, name, seed),
                                          out / "steps" / f"teacher_{name}_seed{seed}.json")
    return {"seed": seed, "block": block, "method": tcfg.method.name, **summary, **data.evaluate(model, seed)}


def needed_teacher_seeds(cfg: CompareConfig, rows: list[TableRow]) -> dict[str, list[int]]:
    """{teacher name: its seeds that some selected row's seed (or grid seed) distils}."""
    needed: dict[str, set] = {}
    for row in rows + grid_rows(cfg, rows):
        if row.teacher == SHIPPED:
            continue
        student_seeds = max(cfg.row_seeds(row, unsure=True), cfg.lr_grid_seeds if cfg.lr_grid else 0)
        needed.setdefault(row.teacher, set()).update(cfg.teacher_seed(row.teacher, s) for s in range(student_seeds))
    return {name: sorted(seeds) for name, seeds in needed.items()}


def unsure_rows(cfg: CompareConfig, rows: list[TableRow], results: list[dict]) -> set[str]:
    """The same-seeds rule: the rows whose paired kNN interval against the row they are compared
    with (their ``versus`` or their block's reference), over seeds 0 … ``seeds`` − 1, spans
    zero — and those rows: they get seeds up to ``seeds_if_unsure``. Decided on the first
    ``seeds`` seeds only, so a rerun decides alike."""
    if not cfg.seeds_if_unsure or cfg.capped(cfg.seeds_if_unsure) <= cfg.capped(cfg.seeds):
        return set()
    first = [r for r in results if r["seed"] < cfg.seeds]
    by_row = {row.name: [r for r in first if r["row"] == row.name] for row in rows}
    unsure = set()
    for row in rows:
        reference = reference_of(row.name, rows)
        if not row.trained or row.seeds or reference in (None, row.name) or not by_row.get(reference):
            continue
        d = paired_difference(by_row[row.name], by_row[reference], "knn_top1")
        if d["n"] >= 2 and d["low"] <= 0 <= d["high"]:
            unsure |= {row.name, reference}
    return unsure


def seed_plan(cfg: CompareConfig, rows: list[TableRow], unsure: set[str]) -> dict[str, int]:
    """{row: seeds it runs}: :meth:`CompareConfig.row_seeds`; the floor (never trained,
    compared with every row) runs every seed any row runs."""
    plan = {r.name: cfg.row_seeds(r, r.name in unsure) for r in rows}
    most = max(plan.values(), default=0)
    return {r.name: most if r.method == RANDOM and not r.seeds else plan[r.name] for r in rows}


def run_comparison(cfg: CompareConfig, out: str | Path, figures: bool = True, log=print,
                   report_only: bool = False) -> dict:
    """Runs every (row, seed) not already in ``<out>/runs.jsonl`` by this code version — the
    reuse check first (``reuse_code_version``), then the teachers, the learning-rate grid (on
    the validation split), the rows' first ``seeds`` seeds, then the seeds the same-seeds rule
    adds — and writes the tables. ``report_only``: runs nothing and writes the tables of what
    the log already has (a comparison in progress, or one whose processes are still running),
    saying what is missing."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = selected_rows(cfg)
    runs = harness.RunLog(out / "runs.jsonl", "row")
    data = harness.EvalData(cfg)
    results, info, have = [], {}, set()
    start = time.time()
    missing: list[str] = []

    def run_or_look_up(name: str, key: str, fn: Callable[[], dict], label: str | None = None
                       ) -> tuple[dict | None, bool]:
        """``runs.run``; with ``report_only`` the logged record or None (``label`` is then
        listed as missing)."""
        if not report_only:
            return runs.run(name, key, fn)
        record = runs.lookup(name, key)
        if record is None:
            missing.append(label or name)
        return record, False

    def report(name: str, result: dict) -> None:
        log(f"[{(time.time() - start) / 60:5.1f} min] {name:<36} seed {result['seed']}: kNN "
            f"{100 * result['knn_top1']:.2f}%  linear {100 * result['linear_top1']:.2f}%  ({result['seconds']:.0f} s)")

    teacher_seeds = needed_teacher_seeds(cfg, rows)
    teachers = {(name, seed): teacher_config(cfg, name, seed) for name, seeds in teacher_seeds.items()
                for seed in seeds}

    def teacher_of(row: TableRow, seed: int) -> PretrainConfig | None:
        return None if row.teacher == SHIPPED else teachers[row.teacher, cfg.teacher_seed(row.teacher, seed)]

    bases: dict[str, dict] = {}

    def row_run(row: TableRow, seed: int, learning_rates: dict) -> tuple[str, PretrainConfig, Callable, bool]:
        """(run key, config, the run, with a curve?) of ``row``'s ``seed``."""
        values = bases.setdefault(row.base_config, read_config_values(row.base_config))
        teacher, rate = teacher_of(row, seed), row_learning_rate(row, learning_rates)
        pcfg = row_config(cfg, row, seed, out, values, teacher, rate)
        curve = row.trained and seed < cfg.curve_seeds and bool(cfg.curve_fractions)
        _, key = config_key(cfg, row, seed, values, teacher, rate, row.method == RANDOM, cfg.stages,
                            *((tuple(cfg.curve_fractions),) if curve else ()))
        return key, pcfg, lambda: run_row(cfg, row, seed, out, data, pcfg, curve), curve

    reuse = None
    if cfg.reuse_code_version and not report_only:
        sample = next((r for r in rows if r.name == cfg.reuse_sample or (cfg.reuse_sample is None and r.trained)),
                      None)
        if sample is None:
            raise harness.CodeVersionError("reuse_code_version: no trained row selected to repeat")
        runs.versions.append(cfg.reuse_code_version)  # the sample's rate: the old version's grid choice
        old_rates = choose_learning_rates(cfg, [sample], out, runs, bases, teacher_of, log, report_only=True)
        runs.versions.remove(cfg.reuse_code_version)
        key, _, fn, _ = row_run(sample, 0, old_rates)
        reuse = runs.accept_version(cfg.reuse_code_version, sample.name, key, fn)
        log(f"code version {cfg.reuse_code_version}: {sample.name!r} seed 0 rerun bit-identical; its runs reused")

    trained_teachers = []
    for (name, seed), tcfg in teachers.items():
        run = cfg.teacher_run(name)
        result, fresh = run_or_look_up(run.row_name, harness.run_key(tcfg, cfg, "teacher"),
                                       lambda name=name, seed=seed, tcfg=tcfg, run=run:
                                       run_teacher(name, seed, tcfg, run.block, out, data),
                                       label=f"{run.row_name} seed {seed}")
        if result is None:
            continue
        weights = teacher_dir(out, name, seed) / "stage1" / "backbone"
        if not fresh and not report_only and not weights.is_dir():
            # A log carried to another --out (or machine) without the teacher it names: its
            # rows cannot distil it, and a retrained teacher would not be the logged one.
            raise FileNotFoundError(
                f"{out / 'runs.jsonl'} logs the teacher {run.row_name!r} seed {seed} but its exported backbone "
                f"{weights} is missing: copy it there, or remove that teacher's line (and its rows') to train it again")
        results.append(result)
        if run not in trained_teachers:
            trained_teachers.append(run)
        info[run.row_name] = {"needs_labels": "yes" if tcfg.method_class.needs_labels else "no", "teacher": "–",
                              "views": "own", "learning_rate": tcfg.optimizer.learning_rate}
        if fresh:
            report(run.row_name, result)
    learning_rates = choose_learning_rates(cfg, rows, out, runs, bases, teacher_of, log, report_only)

    # A row whose rate comes from a grid not complete yet (report_only) has no run to look up.
    to_grid_or_from = [r for r in rows if r.trained and r.learning_rate is None and cfg.lr_grid]

    def run_seeds(plan: dict[str, int]) -> None:
        # Seed-major: every row's seed 0 first, so an interrupted comparison already has a table.
        for seed in range(max(plan.values(), default=0)):
            for row in rows:
                if seed >= plan[row.name] or (row.name, seed) in have:
                    continue
                if row in to_grid_or_from and row_learning_rate(row, learning_rates) is None:
                    if report_only:
                        missing.append(f"{row.name} (its rate: the grid is not complete)")
                    continue
                key, pcfg, fn, _ = row_run(row, seed, learning_rates)
                result, fresh = run_or_look_up(row.name, key, fn, label=f"{row.name} seed {seed}")
                if result is None:
                    continue
                results.append(result)
                have.add((row.name, seed))
                teacher = teacher_of(row, seed)
                info[row.name] = describe(row, pcfg, teacher, cfg.teacher_run(row.teacher).seeds if teacher else 1)
                if fresh:
                    report(row.name, result)

    run_seeds(seed_plan(cfg, rows, set()))
    unsure = unsure_rows(cfg, rows, results)
    if unsure:
        log(f"same-seeds rule: the paired interval vs the reference spans zero at {cfg.seeds} seeds: "
            f"{sorted(unsure)} run {cfg.capped(cfg.seeds_if_unsure)} seeds")
    plan = seed_plan(cfg, rows, unsure)
    run_seeds(plan)
    table = aggregate(results, rows, info, trained_teachers)
    others = runs.other_versions()
    if others:
        log(f"NOT USED: {sum(others.values())} logged runs of other code versions {others} (this code: "
            f"{runs.code_version}; reuse one only with reuse_code_version, after a bit-identical rerun)")
    summary = {"config": dataclasses.asdict(cfg), "code_version": runs.code_version,
               "code_versions_used": sorted({r.get("code_version") for r in results if r.get("code_version")}),
               "reused_code_version": reuse, "other_code_versions": others,
               "splits": {"rows": data.describe(), "curves": data.describe() | {"used_for_choices": False},
                          "learning_rates": "validation (see learning_rates.<row>.split)"},
               "seed_rule": {"seeds": cfg.seeds, "seeds_if_unsure": cfg.seeds_if_unsure, "extended": sorted(unsure),
                             "plan": plan},
               "teacher_pairs": distillation_pairs(cfg)[0], "rows": table, "learning_rates": learning_rates,
               "runs": results, "minutes": round((time.time() - start) / 60, 1)}
    if report_only:
        summary["missing"] = sorted(set(missing))
        log(f"{len(results)} runs logged; {len(summary['missing'])} not yet: " + "; ".join(summary["missing"]))
    text = format_markdown(table, cfg, learning_rates, data.describe(), runs.code_version)
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
                                   presets="small, full, grouping", out="runs/compare",
                                   selections={"rows": "row names or methods (default: all)",
                                               "blocks": f"known: {', '.join(BLOCKS)}"}, report=True)


if __name__ == "__main__":
    sys.exit(main())
