"""The report of a method comparison (:mod:`burn_tf.studies.compare`), from its runs'
records: per-row mean ± std over seeds, the paired differences to the floor and to the
block's reference row (95 % t interval over the seeds both rows have), the markdown tables
of ``compare.md``, the bar plot ``compare.png`` and the learning curves ``compare_curves.png``.
Nothing here trains: ``--report`` rebuilds all of it from ``runs.jsonl``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy import stats

from burn_tf.studies import harness
from burn_tf.studies.compare_config import BLOCKS, RANDOM, CompareConfig, TableRow, TeacherRun


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
    out = []
    for name, block in [(r.name, r.block) for r in rows] + [(t.row_name, t.block) for t in teacher_runs]:
        runs = by_row[name]
        if not runs:
            continue
        row = {"row": name, "block": block, "method": runs[0]["method"], "seeds": len(runs), **info[name]}
        for key in ("knn_top1", "linear_top1", "train_seconds"):
            row[key], row[f"{key}_std"] = harness.mean_std([r.get(key) for r in runs])
        is_teacher = name not in {r.name for r in rows}
        reference = reference_of(name, rows)
        for label, other in (("floor", floor), ("reference", reference)):
            if is_teacher or other is None or other == name or not by_row.get(other):
                continue
            row[f"vs_{label}"] = {"row": other, **{key: paired_difference(runs, by_row[other], key)
                                                   for key in ("knn_top1", "linear_top1")}}
        if "vs_floor" in row:
            row["beats_floor"] = beats(row["vs_floor"]["knn_top1"])
        out.append(row)
    return out


def reference_of(name: str, rows: list[TableRow]) -> str | None:
    """The row that row ``name`` is compared with, paired by seed: its ``versus``, else its
    block's reference row (or the ``methods`` block's, for a block without one)."""
    row = next((r for r in rows if r.name == name), None)
    if row is not None and row.versus is not None:
        return row.versus
    block = row.block if row is not None else None
    references = {r.block: r.name for r in rows if r.reference}
    return references.get(block, references.get("methods"))


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


def format_markdown(rows: list[dict], cfg: CompareConfig, learning_rates: dict | None = None,
                    evaluation: dict | None = None, code_version: str | None = None) -> str:
    """``compare.md``: a table per block, the learning-rate grid, and a paragraph saying how the
    numbers were made — which split each came from (``evaluation``: :meth:`EvalData.describe`)
    and the one code version of the runs."""
    lines = []
    for block, title in BLOCKS.items():
        block_rows = [r for r in rows if r["block"] == block]
        if not block_rows:
            continue
        reference = next((r["vs_reference"]["row"] for r in block_rows if "vs_reference" in r), "reference")
        lines += [
            f"### {title}",
            "",
            f"| method | seeds | kNN top-1 (%) | linear top-1 (%) | Δ kNN vs floor, pp [95 % CI] | > floor + 2 sd? "
            f"| Δ kNN vs {reference}, pp [95 % CI] | Adam lr | pretraining min | needs labels? | teacher | "
            "augmentation |",
            "|" + "---|" * 12,
        ]
        for r in block_rows:
            lr = r.get("learning_rate")
            lines.append(
                " | ".join(
                    [
                        f"| {r['row']}",
                        str(r["seeds"]),
                        harness.format_mean_std(r, "knn_top1"),
                        harness.format_mean_std(r, "linear_top1"),
                        format_difference(r, "floor"),
                        ("yes" if r["beats_floor"] else "no") if "beats_floor" in r else "–",
                        format_difference(r, "reference"),
                        f"{lr:g}" if lr else "–",
                        harness.format_mean_std(r, "train_seconds", 1 / 60, 1),
                        r["needs_labels"],
                        r["teacher"],
                        r["views"],
                    ]
                )
                + " |"
            )
        lines.append("")
    if learning_rates:
        grid = sorted({rate for choice in learning_rates.values() for rate in choice["grid"]}, key=float)
        lines += [
            "### Learning-rate grid (validation kNN top-1 %, held-out training images)",
            "",
            "| row | " + " | ".join(f"lr {g}" for g in grid) + " | chosen |",
            "|" + "---|" * (len(grid) + 2),
        ]
        for name, choice in learning_rates.items():
            cells = [f"{100 * choice['grid'][g]:.2f}" if g in choice["grid"] else "–" for g in grid]
            edge = " (edge)" if choice.get("at_grid_edge") else ""
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {choice['learning_rate']:g}{edge} |")
        any_choice = next(iter(learning_rates.values()))
        extended = {name: c["extended"] for name, c in learning_rates.items() if c.get("extended")}
        lines += [
            "",
            f"Grid runs: the mean of seeds 0–{cfg.lr_grid_seeds - 1} per rate, {any_choice['steps_per_stage']} steps "
            f"per stage (step-counted settings scaled alike), pretrained without the last "
            f"{any_choice['validation_images']} training images, which are the kNN queries (the validation split; "
            "the test split is never read for a choice)."
            + ("" if not extended else " Widened past an edge: " + "; ".join(
                f"{name} + {', '.join(f'{r:g}' for r in rates)}" for name, rates in extended.items()) + ".")
            + (
                " (edge): the grid's smallest or largest rate won even after widening, so the row's best rate may "
                "lie beyond the grid."
                if any(c.get("at_grid_edge") for c in learning_rates.values())
                else ""
            ),
            "",
        ]
    teacher_rows = {t.row_name: t for t in cfg.teacher_runs}
    seeds = sorted({r["seeds"] for r in rows if r["row"] not in teacher_rows})
    teachers = "; ".join(
        f"'{t.row_name}': {t.steps} steps of {t.config}" + (f" with {', '.join(t.overrides)}" if t.overrides else "")
        + (f", {t.seeds} seeds (student seed i distils teacher seed i mod {t.seeds})" if t.seeds > 1 else ", seed 0")
        for t in cfg.teacher_runs
        if t.row_name in {r["row"] for r in rows}
    )
    evaluation = evaluation or {"split": "test", "bank_images": f"train[0:{cfg.knn_bank or 60000}]",
                                "query_images": f"test[0:{cfg.knn_queries or 10000}]"}
    lines.append(
        f"{'/'.join(map(str, seeds))} seed(s) per row (mean ± std, ddof 1; differences paired by seed with a 95 % t "
        f"interval; a row whose interval vs its reference spans zero at {cfg.seeds} seeds runs "
        f"{cfg.seeds_if_unsure or cfg.seeds}, and so does the reference); every row: its method's shipped config, "
        f"then {cfg.steps} steps × batch {cfg.batch_size} per stage (stage(s) {cfg.stages} of the binary student) on "
        f"the first {cfg.data_limit or 60000} training images, its method's own augmentation unless 'shared'; kNN "
        f"(K {cfg.knn_k}, τ {cfg.knn_temperature}) and a {cfg.linear_epochs}-epoch linear probe with "
        f"{evaluation['bank_images']} as bank / probe data, scored on {evaluation['query_images']} (the "
        f"{evaluation['split']} split, read for this table only). Pretraining min: wall-clock of the training steps."
        + (f" Teachers trained here: {teachers}." if teachers else "")
        + (f" Every run: code version {code_version}." if code_version else "")
    )
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
    fig, axes = plt.subplots(
        len(blocks),
        1,
        figsize=(9, 1.2 + 0.45 * sum(heights) + 0.6 * len(blocks)),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    for ax, block in zip(axes[:, 0], blocks):
        block_rows = [r for r in rows if r["block"] == block]
        y = np.arange(len(block_rows))
        for offset, key, label in ((-0.2, "knn_top1", "weighted kNN"), (0.2, "linear_top1", "linear probe")):
            ax.barh(
                y + offset,
                [100 * r[key] for r in block_rows],
                height=0.4,
                label=label,
                xerr=[100 * r[f"{key}_std"] for r in block_rows],
            )
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
            ax.plot(
                [p["fraction"] for p in curve],
                [100 * p["knn_top1"] for p in curve],
                color=colors[i % len(colors)],
                linestyle=("-", "--")[i // len(colors) % 2],
                marker="os"[i // len(colors) % 2],
                label=row.name,
                linewidth=2.4 if row.reference else 1.2,
            )
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
