"""What a method comparison (:mod:`burn_tf.studies.compare`) runs: the rows of its table
(``table:`` entries, :class:`TableRow`), the teachers it pretrains itself (:class:`TeacherRun`),
the blocks its tables are grouped in, and :class:`CompareConfig` (the shared budget and
evaluation of :class:`~burn_tf.studies.harness.ExperimentConfig` plus the rows, the
learning-rate grid and the learning curves), checked when it is built from
``configs/compare.yaml`` and its presets.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from burn_tf.config import ConfigError
from burn_tf.methods.registry import method_names
from burn_tf.studies import harness
from burn_tf.studies.ablate import VARIANTS

DEFAULT_CONFIG = "compare.yaml"
RANDOM = "random"  # the floor's pseudo-method: the base config's student, never trained
BLOCKS = {
    "methods": "Methods (each with its own augmentation and its shipped teacher, if any)",
    "self_teacher": "Self-trained teacher (FP ResNet-18 pretrained without labels by this command)",
    "shared_views": "One shared augmentation for every method (BURN's recipe)",
    "cld_grouping": "CLD grouping study (weighted kNN)",
}
SHIPPED = "shipped"  # a row's teacher: the base config's own


@dataclasses.dataclass
class TableRow:
    """One entry of ``table:``."""

    name: str  # the row's label in the table
    method: str  # a registered method.name, or "random" (the floor)
    overrides: list[str] = dataclasses.field(default_factory=list)
    config: str | None = None  # the base pretraining config; None: <method>.yaml
    block: str = "methods"
    teacher: str = SHIPPED  # shipped: the config's teacher; else the name of a teacher_runs entry
    shared_views: bool = False  # use the comparison's ``views`` instead of the method's own
    views: list[Any] | None = None  # the row's own views, replacing its config's
    variant: str | None = None  # a burn_tf.studies.ablate variant whose overrides come first
    seeds: int | None = None  # None: the comparison's
    data_limit: int | None = None  # None: the comparison's
    learning_rate: float | None = None  # a fixed Adam rate (no grid for this row)
    lr_from: str | None = None  # take the rate the grid chose for this row
    reference: bool = False  # the row its block's others are compared with (BURN)
    # The row this one is compared with (paired by seed) instead of its block's reference: a
    # second BURN recipe's controls are compared with that recipe's BURN.
    versus: str | None = None

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
    """A teacher this command pretrains for the rows with ``teacher: <name>``: once per seed
    (``seeds``), student seed i distilling teacher seed i mod ``seeds``."""

    name: str = "self"
    config: str = "demo_teacher.yaml"
    steps: int = 64
    overrides: list[str] = dataclasses.field(default_factory=list)
    block: str = "self_teacher"  # where its own row ("<name> teacher itself") goes
    seeds: int = 1

    def __post_init__(self):
        if self.seeds < 1 or self.steps < 1:
            raise ConfigError(f"teacher_runs {self.name!r}: seeds and steps must be >= 1, got {self.seeds}, "
                              f"{self.steps}")

    @property
    def row_name(self) -> str:
        return f"{self.name} teacher itself"


@dataclasses.dataclass
class CompareConfig(harness.ExperimentConfig):
    """Budget, evaluation and rows of a comparison (``configs/compare.yaml``; ``presets``)."""

    table: list[TableRow] = dataclasses.field(default_factory=list)
    blocks: list[str] = dataclasses.field(default_factory=lambda: ["methods", "self_teacher"])
    rows: list[str] = dataclasses.field(default_factory=list)  # row names or methods; empty: all
    stages: list[int] = dataclasses.field(default_factory=lambda: [1])  # of a binary student
    views: list[Any] = dataclasses.field(default_factory=list)  # shared augmentation; []: BURN's recipe
    teacher_runs: list[TeacherRun] = dataclasses.field(default_factory=lambda: [TeacherRun()])
    lr_grid: list[float] = dataclasses.field(default_factory=list)  # []: each config's own rate
    lr_fraction: float = 0.25  # of the budget's steps, for a grid run
    lr_grid_seeds: int = 2  # a grid point's score: the mean validation kNN of seeds 0 … n − 1
    # A rate chosen at the grid's edge widens the grid by one more rate beyond it (the grid's
    # ratio there), up to this many times; still at an edge after them: reported, not hidden.
    lr_grid_extensions: int = 3
    # The same-seeds rule: every row runs seeds 0 … seeds − 1; a row whose paired kNN interval
    # against its block's reference spans zero then gets seeds up to this many, and so does
    # the reference (null: off). The floor runs every seed any row runs.
    seeds_if_unsure: int | None = 5
    # Runs logged by this other code version count as this code's once one sample rerun here
    # (``reuse_sample``: a row's seed 0; null: the first trained selected row) has
    # bit-identical exported weights; else the comparison stops and says so.
    reuse_code_version: str | None = None
    reuse_sample: str | None = None
    curve_fractions: list[float] = dataclasses.field(default_factory=list)  # of the budget, < 1
    curve_seeds: int = 1  # seeds 0 … curve_seeds − 1 get a learning curve
    max_seeds: int | None = None  # caps every row's seeds, its own too (the small preset: 1)

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
            if row.versus is not None and row.versus not in by_name:
                raise ConfigError(f"table row {row.name!r}: versus={row.versus!r} is not a row of table")
            source = by_name.get(row.lr_from) if row.lr_from is not None else None
            if row.lr_from is not None and (source is None or not source.trained or source.lr_from is not None):
                raise ConfigError(f"table row {row.name!r}: lr_from={row.lr_from!r} must name a trained row of "
                                  "table that chooses its own rate")
        if any(not lr > 0 for lr in self.lr_grid):
            raise ConfigError(f"lr_grid: every rate must be > 0, got {self.lr_grid}")
        if not 0 < self.lr_fraction <= 1:
            raise ConfigError(f"lr_fraction must be in (0, 1], got {self.lr_fraction}")
        if self.lr_grid_seeds < 1 or self.lr_grid_extensions < 0:
            raise ConfigError(f"lr_grid_seeds must be >= 1 and lr_grid_extensions >= 0, got {self.lr_grid_seeds}, "
                              f"{self.lr_grid_extensions}")
        if self.seeds_if_unsure is not None and self.seeds_if_unsure < self.seeds:
            raise ConfigError(f"seeds_if_unsure must be >= seeds ({self.seeds}) or null, got {self.seeds_if_unsure}")
        if self.reuse_sample is not None and self.reuse_sample not in names:
            raise ConfigError(f"reuse_sample {self.reuse_sample!r} is not a row of table")
        if any(not 0 < f < 1 for f in self.curve_fractions):
            raise ConfigError(f"curve_fractions must lie in (0, 1) (the end of the budget is always scored), "
                              f"got {self.curve_fractions}")
        if self.max_seeds is not None and self.max_seeds < 1:
            raise ConfigError(f"max_seeds must be >= 1 or null, got {self.max_seeds}")
        if self.curve_seeds < 0:
            raise ConfigError(f"curve_seeds must be >= 0, got {self.curve_seeds}")

    def teacher_run(self, name: str) -> TeacherRun:
        return next(t for t in self.teacher_runs if t.name == name)

    def teacher_seed(self, name: str, student_seed: int) -> int:
        """The seed of teacher ``name`` that student seed ``student_seed`` distils."""
        return student_seed % self.teacher_run(name).seeds

    def capped(self, seeds: int) -> int:
        return min(seeds, self.max_seeds) if self.max_seeds else seeds

    def row_seeds(self, row: TableRow, unsure: bool = False) -> int:
        """The seeds a row runs: its own ``seeds``, else the comparison's — ``seeds_if_unsure``
        when the same-seeds rule extends it (``unsure``) — capped by ``max_seeds``."""
        seeds = row.seeds or (self.seeds_if_unsure if unsure and self.seeds_if_unsure else self.seeds)
        return self.capped(seeds)


def load_compare_config(path=DEFAULT_CONFIG, preset: str | None = None) -> CompareConfig:
    """``path``'s keys, then those of ``presets.<preset>`` on top."""
    return harness.load_experiment_config(CompareConfig, path, preset)


def selected_rows(cfg: CompareConfig) -> list[TableRow]:
    """The rows of the selected blocks (and of ``rows`` if given), in table order; a row
    whose method is not registered is an error listing the registered ones."""
    rows = [r for r in cfg.table if r.block in cfg.blocks and (not cfg.rows or {r.name, r.method} & set(cfg.rows))]
    for r in rows:
        if r.method != RANDOM and r.method not in method_names():
            raise ConfigError(f"table row {r.name!r}: method {r.method!r} is not registered; registered: "
                              f"{', '.join(method_names())} (or {RANDOM!r}: the untrained floor)")
    return rows

