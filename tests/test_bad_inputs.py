"""Bad input against a finished run: each gets one clear ``error:`` line (exit code 2) that
names the file, and nothing already on disk changes — the run directory is hashed before and
after, and ``--overwrite`` is passed, the flag that could lose the most."""

import hashlib
import io
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from test_pretrain import TINY as PRETRAIN_TINY

from burn_tf.config import load_config
from burn_tf.convert.pretrained_teacher import build_teacher
from burn_tf.evaluate.__main__ import main as evaluate_main
from burn_tf.pretrain import main as pretrain_main
from burn_tf.pretrain import pretrain_stage

# test_pretrain's tiny run, one epoch of 2 steps, its views cropped and flipped only: every
# refusal here comes after the training stream is built, and none is about augmentation.
TINY = [*PRETRAIN_TINY, "train.steps_per_epoch=2", "train.epochs=1", "data.limit=32", "data.shuffle_buffer=32",
        "views=[{jitter_prob: 0, grayscale_prob: 0, blur_prob: 0, interpolation: bilinear}]"]


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(root).rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    if not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists():
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    run_dir = tmp_path_factory.mktemp("finished")
    pretrain_stage(load_config("demo", TINY), 1, run_dir)
    return run_dir


def _cli(capsys, main, args):
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error:") and len(err.splitlines()) == 1, err
    return err


def _pretrain(capsys, run_dir, *overrides, stage="1"):
    args = ["--config", "demo", "--run-dir", str(run_dir), "--stage", stage, "--overwrite"]
    for item in [*TINY, *overrides]:
        args += ["--set", item]
    return _cli(capsys, pretrain_main, args)


def _keras_teacher_weights(path: Path, kind: str, small_stem: bool) -> Path:
    build_teacher(kind, None, (32, 32, 3), small_input_stem=small_stem).save_weights(str(path))
    return path


def _malicious_pth(path: Path, marker: Path) -> Path:
    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('pwned')",))

    buffer = io.BytesIO()
    pickle.dump({"conv1.weight": Payload()}, buffer, protocol=2)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", buffer.getvalue())
        zf.writestr("archive/version", "3\n")
    return path


def test_bad_teacher_weights_and_data_leave_the_run_untouched(finished_run, tmp_path, capsys):
    before = tree_hash(finished_run)
    # Teacher weights of another architecture (resnet18 weights for a resnet50 teacher) and
    # of the wrong shape (a 7x7 ImageNet stem where the 3x3 small-input stem is configured).
    other_arch = _keras_teacher_weights(tmp_path / "resnet18.weights.h5", "resnet18", True)
    err = _pretrain(capsys, finished_run, "teacher.kind=resnet50", f"teacher.weights={other_arch}")
    assert "resnet18.weights.h5" in err
    wrong_shape = _keras_teacher_weights(tmp_path / "big_stem.weights.h5", "resnet18", False)
    err = _pretrain(capsys, finished_run, f"teacher.weights={wrong_shape}")
    assert "big_stem.weights.h5" in err
    # A malicious pickle: refused without running it.
    marker = tmp_path / "pwned"
    evil = _malicious_pth(tmp_path / "evil.pth", marker)
    err = _pretrain(capsys, finished_run, f"teacher.weights={evil}")
    assert "evil.pth" in err and not marker.exists()
    # Corrupt and truncated images only (strict: the first bad file is named).
    folder = tmp_path / "images" / "cat"
    folder.mkdir(parents=True)
    (folder / "garbage.png").write_bytes(b"\x89PNG not an image")
    jpeg = tf.io.encode_jpeg(np.zeros((8, 8, 3), np.uint8)).numpy()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    err = _pretrain(capsys, finished_run, "data.source=image_folder", f"data.path={tmp_path / 'images'}",
                    "data.strict=true")
    assert "garbage.png" in err or "truncated.jpg" in err
    assert tree_hash(finished_run) == before


def test_stage2_without_stage1_touches_nothing(tmp_path, capsys, finished_run):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("mine")
    before = tree_hash(run_dir)
    err = _pretrain(capsys, run_dir, stage="2")
    assert "run --stage 1 first" in err and "stage1" in err
    assert tree_hash(run_dir) == before


# A directory without metadata.json and a file edited in place (sha256 in the metadata) are
# refused too: tests/test_saved_backbone.py.
@pytest.mark.parametrize("damage", ["missing weights", "truncated weights", "edited metadata"])
def test_damaged_backbone_directory_is_named(finished_run, tmp_path, capsys, damage):
    backbone = tmp_path / "backbone"
    shutil.copytree(finished_run / "stage1" / "backbone", backbone)
    weights, metadata = backbone / "backbone.weights.h5", backbone / "metadata.json"
    if damage == "missing weights":
        weights.unlink()
    elif damage == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "edited metadata":
        meta = json.loads(metadata.read_text())
        meta["student"]["width_multiplier"] = 0.5  # no longer the weights' network
        metadata.write_text(json.dumps(meta))
    before = tree_hash(backbone)
    err = _cli(capsys, evaluate_main, ["knn", "--backbone", str(backbone), "--set", "num_train=20",
                                       "--set", "num_test=10"])
    assert str(backbone) in err, err
    assert tree_hash(backbone) == before
