"""The main job: BURN on the embedded Fashion-MNIST, then proof that the binary net learned.

    python -m burn_tf.studies.demo [--run-dir runs/demo] [--config configs/demo.yaml] [--set k=v …]

1. Stage 1 → stage 2 of the configured method (BURN in ``demo.yaml``) through
   :func:`burn_tf.pretrain.pretrain`, no labels used.
   With ``evaluation.controls`` (default on, BURN only) two controls are pretrained the same
   way in ``<run-dir>/controls/``: L_FS alone (λ = 1) and a frozen random g_θ — what the
   student reaches without the jointly trained classifier.
2. On the Fashion-MNIST test set, for (a) the BURN student, (b) the controls, (c) the same
   student randomly initialised, (d) the teacher: weighted kNN (cosine, K 200, τ 0.07, bank = train split)
   and a linear probe (dense softmax on standardised frozen features, SGD momentum 0.9,
   step decay ×0.1 at 60 % and 80 % of the epochs).
3. Prints the table and whether the moving target stayed alive in each stage (per-step
   minima of H(p̄) against 0.5·log C and of KL against 1e-3), writes ``<run-dir>/results.json`` and the model card
   ``<run-dir>/MODEL_CARD.md``.

Idempotent: a finished stage is reused, an interrupted one resumed (``--overwrite`` starts
afresh) — the same path as ``python -m burn_tf.pretrain --resume``; when nothing was
pretrained, the evaluation in ``results.json`` is reused if it was made with the same config
and evaluation settings. Evaluation settings are
:class:`DemoEvalConfig`'s (``--set evaluation.linear_epochs=20``); every other ``--set``
goes to the pretraining config.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from burn_tf.build import build_teacher_from_config
from burn_tf.callbacks import CollapseCriterion
from burn_tf.config import (
    ConfigError,
    PretrainConfig,
    config_from_dict,
    read_config_values,
    resolve_config_path,
)
from burn_tf.data import load_fashion_mnist_arrays
from burn_tf.evaluate.features import extract_features
from burn_tf.evaluate.knn import knn_accuracy
from burn_tf.evaluate.metrics import topk_accuracy
from burn_tf.evaluate.probe import train_head_on_features
from burn_tf.export.model_card import write_model_card
from burn_tf.io import atomic_write_json
from burn_tf.models.trained_network import build_backbone
from burn_tf.pretrain import pretrain
from burn_tf.rundir import RunDirError
from burn_tf.saved_backbone import load_backbone
from burn_tf.schema import build_dataclass, check_range

DEFAULT_CONFIG = "demo.yaml"  # configs/demo.yaml, shipped in the wheel
# Controls: what the student reaches without the jointly trained classifier g_θ.
CONTROLS = {
    "student_fs_only": {"lambda_schedule": "constant", "lambda_end": 1.0},  # L_FS alone
    # The released code's fixed target: softmax of a frozen random g_θ (the options that train
    # g_θ or reshape its target are off).
    "student_frozen_g": {"train_teacher_classifier": False, "target": "softmax",
                         "teacher_classifier_lr_multiplier": 1.0, "entropy_bonus": 0.0},
}


@dataclasses.dataclass
class DemoEvalConfig:
    """The demo's evaluation: weighted kNN and a linear probe on Fashion-MNIST test."""

    knn_k: int = 200
    knn_temperature: float = 0.07
    linear_epochs: int = 10
    linear_learning_rate: float = 0.1
    train_images: int | None = None  # None: the whole train split as bank / probe data
    # None: the whole test split (10,000 images); fewer for a quick check (the first N,
    # every class present: the split is not sorted by class).
    test_images: int | None = None
    # Also pretrain the L_FS-only and frozen-g_θ controls (BURN only) with the same budget.
    controls: bool = True

    def __post_init__(self):
        for key in ("knn_k", "linear_epochs"):
            check_range("evaluation", key, getattr(self, key), 1)
        for key in ("knn_temperature", "linear_learning_rate"):
            check_range("evaluation", key, getattr(self, key), 0.0, low_open=True)
        for key in ("train_images", "test_images"):
            if getattr(self, key) is not None:
                check_range("evaluation", key, getattr(self, key), 1)


def load_demo_config(path=DEFAULT_CONFIG, overrides: list[str] | None = None) -> tuple[PretrainConfig, DemoEvalConfig]:
    """The pretraining config and the evaluation settings (``evaluation.*`` overrides)."""
    overrides = list(overrides or [])
    eval_overrides = [o for o in overrides if o.startswith("evaluation.")]
    values = read_config_values(path, [o for o in overrides if o not in eval_overrides])
    evaluation = read_config_values(None, eval_overrides).get("evaluation", {})
    try:
        cfg = config_from_dict(values)
    except ConfigError as err:
        raise ConfigError(f"{resolve_config_path(path)}: {err}") from None
    return cfg, build_dataclass(DemoEvalConfig, evaluation, "evaluation.")


def standardize(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = train.mean(0), train.std(0) + 1e-6
    return (train - mean) / std, (test - mean) / std


def evaluate_features(train_f, train_y, test_f, test_y, ev: DemoEvalConfig, seed: int = 0) -> dict:
    knn = knn_accuracy(train_f, train_y, test_f, test_y, k=ev.knn_k, temperature=ev.knn_temperature,
                       num_classes=10, ks=(1,))
    tr, te = standardize(train_f, test_f)
    epochs = ev.linear_epochs
    head, _ = train_head_on_features(
        tr, train_y, 10, epochs=epochs, lr=ev.linear_learning_rate,
        milestones=(int(0.6 * epochs), int(0.8 * epochs)), batch_size=256, seed=seed,
    )
    logits = head.predict(te, batch_size=1024, verbose=0)
    return {"knn_top1": float(knn["top1"]), "linear_top1": float(topk_accuracy(logits, test_y, 1))}


def control_configs(cfg: PretrainConfig, ev: DemoEvalConfig) -> dict[str, PretrainConfig]:
    """{row name: config} of the controls to pretrain beside the student (none unless BURN)."""
    if not ev.controls or not cfg.method_class.moving_target:
        return {}
    return {name: dataclasses.replace(cfg, method=dataclasses.replace(cfg.method, **changes))
            for name, changes in CONTROLS.items()}


def target_report(cfg: PretrainConfig, run_dir: Path) -> dict:
    """Per stage: whether the moving target stayed alive (CollapseWatcher's minima in the
    stage's metrics.json) by the config's collapse thresholds, or {} for a method without one."""
    if not cfg.method_class.moving_target:
        return {}
    criterion = CollapseCriterion.of(cfg.method)
    report = {}
    for stage in cfg.backbone.stages:
        metrics = json.loads((run_dir / f"stage{stage}" / "metrics.json").read_text())
        if "target_entropy_min" not in metrics:
            continue
        report[f"stage{stage}"] = {
            "alive": criterion.alive(metrics),
            "entropy_bar": criterion.entropy_fraction, "kl_bar": criterion.kl_floor,
            **{k: metrics[k] for k in ("target_entropy_min", "target_entropy_fraction_min", "kl_min",
                                       "collapse_step", "target_entropy", "kl")},
        }
    return report


def format_target_report(report: dict) -> str:
    lines = []
    for stage, r in report.items():
        state = "alive" if r["alive"] else (
            f"COLLAPSED (from step {int(r['collapse_step'])})" if r["collapse_step"] >= 0 else "below the bar")
        lines.append(f"{stage} target {state}: per-step min H(p̄) = {r['target_entropy_fraction_min']:.2f}·log C "
                     f"(bar {r['entropy_bar']:g}), min KL = {r['kl_min']:.3g} (bar {r['kl_bar']:g})")
    return "\n".join(lines)


def evaluate_models(cfg: PretrainConfig, ev: DemoEvalConfig, run_dir: Path) -> dict:
    x_train, y_train = load_fashion_mnist_arrays("train")
    x_test, y_test = load_fashion_mnist_arrays("test")
    if ev.train_images:
        x_train, y_train = x_train[: ev.train_images], y_train[: ev.train_images]
    if ev.test_images:
        x_test, y_test = x_test[: ev.test_images], y_test[: ev.test_images]

    last_stage = cfg.backbone.stages[-1]
    models = {"student": load_backbone(run_dir / f"stage{last_stage}" / "backbone")[0]}
    for name in control_configs(cfg, ev):
        models[name] = load_backbone(run_dir / "controls" / name / f"stage{last_stage}" / "backbone")[0]
    tf.keras.utils.set_random_seed(cfg.train.seed + 100)
    models["random_student"] = build_backbone(cfg.backbone, last_stage, name="random_student")
    models["teacher"] = build_teacher_from_config(cfg)
    results = {}
    for name, model in models.items():
        start = time.time()
        train_f = extract_features(model, x_train)
        test_f = extract_features(model, x_test)
        results[name] = evaluate_features(train_f, y_train, test_f, y_test, ev)
        results[name]["feature_dim"] = int(train_f.shape[1])
        results[name]["seconds"] = round(time.time() - start, 1)
        print(f"{name}: {results[name]}", flush=True)
    return results


def format_table(results: dict) -> str:
    lines = [f"{'model':<18}{'kNN top-1':>11}{'linear top-1':>14}", "-" * 43]
    for name in ("student", *CONTROLS, "random_student", "teacher"):
        if name in results:
            r = results[name]
            lines.append(f"{name:<18}{100 * r['knn_top1']:>10.2f}%{100 * r['linear_top1']:>13.2f}%")
    return "\n".join(lines)


def finished_results(path: Path, cfg: PretrainConfig, ev: DemoEvalConfig) -> dict | None:
    """The results a previous run wrote at ``path`` if they belong to this config and these
    evaluation settings; None otherwise (missing, unreadable or from other settings: the
    caller evaluates again and replaces the file)."""
    try:
        results = json.loads(path.read_text())
        meta = results["meta"]
        stored = (meta["config_hash"], meta["evaluation"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    # Through JSON, as the file stores it (tuples become lists).
    settings = json.loads(json.dumps(dataclasses.asdict(ev)))
    if stored != (cfg.hash(), settings):
        return None
    return results


def run_demo(cfg: PretrainConfig, run_dir: str | Path, overwrite: bool = False,
             evaluation: DemoEvalConfig | None = None) -> dict:
    run_dir = Path(run_dir)
    ev = evaluation or DemoEvalConfig()
    start = time.time()
    stage_metrics = pretrain(cfg, run_dir, "all", resume="auto", overwrite=overwrite)
    pretrain_seconds = time.time() - start
    controls_run_now = False
    for name, control in control_configs(cfg, ev).items():
        controls_run_now |= bool(pretrain(control, run_dir / "controls" / name, "all", resume="auto",
                                          overwrite=overwrite))
    controls_seconds = time.time() - start - pretrain_seconds
    if not stage_metrics and not controls_run_now:
        previous = finished_results(run_dir / "results.json", cfg, ev)
        if previous is not None:
            print(f"reusing the evaluation in {run_dir / 'results.json'} (same config and evaluation settings; "
                  "--overwrite pretrains and evaluates again)", flush=True)
            return previous
    results = evaluate_models(cfg, ev, run_dir)
    total = time.time() - start
    results["meta"] = {
        "data": "fashion_mnist", "pretrain_seconds": round(pretrain_seconds, 1),
        "controls_pretrain_seconds": round(controls_seconds, 1),
        "target": target_report(cfg, run_dir),
        "total_seconds": round(total, 1), "config_hash": cfg.hash(),
        "method": cfg.method.name,
        "teacher": f"{cfg.teacher.kind} ({cfg.teacher.weights})",
        "backbone": dataclasses.asdict(cfg.backbone),
        "stages_run_now": sorted(stage_metrics),
        "knn": {"k": ev.knn_k, "temperature": ev.knn_temperature},
        "evaluation": dataclasses.asdict(ev),
    }
    atomic_write_json(run_dir / "results.json", results)
    write_model_card(run_dir)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m burn_tf.studies.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=DEFAULT_CONFIG,
                        help="a YAML file or a shipped config name (default: demo.yaml, shipped in the package)")
    parser.add_argument("--run-dir", default="runs/demo")
    parser.add_argument("--overwrite", action="store_true", help="pretrain again from scratch")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        cfg, evaluation = load_demo_config(args.config, args.overrides)
        results = run_demo(cfg, args.run_dir, overwrite=args.overwrite, evaluation=evaluation)
    except (ConfigError, RunDirError, OSError, FloatingPointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print()
    print(format_table(results))
    meta = results["meta"]
    if meta["target"]:
        print(format_target_report(meta["target"]))
    print(f"\npretraining {meta['pretrain_seconds'] / 60:.1f} min, total {meta['total_seconds'] / 60:.1f} min; "
          f"results in {Path(args.run_dir) / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
