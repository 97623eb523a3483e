import dataclasses
import json

from burn_tf.studies.demo import (
    CONTROLS,
    DemoEvalConfig,
    control_configs,
    finished_results,
    format_table,
    format_target_report,
    load_demo_config,
    target_report,
)


def test_controls_differ_from_the_student_only_where_they_should():
    cfg, ev = load_demo_config()
    controls = control_configs(cfg, ev)
    assert set(controls) == set(CONTROLS)
    fs_only, frozen = controls["student_fs_only"].method, controls["student_frozen_g"].method
    assert (fs_only.lambda_schedule, fs_only.lambda_end) == ("constant", 1.0)
    assert frozen.train_teacher_classifier is False and frozen.target == "softmax"
    # valid whatever anti-collapse option the student's recipe uses
    for option in (["method.target=sinkhorn"], ["method.entropy_bonus=1.0"], ["method.target=centered"]):
        c, e = load_demo_config(overrides=option)
        assert control_configs(c, e)["student_frozen_g"].method.train_teacher_classifier is False
    for control in controls.values():  # same budget, data, teacher and backbone
        assert (control.train, control.data, control.teacher, control.backbone, control.optimizer) == (
            cfg.train, cfg.data, cfg.teacher, cfg.backbone, cfg.optimizer)
    assert control_configs(cfg, DemoEvalConfig(controls=False)) == {}


def test_table_and_target_report(tmp_path):
    results = {name: {"knn_top1": 0.5, "linear_top1": 0.6}
               for name in ("student", "student_fs_only", "student_frozen_g", "random_student", "teacher")}
    table = format_table(results)
    assert [line.split()[0] for line in table.splitlines()[2:]] == list(results)
    cfg, _ = load_demo_config(overrides=["method.head_width=64"])
    for stage, (h, kl, step) in zip((1, 2), ((3.0, 0.01, -1), (0.1, 1e-6, 42))):
        (tmp_path / f"stage{stage}").mkdir()
        (tmp_path / f"stage{stage}" / "metrics.json").write_text(json.dumps({
            "target_entropy_min": h, "target_entropy_fraction_min": h / 4.1589, "kl_min": kl,
            "collapse_step": step, "target_entropy": h, "kl": kl}))
    report = target_report(cfg, tmp_path)
    assert report["stage1"]["alive"] is True and report["stage2"]["alive"] is False
    text = format_target_report(report)
    assert "stage1 target alive" in text and "stage2 target COLLAPSED (from step 42)" in text


def test_a_rerun_reuses_only_results_of_the_same_config_and_evaluation(tmp_path):
    """The demo's second run reads results.json back instead of evaluating again, but only
    when the file was written for this config and these evaluation settings."""
    cfg, ev = load_demo_config()
    path = tmp_path / "results.json"
    assert finished_results(path, cfg, ev) is None  # no file yet
    results = {"student": {"knn_top1": 0.7, "linear_top1": 0.75},
               "meta": {"config_hash": cfg.hash(), "evaluation": dataclasses.asdict(ev)}}
    path.write_text(json.dumps(results))
    assert finished_results(path, cfg, ev) == json.loads(json.dumps(results))
    other_cfg, other_ev = load_demo_config(overrides=["train.seed=1", "evaluation.linear_epochs=3"])
    assert finished_results(path, other_cfg, ev) is None  # another pretraining config
    assert finished_results(path, cfg, other_ev) is None  # other evaluation settings
    for broken in ("{", "[]", json.dumps({"meta": "x"}), json.dumps({"student": {}})):
        path.write_text(broken)
        assert finished_results(path, cfg, ev) is None
