import json
import math

import pytest

from burn_tf.config import ConfigError
from burn_tf.studies import students


def test_presets_students_and_the_latency_file_are_checked(tmp_path):
    full = students.load_students_config("students.yaml", "full")
    small = students.load_students_config("students.yaml", "small")
    assert full.seeds == 3 and small.seeds == 1 and small.run_eagerly
    # The floor: ReActNet-A and at least three zoo students, the QuickNet family and Bi-Real Net.
    chosen = [s.name for s in students.selected_students(full)]
    assert chosen[0] == "reactnet_a_w025" and {"QuickNetSmall", "QuickNet", "BiRealNet"} <= set(chosen)
    with pytest.raises(ConfigError, match="unknown"):
        students.StudentsConfig(students=["QuickNet", "MobileNet"])
    assert students.main(["--preset", "small", "--students", "QuickNet,nope"]) == 2
    # every student of the shipped table makes a valid pretraining config of its own
    base = students.read_config_values(full.base)
    hashes = {s.name: students.pretrain_config(full, s, 0, base).hash() for s in students.STUDENTS.values()
              if s.name != "XNORNet"}  # XNOR-Net needs 217 px, the study runs at 48
    assert len(set(hashes.values())) == len(hashes)
    with pytest.raises(ConfigError, match="XNORNet"):
        students.pretrain_config(full, students.STUDENTS["XNORNet"], 0, base)
    # no latency file: no timings (the table says "–"); a broken one is named
    assert students.read_latency(students.StudentsConfig(latency_file=str(tmp_path / "none.json"))) == {}
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="bad.json"):
        students.read_latency(students.StudentsConfig(latency_file=str(tmp_path / "bad.json")))


@pytest.mark.slow
def test_small_preset_trains_both_stages_of_each_student_and_writes_the_table(tmp_path, fashion_mnist_available):
    cfg = students.load_students_config("students.yaml", "small")
    summary = students.run_students(cfg, tmp_path)
    rows = {r["student"]: r for r in summary["rows"]}
    assert list(rows) == cfg.students
    for name, row in rows.items():
        assert 0.0 <= row["knn_top1"] <= 1.0 and 0.0 <= row["linear_top1"] <= 1.0, name
        (run,) = [r for r in summary["runs"] if r["student"] == name]
        assert math.isfinite(run["loss_first"]) and run["loss_last"] != run["loss_first"], name  # it trained
        steps = json.loads((tmp_path / "steps" / f"{name}_seed0.json").read_text())
        assert [(s["stage"], s["step"]) for s in steps] == [(stage, k) for stage in (1, 2)
                                                            for k in range(1, cfg.steps + 1)], name
        small = row[str(row["input_size"])]
        assert small["binary_macs"] > 0 and small["fp_macs"] > 0, name  # a 1-bit stage 2
        assert "flatbuffer_bytes" not in small  # flatbuffer_size null: nothing converted
        assert (tmp_path / "runs" / name / "seed0" / "stage2" / "backbone").is_dir()
    assert rows["QuickNetSmall"]["arm64_ms_published"] == 16.8 and rows["reactnet_a_w025"]["arm64_ms_published"] is None
    table = (tmp_path / "students.md").read_text()
    assert table.count("\n| ") == len(rows) and "± " in table and "not a device's" in table
    assert (tmp_path / summary["figures"][0]).stat().st_size > 1000
    assert summary["evaluation"]["split"] == "test" and summary["code_version"]
    assert {run["code_version"] for run in summary["runs"]} == {summary["code_version"]}
    assert not set(rows["QuickNetSmall"]) & {"config_key", "code_version", "key"}  # facts, not bookkeeping
    # a rerun runs nothing and gives the same table
    again = students.run_students(cfg, tmp_path, figures=False)
    assert again["rows"] == json.loads(json.dumps(summary["rows"]))
