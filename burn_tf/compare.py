"""Every pretraining method of burn_tf on the same binary student, as one command:

    python -m burn_tf.compare --config configs/compare.yaml [--preset small|full|grouping]
                              [--seeds N] [--rows burn,s2bnn,random] [--blocks methods,self_teacher]
                              [--out runs/compare] [--json]

A row of the table is an entry of ``table:`` in ``compare.yaml``:
``{name: <row label>, method: <method.name>, overrides: [...]}``. Its pretraining config is the
method's own shipped YAML (``burn_tf/configs/<method>.yaml``, or the entry's ``config:``) with
the entry's ``overrides``, then the shared budget on top: ``steps`` per stage, ``batch_size``,
``stages``, ``data_limit``, the seed and the augmentation (``views``; an entry with
``own_views: true`` keeps its method's — SwAV's multi-crop, InfoMin's views — and the table
says so). ``method: random`` is the floor: the base config's student, never trained.

Every run is pretrained and evaluated as :mod:`burn_tf.ablate` does it (the shared code is
:mod:`burn_tf.experiment`): weighted kNN and the linear probe on ``knn_bank`` train /
``knn_queries`` test images of Fashion-MNIST, one run per seed, a seed giving every row the
same initial student.

Blocks (``blocks:`` selects them; ``--blocks`` too):

- ``methods``: every method on the shipped configs' teachers (EfficientNet-Lite0 for the
  distillation methods) and the random-init floor;
- ``self_teacher``: rows distilling the teacher this command trains without labels.

Teachers this command trains (``teacher_runs:``, each ``{name, config, steps, overrides}``):
a row with ``teacher: <name>`` distils the FP network that ``config`` pretrains. Each is
pretrained **once in total** (seed 0: the student rows' seeds then measure the student's
variance for one fixed teacher, and the hour of the full preset pays for one teacher run
each), evaluated as a row of its own, and given to the rows as ``teacher: {kind,
small_input_stem, input_size, weights: <out>/runs/teacher_<name>/stage1/backbone}``.
Shipped: ``self`` (``demo_teacher.yaml``: MoCo v2 on an FP ResNet-18, no label) and
``supervised`` (``supervised.yaml`` on an FP ResNet-18: the supervised FP network whose
outputs supervised KL-div distils);
- ``cld_grouping``: CLD's grouping (k-means or spectral) × number of groups, read by weighted
  kNN; long, so only ``--preset grouping`` or ``--blocks cld_grouping`` runs it.

Writes to ``--out``: ``compare.md`` (mean ± std over seeds, one table per block: kNN, linear,
pretraining minutes, needs labels?, teacher, augmentation), ``compare.json``, ``compare.png``
(bar plot), ``runs.jsonl`` (finished runs: a rerun skips them) and ``steps/<row>_seed<k>.json``.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import time
from pathlib import Path
from typing import Any, List, Optional

import numpy as np

from burn_tf.ablate import VARIANTS
from burn_tf.config import ConfigError, PretrainConfig, read_config_values
from burn_tf.experiment import (
    EvalData,
    ExperimentConfig,
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
    "methods": "Methods (each with its shipped teacher, if any)",
    "self_teacher": "Self-trained teacher (FP ResNet-18 pretrained without labels by this command)",
    "cld_grouping": "CLD grouping study (weighted kNN)",
}
SHIPPED = "shipped"  # a row's teacher: the base config's own


@dataclasses.dataclass
class TableRow:
    """One entry of ``table:``."""

    name: str  # the row's label in the table
    method: str  # a registered method.name, or "random" (the floor)
    overrides: List[str] = dataclasses.field(default_factory=list)
    config: Optional[str] = None  # the base pretraining config; None: <method>.yaml
    block: str = "methods"
    teacher: str = SHIPPED  # shipped: the config's teacher; else the name of a teacher_runs entry
    own_views: bool = False  # keep the method's own augmentation instead of the shared one
    variant: Optional[str] = None  # a burn_tf.ablate variant whose overrides come first

    def __post_init__(self):
        if self.block not in BLOCKS:
            raise ConfigError(f"table row {self.name!r}: block={self.block!r} is not one of {list(BLOCKS)}")
        if self.variant is not None and self.variant not in VARIANTS:
            raise ConfigError(f"table row {self.name!r}: variant={self.variant!r} is not one of {list(VARIANTS)}")

    @property
    def base_config(self) -> str:
        return self.config or f"{self.method}.yaml"

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9]+", "_", self.name).strip("_").lower()


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
        for row in self.table:
            if row.teacher != SHIPPED and row.teacher not in teachers:
                raise ConfigError(f"table row {row.name!r}: teacher={row.teacher!r} is not {SHIPPED!r} or one of "
                                  f"teacher_runs {teachers}")

    def teacher_run(self, name: str) -> TeacherRun:
        return next(t for t in self.teacher_runs if t.name == name)


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
               teacher: PretrainConfig | None = None) -> PretrainConfig:
    """The row's pretraining config: its base config, the ablation variant's and the row's
    overrides, then the shared budget, augmentation and (``teacher: <name>``) the teacher
    this command trains (``teacher``: its config, built from ``teacher_runs`` if None)."""
    values = dict(values if values is not None else read_config_values(row.base_config))
    if not row.own_views:
        values["views"] = list(cfg.views)
    if row.teacher != SHIPPED:
        teacher = teacher or teacher_config(cfg, row.teacher)
        values["teacher"] = {"kind": teacher.backbone.kind, "small_input_stem": teacher.backbone.small_input_stem,
                             "input_size": teacher.backbone.input_size,
                             "weights": str(teacher_dir(out, row.teacher) / "stage1" / "backbone")}
    variant = VARIANTS[row.variant].overrides if row.variant else ()
    return build_run_config(values, [*variant, *row.overrides, *budget_overrides(cfg, seed)], f"table row {row.name!r}")


def describe(row: TableRow, pcfg: PretrainConfig, teacher: PretrainConfig | None) -> dict:
    """What the table says about a row besides its numbers."""
    if row.method == RANDOM:
        return {"needs_labels": "–", "teacher": "–", "views": "–"}
    cls = method_class(row.method)
    if not cls.needs_teacher:
        who = "–"
    elif row.teacher != SHIPPED:
        who = f"{pcfg.teacher.kind} (trained here: {teacher.method.name})"
    else:
        who = f"{pcfg.teacher.kind} ({pcfg.teacher.weights or 'random'})"
    return {"needs_labels": "yes" if cls.needs_labels else "no", "teacher": who,
            "views": "own" if row.own_views else "shared"}


def run_row(cfg: CompareConfig, row: TableRow, seed: int, out: Path, data: EvalData, pcfg: PretrainConfig) -> dict:
    """Pretrains (unless the floor) and evaluates one row for one seed."""
    result = {"seed": seed, "block": row.block, "method": row.method}
    if row.method == RANDOM:
        return {**result, **data.evaluate(random_init_backbone(pcfg, seed), seed)}
    stages = [s for s in cfg.stages if s in pcfg.backbone.stages]
    model, summary = pretrain_run(pcfg, stages, out / "runs" / row.slug / f"seed{seed}",
                                  out / "steps" / f"{row.slug}_seed{seed}.json")
    return {**result, **summary, **data.evaluate(model, seed)}


def run_teacher(run: TeacherRun, tcfg: PretrainConfig, out: Path, data: EvalData) -> dict:
    """Pretrains a teacher of ``teacher_runs`` (once) and evaluates its backbone like a row."""
    model, summary = pretrain_run(tcfg, [1], teacher_dir(out, run.name), out / "steps" / f"teacher_{run.name}.json")
    return {"seed": 0, "block": run.block, "method": tcfg.method.name, **summary, **data.evaluate(model, 0)}


def aggregate(results: list[dict], rows: list[TableRow], info: dict, teacher_runs: list[TeacherRun] = ()) -> list[dict]:
    """One row per table row (and per teacher trained here): mean ± std over seeds."""
    out = []
    for name, block in [(r.name, r.block) for r in rows] + [(t.row_name, t.block) for t in teacher_runs]:
        runs = [r for r in results if r["row"] == name]
        if not runs:
            continue
        row = {"row": name, "block": block, "method": runs[0]["method"], "seeds": len(runs), **info[name]}
        for key in ("knn_top1", "linear_top1", "train_seconds"):
            row[key], row[f"{key}_std"] = mean_std([r.get(key) for r in runs])
        out.append(row)
    return out


def format_markdown(rows: list[dict], cfg: CompareConfig) -> str:
    lines = []
    for block, title in BLOCKS.items():
        block_rows = [r for r in rows if r["block"] == block]
        if not block_rows:
            continue
        lines += [f"### {title}", "",
                  "| method | kNN top-1 (%) | linear top-1 (%) | pretraining min | needs labels? | teacher | "
                  "augmentation |", "|" + "---|" * 7]
        for r in block_rows:
            lines.append(" | ".join([
                f"| {r['row']}", format_mean_std(r, "knn_top1"), format_mean_std(r, "linear_top1"),
                format_mean_std(r, "train_seconds", 1 / 60, 1), r["needs_labels"], r["teacher"], r["views"],
            ]) + " |")
        lines.append("")
    teacher_rows = {t.row_name: t for t in cfg.teacher_runs}
    seeds = max((r["seeds"] for r in rows if r["row"] not in teacher_rows), default=0)
    teachers = "; ".join(f"'{t.row_name}': {t.steps} steps of {t.config}" + (f" with {', '.join(t.overrides)}"
                                                                              if t.overrides else "")
                         for t in cfg.teacher_runs if t.row_name in {r["row"] for r in rows})
    lines.append(
        f"{seeds} seed(s) per row (mean ± std, ddof 1); every row: its method's shipped config, then "
        f"{cfg.steps} steps × batch {cfg.batch_size} per stage (stage(s) {cfg.stages} of the binary student) on the "
        f"first {cfg.data_limit or 60000} training images, the shared augmentation unless 'own'; kNN "
        f"(K {min(cfg.knn_k, cfg.knn_bank)}, τ {cfg.knn_temperature}) and a {cfg.linear_epochs}-epoch linear probe "
        f"with the first {cfg.knn_bank} train images as bank / probe data, scored on the first {cfg.knn_queries} "
        "test images. Pretraining min: wall-clock of the training steps."
        + (f" Teachers trained here, once (seed 0) and shared by every seed: {teachers}." if teachers else ""))
    return "\n".join(lines)


def write_bar_plot(out: Path, rows: list[dict]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


# ---------------------------------------------------------------------------- driver
def run_comparison(cfg: CompareConfig, out: str | Path, figures: bool = True, log=print) -> dict:
    """Runs every (row, seed) not already in ``<out>/runs.jsonl``; writes the tables."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = selected_rows(cfg)
    runs = RunLog(out / "runs.jsonl", "row")
    data = EvalData(cfg)
    results, info = [], {}
    start = time.time()

    def report(name: str, result: dict) -> None:
        log(f"[{(time.time() - start) / 60:5.1f} min] {name:<36} seed {result['seed']}: kNN "
            f"{100 * result['knn_top1']:.2f}%  linear {100 * result['linear_top1']:.2f}%  ({result['seconds']:.0f} s)")

    teachers, trained_teachers = {}, []
    for run in cfg.teacher_runs:
        if not any(r.teacher == run.name for r in rows):
            continue
        tcfg = teachers[run.name] = teacher_config(cfg, run.name)
        result, fresh = runs.run(run.row_name, run_key(tcfg, cfg, "teacher"),
                                 lambda: run_teacher(run, tcfg, out, data))
        results.append(result)
        trained_teachers.append(run)
        info[run.row_name] = {"needs_labels": "yes" if tcfg.method_class.needs_labels else "no", "teacher": "–",
                              "views": "own"}
        if fresh:
            report(run.row_name, result)
    bases = {}
    for row in rows:
        values = bases.setdefault(row.base_config, read_config_values(row.base_config))
        teacher = teachers.get(row.teacher)
        for seed in range(cfg.seeds):
            pcfg = row_config(cfg, row, seed, out, values, teacher)
            teacher_hash = teacher.hash() if teacher is not None else None
            # A run's identity must not depend on where ``--out`` is (so logs from several
            # places can be put together): the trained teacher's path is left out of the key,
            # its config hash is in it.
            key_cfg = row_config(cfg, row, seed, Path(OUT_IN_KEYS), values, teacher) if teacher is not None else pcfg
            key = run_key(key_cfg, cfg, row.method == RANDOM, cfg.stages, teacher_hash)
            result, fresh = runs.run(row.name, key, lambda: run_row(cfg, row, seed, out, data, pcfg))
            results.append(result)
            info[row.name] = describe(row, pcfg, teacher)
            if fresh:
                report(row.name, result)
    table = aggregate(results, rows, info, trained_teachers)
    summary = {"config": dataclasses.asdict(cfg), "rows": table, "runs": results,
               "minutes": round((time.time() - start) / 60, 1)}
    atomic_write_text(out / "compare.md", format_markdown(table, cfg) + "\n")
    if figures and table:
        summary["figures"] = [write_bar_plot(out, table)]
    atomic_write_json(out / "compare.json", summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    return experiment_main(argv, module="compare", doc=__doc__, default_config=DEFAULT_CONFIG,
                           config_class=CompareConfig, run=run_comparison, format_markdown=format_markdown,
                           presets="small, full, grouping", out="runs/compare",
                           selections={"rows": "row names or methods (default: all)",
                                       "blocks": f"known: {', '.join(BLOCKS)}"})


if __name__ == "__main__":
    sys.exit(main())
