"""The paper's ablations (Tables 5–7), the moving- vs frozen-target controls and each
anti-collapse option, on the embedded Fashion-MNIST, as one command:

    python -m burn_tf.studies.ablate --config configs/ablate.yaml [--preset small|full] [--seeds N]
                                     [--variants burn,frozen,...] [--out runs/ablate] [--json]

Every variant is the ``base`` pretraining config (the demo's) plus a few ``--set``-style
overrides, pretrained with the same budget (``steps`` per stage, ``batch_size``) through
:func:`burn_tf.pretrain.pretrain_stage` — the code the CLI runs — once per seed; a seed gives
every variant the same initial student. Each exported backbone is evaluated with the
demo's weighted kNN (:func:`burn_tf.evaluate.knn.knn_accuracy`) and linear probe
(:mod:`burn_tf.evaluate.probe`) on the **validation split**: the last ``validation_images``
training images are the queries, the training images before them the bank / probe data, and
no variant pretrains on the held-out images (``data_limit`` ≤ 60000 − ``validation_images``).
The ablation makes choices (the demo's target, the comparison's recipe), so it never reads
the test split; ``ablation.json`` says so (``evaluation``, each run's ``split``).

Writes to ``--out``: ``ablation.md`` (mean ± std over seeds), ``ablation.json``,
``runs.jsonl`` (one line per finished run: a rerun skips those already done with the same
config), ``steps/<variant>_seed<k>.json`` (every step's scalars) and the figures
``fig_grad_norms.png`` (paper Fig. 3 and 6), ``fig_lambda.png`` (supplement Fig. 3),
``fig_collapse.png`` (H(p̄)/log C, KL, mutual information, head agreement over steps),
``fig_ema.png`` (Fig. 5, Eq. 5) and ``fig_knn_vs_minutes.png``.

Table 5 ④ needs two stages: ``burn_s2`` and ``burn_s2_scratch`` continue ``burn``'s stage-1
run into stage 2 with g_θ from stage 1 or from a fresh init; every other variant is stage 1.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import sys
import time
from pathlib import Path

from burn_tf.callbacks import CollapseCriterion
from burn_tf.config import ConfigError, read_config_values
from burn_tf.io import atomic_write_json, atomic_write_text
from burn_tf.studies import harness
from burn_tf.studies.training_figures import plot_ema_simulation, plot_lambda_schedules, plot_step_metric

DEFAULT_CONFIG = "ablate.yaml"


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    group: str
    label: str
    overrides: tuple = ()
    stage: int = 1
    stage1_of: str | None = None  # stage-2 variants continue this variant's stage 1
    train: bool = True
    paper: float | None = None  # the paper's ImageNet linear top-1 for this row, if any


_LAMBDA_0 = ("method.lambda_schedule=constant", "method.lambda_end=0.0")
_LAMBDA_1 = ("method.lambda_schedule=constant", "method.lambda_end=1.0")
VARIANTS = {v.name: v for v in [
    Variant("kl_only", "Table 5", "① joint classifier only (λ = 0)", _LAMBDA_0, paper=57.33),
    Variant("static", "Table 5, 7", "①+② static λ = 0.7 (Table 7 constant)", ("method.lambda_schedule=constant",),
            paper=59.53),
    Variant("burn", "Table 5, 6, 7", "①+②+③ cosine λ 0.9→0.7, cosine L_FS (the paper's recipe)", paper=61.43),
    Variant("burn_s2_scratch", "Table 5 (stage 2)", "①+②+③, stage 2 with g_θ from scratch",
            ("method.teacher_classifier_from_stage1=false",), stage=2, stage1_of="burn", paper=61.43),
    Variant("burn_s2", "Table 5 (stage 2)", "①+②+③+④, stage 2 with g_θ from stage 1 (= BURN)", stage=2,
            stage1_of="burn", paper=62.29),
    Variant("l1", "Table 6", "L_FS = L1", ("method.feature_similarity=l1",), paper=51.46),
    Variant("l2", "Table 6", "L_FS = L2", ("method.feature_similarity=l2",), paper=50.28),
    Variant("step", "Table 7", "step λ 0.9 → 0.7 at T/2", ("method.lambda_schedule=step",)),
    Variant("heaviside", "Table 7", "Heaviside H(−t + T/2): λ 1 → 0 at T/2", ("method.lambda_schedule=heaviside",),
            paper=55.60),
    Variant("frozen", "control", "frozen random g_θ (the released code)", ("method.train_teacher_classifier=false",)),
    Variant("fs_only", "control", "L_FS only (λ = 1)", _LAMBDA_1),
    Variant("centered", "anti-collapse", "+ centring (EMA 0.9) and sharpening (T_t 0.1)", ("method.target=centered",)),
    Variant("sinkhorn", "anti-collapse", "+ Sinkhorn equipartition (3 iters, ε 0.05)", ("method.target=sinkhorn",)),
    Variant("slow_g", "anti-collapse", "+ g_θ lr × 0.1", ("method.teacher_classifier_lr_multiplier=0.1",)),
    Variant("entropy_bonus", "anti-collapse", "+ mean-entropy bonus −1·H(p̄)", ("method.entropy_bonus=1.0",)),
    Variant("bounded", "anti-collapse", "+ bounded logits (L2 bottleneck, cosine classifier)",
            ("method.bounded_logits=true",)),
    Variant("kl_warmup", "anti-collapse", "+ KL warm-up over the first half", ("method.kl_warmup_fraction=0.5",)),
    Variant("random", "floor", "random initialisation (no pretraining)", train=False),
]}


@dataclasses.dataclass
class AblationConfig(harness.ExperimentConfig):
    """Budget and evaluation of an ablation run (``configs/ablate.yaml``; ``presets``)."""

    base: str = "demo.yaml"  # the pretraining config every variant starts from
    variants: list[str] = dataclasses.field(default_factory=list)  # empty: all, in VARIANTS order

    def __post_init__(self):
        super().__post_init__()
        unknown = sorted(set(self.variants) - set(VARIANTS))
        if unknown:
            raise ConfigError(f"variants: unknown {unknown}; known: {', '.join(VARIANTS)}")


def load_ablation_config(path=DEFAULT_CONFIG, preset: str | None = None) -> AblationConfig:
    """``path``'s keys, then those of ``presets.<preset>`` on top."""
    return harness.load_experiment_config(AblationConfig, path, preset)


# The order runs are made in (all seeds of one variant, then the next): the question first
# (the paper's recipe, its controls, the floor, the anti-collapse options), so an interrupted
# run already answers it; a rerun continues where it stopped.
RUN_ORDER = ("burn", "frozen", "fs_only", "random", "centered", "sinkhorn", "slow_g", "entropy_bonus", "bounded",
             "kl_warmup", "heaviside", "kl_only", "static", "step", "l1", "l2", "burn_s2", "burn_s2_scratch")


def selected_variants(cfg: AblationConfig) -> list[Variant]:
    """The requested variants plus the stage-1 runs their stage-2 runs continue, in table order."""
    names = set(cfg.variants or VARIANTS)
    names |= {VARIANTS[n].stage1_of for n in list(names) if VARIANTS[n].stage1_of}
    return [v for n, v in VARIANTS.items() if n in names]


def pretrain_config(cfg: AblationConfig, variant: Variant, seed: int, base: dict | None = None):
    """The variant's pretraining config; ``base``: the base config's values read once (an
    edit of the base file during a long run then changes nothing)."""
    values = base if base is not None else read_config_values(cfg.base)
    return harness.build_run_config(values, [*harness.budget_overrides(cfg, seed), *variant.overrides],
                                    f"variant {variant.name}")


def run_variant(cfg: AblationConfig, variant: Variant, seed: int, out: Path, data: harness.EvalData,
                base: dict | None = None) -> dict:
    """Pretrains (unless ``random``) and evaluates one variant for one seed."""
    pcfg = pretrain_config(cfg, variant, seed, base)
    data.check_held_out(pcfg, f"variant {variant.name}")
    run_dir = out / "runs" / variant.name / f"seed{seed}"
    result = {"variant": variant.name, "seed": seed, "stage": variant.stage}
    if not variant.train:
        return {**result, **data.evaluate(harness.random_init_backbone(pcfg, seed), seed)}
    if variant.stage1_of:
        source = out / "runs" / variant.stage1_of / f"seed{seed}" / "stage1"
        if run_dir.exists():
            shutil.rmtree(run_dir)
        shutil.copytree(source, run_dir / "stage1")
    model, summary = harness.pretrain_run(pcfg, [variant.stage], run_dir,
                                          out / "steps" / f"{variant.name}_seed{seed}.json")
    result.update(summary)
    result["head_width"] = pcfg.method.head_width
    return {**result, **data.evaluate(model, seed)}


PAIRED_CONTROLS = ("fs_only", "frozen")


def aggregate(results: list[dict], variants: list[Variant]) -> list[dict]:
    rows = []
    for v in variants:
        runs = [r for r in results if r["variant"] == v.name]
        if not runs:
            continue
        row = {"variant": v.name, "group": v.group, "label": v.label, "stage": v.stage, "paper": v.paper,
               "seeds": len(runs)}
        for key in ("knn_top1", "linear_top1", "target_entropy_fraction_min", "kl_min", "train_seconds"):
            row[key], row[f"{key}_std"] = harness.mean_std([r.get(key) for r in runs])
        # Seeds share the initial student, so differences to a control are paired by seed.
        for control in PAIRED_CONTROLS:
            reference = {r["seed"]: r["knn_top1"] for r in results if r["variant"] == control}
            deltas = [r["knn_top1"] - reference[r["seed"]] for r in runs if r["seed"] in reference]
            row[f"knn_minus_{control}"], row[f"knn_minus_{control}_std"] = harness.mean_std(deltas) if deltas else (
                float("nan"), float("nan"))
        if v.train:
            alive = [CollapseCriterion().alive(r) for r in runs]  # the ablation keeps the default bars
            row["target_alive"] = f"{sum(alive)}/{len(alive)}"
            steps = [r["collapse_step"] for r in runs if r.get("collapse_step", -1) >= 0]
            row["collapse_steps"] = [int(s) for s in steps]
        rows.append(row)
    return rows


def format_markdown(rows: list[dict], cfg: AblationConfig) -> str:
    head = ("| group | variant | kNN top-1 (%) | linear top-1 (%) | Δ kNN vs L_FS only | Δ kNN vs frozen g_θ | "
            "min H(p̄)/log C | min KL | target alive | collapse step(s) | min/run | paper (ImageNet linear) |")
    lines = [head, "|" + "---|" * 12]

    for r in rows:
        trained = "target_alive" in r
        kl = f"{r['kl_min']:.2g}" if trained and not math.isnan(r["kl_min"]) else "–"
        lines.append(" | ".join([
            f"| {r['group']}", r["label"], harness.format_mean_std(r, "knn_top1"),
            harness.format_mean_std(r, "linear_top1"),
            *(harness.format_mean_std(r, f"knn_minus_{c}") if r["variant"] != c else "0" for c in PAIRED_CONTROLS),
            harness.format_mean_std(r, "target_entropy_fraction_min", 1.0) if trained else "–", kl,
            r.get("target_alive", "–"), ", ".join(map(str, r.get("collapse_steps", []))) or "–",
            f"{r['train_seconds'] / 60:.1f}" if trained and not math.isnan(r["train_seconds"]) else "–",
            f"{r['paper']:.2f}" if r["paper"] else "–",
        ]) + " |")
    lines.append("")
    held_out = 60000 - cfg.validation_images
    bank = min(cfg.knn_bank or held_out, held_out)
    queries = min(cfg.knn_queries or cfg.validation_images, cfg.validation_images)
    lines.append(f"{rows[0]['seeds'] if rows else 0} seed(s) per variant (mean ± std, ddof 1); {cfg.steps} steps × "
                 f"batch {cfg.batch_size} per stage on the first {cfg.data_limit or 60000} training images; kNN "
                 f"(K {min(cfg.knn_k, bank)}, τ {cfg.knn_temperature}) and a {cfg.linear_epochs}-epoch linear "
                 f"probe with the first {bank} train images as bank / probe data, scored on the validation split: "
                 f"training images {held_out}–{held_out + queries - 1}, held out of every pretraining (the test "
                 "split is never read: the ablation's choices are made here). Δ kNN: this variant minus the control, "
                 "per seed (the seeds share "
                 "the initial student), mean ± std. Target alive: per-step H(p̄) stayed above 0.5·log C and KL above "
                 "1e-3 for the whole stage. min/run: pretraining wall-clock of the stage.")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- figures
def write_figures(out: Path, rows: list[dict], head_width: int) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps_dir = out / "steps"
    trained = [r["variant"] for r in rows if "target_alive" in r and r["stage"] == 1]
    written = []

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for row, (names, title) in enumerate([(["kl_only", "static", "burn"], "with and without L_FS (Fig. 3)"),
                                          (["burn", "l1", "l2"], "L_FS = cosine, L1, L2 (Fig. 6)")]):
        for col, (group, who) in enumerate([("student_classifier", "l_φ"), ("student_backbone", "k_φ")]):
            ax = axes[row, col]
            plot_step_metric(ax, steps_dir, names, f"grad_norm_{group}", log=True)
            ax.set_title(f"‖∇{who}‖, {title}")
            ax.legend()
    fig.tight_layout()
    fig.savefig(out / "fig_grad_norms.png", dpi=90)
    written.append("fig_grad_norms.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    plot_lambda_schedules(ax)
    fig.savefig(out / "fig_lambda.png", dpi=90)
    written.append("fig_lambda.png")

    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    for ax, (key, log, scale) in zip(axes.flat, [("target_entropy", False, 1 / math.log(head_width)),
                                                   ("kl", True, 1.0), ("target_mutual_information", False, 1.0),
                                                   ("head_agreement", False, 1.0)]):
        plot_step_metric(ax, steps_dir, trained, key, log=log, scale=scale)
        ax.set_title(key + (" / log C" if key == "target_entropy" else ""))
    axes[0, 0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "fig_collapse.png", dpi=90)
    written.append("fig_collapse.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    plot_ema_simulation(ax)
    ax.set_title("Eq. 5: EMA target vs backbone (10 runs, η 4.8, τ 0.99)")
    fig.savefig(out / "fig_ema.png", dpi=90)
    written.append("fig_ema.png")

    fig, ax = plt.subplots(figsize=(7, 5))
    for r in rows:
        if "target_alive" in r and not math.isnan(r["train_seconds"]):
            ax.errorbar(r["train_seconds"] / 60, 100 * r["knn_top1"], yerr=100 * r["knn_top1_std"], fmt="o")
            ax.annotate(r["variant"], (r["train_seconds"] / 60, 100 * r["knn_top1"]), fontsize=7)
    ax.set_xlabel("pretraining minutes per stage")
    ax.set_ylabel("kNN top-1 (%)")
    fig.savefig(out / "fig_knn_vs_minutes.png", dpi=90)
    written.append("fig_knn_vs_minutes.png")
    plt.close("all")
    return written


# ---------------------------------------------------------------------------- driver
def run_ablation(cfg: AblationConfig, out: str | Path, figures: bool = True, log=print) -> dict:
    """Runs every (variant, seed) not already in ``<out>/runs.jsonl``; writes the table."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    variants = selected_variants(cfg)
    runs = harness.RunLog(out / "runs.jsonl", "variant")
    base = read_config_values(cfg.base)
    data = harness.EvalData(cfg, validation=cfg.validation_images)
    results = []
    start = time.time()
    by_priority = sorted(variants, key=lambda v: RUN_ORDER.index(v.name))
    for v in by_priority:
        for seed in range(cfg.seeds):
            key = harness.run_key(pretrain_config(cfg, v, seed, base), cfg, v.stage, v.stage1_of, data.describe())
            result, fresh = runs.run(v.name, key, lambda v=v, seed=seed: run_variant(cfg, v, seed, out, data, base))
            results.append(result)
            if fresh:
                log(f"[{(time.time() - start) / 60:5.1f} min] {v.name:<16} seed {seed}: kNN "
                    f"{100 * result['knn_top1']:.2f}%  linear {100 * result['linear_top1']:.2f}%  "
                    f"H(p̄)/logC min {result.get('target_entropy_fraction_min', float('nan')):.3f}  "
                    f"KL min {result.get('kl_min', float('nan')):.3g}  ({result['seconds']:.0f} s)")
    rows = aggregate(results, variants)
    summary = {"config": dataclasses.asdict(cfg), "evaluation": data.describe(), "code_version": runs.code_version,
               "rows": rows, "runs": results, "minutes": round((time.time() - start) / 60, 1)}
    atomic_write_text(out / "ablation.md", format_markdown(rows, cfg) + "\n")
    if figures:
        widths = [r["head_width"] for r in results if "head_width" in r]
        summary["figures"] = write_figures(out, rows, widths[0] if widths else 512)
    atomic_write_json(out / "ablation.json", summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    return harness.experiment_main(argv, module="ablate", doc=__doc__, default_config=DEFAULT_CONFIG,
                                   config_class=AblationConfig, run=run_ablation, format_markdown=format_markdown,
                                   presets="small, full", out="runs/ablate",
                                   selections={"variants": f"names (default: all); known: {', '.join(VARIANTS)}"})


if __name__ == "__main__":
    sys.exit(main())
