import json
import re

import numpy as np
import pytest
import tensorflow as tf

from burn_tf import summary
from burn_tf.models.reactnet import ReActNetConfig, reactnet_a
from burn_tf.saved_backbone import save_backbone


def _last_json_line(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def tiny_stage2():
    """The 13-block stage-2 ReActNet-A of width 0.125 at 32 px (built once: counting does not
    change it)."""
    return reactnet_a(ReActNetConfig(stage=2, input_size=32, width_multiplier=0.125))


def test_reference_counts_at_224_stage2(capsys):
    assert summary.main(["--stage", "2", "--input-size", "224", "--json"]) == 0
    out = capsys.readouterr().out
    stats = _last_json_line(out)
    # liuzechun/ReActNet mobilenet/2_step2/reactnet.py with a 1000-way head.
    assert stats["trainable_params"] == 29_343_592
    assert stats["binary_macs"] == 4_816_896_000
    assert stats["fp_macs"] == 11_862_016  # stem 10,838,016 + head 1,024,000
    assert stats["ops"] == 4_816_896_000 / 64 + 11_862_016  # 0.87e8
    assert round(stats["ops"] / 1e8, 2) == 0.87
    assert "Ratio of MACs that are binarized" in out  # lq.models.summary was printed


def test_stage1_has_no_bops_but_binary_activations():
    model = reactnet_a(ReActNetConfig(stage=1, input_size=32, width_multiplier=0.125, blocks=4),
                       include_top=True, num_classes=10)
    stats = summary.model_stats(model)
    assert stats["binary_macs"] == 0
    assert stats["binary_activation_macs"] > 0
    assert stats["ops"] == stats["fp_macs"] > stats["binary_activation_macs"]


def test_stage2_tiny_counts_are_consistent(tiny_stage2):
    stats = summary.model_stats(tiny_stage2)
    assert stats["binary_macs"] == stats["binary_activation_macs"] > 0
    assert stats["macs_by_precision"]["1"] == stats["binary_macs"]
    assert stats["total_macs"] == stats["binary_macs"] + stats["fp_macs"]
    assert stats["output_shape"] == [128]
    assert stats["reactnet"]["stage"] == 2


def test_backbone_dir_and_plain_keras_file(tmp_path, capsys):
    # 4 blocks: the command rebuilds the export from its metadata, one build per block.
    model = reactnet_a(ReActNetConfig(stage=2, input_size=32, width_multiplier=0.125, blocks=4))
    backbone = save_backbone(model, tmp_path / "backbone")
    assert summary.main(["--backbone", str(backbone), "--json"]) == 0
    stats = _last_json_line(capsys.readouterr().out)
    assert stats["binary_macs"] == summary.model_stats(model)["binary_macs"]

    plain = tf.keras.Sequential([tf.keras.Input((8, 8, 3)), tf.keras.layers.Conv2D(4, 3),
                                 tf.keras.layers.GlobalAveragePooling2D()])
    plain.save(tmp_path / "plain.keras")
    assert summary.main(["--backbone", str(tmp_path / "plain.keras"), "--json"]) == 0
    stats = _last_json_line(capsys.readouterr().out)
    assert stats["binary_macs"] == 0 and stats["fp_macs"] == 6 * 6 * 3 * 3 * 3 * 4
    assert stats["trainable_params"] == int(np.sum([np.prod(w.shape) for w in plain.trainable_weights]))


def test_bad_backbone_path(tmp_path, capsys):
    assert summary.main(["--backbone", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_mistakes_are_one_error_line(tmp_path, capsys):
    assert summary.main(["--backbone", str(tmp_path / "no_such")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "no_such" in err and len(err.splitlines()) == 1
    garbage = tmp_path / "model.keras"
    garbage.write_text("not a zip archive")
    assert summary.main(["--backbone", str(garbage)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(garbage) in err and len(err.splitlines()) == 1


def test_a_larq_zoo_student_is_named_on_the_command_line(capsys):
    assert summary.main(["--kind", "larq_zoo", "--name", "QuickNet", "--input-size", "32", "--json"]) == 0
    out = capsys.readouterr().out
    stats = _last_json_line(out)
    assert "quant_conv2d" in out and stats["output_shape"] == [512]
    assert stats["larq_zoo"] == {"name": "QuickNet", "input_size": 32, "stage": 2}
    assert stats["binary_macs"] == stats["binary_activation_macs"] > 0
    for argv, words in ((["--kind", "larq_zoo", "--name", "QuickNet", "--input-size", "28"], "at least 29 px"),
                        (["--kind", "larq_zoo"], "needs both --kind larq_zoo and --name"),
                        (["--name", "QuickNet"], "needs both --kind larq_zoo and --name")):
        assert summary.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and words in err and len(err.splitlines()) == 1


def test_readable_count_writes_counts_as_larqs_summary_does(tiny_stage2):
    assert [summary.readable_count(n) for n in (0, 999, 999_000, 999_999, 1_234_567, 4_816_896_000)] == [
        "0", "999", "999 k", "1 M", "1.23 M", "4.82 B"]
    # The totals line prints larq's own table's figures for the same model.
    table = summary.summary_text(tiny_stage2)
    totals = summary.summary_totals(tiny_stage2)
    for label, figure in (("Total params", "450 k"), ("Number of MACs", "1.56 M"),
                          ("Float-32 Equivalent", "1.72 MiB")):
        assert re.search(rf"{label} +{re.escape(figure)} ", table) and figure in totals
