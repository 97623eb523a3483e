"""``python -m burn_tf.studies.compare --report``: the tables of a comparison in progress, from the
runs already logged, running nothing."""
import dataclasses
import json

import pytest

from burn_tf.studies import compare, compare_config, harness

FLOOR = "random init (floor)"


def _small(**changes) -> compare_config.CompareConfig:
    cfg = compare_config.load_compare_config("compare.yaml", "small")
    return dataclasses.replace(cfg, blocks=["methods"], **changes)


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
    cfg = _small(rows=["s2bnn"])
    key = harness.run_key(compare.teacher_config(cfg, "self"), cfg, "teacher")
    record = {"row": "self teacher itself", "key": key, "seed": 0, "block": "self_teacher", "method": "moco_v2",
              "knn_top1": 0.5, "linear_top1": 0.5}
    (tmp_path / "runs.jsonl").write_text(json.dumps(record) + "\n")
    with pytest.raises(
        FileNotFoundError, match=r"logs the teacher 'self teacher itself' .*teacher_self/stage1/backbone"
    ):
        compare.run_comparison(cfg, tmp_path, figures=False, log=lambda *a: None)
    assert not (tmp_path / "runs" / "s2bnn").exists()
    # The report still reads what is logged.
    report = compare.run_comparison(cfg, tmp_path, figures=False, log=lambda *a: None, report_only=True)
    assert [r["row"] for r in report["rows"]] == ["self teacher itself"]
