import dataclasses
import json
import math
import shutil

import pytest

from burn_tf import compare
from burn_tf.config import ConfigError, apply_overrides, config_from_dict, read_config_values, resolve_config_path
from burn_tf.methods.registry import method_names


def _runnable(row: compare.TableRow) -> bool:
    """The row's method is registered and its base config shipped (other helpers' methods
    land separately)."""
    if row.method != compare.RANDOM and row.method not in method_names():
        return False
    try:
        resolve_config_path(row.base_config).stat()
    except OSError:
        return False
    return True


def _a_resnet18_teacher_run():
    """A self-trained teacher's config, for the tests that only build the rows' configs."""
    values = apply_overrides(read_config_values("s2bnn.yaml"), ["backbone.kind=resnet18", "backbone.input_size=32",
                                                                     "backbone.small_input_stem=true"])
    return config_from_dict(values)


def test_presets_rows_and_blocks_are_checked():
    small = compare.load_compare_config("compare.yaml", "small")
    full = compare.load_compare_config("compare.yaml", "full")
    grouping = compare.load_compare_config("compare.yaml", "grouping")
    assert small.seeds == 1 and small.run_eagerly and full.seeds >= 3
    assert grouping.blocks == ["cld_grouping"] and "cld_grouping" not in full.blocks
    # The rows the brief fixes, each with its method.
    methods = [r.method for r in full.table if r.block == "methods"]
    for name in ("supervised", "supervised_kl", "s2bnn", "byol", "moco_v2", "simclr_v2", "swav", "infomin", "npid",
                 "burn", compare.RANDOM):
        assert name in methods
    assert {r.config for r in full.table if r.method == "cld" and r.block == "methods"} == {"cld_npid.yaml",
                                                                                          "cld_moco.yaml"}
    assert len([r for r in full.table if r.block == "cld_grouping"]) == 8
    with pytest.raises(ConfigError, match="preset"):
        compare.load_compare_config("compare.yaml", "huge")
    with pytest.raises(ConfigError, match="blocks"):
        dataclasses.replace(full, blocks=["methods", "nope"])
    with pytest.raises(ConfigError, match="rows"):
        dataclasses.replace(full, rows=["no such row"])
    with pytest.raises(ConfigError, match="unique"):
        dataclasses.replace(full, table=[full.table[0], full.table[0]])
    with pytest.raises(ConfigError, match="teacher='nope' is not 'shipped' or one of teacher_runs"):
        dataclasses.replace(full, table=[compare.TableRow(name="x", method="s2bnn", teacher="nope")])
    # An unregistered method is refused when its row is selected, listing the registered ones.
    bad = dataclasses.replace(full, table=[compare.TableRow(name="x", method="nope")], rows=[])
    with pytest.raises(ConfigError, match=r"'nope' is not registered; registered: .*burn.*s2bnn"):
        compare.selected_rows(bad)
    # --rows selects by row name or by method, within the selected blocks.
    picked = compare.selected_rows(dataclasses.replace(full, rows=["s2bnn", "random init (floor)"], blocks=["methods"]))
    assert [r.name for r in picked] == ["S2-BNN", "random init (floor)"]


def test_command_line_errors_name_the_key(capsys):
    assert compare.main(["--preset", "small", "--rows", "no such row"]) == 2
    assert "error: rows: ['no such row'] name no row" in capsys.readouterr().err
    assert compare.main(["--preset", "small", "--blocks", "methods,nope"]) == 2
    assert "blocks: unknown ['nope']" in capsys.readouterr().err


def test_every_row_gets_the_shared_budget(tmp_path):
    cfg = compare.load_compare_config("compare.yaml", "full")
    teacher = _a_resnet18_teacher_run()
    configs = {r.name: compare.row_config(cfg, r, 1, tmp_path, teacher=teacher) for r in cfg.table if _runnable(r)}
    assert {"S2-BNN", "BURN (the demo's recipe)", "random init (floor)"} <= set(configs)
    for name, pcfg in configs.items():
        assert (pcfg.train.steps_per_epoch, pcfg.train.batch_size, pcfg.train.epochs) == (cfg.steps, cfg.batch_size, 1)
        assert (pcfg.train.seed, pcfg.data.limit) == (1, cfg.data_limit), name
        row = next(r for r in cfg.table if r.name == name)
        if not row.own_views:
            assert pcfg.views == [], name  # the shared augmentation
    # Rows differ where they should: a trained row never shares another's config.
    # (The grouping study repeats CLD's default, k-means at 128 groups, on purpose.)
    grouping = {r.name for r in cfg.table if r.block == "cld_grouping"}
    trained = [c.hash() for n, c in configs.items() if not n.startswith("random") and n not in grouping]
    assert len(set(trained)) == len(trained)
    # The self-trained teacher: the contract of the teacher helper.
    s2bnn_self = configs["S2-BNN (self-trained teacher)"]
    assert (s2bnn_self.teacher.kind, s2bnn_self.teacher.small_input_stem) == ("resnet18", True)
    assert s2bnn_self.teacher.weights == str(tmp_path / "runs" / "teacher_self" / "stage1" / "backbone")
    # Supervised KL-div distils the supervised FP network this command trains.
    if "supervised KL-div (labels)" in configs:
        kl = configs["supervised KL-div (labels)"].teacher
        assert kl.weights == str(tmp_path / "runs" / "teacher_supervised" / "stage1" / "backbone")
    # BURN's controls are the ablation's variants.
    assert configs["BURN L_FS only (self-trained teacher)"].method.lambda_end == 1.0
    frozen = configs["BURN frozen g_θ (self-trained teacher)"].method
    assert not frozen.train_teacher_classifier and frozen.target == "softmax"
    # A row that keeps its method's augmentation keeps it.
    values = read_config_values("s2bnn.yaml")
    values["views"] = [{"image_size": 32, "crop_scale": [0.5, 1.0]}]
    own = compare.TableRow(name="own", method="s2bnn", own_views=True)
    assert compare.row_config(cfg, own, 0, tmp_path, values).views[0].crop_scale[0] == 0.5
    shared = compare.TableRow(name="shared", method="s2bnn")
    assert compare.row_config(cfg, shared, 0, tmp_path, values).views == []


def _check_table(tmp_path, summary, rows):
    table = {r["row"]: r for r in summary["rows"]}
    assert list(table) == [r.name for r in rows]
    for row in rows:
        line = table[row.name]
        assert 0.0 <= line["knn_top1"] <= 1.0 and 0.0 <= line["linear_top1"] <= 1.0, row.name
        (run,) = [r for r in summary["runs"] if r["row"] == row.name]
        if row.method == compare.RANDOM:
            assert "loss_first" not in run and line["needs_labels"] == "–"
        else:  # it trained: the loss moved, every step is recorded
            assert math.isfinite(run["loss_first"]) and run["loss_last"] != run["loss_first"], row.name
            steps = json.loads((tmp_path / "steps" / f"{row.slug}_seed0.json").read_text())
            assert [s["step"] for s in steps] == list(range(1, 4)), row.name
            assert line["needs_labels"] in ("yes", "no") and line["train_seconds"] > 0
    markdown = (tmp_path / "compare.md").read_text()
    headers = sum(f"### {title}" in markdown for title in compare.BLOCKS.values())
    assert markdown.count("\n| ") == len(rows) + headers  # one row per run under each block's header
    assert "| method | kNN top-1 (%) | linear top-1 (%) | pretraining min | needs labels? | teacher |" in markdown
    assert "± " in markdown
    assert (tmp_path / "compare.png").stat().st_size > 1000
    assert json.loads((tmp_path / "compare.json").read_text())["rows"] == json.loads(json.dumps(summary["rows"]))
    return table


@pytest.mark.slow
def test_small_preset_trains_every_row_and_writes_the_table(tmp_path, fashion_mnist_available):
    cfg = compare.load_compare_config("compare.yaml", "small")
    # The small preset's rows whose methods are registered (all of them once every method
    # has landed; burn, s2bnn and the floor before).
    runnable = [r.name for r in cfg.table
                if r.block == "methods" and {r.name, r.method} & set(cfg.rows) and _runnable(r)]
    cfg = dataclasses.replace(cfg, blocks=["methods"], rows=runnable)
    rows = compare.selected_rows(cfg)
    assert {"S2-BNN", "BURN (the demo's recipe)", "random init (floor)"} <= {r.name for r in rows}
    summary = compare.run_comparison(cfg, tmp_path, log=lambda *a: None)
    table = _check_table(tmp_path, summary, rows)
    assert table["S2-BNN"]["teacher"].startswith("efficientnet_lite0")
    # A rerun skips the finished runs.
    log = (tmp_path / "runs.jsonl").read_text()
    again = compare.run_comparison(cfg, tmp_path, figures=False, log=lambda *a: pytest.fail(f"reran {a}"))
    assert (tmp_path / "runs.jsonl").read_text() == log
    assert json.dumps(again["rows"]) == json.dumps(summary["rows"])  # (NaN minutes of the floor compare equal)


@pytest.mark.slow
def test_self_trained_teacher_block(tmp_path, fashion_mnist_available):
    cfg = compare.load_compare_config("compare.yaml", "small")
    teacher = compare.teacher_config(cfg)
    # One student row is enough to check the chain (teacher trained, exported, loaded).
    cfg = dataclasses.replace(cfg, blocks=["self_teacher"], rows=["BURN (self-trained teacher)"])
    rows = compare.selected_rows(cfg)
    summary = compare.run_comparison(cfg, tmp_path, log=lambda *a: None)
    assert (tmp_path / "runs" / "teacher_self" / "stage1" / "backbone").is_dir()
    table = {r["row"]: r for r in summary["rows"]}
    teacher_row = cfg.teacher_run("self").row_name
    assert list(table)[-1] == teacher_row and len(table) == len(rows) + 1
    for row in rows:
        assert table[row.name]["teacher"] == f"resnet18 (trained here: {teacher.method.name})"
    (teacher_run,) = [r for r in summary["runs"] if r["row"] == teacher_row]
    assert teacher_run["loss_last"] != teacher_run["loss_first"]
    # The run keys do not depend on where --out is: a moved output directory (the student's
    # teacher path inside it changes) is still complete.
    moved = tmp_path.parent / f"{tmp_path.name}_moved"
    shutil.copytree(tmp_path, moved)
    again = compare.run_comparison(cfg, moved, figures=False, log=lambda *a: pytest.fail(f"reran {a}"))
    assert json.dumps(again["rows"]) == json.dumps(summary["rows"])
