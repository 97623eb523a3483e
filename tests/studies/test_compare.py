import dataclasses
import json
import math
import shutil

import pytest
import tensorflow as tf

from burn_tf.config import ConfigError, apply_overrides, config_from_dict, read_config_values, resolve_config_path
from burn_tf.methods.registry import method_names
from burn_tf.studies import compare, compare_config, compare_grid, compare_report, compare_rows, harness

# burn_tf's BURN recipe (demo.yaml) and its L_FS-only control; the paper's recipe (burn_paper.yaml).
BURN_TF = "BURN (burn_tf: Sinkhorn target, L_FS on features, one view)"
BURN_TF_FS_ONLY = "BURN (burn_tf) L_FS only"
PAPER = "BURN (paper recipe)"


def _slug(name: str) -> str:
    return compare_config.TableRow(name=name, method="burn").slug


def _runnable(row: compare_config.TableRow) -> bool:
    """The row's method is registered and its base config shipped (other helpers' methods
    land separately)."""
    if row.method != compare_config.RANDOM and row.method not in method_names():
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
    small = compare_config.load_compare_config("compare.yaml", "small")
    full = compare_config.load_compare_config("compare.yaml", "full")
    grouping = compare_config.load_compare_config("compare.yaml", "grouping")
    assert small.seeds == 1 and small.run_eagerly and full.seeds >= 3
    assert all(small.row_seeds(r) == 1 for r in small.table)  # capped, BURN's own 5 too
    assert grouping.blocks == ["cld_grouping"] and "cld_grouping" not in full.blocks
    # The budget: both stages at the demo's resolution, every row's rate from the grid, curves.
    assert full.stages == [1, 2] and "backbone.input_size=48" in full.overrides and len(full.lr_grid) >= 3
    assert full.curve_fractions == [0.125, 0.25, 0.5] and full.curve_seeds >= 1
    # The rows the issue names, each with its method; every row 3 seeds, 5 when the same-seeds
    # rule extends it (no row fixes its own count, so BURN and what it is compared with agree).
    methods = [r.method for r in full.table if r.block == "methods"]
    for name in ("supervised", "supervised_kl", "s2bnn", "byol", "moco_v2", "simclr_v2", "swav", "infomin", "npid",
                 "burn", compare_config.RANDOM):
        assert name in methods
    burn_rows = [r for r in full.table if r.method == "burn" and r.block in ("methods", "self_teacher")]
    # Two recipes (burn_tf's and the paper's) × (BURN, L_FS only, frozen g_θ) × two teachers;
    # every row 3 seeds, 5 when the same-seeds rule extends it (no row fixes its own count).
    assert len(burn_rows) == 12 and all(full.row_seeds(r) == 3 and full.row_seeds(r, unsure=True) == 5
                                        for r in burn_rows)
    assert sorted(r.base_config for r in burn_rows) == ["burn_paper.yaml"] * 6 + ["demo.yaml"] * 6
    assert not [r.name for r in full.table if r.seeds is not None]
    # The paper recipe's controls are compared with the paper recipe's BURN.
    assert {r.name: r.versus for r in burn_rows if r.versus} == {
        f"{PAPER} L_FS only": PAPER, f"{PAPER} frozen g_θ": PAPER,
        f"{PAPER} L_FS only (self-trained teacher)": "BURN (paper recipe, self-trained teacher)",
        f"{PAPER} frozen g_θ (self-trained teacher)": "BURN (paper recipe, self-trained teacher)"}
    # The whole evaluation: every training image as bank / probe data, every test image.
    assert (full.knn_bank, full.knn_queries, full.validation_images) == (None, None, 10000)
    # Every distillation row with both teachers; the self-trained one with 3 seeds.
    pairs, alone = compare_rows.distillation_pairs(full)
    assert alone == [] and ["S2-BNN", "S2-BNN (self-trained teacher)"] in pairs and len(pairs) == 7
    assert [f"{PAPER} frozen g_θ", f"{PAPER} frozen g_θ (self-trained teacher)"] in pairs
    assert full.teacher_run("self").seeds == 3 and [full.teacher_seed("self", s) for s in range(5)] == [0, 1, 2, 0, 1]
    assert (full.lr_grid_seeds, full.lr_grid_extensions, full.seeds_if_unsure) == (2, 3, 5)
    assert {r.block for r in full.table if r.reference} == {"methods", "self_teacher", "shared_views"}
    assert {r.config for r in full.table if r.method == "cld" and r.block == "methods"} == {"cld_npid.yaml",
                                                                                          "cld_moco.yaml"}
    assert len([r for r in full.table if r.block == "cld_grouping"]) == 8
    with pytest.raises(ConfigError, match="preset"):
        compare_config.load_compare_config("compare.yaml", "huge")
    with pytest.raises(ConfigError, match="blocks"):
        dataclasses.replace(full, blocks=["methods", "nope"])
    with pytest.raises(ConfigError, match="rows"):
        dataclasses.replace(full, rows=["no such row"])
    with pytest.raises(ConfigError, match="unique"):
        dataclasses.replace(full, table=[full.table[0], full.table[0]])
    with pytest.raises(ConfigError, match="teacher='nope' is not 'shipped' or one of teacher_runs"):
        dataclasses.replace(full, table=[compare_config.TableRow(name="x", method="s2bnn", teacher="nope")])
    with pytest.raises(ConfigError, match="lr_from='nope' must name a trained row"):
        dataclasses.replace(full, table=[compare_config.TableRow(name="x", method="byol", lr_from="nope")])
    with pytest.raises(ConfigError, match="table row 'x': data_limit must be >= 1"):
        compare_config.TableRow(name="x", method="byol", data_limit=0)
    with pytest.raises(ConfigError, match="lr_grid"):
        dataclasses.replace(full, lr_grid=[0.002, -1.0])
    with pytest.raises(ConfigError, match="curve_fractions"):
        dataclasses.replace(full, curve_fractions=[0.5, 1.0])
    # An unregistered method is refused when its row is selected, listing the registered ones.
    bad = dataclasses.replace(full, table=[compare_config.TableRow(name="x", method="nope")], rows=[])
    with pytest.raises(ConfigError, match=r"'nope' is not registered; registered: .*burn.*s2bnn"):
        compare_config.selected_rows(bad)
    # --rows selects by row name or by method, within the selected blocks.
    picked = compare_config.selected_rows(dataclasses.replace(full, rows=["s2bnn", "random init (floor)"],
                                                              blocks=["methods"]))
    assert [r.name for r in picked] == ["S2-BNN", "random init (floor)"]


def test_curve_schedule_spreads_fractions_over_the_stages():
    cfg = dataclasses.replace(compare_config.load_compare_config("compare.yaml", "full"), steps=234)
    # 468 steps in all: 1/8 → step 58 (58.5 rounded to even), the end of stage 1 is half.
    assert compare.curve_schedule(cfg, [1, 2]) == {1: {58: 0.125, 117: 0.25, 234: 0.5}, 2: {}}
    assert compare.curve_schedule(dataclasses.replace(cfg, curve_fractions=[0.75]), [1, 2]) == {1: {}, 2: {117: 0.75}}
    assert compare.curve_schedule(cfg, [1]) == {1: {29: 0.125, 58: 0.25, 117: 0.5}}


def test_paired_difference_is_a_t_interval_over_common_seeds():
    a = [{"seed": s, "knn_top1": v} for s, v in enumerate([0.60, 0.62, 0.65, 0.61, 0.70])]
    b = [{"seed": s, "knn_top1": v} for s, v in enumerate([0.50, 0.55, 0.52])]  # 3 seeds: pairs 0–2
    d = compare_report.paired_difference(a, b, "knn_top1")
    diffs = [0.10, 0.07, 0.13]
    mean, std = sum(diffs) / 3, (sum((x - sum(diffs) / 3) ** 2 for x in diffs) / 2) ** 0.5
    half = 4.302652729911275 * std / 3 ** 0.5  # t(0.975, 2)
    assert d["n"] == 3 and d["mean"] == pytest.approx(mean) and d["std"] == pytest.approx(std)
    assert (d["low"], d["high"]) == (pytest.approx(mean - half), pytest.approx(mean + half))
    assert compare_report.beats(d)  # 0.10 > 2 × 0.03
    one = compare_report.paired_difference(a[:1], b, "knn_top1")
    assert one["n"] == 1 and math.isnan(one["low"]) and not compare_report.beats(one)
    assert compare_report.paired_difference(a, [], "knn_top1")["n"] == 0


def test_a_rate_at_the_grid_edge_is_flagged_in_the_json_and_the_table():
    # The first full grid ended at 0.008 and nine of 13 rows chose it: the table must say so.
    best_rate = compare_grid.best_rate
    assert best_rate({0.002: 0.58, 0.004: 0.61, 0.008: 0.62}) == (0.008, True)
    assert best_rate({0.002: 0.64, 0.004: 0.65, 0.008: 0.63}) == (0.004, False)
    assert best_rate({0.002: 0.66, 0.004: 0.65, 0.008: 0.63}) == (0.002, True)
    assert best_rate({0.002: 0.65, 0.004: 0.65, 0.008: 0.60}) == (0.002, True)  # a tie: the smaller
    assert best_rate({0.004: 0.65}) == (0.004, False)  # one rate: no grid to be at the edge of
    cfg = compare_config.load_compare_config("compare.yaml", "full")
    choices = {"BURN (paper recipe)": {"learning_rate": 0.008, "grid": {"0.002": 0.58, "0.004": 0.61, "0.008": 0.62},
                        "at_grid_edge": True, "steps_per_stage": 58, "validation_images": 10000},
               "BYOL": {"learning_rate": 0.004, "grid": {"0.002": 0.56, "0.004": 0.63, "0.008": 0.59},
                        "at_grid_edge": False, "steps_per_stage": 58, "validation_images": 10000}}
    markdown = compare_report.format_markdown([], cfg, choices)
    assert "| BURN (paper recipe) | 58.00 | 61.00 | 62.00 | 0.008 (edge) |" in markdown
    assert "| BYOL | 56.00 | 63.00 | 59.00 | 0.004 |" in markdown
    assert "the row's best rate may lie beyond the grid" in markdown and "seeds 0–1 per rate" in markdown
    choices["BURN (paper recipe)"]["at_grid_edge"] = False
    assert "(edge)" not in compare_report.format_markdown([], cfg, choices)


def test_command_line_errors_name_the_key(capsys):
    assert compare.main(["--preset", "small", "--rows", "no such row"]) == 2
    assert "error: rows: ['no such row'] name no row" in capsys.readouterr().err
    assert compare.main(["--preset", "small", "--blocks", "methods,nope"]) == 2
    assert "blocks: unknown ['nope']" in capsys.readouterr().err


def test_every_row_gets_the_shared_budget(tmp_path):
    cfg = compare_config.load_compare_config("compare.yaml", "full")
    teacher = _a_resnet18_teacher_run()
    configs = {r.name: compare.row_config(cfg, r, 1, tmp_path, teacher=teacher, learning_rate=0.004)
               for r in cfg.table if _runnable(r)}
    assert {"S2-BNN", BURN_TF, PAPER, "random init (floor)"} <= set(configs)
    for name, pcfg in configs.items():
        assert (pcfg.train.steps_per_epoch, pcfg.train.batch_size, pcfg.train.epochs) == (cfg.steps, cfg.batch_size, 1)
        assert (pcfg.train.seed, pcfg.data.limit, pcfg.backbone.input_size) == (1, cfg.data_limit, 48), name
        row = next(r for r in cfg.table if r.name == name)
        own = read_config_values(row.base_config).get("views", [])
        if row.shared_views:
            assert pcfg.views == [], name  # the shared augmentation
        else:  # the method's own augmentation
            assert len(pcfg.views) == len(own), name
        # Every view at the size its method feeds the 48 px student (a YAML's fixed
        # image_size: 32 once stopped the CLD rows at their first step, hours into the run).
        sizes = pcfg.method_class.view_sizes_for(pcfg.method, 48)
        assert [v.image_size for v in pcfg.view_configs()] == sizes, name
        if row.trained:
            assert pcfg.optimizer.learning_rate == 0.004, name
    # Rows differ where they should: a trained row never shares another's config.
    # (The grouping study repeats CLD's default on purpose; the shared-views block repeats a
    # method whose own views are BURN's.)
    grouping = {r.name for r in cfg.table if r.block == "cld_grouping"}
    trained = [c.hash() for n, c in configs.items()
               if not n.startswith("random") and n not in grouping and n != "BURN (burn_tf, shared views)"]
    assert len(set(trained)) == len(trained)
    # S2-BNN distils both teachers: the shipped ImageNet-supervised one and the self-trained
    # MoCo v2 teacher — seed 1 its seed 1 (i mod 3): the contract of the teacher rows.
    assert configs["S2-BNN"].teacher.weights == "imagenet"
    s2bnn = configs["S2-BNN (self-trained teacher)"]
    assert (s2bnn.teacher.kind, s2bnn.teacher.small_input_stem) == ("resnet18", True)
    assert s2bnn.teacher.weights == str(tmp_path / "runs" / "teacher_self_seed1" / "stage1" / "backbone")
    (s2bnn_row,) = [r for r in cfg.table if r.name == "S2-BNN (self-trained teacher)"]
    seed4 = compare.row_config(cfg, s2bnn_row, 4, tmp_path, teacher=teacher)
    assert seed4.teacher.weights == str(tmp_path / "runs" / "teacher_self_seed1" / "stage1" / "backbone")
    # The labels column says where a teacher was trained with ImageNet's labels.
    (burn_row,) = [r for r in cfg.table if r.name == BURN_TF]
    assert compare_rows.describe(burn_row, configs[BURN_TF], None)["needs_labels"] == "ImageNet labels (teacher)"
    assert compare_rows.describe(s2bnn_row, s2bnn, teacher)["needs_labels"] == "no"
    assert compare_rows.describe(burn_row, configs["BYOL"], None)["needs_labels"] == "no"
    # Supervised KL-div distils the supervised FP network this command trains.
    if "supervised KL-div (labels)" in configs:
        kl = configs["supervised KL-div (labels)"].teacher
        assert kl.weights == str(tmp_path / "runs" / "teacher_supervised_seed0" / "stage1" / "backbone")
    # BURN's controls are the ablation's variants.
    assert configs["BURN (burn_tf) L_FS only (self-trained teacher)"].method.lambda_end == 1.0
    frozen = configs["BURN (burn_tf) frozen g_θ (self-trained teacher)"].method
    assert not frozen.train_teacher_classifier and frozen.target == "softmax"
    # The paper's recipe beside burn_tf's variant: the released code's computation, no target
    # trick; its controls are the same variants, its frozen g_θ the released one (batch BN).
    for name in (PAPER, f"{PAPER} L_FS only", f"{PAPER} frozen g_θ", "BURN (paper recipe, self-trained teacher)",
                 f"{PAPER} L_FS only (self-trained teacher)", f"{PAPER} frozen g_θ (self-trained teacher)"):
        paper = configs[name].method
        assert (paper.target, paper.similarity_on, paper.feature_similarity, paper.symmetric,
                paper.head_width, paper.student_pre_fc, paper.head_init) == (
            "softmax", "head", "normalized_mse", True, 2000, True, "released"), name
        assert paper.lambda_end == (1.0 if "L_FS" in name else 0.7), name
        assert paper.train_teacher_classifier == ("frozen" not in name), name
        assert paper.teacher_classifier_batch_stats, name
    burn_tf = configs[BURN_TF].method
    assert (burn_tf.target, burn_tf.similarity_on, burn_tf.symmetric) == ("sinkhorn", "features", False)
    # A row's own views, data limit and fixed rate win over the budget's.
    values = read_config_values("byol.yaml")
    mine = compare_config.TableRow(name="mine", method="byol", views=[{"crop_scale": [0.5, 1.0]}], data_limit=1234,
                                   learning_rate=0.001)
    pcfg = compare.row_config(cfg, mine, 0, tmp_path, values, learning_rate=0.004)
    assert (len(pcfg.views), pcfg.views[0].crop_scale[0], pcfg.data.limit) == (1, 0.5, 1234)
    assert pcfg.optimizer.learning_rate == 0.001
    shared = compare_config.TableRow(name="shared", method="byol", shared_views=True)
    assert compare.row_config(cfg, shared, 0, tmp_path, values).views == []
    # A grid run holds the validation images out of pretraining and runs a fraction of the steps.
    grid = compare_grid.grid_config(cfg, mine, tmp_path, values, None, 0.008, 60000)
    assert (grid.data.limit, grid.train.steps_per_epoch, grid.train.seed) == (1234, round(234 * 0.25), 0)
    grid = compare_grid.grid_config(cfg, shared, tmp_path, values, None, 0.008, 60000, seed=1)
    assert (grid.data.limit, grid.optimizer.learning_rate, grid.train.seed) == (50000, 0.008, 1)
    # ... and scales its step-counted settings with its length (SwAV froze its prototypes for
    # 50 of a grid run's 58 steps and never reached the queue that starts at step 100).
    (swav,) = [r for r in cfg.table if r.method == "swav"]
    full_swav, grid_swav = configs[swav.name].method, compare_grid.grid_config(
        cfg, swav, tmp_path, read_config_values(swav.base_config), None, 0.008, 60000).method
    assert (full_swav.freeze_prototypes_steps, full_swav.queue_start_step) == (50, 100)
    assert (grid_swav.freeze_prototypes_steps, grid_swav.queue_start_step) == (round(50 * 58 / 234),
                                                                                round(100 * 58 / 234))


def _check_table(tmp_path, summary, rows):
    table = {r["row"]: r for r in summary["rows"]}
    # The rows in table order, then a row for each teacher the command trained for them.
    teachers = [t.row_name for t in compare_config.load_compare_config("compare.yaml", "small").teacher_runs]
    assert [n for n in table if n not in teachers] == [r.name for r in rows]
    assert set(table) - {r.name for r in rows} <= set(teachers)
    for row in rows:
        line = table[row.name]
        assert 0.0 <= line["knn_top1"] <= 1.0 and 0.0 <= line["linear_top1"] <= 1.0, row.name
        (run,) = [r for r in summary["runs"] if r["row"] == row.name]
        if row.method == compare_config.RANDOM:
            assert "loss_first" not in run and line["needs_labels"] == "–"
        else:  # it trained: the loss moved, every step is recorded
            assert math.isfinite(run["loss_first"]) and run["loss_last"] != run["loss_first"], row.name
            steps = json.loads((tmp_path / "steps" / f"{row.slug}_seed0.json").read_text())
            assert [s["step"] for s in steps] == list(range(1, summary["config"]["steps"] + 1)), row.name
            assert line["needs_labels"] in ("yes", "no", "ImageNet labels (teacher)") and line["train_seconds"] > 0
    markdown = (tmp_path / "compare.md").read_text()
    headers = sum(f"### {title}" in markdown for title in compare_config.BLOCKS.values())
    grid = summary["learning_rates"]  # its table: a header line and a line per row that chose its rate
    # One line per row under each block's header.
    assert markdown.count("\n| ") == len(table) + headers + (1 + len(grid) if grid else 0)
    assert "| method | seeds | kNN top-1 (%) | linear top-1 (%) | Δ kNN vs floor, pp [95 % CI] |" in markdown
    assert "± " in markdown
    assert (tmp_path / "compare.png").stat().st_size > 1000
    assert json.loads((tmp_path / "compare.json").read_text())["rows"] == json.loads(json.dumps(summary["rows"]))
    return table


def _own_rate(cfg, row, out) -> float:
    """The row's base config's own Adam rate (what it trains with when no grid runs)."""
    return compare.row_config(cfg, row, 0, out).optimizer.learning_rate


@pytest.fixture(scope="module")
def small_comparison(tmp_path_factory, fashion_mnist_available):
    """The small preset run ONCE for the slow tests below (each used to run its own
    comparison; the teacher, BURN and the process-level setup were trained/built three times):
    both blocks — every runnable row of ``methods``, BURN's L_FS-only control and BURN
    distilling the self-trained teacher — a learning curve (kNN at half the budget) and a
    two-point learning-rate grid (half the steps) for BURN, which its control takes
    (lr_from). The other trained rows keep their config's own rate as a fixed rate, which is
    the rate they train with without a grid, so the grid runs BURN's two points only."""
    out = tmp_path_factory.mktemp("small_comparison")
    tf.keras.backend.clear_session()  # as conftest's per-test fixture, which runs after this one
    tf.keras.utils.set_random_seed(0)
    cfg = compare_config.load_compare_config("compare.yaml", "small")
    # The small preset's rows whose methods are registered (all of them once every method
    # has landed; burn, s2bnn and the floor before).
    runnable = [r.name for r in cfg.table
                if r.block == "methods" and {r.name, r.method} & set(cfg.rows) and _runnable(r)]
    names = [*runnable, BURN_TF_FS_ONLY, "BURN (burn_tf, self-trained teacher)"]
    table = [r if r.name in (BURN_TF, BURN_TF_FS_ONLY) or r.name not in names or not r.trained
             else dataclasses.replace(r, learning_rate=_own_rate(cfg, r, out)) for r in cfg.table]
    cfg = dataclasses.replace(cfg, blocks=["methods", "self_teacher"], rows=names, table=table,
                              lr_grid=[0.001, 0.004], lr_fraction=0.5, lr_grid_extensions=0)
    rows = compare_config.selected_rows(cfg)
    summary = compare.run_comparison(cfg, out, log=lambda *a: None)
    return cfg, rows, out, summary


@pytest.mark.slow
def test_small_preset_trains_every_row_and_writes_the_table(small_comparison):
    cfg, rows, out, summary = small_comparison
    assert {"S2-BNN", BURN_TF, "random init (floor)", BURN_TF_FS_ONLY, "BURN (burn_tf, self-trained teacher)"} <= {
        r.name for r in rows}
    table = _check_table(out, summary, rows)
    assert table["S2-BNN"]["teacher"] == table[BURN_TF]["teacher"] == "efficientnet_lite0 (imagenet)"
    assert table[BURN_TF]["needs_labels"] == "ImageNet labels (teacher)"
    # One code version, named in the JSON; the table's numbers from the test split, all of it
    # that the preset asks for.
    assert {r["code_version"] for r in summary["runs"]} == {summary["code_version"]} == {harness.code_version()}
    assert summary["code_versions_used"] == [summary["code_version"]] and summary["other_code_versions"] == {}
    assert summary["splits"]["rows"] == {"split": "test", "bank_images": "train[0:300]", "query_images": "test[0:100]"}
    assert {r["split"] for r in summary["runs"]} == {"test"}
    assert all(len(r["weights_sha256"]) == 64 for r in summary["runs"] if r["method"] != compare_config.RANDOM)
    # Every trained row is compared with the floor and with BURN, paired by seed.
    for name in ("S2-BNN", "MoCo v2", BURN_TF_FS_ONLY):
        if name in table:
            assert table[name]["vs_floor"]["row"] == "random init (floor)"
            assert table[name]["vs_reference"]["row"] == BURN_TF
            assert table[name]["vs_floor"]["knn_top1"]["n"] == 1
    # The learning curve: kNN at half the budget (stage 1's step 1 of 2) and at the end.
    (burn_run,) = [r for r in summary["runs"] if r["row"] == BURN_TF]
    assert cfg.steps == 2 and [(p["fraction"], p["step"]) for p in burn_run["curve"]] == [(0.5, 1), (1.0, 2)]
    assert burn_run["curve"][-1]["knn_top1"] == burn_run["knn_top1"]
    assert (out / "compare_curves.png").stat().st_size > 1000


@pytest.mark.slow
def test_self_trained_teacher_block(small_comparison):
    cfg, rows, out, summary = small_comparison
    teacher = compare.teacher_config(cfg)
    assert (out / "runs" / "teacher_self_seed0" / "stage1" / "backbone").is_dir()
    assert not (out / "runs" / "teacher_self_seed1").exists()  # one student seed: teacher seed 0 only
    table = {r["row"]: r for r in summary["rows"]}
    teacher_row = cfg.teacher_run("self").row_name
    # Trained once for both of its students (S2-BNN and BURN's self-teacher row), listed last.
    assert list(table)[-1] == teacher_row and len(table) == len(rows) + 1
    assert [r["row"] for r in summary["runs"]].count(teacher_row) == 1
    students = [r for r in rows if r.block == "self_teacher"]
    assert [r.name for r in students] == ["BURN (burn_tf, self-trained teacher)"]
    for row in students:
        assert table[row.name]["teacher"] == f"resnet18 (trained here: {teacher.method.name}, 3 seeds paired i mod 3)"
        # The self-teacher block is compared with its own reference row, not the methods' BURN.
        assert "vs_reference" not in table[row.name] and table[row.name]["vs_floor"]["knn_top1"]["n"] == 1
    (teacher_run,) = [r for r in summary["runs"] if r["row"] == teacher_row]
    assert teacher_run["loss_last"] != teacher_run["loss_first"]


@pytest.mark.slow
def test_a_rerun_even_from_a_moved_directory_skips_every_finished_run(small_comparison, tmp_path):
    cfg, rows, out, summary = small_comparison
    # The run keys do not depend on where --out is: a moved output directory (the
    # self-teacher students' teacher path inside it changes) is still complete, and nothing
    # is appended to its run log.
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    again = compare.run_comparison(cfg, moved, figures=False, log=lambda *a: pytest.fail(f"reran {a}"))
    assert (moved / "runs.jsonl").read_text() == (out / "runs.jsonl").read_text()
    assert json.dumps(again["rows"]) == json.dumps(summary["rows"])  # (NaN minutes of the floor compare equal)
    assert again["learning_rates"] == summary["learning_rates"]


@pytest.mark.slow
def test_learning_rates_are_chosen_on_held_out_training_images(small_comparison):
    cfg, rows, out, summary = small_comparison
    choice = summary["learning_rates"][BURN_TF]
    assert set(summary["learning_rates"]) == {BURN_TF}  # the control takes BURN's (lr_from); the others are fixed
    assert set(choice["grid"]) == {"0.001", "0.004"} and choice["steps_per_stage"] == 1
    assert choice["split"] == "validation" and choice["extended"] == [] and choice["at_grid_edge"]
    assert choice["learning_rate"] == max((0.001, 0.004), key=lambda r: choice["grid"][f"{r:g}"])
    grid_runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()
                 if json.loads(line)["block"] == compare_grid.LR_GRID_BLOCK]
    assert sorted(r["learning_rate"] for r in grid_runs) == [0.001, 0.004]
    assert {r["split"] for r in grid_runs} == {"validation"}
    # The grid never saw its queries: it pretrained on the images before the held-out ones.
    grid_yaml = (out / "runs" / compare_grid.LR_GRID_BLOCK / f"{_slug(BURN_TF)}_lr0.004_seed0" / "config.yaml"
                 ).read_text()
    assert f"limit: {min(cfg.data_limit, 60000 - cfg.validation_images)}" in grid_yaml
    # Both rows trained with the chosen rate; the table says which.
    for row in (_slug(BURN_TF), _slug(BURN_TF_FS_ONLY)):
        run_yaml = (out / "runs" / row / "seed0" / "config.yaml").read_text()
        assert f"learning_rate: {choice['learning_rate']}" in run_yaml
    rates = {r["row"]: r["learning_rate"] for r in summary["rows"]}
    assert (rates[BURN_TF], rates[BURN_TF_FS_ONLY]) == (choice["learning_rate"], choice["learning_rate"])
    # A row with a fixed rate trains with it (here its config's own).
    (s2bnn,) = [r for r in rows if r.name == "S2-BNN"]
    assert rates["S2-BNN"] == s2bnn.learning_rate
    assert "### Learning-rate grid" in (out / "compare.md").read_text()


def test_every_learning_curve_of_a_panel_has_its_own_style():
    """The full comparison's methods block has 14 rows with a curve: tab10's ten colours alone
    repeat (supervised and S2-BNN were drawn alike), so the next ten are dashed; the legend
    sits beside the panel, off the lines."""
    cfg = compare_config.load_compare_config("compare.yaml", "full")
    rows = compare_config.selected_rows(cfg)
    results = [{"row": row.name, "seed": 0, "method": row.method, "knn_top1": 0.45}
               | ({} if row.method == compare_config.RANDOM else
                  {"curve": [{"fraction": f, "knn_top1": 0.5 + 0.01 * i + 0.1 * f} for f in (0.125, 0.25, 0.5, 1.0)]})
               for i, row in enumerate(rows)]
    fig = compare_report.curve_figure(results, rows)
    try:
        per_panel = [[line for line in ax.get_lines() if line.get_label() != "random init (seed 0)"]
                     for ax in fig.axes]
        assert [len(lines) for lines in per_panel] == [
            sum(row.block == block and row.method != compare_config.RANDOM for row in rows)
            for block in compare_config.BLOCKS if any(row.block == block for row in rows)]
        assert max(len(lines) for lines in per_panel) > 10  # the case that needs the second style
        for ax, lines in zip(fig.axes, per_panel):
            styles = [(line.get_color(), line.get_linestyle()) for line in lines]
            assert len(set(styles)) == len(styles), styles
            fig.canvas.draw()
            assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1  # beside, not over
    finally:
        compare_report._pyplot().close(fig)


def test_a_rate_at_an_edge_widens_the_grid_until_it_is_interior():
    # A row whose best rate is 0.064: the grid {0.002 … 0.016} ends at 0.016, so it is widened
    # by 0.032, then 0.064, then 0.128, where the best is interior.
    def score(rate):
        return -abs(math.log2(rate / 0.064))

    scores, added, complete = compare_grid.search_grid([0.002, 0.004, 0.008, 0.016], score, extensions=3)
    assert complete and added == [0.032, 0.064, 0.128]
    assert compare_grid.best_rate(scores) == (0.064, False)
    # Out of extensions: still at the edge, and the choice says so.
    scores, added, _ = compare_grid.search_grid([0.002, 0.004, 0.008, 0.016], score, extensions=1)
    assert added == [0.032] and compare_grid.best_rate(scores) == (0.032, True)
    # At the small edge it widens downwards; a rate not logged yet stops the search, incomplete.
    scores, added, complete = compare_grid.search_grid([0.004, 0.008], lambda r: -r, extensions=2)
    assert added == [0.002, 0.001]
    assert compare_grid.search_grid([0.004, 0.008], lambda r: None if r < 0.004 else -r, 2)[2] is False


def test_rows_whose_interval_vs_burn_spans_zero_get_five_seeds():
    cfg = compare_config.load_compare_config("compare.yaml", "full")
    fs_only, frozen, paper_fs = BURN_TF_FS_ONLY, "BURN (burn_tf) frozen g_θ", f"{PAPER} L_FS only"
    names = (BURN_TF, fs_only, frozen, "BYOL", "random init (floor)", PAPER, paper_fs)
    rows = [r for r in compare_config.selected_rows(dataclasses.replace(cfg, blocks=["methods"])) if r.name in names]

    def runs(name, values):
        return [{"row": name, "seed": s, "method": "burn", "knn_top1": v} for s, v in enumerate(values)]

    results = (runs(BURN_TF, [0.70, 0.72, 0.71]) + runs(fs_only, [0.69, 0.73, 0.70])  # spans zero
               + runs(frozen, [0.60, 0.61, 0.62]) + runs("BYOL", [0.80, 0.82, 0.81])
               + runs("random init (floor)", [0.4, 0.4, 0.4])
               # The paper recipe's control is paired with the paper recipe's BURN (versus),
               # against which it spans zero (against burn_tf's BURN it would not).
               + runs(PAPER, [0.50, 0.55, 0.52]) + runs(paper_fs, [0.52, 0.53, 0.53]))
    unsure = compare.unsure_rows(cfg, rows, results)
    assert unsure == {BURN_TF, fs_only, PAPER, paper_fs}
    # Decided on seeds 0–2 only: the added seeds do not change the decision on a rerun.
    assert compare.unsure_rows(cfg, rows, results + runs(fs_only, [0.5] * 5)[3:]) == unsure
    plan = compare.seed_plan(cfg, rows, unsure)
    assert plan == {BURN_TF: 5, fs_only: 5, frozen: 3, "BYOL": 3, "random init (floor)": 5, PAPER: 5, paper_fs: 5}
    assert compare.unsure_rows(dataclasses.replace(cfg, seeds_if_unsure=None), rows, results) == set()
    # The table pairs the paper recipe's control with the paper recipe's BURN too.
    info = {name: {} for name in names}
    table = {r["row"]: r for r in compare_report.aggregate(results, rows, info)}
    assert table[paper_fs]["vs_reference"]["row"] == PAPER and table[fs_only]["vs_reference"]["row"] == BURN_TF


def test_each_teacher_trains_the_seeds_its_students_pair_with():
    full = compare_config.load_compare_config("compare.yaml", "full")
    assert compare.needed_teacher_seeds(full, compare_config.selected_rows(full)) == {"self": [0, 1, 2],
                                                                                     "supervised": [0]}
    small = compare_config.load_compare_config("compare.yaml", "small")  # one student seed: teacher seed 0
    only = dataclasses.replace(small, rows=["S2-BNN (self-trained teacher)"])
    assert compare.needed_teacher_seeds(only, compare_config.selected_rows(only)) == {"self": [0]}
    two = dataclasses.replace(only, max_seeds=2, seeds=2)
    assert compare.needed_teacher_seeds(two, compare_config.selected_rows(two)) == {"self": [0, 1]}
    assert harness.code_version()  # (the run keys' code version exists in this process)
