"""The learning-rate grid of a method comparison (:mod:`burn_tf.studies.compare`), made on the
validation split only.

Every trained row without a fixed rate gets the Adam rate with the best mean weighted kNN
over ``lr_grid_seeds`` seeds (seed i distils teacher seed i mod n, as the rows do), each run
``lr_fraction`` of the budget long with its step-counted settings scaled to that length
(:func:`~burn_tf.studies.compare_rows.step_count_overrides`), pretrained on the training images
before the last ``validation_images`` and scored with those held-out images as queries. A best
rate at the grid's smallest or largest rate is a failure of the grid, not a choice: the grid is
widened by one rate beyond that edge (the grid's ratio there) and the row's runs are made at
it, up to ``lr_grid_extensions`` times (:func:`search_grid`); a rate still at an edge after
that is reported (``at_grid_edge``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from burn_tf.config import PretrainConfig, read_config_values
from burn_tf.studies import harness
from burn_tf.studies.compare_config import CompareConfig, TableRow
from burn_tf.studies.compare_rows import config_key, row_config, step_count_overrides

LR_GRID_BLOCK = "lr_grid"  # runs.jsonl records of the learning-rate grid


def grid_steps(cfg: CompareConfig) -> int:
    return max(1, round(cfg.steps * cfg.lr_fraction))


def grid_overrides(cfg: CompareConfig, row: TableRow, values: dict, train_size: int) -> tuple:
    """What makes a row's run a grid run: ``lr_fraction`` of the steps (step counts scaled
    alike) and pretraining only on the images before the held-out validation ones."""
    limit = train_size - cfg.validation_images
    own_limit = row.data_limit or cfg.data_limit
    limit = min(limit, own_limit) if own_limit else limit
    full = row_config(cfg, row, 0, Path(), values)
    return (f"train.steps_per_epoch={grid_steps(cfg)}", f"data.limit={limit}",
            *step_count_overrides(full, grid_steps(cfg), cfg.steps))


def grid_config(cfg: CompareConfig, row: TableRow, out: Path, values: dict, teacher: PretrainConfig | None,
                rate: float, train_size: int, seed: int = 0) -> PretrainConfig:
    """A grid run of ``row`` at ``rate`` for ``seed`` (:func:`grid_overrides`)."""
    return row_config(cfg, row, seed, out, values, teacher, rate, extra=grid_overrides(cfg, row, values, train_size))


def grid_rows(cfg: CompareConfig, rows: list[TableRow]) -> list[TableRow]:
    """The rows that choose their own rate from the grid: the trained selected rows without a
    fixed rate, and the rows the selected ones take their rate from, in table order."""
    if not cfg.lr_grid:
        return []
    needed = {r.lr_from for r in rows if r.lr_from} | {r.name for r in rows if r.trained and r.lr_from is None}
    return [r for r in cfg.table if r.name in needed and r.learning_rate is None]


def best_rate(scores: dict[float, float]) -> tuple[float, bool]:
    """The rate with the best validation score (the smaller one on a tie) and whether it is
    the grid's smallest or largest rate, where the best rate may lie outside the grid (of nine
    rows at 0.008, the first grid's largest rate, five did better at 0.016)."""
    best = max(sorted(scores), key=lambda r: scores[r])  # sorted: the smaller rate wins a tie
    return best, len(scores) > 1 and best in (min(scores), max(scores))


def next_rate(scores: dict[float, float]) -> float:
    """One rate beyond the edge the best rate sits at, at the grid's ratio at that edge."""
    rates = sorted(scores)
    best, _ = best_rate(scores)
    beyond = rates[0] * rates[0] / rates[1] if best == rates[0] else rates[-1] * rates[-1] / rates[-2]
    return float(f"{beyond:.6g}")


def search_grid(grid: list[float], score: Callable[[float], float | None], extensions: int
                ) -> tuple[dict[float, float], list[float], bool]:
    """(scores of every rate tried, the rates added beyond the grid, complete): scores every
    rate of ``grid`` with ``score`` (None: not available, e.g. not logged yet — the search
    stops there, incomplete), then while the best rate is at an edge and fewer than
    ``extensions`` rates were added, adds :func:`next_rate` and scores it."""
    scores: dict[float, float] = {}
    added: list[float] = []
    pending = sorted(grid)
    while True:
        for rate in pending:
            value = score(rate)
            if value is None:
                return scores, added, False
            scores[rate] = value
        if not scores:
            return scores, added, True
        _, at_edge = best_rate(scores)
        if not at_edge or len(added) >= extensions:
            return scores, added, True
        added.append(next_rate(scores))
        pending = [added[-1]]


def choose_learning_rates(cfg: CompareConfig, rows: list[TableRow], out: Path, runs: harness.RunLog, bases: dict,
                          teacher_of: Callable[[TableRow, int], PretrainConfig | None], log=print,
                          report_only: bool = False) -> dict[str, dict]:
    """{row name: {"learning_rate": chosen, "grid": {rate: mean validation kNN}, "seeds": {rate:
    [kNN per seed]}, "extended": [rates added], "at_grid_edge", "split": "validation", …}} for
    every row that needs the grid (:func:`grid_rows`). Each grid run is a record of
    ``runs.jsonl`` (block ``lr_grid``). ``teacher_of(row, seed)``: the config of the teacher
    trained here that ``row``'s ``seed`` distils, or None. ``report_only``: nothing is run; a
    row whose grid is not complete in the log gets no choice (so its runs, keyed by the chosen
    rate, are not looked up either)."""
    choices: dict[str, dict] = {}
    to_grid = grid_rows(cfg, rows)
    if not to_grid:
        return choices
    validation = harness.EvalData(cfg, validation=cfg.validation_images)
    train_size = validation.train_size
    for row in to_grid:
        values = bases.setdefault(row.base_config, read_config_values(row.base_config))
        per_seed: dict[float, list[float]] = {}
        ran = [False]

        def score(rate: float, row=row, values=values, per_seed=per_seed, ran=ran) -> float | None:
            knn = []
            for seed in range(cfg.lr_grid_seeds):
                teacher = teacher_of(row, seed)
                pcfg = grid_config(cfg, row, out, values, teacher, rate, train_size, seed)
                validation.check_held_out(pcfg, f"lr grid of {row.name!r}")
                extra = grid_overrides(cfg, row, values, train_size)
                _, key = config_key(cfg, row, seed, values, teacher, rate, LR_GRID_BLOCK, cfg.stages,
                                    validation.describe(), extra=extra)
                name = f"{row.name} | lr {rate:g} | seed {seed}"

                def grid_run(pcfg=pcfg, rate=rate, seed=seed):
                    stages = [s for s in cfg.stages if s in pcfg.backbone.stages]
                    run_dir = out / "runs" / LR_GRID_BLOCK / f"{row.slug}_lr{rate:g}_seed{seed}"
                    model, summary = harness.pretrain_run(pcfg, stages, run_dir)
                    return {"seed": seed, "block": LR_GRID_BLOCK, "method": row.method, "learning_rate": rate,
                            **summary, "validation_knn_top1": validation.knn(model), "split": validation.split}

                if report_only:
                    record = runs.lookup(name, key)
                    if record is None:
                        return None
                else:
                    record, fresh = runs.run(name, key, grid_run)
                    ran[0] = ran[0] or fresh
                    if fresh:
                        log(f"  lr grid  {name:<52}: validation kNN {100 * record['validation_knn_top1']:.2f}%  "
                            f"({record['seconds']:.0f} s)")
                knn.append(record["validation_knn_top1"])
            per_seed[rate] = knn
            return sum(knn) / len(knn)

        scores, added, complete = search_grid(cfg.lr_grid, score, cfg.lr_grid_extensions)
        if not complete:
            log(f"  lr grid  {row.name}: {len(scores)} of {len(cfg.lr_grid) + len(added)} rates logged, no rate "
                "chosen yet")
            continue
        best, at_edge = best_rate(scores)
        choices[row.name] = {"learning_rate": best, "grid": {f"{r:g}": scores[r] for r in sorted(scores)},
                             "seeds": {f"{r:g}": per_seed[r] for r in sorted(scores)}, "extended": added,
                             "at_grid_edge": at_edge, "steps_per_stage": grid_steps(cfg),
                             "validation_images": cfg.validation_images, "split": validation.split,
                             **{f"evaluation_{k}": v for k, v in validation.describe().items() if k != "split"}}
        if at_edge and ran[0]:  # said by the call that ran grid runs; one that only reads the log is silent
            log(f"  lr grid  {row.name}: chose {best:g}, the edge of the grid even after {len(added)} "
                "extension(s): its best rate may lie beyond it")
    return choices


def row_learning_rate(row: TableRow, choices: dict[str, dict]) -> float | None:
    source = row.lr_from or row.name
    return choices[source]["learning_rate"] if source in choices else None
