"""Which binary backbone to put on a device, and how good it gets without labels: BURN with
ReActNet-A and larq-zoo's students (:mod:`burn_tf.models.larq_zoo`) at one budget, beside
their 1-bit cost, as one command:

    python -m burn_tf.studies.students --config configs/students.yaml [--preset small|full]
                                       [--seeds N] [--students QuickNet,...] [--out runs/students]

Every student is the ``base`` pretraining config (the demo's: BURN from the EfficientNet-Lite0
teacher, 48 px, Adam 0.004, the Sinkhorn target) with its ``backbone`` replaced, pretrained
for both stages with the same budget (``steps`` per stage, ``batch_size``) through
:func:`burn_tf.pretrain.pretrain_stage` once per seed, and its stage-2 export scored by the
demo's weighted kNN and linear probe (the whole training split as bank and probe data, the
whole test split as queries with the shipped config). The recipe was chosen for ReActNet-A
(width 0.25): no student has a rate of its own, which the table says.

For each architecture (not each seed) the study also reports what the student costs as a
1-bit network: ``lq.models.summary``'s binary and FP MACs and parameters and the weight
memory at the study's input size and at 224 px, and the size of its LCE flatbuffer at 224 px.
Latency is a timing, so it is not measured here, while the runs may share the machine:
``benchmarks/students_latency.py`` times each student's flatbuffer in LCE's interpreter on a
quiet machine and writes the JSON that ``latency_file`` names; the table and the plot take
it from there, with each student's published Arm64 latency (larq-zoo / LCE, 224 px) beside
it where one exists — x86 runs LCE's portable kernels, not a device's.

Writes to ``--out``: ``students.md`` (mean ± std over seeds), ``students.json``,
``runs.jsonl`` (a rerun skips finished runs), ``steps/<student>_seed<k>.json`` and
``fig_accuracy_vs_latency.png``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from pathlib import Path

from burn_tf.config import ConfigError, read_config_values
from burn_tf.export import to_tflite
from burn_tf.io import atomic_write_json, atomic_write_text
from burn_tf.models.larq_zoo import ZOO_STUDENTS
from burn_tf.models.trained_network import REACTNET_ONLY_FIELDS, BackboneConfig, build_backbone
from burn_tf.studies import harness
from burn_tf.summary import model_stats

DEFAULT_CONFIG = "students.yaml"
PUBLISHED_LATENCY_SOURCE = ("larq/compute-engine README, 'Performance': single-threaded, Pixel 1, 224 px "
                            "(ZooStudent.pixel1_ms)")


@dataclasses.dataclass(frozen=True)
class Student:
    name: str
    label: str
    overrides: tuple = ()
    zoo_name: str | None = None  # larq-zoo's model name


def _yaml_scalar(value) -> str:
    # YAML reads "1e-05" as a string: floats in positional notation.
    if isinstance(value, float):
        return f"{value:.12f}".rstrip("0")
    return json.dumps(value)


def _zoo(name: str) -> Student:
    # ReActNet-A's own fields (the base config's width, a preset's blocks) go back to their
    # defaults: a zoo student has none, and a config that sets them is refused.
    defaults = {f.name: f.default for f in dataclasses.fields(BackboneConfig) if f.name in REACTNET_ONLY_FIELDS}
    resets = tuple(f"backbone.{key}={_yaml_scalar(value)}" for key, value in sorted(defaults.items()))
    return Student(name, f"{name} (larq-zoo)", ("backbone.kind=larq_zoo", f"backbone.name={name}", *resets),
                   zoo_name=name)


STUDENTS = {s.name: s for s in [
    Student("reactnet_a_w025", "ReActNet-A, width 0.25 (the demo's)"),
    Student("reactnet_a", "ReActNet-A, width 1.0 (the paper's)", ("backbone.width_multiplier=1.0",)),
    *(_zoo(name) for name in ZOO_STUDENTS),
]}


@dataclasses.dataclass
class StudentsConfig(harness.ExperimentConfig):
    """Budget and evaluation of the students study (``configs/students.yaml``; ``presets``)."""

    base: str = "demo.yaml"  # the pretraining config every student starts from
    students: list[str] = dataclasses.field(default_factory=list)  # empty: all, in STUDENTS order
    # benchmarks/students_latency.py's output (relative: to the working directory); none: no timings
    latency_file: str | None = "benchmarks/results/students/latency.json"
    # the input size of the flatbuffer whose bytes the table gives (null: none converted)
    flatbuffer_size: int | None = 224

    def __post_init__(self):
        super().__post_init__()
        unknown = sorted(set(self.students) - set(STUDENTS))
        if unknown:
            raise ConfigError(f"students: unknown {unknown}; known: {', '.join(STUDENTS)}")


def load_students_config(path=DEFAULT_CONFIG, preset: str | None = None) -> StudentsConfig:
    """``path``'s keys, then those of ``presets.<preset>`` on top."""
    return harness.load_experiment_config(StudentsConfig, path, preset)


def selected_students(cfg: StudentsConfig) -> list[Student]:
    names = set(cfg.students or STUDENTS)
    return [s for n, s in STUDENTS.items() if n in names]


def pretrain_config(cfg: StudentsConfig, student: Student, seed: int, base: dict):
    return harness.build_run_config(base, [*harness.budget_overrides(cfg, seed), *student.overrides],
                                    f"student {student.name}")


def run_student(cfg: StudentsConfig, student: Student, seed: int, out: Path, data: harness.EvalData,
                base: dict) -> dict:
    """Pretrains both stages of one student for one seed and evaluates its stage-2 export."""
    pcfg = pretrain_config(cfg, student, seed, base)
    model, summary = harness.pretrain_run(pcfg, pcfg.backbone.stages, out / "runs" / student.name / f"seed{seed}",
                                          out / "steps" / f"{student.name}_seed{seed}.json")
    return {"student": student.name, "seed": seed, **summary, **data.evaluate(model, seed)}


def architecture_facts(cfg: StudentsConfig, student: Student, base: dict) -> dict:
    """What the stage-2 student costs as a 1-bit network, at the study's input size and at
    ``flatbuffer_size`` (random weights: none of these depend on what was learned)."""
    pcfg = pretrain_config(cfg, student, 0, base)
    facts = {"input_size": pcfg.backbone.input_size}
    for size in sorted({pcfg.backbone.input_size, cfg.flatbuffer_size or pcfg.backbone.input_size}):
        backbone = build_backbone(dataclasses.replace(pcfg.backbone, input_size=size), 2, name=student.name)
        stats = model_stats(backbone)
        facts[str(size)] = {k: stats[k] for k in ("binary_macs", "fp_macs", "binary_params", "total_params",
                                                   "weight_memory_bytes", "fp32_memory_bytes")}
        facts[str(size)]["feature_dim"] = int(backbone.output_shape[-1])
        if size == cfg.flatbuffer_size:
            facts[str(size)]["flatbuffer_bytes"] = len(to_tflite(backbone))
    zoo = ZOO_STUDENTS.get(student.zoo_name) if student.zoo_name else None
    facts["arm64_ms_published"] = zoo.pixel1_ms if zoo else None
    facts["imagenet_top1_published"] = zoo.imagenet_top1 if zoo else None
    return facts


def read_latency(cfg: StudentsConfig) -> dict:
    """{student: {"<size>": {"median_ms", …}}} from ``latency_file``, or {} when there is none."""
    if not cfg.latency_file:
        return {}
    path = Path(cfg.latency_file)
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())["students"]
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{path}: not a latency file of benchmarks/students_latency.py ({err})") from None


def aggregate(results: list[dict], facts: dict, latency: dict, students: list[Student]) -> list[dict]:
    rows = []
    reference = {r["seed"]: r["knn_top1"] for r in results if r["student"] == students[0].name}
    for s in students:
        runs = [r for r in results if r["student"] == s.name]
        if not runs:
            continue
        row = {"student": s.name, "label": s.label, "seeds": len(runs), **facts.get(s.name, {}),
               "latency_x86": latency.get(s.name, {})}
        for key in ("knn_top1", "linear_top1", "train_seconds"):
            row[key], row[f"{key}_std"] = harness.mean_std([r.get(key) for r in runs])
        deltas = [r["knn_top1"] - reference[r["seed"]] for r in runs if r["seed"] in reference]
        row["knn_minus_first"], row["knn_minus_first_std"] = harness.mean_std(deltas)
        rows.append(row)
    return rows


def _millions(n) -> str:
    return "–" if n is None else f"{n / 1e6:.1f}"


def _ms(latency: dict, size) -> str:
    timing = latency.get(str(size))
    return "–" if not timing else f"{timing['median_ms']:.2f}"


def format_markdown(rows: list[dict], cfg: StudentsConfig) -> str:
    size = rows[0]["input_size"] if rows else "?"
    big = cfg.flatbuffer_size
    lines = [
        f"| student | kNN top-1 (%) | linear top-1 (%) | Δ kNN vs {rows[0]['student'] if rows else '–'} | "
        f"binary MMACs ({size} px) | FP MMACs ({size} px) | params (M) | weights (MiB, 1-bit) | "
        f"LCE .tflite at {big} px (MiB) | x86 LCE ms ({size} px) | x86 LCE ms ({big} px) | "
        f"Arm64 ms ({big} px, published) | min/run |",
        "|" + "---|" * 13,
    ]
    for r in rows:
        small, large = r.get(str(size), {}), r.get(str(big), {})
        first = r["student"] == rows[0]["student"]
        lines.append(" | ".join([
            f"| {r['label']}", harness.format_mean_std(r, "knn_top1"), harness.format_mean_std(r, "linear_top1"),
            "0" if first else harness.format_mean_std(r, "knn_minus_first"),
            _millions(small.get("binary_macs")), _millions(small.get("fp_macs")), _millions(small.get("total_params")),
            "–" if "weight_memory_bytes" not in small else f"{small['weight_memory_bytes'] / 2**20:.2f}",
            "–" if "flatbuffer_bytes" not in large else f"{large['flatbuffer_bytes'] / 2**20:.2f}",
            _ms(r["latency_x86"], size), _ms(r["latency_x86"], big),
            "–" if r.get("arm64_ms_published") is None else f"{r['arm64_ms_published']:.1f}",
            "–" if math.isnan(r["train_seconds"]) else f"{r['train_seconds'] / 60:.1f}",
        ]) + " |")
    seeds = sorted({r["seeds"] for r in rows})
    lines += ["", (
        f"{'/'.join(map(str, seeds))} seed(s) per student (mean ± std, ddof 1); BURN ({cfg.base} with the student "
        f"replaced; no student has a rate of its own), {cfg.steps} steps × batch {cfg.batch_size} per stage, both "
        f"stages, on {cfg.data_limit or 'all 60000'} training images; kNN (K {min(cfg.knn_k, cfg.knn_bank)}, τ "
        f"{cfg.knn_temperature}) and a {cfg.linear_epochs}-epoch linear probe with the first {cfg.knn_bank} training "
        f"images as bank / probe data, scored on the first {cfg.knn_queries} test images. Δ kNN: paired by seed. "
        "MACs, parameters and 1-bit weight memory: lq.models.summary of the stage-2 student without a classifier. "
        "x86 LCE ms: benchmarks/students_latency.py, one image, 1 thread, median, LCE's portable x86 kernels on "
        f"the 2-core machine — not a device's figure. Arm64 ms: {PUBLISHED_LATENCY_SOURCE}, for the zoo's "
        "ImageNet models (with their classifier)."
    )]
    return "\n".join(lines)


def write_figure(out: Path, rows: list[dict]) -> str | None:
    """kNN top-1 against x86 LCE latency at the study's size and against binary + FP MACs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    size = rows[0]["input_size"]
    panels = [
        (axes[0], lambda r: (r["latency_x86"].get(str(size)) or {}).get("median_ms"),
         f"x86 LCE latency at {size} px, 1 thread (ms; not a device's)"),
        (axes[1], lambda r: (r[str(size)]["fp_macs"] + r[str(size)]["binary_macs"] / 64) / 1e6,
         f"FP MMACs + binary MMACs / 64 at {size} px"),
    ]
    for ax, x_of, label in panels:
        plotted = 0
        for r in rows:
            x = x_of(r)
            if x is None:
                continue
            ax.errorbar(x, 100 * r["knn_top1"], yerr=100 * r["knn_top1_std"], fmt="o", capsize=3)
            ax.annotate(r["student"], (x, 100 * r["knn_top1"]), fontsize=8, xytext=(4, 4), textcoords="offset points")
            plotted += 1
        ax.set_xlabel(label)
        ax.set_ylabel("kNN top-1 (%), mean ± std over seeds")
        if not plotted:
            ax.text(0.5, 0.5, "no latency file: run benchmarks/students_latency.py", ha="center",
                    transform=ax.transAxes)
    fig.suptitle("BURN on Fashion-MNIST: label-free accuracy against 1-bit cost")
    fig.tight_layout()
    fig.savefig(out / "fig_accuracy_vs_latency.png", dpi=90)
    plt.close(fig)
    return "fig_accuracy_vs_latency.png"


def run_students(cfg: StudentsConfig, out: str | Path, figures: bool = True, log=print) -> dict:
    """Runs every (student, seed) not already in ``<out>/runs.jsonl`` — seed 0 of every
    student first, so an interrupted study already compares them — and writes the table."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    students = selected_students(cfg)
    runs = harness.RunLog(out / "runs.jsonl", "student")
    base = read_config_values(cfg.base)
    data = harness.EvalData(cfg)
    results, facts = [], {}
    start = time.time()
    for s in students:
        key = harness.run_key(pretrain_config(cfg, s, 0, base), cfg, "facts", cfg.flatbuffer_size)
        facts[s.name], _ = runs.run(f"facts:{s.name}", key, lambda s=s: architecture_facts(cfg, s, base))
    for seed in range(cfg.seeds):
        for s in students:
            key = harness.run_key(pretrain_config(cfg, s, seed, base), cfg)
            result, fresh = runs.run(s.name, key, lambda s=s, seed=seed: run_student(cfg, s, seed, out, data, base))
            results.append(result)
            if fresh:
                log(f"[{(time.time() - start) / 60:5.1f} min] {s.name:<16} seed {seed}: kNN "
                    f"{100 * result['knn_top1']:.2f}%  linear {100 * result['linear_top1']:.2f}%  "
                    f"({result['seconds']:.0f} s)")
    facts = {name: {k: v for k, v in f.items() if k not in ("student", *harness.RECORD_FIELDS)}
             for name, f in facts.items()}
    rows = aggregate(results, facts, read_latency(cfg), students)
    summary = {"config": dataclasses.asdict(cfg), "evaluation": data.describe(), "code_version": runs.code_version,
               "rows": rows, "runs": results, "minutes": round((time.time() - start) / 60, 1)}
    atomic_write_text(out / "students.md", format_markdown(rows, cfg) + "\n")
    if figures and rows:
        summary["figures"] = [write_figure(out, rows)]
    atomic_write_json(out / "students.json", summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    return harness.experiment_main(argv, module="students", doc=__doc__, default_config=DEFAULT_CONFIG,
                                   config_class=StudentsConfig, run=run_students, format_markdown=format_markdown,
                                   presets="small, full", out="runs/students",
                                   selections={"students": f"names (default: all); known: {', '.join(STUDENTS)}"})


if __name__ == "__main__":
    sys.exit(main())
