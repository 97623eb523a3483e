"""``python -m burn_tf.evaluate``: a user mistake is one ``error:`` line naming the path or
key, exit code 2, no traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_detect import SMALL_CNN_LEVELS, small_cnn

from burn_tf.evaluate.__main__ import main
from burn_tf.saved_backbone import save_backbone

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def backbone_dir(tmp_path_factory):
    from burn_tf.models.reactnet import ReActNetConfig, reactnet_a

    path = tmp_path_factory.mktemp("cli") / "backbone"
    # 4 blocks: most commands below read (rebuild) it before they refuse an argument.
    save_backbone(reactnet_a(ReActNetConfig(stage=2, input_size=32, width_multiplier=0.125, blocks=4)), path)
    return path


@pytest.fixture(scope="module")
def pyramid_cnn_dir(tmp_path_factory):
    """test_detect's small CNN (layers at strides 8/16/32), exported: detect reads the data
    only once the backbone has its pyramid levels, which 4 ReActNet-A blocks do not reach."""
    return save_backbone(small_cnn(), tmp_path_factory.mktemp("cli") / "cnn")


def one_error_line(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_missing_backbone_path_in_a_subprocess():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "burn_tf.evaluate", "knn", "--backbone", "/no/such"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "error: --backbone /no/such: no such file or directory"
    assert "Traceback" not in proc.stderr


def test_bad_set_key_value_and_task(capsys, backbone_dir, pyramid_cnn_dir):
    line = one_error_line(capsys, ["knn", "--backbone", str(backbone_dir), "--set", "kk=3"])
    assert "unknown --set key 'kk'" in line and "temperature" in line  # lists the valid keys
    line = one_error_line(capsys, ["knn", "--backbone", str(backbone_dir), "--set", "k"])
    assert "key=value" in line
    line = one_error_line(capsys, ["knn", "--backbone", str(backbone_dir), "--set", "k=[1"])
    assert "--set k" in line
    line = one_error_line(capsys, ["knn", "--backbone", str(backbone_dir), "--set", "k=0",
                                   "--set", "num_train=50", "--set", "num_test=20"])
    assert "k must be ≥ 1" in line
    line = one_error_line(capsys, ["knnn", "--backbone", str(backbone_dir)])
    assert "invalid choice: 'knnn'" in line
    line = one_error_line(capsys, ["detect", "--backbone", str(pyramid_cnn_dir), "--data", "voc/2007",
                                   "--set", f"pyramid_layers={SMALL_CNN_LEVELS}"])
    assert "data_dir" in line
    line = one_error_line(capsys, ["knn", "--backbone", str(backbone_dir), "--protocol", "seed"])
    assert line == "error: knn takes no --protocol"
    line = one_error_line(capsys, ["layerwise", "--backbone", str(backbone_dir), "--protocol", "paper"])
    assert "protocol must be one of ('fast', 'seed')" in line


def test_invalid_backbone_file(capsys, tmp_path):
    bad = tmp_path / "weights.keras"
    bad.write_text("not a model")
    line = one_error_line(capsys, ["knn", "--backbone", str(bad)])
    assert str(bad) in line
