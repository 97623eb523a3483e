"""``python -m burn_tf.studies.compare --report``: the tables of a comparison in progress, from the
runs already logged, running nothing."""
import dataclasses
import json

import pytest

from burn_tf.studies import compare, compare_config, compare_rows, harness

FLOOR = "random init (floor)"


def _small(**changes) -> compare_config.CompareConfig:
    cfg = compare_config.load_compare_config("compare.yaml", "small")
    return dataclasses.replace(cfg, **{"blocks": ["methods"], **changes})


def test_report_writes_the_logged_runs_and_names_the_missing_ones(tmp_path, fashion_mnist_available):
    # Two seeds of the floor (evaluated, never trained: seconds), run for real.
    floor_only = _small(rows=[FLOOR], seeds=2, max_seeds=2)
    done = compare.run_comparison(floor_only, tmp_path, figures=False, log=lambda *a: None)
    assert [r["seeds"] for r in done["rows"]] == [2]
    log = (tmp_path / "runs.jsonl").read_text()

    # The report of a wider selection: BYOL needs a rate from a grid nobody has run yet.
    wider = dataclasses.replace(floor_only, rows=[FLOOR, "byol"], lr_grid=[0.002, 0.004])
    messages = []
    report = compare.run_comparison(wider, tmp_path, figures=False, log=messages.append, report_only=True)
    assert (tmp_path / "runs.jsonl").read_text() == log  # nothing ran
    assert not (tmp_path / "runs" / "byol").exists() and not (tmp_path / "runs" / "lr_grid").exists()
    assert [r["row"] for r in report["rows"]] == [FLOOR]
    assert report["rows"][0]["knn_top1"] == done["rows"][0]["knn_top1"]
    assert report["missing"] == ["BYOL (its rate: the grid is not complete)"]
    assert report["learning_rates"] == {}
    assert any("0 of 2 rates logged" in m for m in messages)
    markdown = (tmp_path / "compare.md").read_text()
    assert "**In progress**" in markdown and "BYOL (its rate: the grid is not complete)" in markdown
    assert json.loads((tmp_path / "compare.json").read_text())["missing"] == report["missing"]

    # A run that is not logged is named, and the table has the seeds that are.
    lines = log.splitlines()
    (tmp_path / "runs.jsonl").write_text("\n".join(line for line in lines if json.loads(line)["seed"] == 0) + "\n")
    report = compare.run_comparison(floor_only, tmp_path, figures=False, log=lambda *a: None, report_only=True)
    assert report["rows"][0]["seeds"] == 1
    assert report["missing"] == [f"{FLOOR} seed 1"]


def test_report_is_a_command_line_option(tmp_path, capsys, fashion_mnist_available):
    assert compare.main(["--preset", "small", "--rows", FLOOR, "--out", str(tmp_path), "--report",
                         "--no-figures"]) == 0
    out = capsys.readouterr().out
    assert "not yet" in out and f"{FLOOR} seed 0" in out
    assert not (tmp_path / "runs").exists()
    with pytest.raises(SystemExit):
        compare.main(["--help"])
    assert "--report" in capsys.readouterr().out


def test_a_logged_teacher_without_its_weights_is_refused_by_name(tmp_path, fashion_mnist_available):
    # runs.jsonl carried to a new --out without runs/teacher_self: the S2-BNN row would distil
    # a teacher that is not there, and retraining it would not give the logged one.
    cfg = _small(rows=["S2-BNN (self-trained teacher)"], blocks=["self_teacher"])
    key = harness.versioned_key(harness.run_key(compare_rows.teacher_config(cfg, "self"), cfg, "teacher"),
                                harness.code_version())
    record = {"row": "self teacher itself", "key": key, "seed": 0, "block": "self_teacher", "method": "moco_v2",
              "knn_top1": 0.5, "linear_top1": 0.5}
    (tmp_path / "runs.jsonl").write_text(json.dumps(record) + "\n")
    with pytest.raises(
        FileNotFoundError, match=r"logs the teacher 'self teacher itself' seed 0 .*teacher_self_seed0/stage1/backbone"
    ):
        compare.run_comparison(cfg, tmp_path, figures=False, log=lambda *a: None)
    assert not (tmp_path / "runs" / "s2_bnn_self_trained_teacher").exists()
    # The report still reads what is logged.
    report = compare.run_comparison(cfg, tmp_path, figures=False, log=lambda *a: None, report_only=True)
    assert [r["row"] for r in report["rows"]] == ["self teacher itself"]


def test_runs_of_another_code_version_are_reported_and_reused_only_when_identical(tmp_path, monkeypatch,
                                                                                  fashion_mnist_available):
    floor_only = _small(rows=[FLOOR], seeds=2, max_seeds=2)
    monkeypatch.setattr(harness, "_CODE_AT_IMPORT", ["old-code"])
    old = compare.run_comparison(floor_only, tmp_path, figures=False, log=lambda *a: None)
    assert old["code_version"] == "old-code" and old["code_versions_used"] == ["old-code"]
    # Other code: none of the old runs is used, and the JSON says so loudly.
    monkeypatch.setattr(harness, "_CODE_AT_IMPORT", ["new-code"])
    messages = []
    report = compare.run_comparison(floor_only, tmp_path, figures=False, log=messages.append, report_only=True)
    assert report["rows"] == [] and report["other_code_versions"] == {"old-code": 2}
    assert any(m.startswith("NOT USED: 2 logged runs of other code versions") for m in messages)
    # Reused after one sample (the floor's seed 0, deterministic) is rerun bit-identical: seed 1
    # is taken from the old version's runs, not run again.
    reuse = dataclasses.replace(floor_only, reuse_code_version="old-code", reuse_sample=FLOOR)
    again = compare.run_comparison(reuse, tmp_path, figures=False, log=lambda *a: None)
    assert again["reused_code_version"]["identical"] and again["code_versions_used"] == ["new-code", "old-code"]
    assert [(r["seed"], r["code_version"]) for r in again["runs"]] == [(0, "new-code"), (1, "old-code")]
    assert again["rows"][0]["knn_top1"] == old["rows"][0]["knn_top1"]
    # A sample that does not repeat bit-identically stops the comparison.
    lines = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    for record in lines:
        if record["code_version"] == "old-code" and record["seed"] == 0:
            record["weights_sha256"] = "0" * 64
    old_lines = [json.dumps(r) + "\n" for r in lines if r["code_version"] == "old-code"]
    (tmp_path / "runs.jsonl").write_text("".join(old_lines))
    with pytest.raises(harness.CodeVersionError, match="not bit-identical"):
        compare.run_comparison(reuse, tmp_path, figures=False, log=lambda *a: None)
