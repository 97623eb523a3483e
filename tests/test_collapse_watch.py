import io
import json
import math

import tensorflow as tf

from burn_tf.callbacks import CollapseCriterion, CollapseWatcher, StepRecorder
from burn_tf.config import load_config
from burn_tf.studies.ablate import VARIANTS, aggregate
from burn_tf.studies.demo import format_target_report, load_demo_config, target_report


class _Model:
    def __init__(self):
        self.global_step = tf.Variable(0, dtype=tf.int64)


def _feed(callback, values):
    model = _Model()
    callback.model = model
    for i, (h, kl) in enumerate(values):
        model.global_step.assign_add(1)
        callback.on_train_batch_end(i, {"target_entropy_step": h, "kl_step": kl, "lambda": 0.8, "lr": 1e-3,
                                        "kl": 99.0})


def test_watcher_names_the_first_step_of_a_sustained_collapse_only():
    stream = io.StringIO()
    watcher = CollapseWatcher(num_classes=16, criterion=CollapseCriterion(0.5, 1e-3), patience=3, stream=stream)
    half = 0.5 * math.log(16)
    # one bad step (4), recovery, then a sustained collapse from step 7
    values = (
        [(2.5, 0.5)] * 3 + [(0.1, 0.5)] + [(2.5, 0.5)] * 2 + [(half - 0.01, 0.5), (2.0, 1e-4), (0.0, 0.0), (0.0, 0.0)]
    )
    _feed(watcher, values)
    assert watcher.collapse_step == 7
    text = stream.getvalue()
    assert text.count("WARNING") == 1 and "step 7" in text
    logs = {}
    watcher.on_epoch_end(0, logs)
    assert logs["target_collapsed"] == 1.0 and logs["collapse_step"] == 7.0
    assert logs["kl_min"] == 0.0 and logs["target_entropy_fraction_min"] == 0.0


def test_watcher_quiet_on_a_live_target():
    stream = io.StringIO()
    watcher = CollapseWatcher(num_classes=16, patience=2, stream=stream)
    _feed(watcher, [(2.0, 0.1)] * 5)
    logs = {}
    watcher.on_epoch_end(0, logs)
    assert stream.getvalue() == "" and logs["target_collapsed"] == 0.0 and logs["collapse_step"] == -1.0
    assert logs["target_entropy_min"] == 2.0 and logs["kl_min"] == 0.1


def test_step_recorder_keeps_instant_values_not_running_means():
    recorder = StepRecorder()
    _feed(recorder, [(1.0, 0.2), (0.5, 0.1)])
    assert recorder.records == [
        {"step": 1, "target_entropy": 1.0, "kl": 0.2, "lambda": 0.8, "lr": 1e-3},
        {"step": 2, "target_entropy": 0.5, "kl": 0.1, "lambda": 0.8, "lr": 1e-3},
    ]


def test_the_criterion_is_one_pair_of_bars_for_a_step_and_for_a_stage():
    criterion = CollapseCriterion(entropy_fraction=0.5, kl_floor=1e-3)
    assert criterion.collapsed(0.49, 0.5) and criterion.collapsed(0.9, 1e-4) and not criterion.collapsed(0.6, 0.01)
    assert criterion.alive({"target_entropy_fraction_min": 0.6, "kl_min": 0.01})
    assert not criterion.alive({"target_entropy_fraction_min": 0.4, "kl_min": 0.01})
    assert not criterion.alive({"target_entropy_fraction_min": 0.6, "kl_min": 1e-4})
    # No step seen (NaN minima): not alive, and no single NaN step counts as collapsed.
    assert not criterion.alive({"target_entropy_fraction_min": math.nan, "kl_min": math.nan})
    assert not criterion.collapsed(math.nan, math.nan)


def test_the_demo_reports_the_target_by_the_runs_configured_bars(tmp_path):
    cfg, _ = load_demo_config(overrides=["method.collapse_entropy_fraction=0.8", "method.collapse_kl_floor=0.05"])
    log_c = math.log(cfg.method.head_width)
    # Above the default bars (0.5·log C, 1e-3), below this run's (0.8·log C, 0.05).
    metrics = {
        "target_entropy_min": 0.7 * log_c,
        "target_entropy_fraction_min": 0.7,
        "kl_min": 0.01,
        "collapse_step": 12.0,
        "target_entropy": 0.9 * log_c,
        "kl": 0.2,
    }
    for stage in cfg.backbone.stages:
        (tmp_path / f"stage{stage}").mkdir()
        (tmp_path / f"stage{stage}" / "metrics.json").write_text(json.dumps(metrics))
    report = target_report(cfg, tmp_path)
    assert report and not any(r["alive"] for r in report.values())
    assert "(bar 0.8)" in format_target_report(report) and "(bar 0.05)" in format_target_report(report)
    assert target_report(load_config("configs/byol.yaml"), tmp_path) == {}  # no moving target


def test_the_ablation_counts_live_targets_by_the_same_criterion():
    variant = VARIANTS["burn"]
    runs = [
        {
            "variant": "burn",
            "seed": seed,
            "knn_top1": 50.0,
            "linear_top1": 60.0,
            "train_seconds": 1.0,
            "target_entropy_fraction_min": fraction,
            "kl_min": kl,
            "collapse_step": -1,
        }
        for seed, (fraction, kl) in enumerate([(0.6, 0.01), (0.4, 0.01), (0.6, 1e-4)])
    ]
    [row] = aggregate(runs, [variant])
    expected = sum(CollapseCriterion().alive(r) for r in runs)
    assert row["target_alive"] == f"{expected}/3" == "1/3"
