"""The pretraining configs of a method comparison (:mod:`burn_tf.studies.compare`): a teacher's
(:func:`teacher_config`, one per teacher seed), a row's for one seed (:func:`row_config`, its
teacher the one paired with that seed), the run keys that do not depend on where ``--out`` is
(:func:`config_key`), the step-count rule (:func:`step_count_overrides`) and what the table
says about a row besides its numbers (:func:`describe`: who needs labels, which teacher).

Teacher pairing: a teacher this command trains with ``seeds: n`` is trained n times (seeds
0 … n − 1); student seed i distils teacher seed i mod n (:meth:`CompareConfig.teacher_seed`),
so the seeds of a row measure the teacher's variance as well as the student's.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from burn_tf.config import PretrainConfig, read_config_values
from burn_tf.methods.registry import method_class, method_names
from burn_tf.studies import harness
from burn_tf.studies.ablate import VARIANTS
from burn_tf.studies.compare_config import RANDOM, SHIPPED, CompareConfig, TableRow

# What stands for ``--out`` in the run keys of rows distilling a teacher this command trains.
OUT_IN_KEYS = "<out>"
# A shipped teacher whose weights were trained with ImageNet's labels (EfficientNet-Lite0's).
SUPERVISED_TEACHER_WEIGHTS = {"imagenet"}
IMAGENET_LABELS = "ImageNet labels (teacher)"


def teacher_dir(out: Path, name: str = "self", seed: int = 0) -> Path:
    return out / "runs" / f"teacher_{name}_seed{seed}"


def teacher_config(cfg: CompareConfig, name: str = "self", seed: int = 0, values: dict | None = None
                   ) -> PretrainConfig:
    """The pretraining config of teacher ``name`` of ``teacher_runs`` for ``seed`` (its steps)."""
    run = cfg.teacher_run(name)
    values = values if values is not None else read_config_values(run.config)
    # The rows' shared overrides size the binary student; the teacher has its own.
    overrides = [*harness.budget_overrides(cfg, seed, steps=run.steps, shared=False), *run.overrides]
    return harness.build_run_config(values, overrides, f"teacher_runs {name!r} seed {seed}")


def step_count_overrides(pcfg: PretrainConfig, steps: int, budget_steps: int) -> list[str]:
    """The written rule for step-counted settings: a method's ``*_step`` / ``*_steps`` keys
    (SwAV's prototype freeze and queue start) are set for a run of the comparison's budget
    (``budget_steps`` per stage); a run of ``steps`` per stage gets each scaled to
    ``round(value · steps / budget_steps)`` (at least 1; 0 stays 0), so it freezes, warms up
    or starts a queue at the same fraction of its length. (Warm-ups in epochs scale already.)"""
    if steps == budget_steps:
        return []
    out = []
    for field in dataclasses.fields(pcfg.method):
        value = getattr(pcfg.method, field.name)
        if field.name.endswith(("_step", "_steps")) and isinstance(value, int) and not isinstance(value, bool):
            scaled = max(1, round(value * steps / budget_steps)) if value > 0 else value
            out.append(f"method.{field.name}={scaled}")
    return out


def row_config(cfg: CompareConfig, row: TableRow, seed: int, out: Path, values: dict | None = None,
               teacher: PretrainConfig | None = None, learning_rate: float | None = None,
               extra: tuple = ()) -> PretrainConfig:
    """The row's pretraining config: its base config, the ablation variant's and the row's
    overrides, then the shared budget, the row's own data limit, its augmentation (its
    method's, its ``views``, or the shared ``views``), ``teacher: <name>`` (the teacher this
    command trains, seed ``cfg.teacher_seed(name, seed)``: ``teacher`` is its config, built
    from ``teacher_runs`` if None), the learning rate (the row's fixed one, else
    ``learning_rate``) and ``extra`` overrides."""
    values = dict(values if values is not None else read_config_values(row.base_config))
    if row.shared_views:
        values["views"] = list(cfg.views)
    elif row.views is not None:
        values["views"] = list(row.views)
    if row.teacher != SHIPPED:
        teacher_seed = cfg.teacher_seed(row.teacher, seed)
        teacher = teacher or teacher_config(cfg, row.teacher, teacher_seed)
        values["teacher"] = {"kind": teacher.backbone.kind, "small_input_stem": teacher.backbone.small_input_stem,
                             "input_size": teacher.backbone.input_size,
                             "weights": str(teacher_dir(out, row.teacher, teacher_seed) / "stage1" / "backbone")}
    variant = VARIANTS[row.variant].overrides if row.variant else ()
    own = [f"data.limit={row.data_limit}"] if row.data_limit is not None else []
    rate = row.learning_rate if row.learning_rate is not None else learning_rate
    if rate is not None and row.trained:
        own.append(f"optimizer.learning_rate={rate}")
    return harness.build_run_config(values, [*variant, *row.overrides, *harness.budget_overrides(cfg, seed), *own,
                                             *extra], f"table row {row.name!r}")


def config_key(cfg: CompareConfig, row: TableRow, seed: int, values: dict, teacher: PretrainConfig | None,
               rate: float | None, *parts, extra: tuple = ()) -> tuple[PretrainConfig, str]:
    """(the row's config for ``out``-less keys, its run key): a run's identity must not depend
    on where ``--out`` is (so logs from several places can be put together), so the trained
    teacher's path is left out of the key and its config hash is in it."""
    pcfg = row_config(cfg, row, seed, Path(OUT_IN_KEYS), values, teacher, rate, extra=extra)
    return pcfg, harness.run_key(pcfg, cfg, *parts, teacher.hash() if teacher is not None else None)


def needs_labels(pcfg: PretrainConfig, teacher: PretrainConfig | None) -> str:
    """``yes`` (the method reads labels), ``ImageNet labels (teacher)`` (it distils a teacher
    trained with ImageNet's labels), ``yes (teacher)`` (a teacher trained here with labels),
    else ``no``."""
    cls = pcfg.method_class
    if cls.needs_labels:
        return "yes"
    if not cls.needs_teacher:
        return "no"
    if teacher is not None:
        return "yes (teacher)" if teacher.method_class.needs_labels else "no"
    return IMAGENET_LABELS if pcfg.teacher.weights in SUPERVISED_TEACHER_WEIGHTS else "no"


def describe(row: TableRow, pcfg: PretrainConfig, teacher: PretrainConfig | None, teacher_seeds: int = 1) -> dict:
    """What the table says about a row besides its numbers."""
    if row.method == RANDOM:
        return {"needs_labels": "–", "teacher": "–", "views": "–", "learning_rate": None}
    cls = method_class(row.method)
    if not cls.needs_teacher:
        who = "–"
    elif row.teacher != SHIPPED:
        seeds = f", {teacher_seeds} seeds paired i mod {teacher_seeds}" if teacher_seeds > 1 else ""
        who = f"{pcfg.teacher.kind} (trained here: {teacher.method.name}{seeds})"
    else:
        who = f"{pcfg.teacher.kind} ({pcfg.teacher.weights or 'random'})"
    return {"needs_labels": needs_labels(pcfg, teacher), "teacher": who,
            "views": "shared" if row.shared_views else "own", "learning_rate": pcfg.optimizer.learning_rate}


def distillation_pairs(cfg: CompareConfig) -> tuple[list[list[str]], list[str]]:
    """(rows that are one recipe with each teacher: ``[[row with the shipped teacher, row
    with a trained one], …]``, distillation rows without such a twin). Twins share method,
    base config, variant, overrides and views. The rule is the table's (blocks ``methods`` and
    ``self_teacher``; the shared-views and grouping studies keep one teacher); supervised
    KL-div (its teacher is the labelled network it distils) is not a distillation row of it."""
    def recipe(r: TableRow):
        return (r.method, r.base_config, r.variant, tuple(r.overrides), r.shared_views, repr(r.views))

    distilling = [r for r in cfg.table if r.trained and r.method != "supervised_kl"
                  and r.block in ("methods", "self_teacher") and r.method in method_names()
                  and method_class(r.method).needs_teacher]
    pairs, alone = [], []
    for row in distilling:
        twins = [t.name for t in distilling if t is not row and recipe(t) == recipe(row) and t.teacher != row.teacher]
        if not twins:
            alone.append(row.name)
        elif row.teacher == SHIPPED:
            pairs.extend([row.name, twin] for twin in twins)
    return pairs, alone
