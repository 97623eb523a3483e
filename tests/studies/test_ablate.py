import dataclasses
import json
import math

import pytest

from burn_tf.config import ConfigError
from burn_tf.data import load_fashion_mnist_arrays
from burn_tf.studies import ablate, harness


def test_presets_and_variants_are_checked():
    assert sorted(ablate.RUN_ORDER) == sorted(ablate.VARIANTS)
    small = ablate.load_ablation_config("ablate.yaml", "small")
    full = ablate.load_ablation_config("ablate.yaml", "full")
    assert small.seeds == 1 and small.run_eagerly and full.seeds >= 3
    with pytest.raises(ConfigError, match="preset"):
        ablate.load_ablation_config("ablate.yaml", "huge")
    with pytest.raises(ConfigError, match="unknown"):
        ablate.AblationConfig(variants=["burn", "nope"])
    assert ablate.main(["--preset", "small", "--variants", "burn,nope"]) == 2  # the command line says so too
    # a stage-2 variant brings the stage-1 run it continues
    cfg = ablate.AblationConfig(variants=["burn_s2"])
    assert [v.name for v in ablate.selected_variants(cfg)] == ["burn", "burn_s2"]
    # every variant's overrides make a valid pretraining config that differs from the others
    hashes = {v.name: ablate.pretrain_config(full, v, 0).hash() for v in ablate.VARIANTS.values() if v.stage == 1}
    assert len(set(hashes.values())) == len(hashes) - 1  # "random" shares burn's config (never trained)


@pytest.mark.slow
def test_small_preset_trains_every_variant_and_writes_the_table(tmp_path, fashion_mnist_available):
    cfg = ablate.load_ablation_config("ablate.yaml", "small")
    summary = ablate.run_ablation(cfg, tmp_path)
    rows = {r["variant"]: r for r in summary["rows"]}
    variants = ablate.selected_variants(cfg)
    assert list(rows) == [v.name for v in variants] and len(rows) >= 5
    for v in variants:
        name, row = v.name, rows[v.name]
        assert 0.0 <= row["knn_top1"] <= 1.0 and 0.0 <= row["linear_top1"] <= 1.0, name
        if v.train:
            (run,) = [r for r in summary["runs"] if r["variant"] == name]
            assert math.isfinite(run["loss_first"]) and run["loss_last"] != run["loss_first"], name  # it trained
            assert row["target_alive"] in ("0/1", "1/1")
            steps = json.loads((tmp_path / "steps" / f"{name}_seed0.json").read_text())
            assert [s["step"] for s in steps] == list(range(1, cfg.steps + 1))
    # Scored on the validation split only: the ablation's choices never read the test split.
    assert summary["evaluation"]["split"] == "validation" and {r["split"] for r in summary["runs"]} == {"validation"}
    assert summary["code_version"] == harness.code_version()
    table = (tmp_path / "ablation.md").read_text()
    assert table.count("\n| ") == len(variants)  # one row per variant under the header
    assert "± " in table and "62.29" in table  # mean ± std, the paper's BURN row
    for png in summary["figures"]:
        assert (tmp_path / png).stat().st_size > 1000
    assert json.loads((tmp_path / "ablation.json").read_text())["rows"] == json.loads(json.dumps(summary["rows"]))


def test_choices_are_scored_on_held_out_training_images_and_the_table_on_all_of_test(fashion_mnist_available):
    cfg = ablate.AblationConfig()
    assert (cfg.knn_bank, cfg.knn_queries) == (None, None)
    test = harness.EvalData(cfg)
    assert (len(test.x_bank), len(test.x_query), test.split) == (60000, 10000, "test")
    validation = harness.EvalData(cfg, validation=10000)
    assert (len(validation.x_bank), len(validation.x_query)) == (50000, 10000)
    x_train, _ = load_fashion_mnist_arrays("train")
    assert (validation.x_query == x_train[50000:]).all() and (validation.x_bank == x_train[:50000]).all()
    assert validation.describe() == {"split": "validation", "bank_images": "train[0:50000]",
                                     "query_images": "train[50000:60000]"}
    # A run scored on validation may not pretrain on its queries; the ablation's runs do not.
    full = ablate.load_ablation_config("ablate.yaml", "full")
    burn = ablate.pretrain_config(full, ablate.VARIANTS["burn"], 0)
    validation.check_held_out(burn, "variant burn")
    everything = ablate.pretrain_config(dataclasses.replace(full, data_limit=None), ablate.VARIANTS["burn"], 0)
    with pytest.raises(ConfigError, match=r"variant burn: data.limit=None would pretrain on the held-out"):
        validation.check_held_out(everything, "variant burn")
    test.check_held_out(everything, "variant burn")  # the test split is never trained on
