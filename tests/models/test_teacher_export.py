"""A ResNet burn_tf pretrained itself is a teacher again: ``teacher.weights:
<run>/stage1/backbone`` (burn_tf.saved_backbone.build_teacher_from_export). The export here comes
from a real tiny ``supervised`` run of an FP ResNet-18 (small stem, 16 px) on Fashion-MNIST."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from burn_tf.build import build_method
from burn_tf.config import load_config
from burn_tf.convert.pretrained_teacher import build_teacher
from burn_tf.export.model_card import _teacher_origin
from burn_tf.models.teacher import build_teacher_backbone
from burn_tf.pretrain import main as pretrain_main
from burn_tf.pretrain import pretrain_stage
from burn_tf.saved_backbone import (
    BackboneFormatError,
    build_teacher_from_export,
    load_keras_file,
)

FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
TINY = ["train.batch_size=8", "train.steps_per_epoch=2", "train.epochs=1", "train.verbose=0",
        "train.run_eagerly=true", "data.limit=32", "data.shuffle_buffer=32", "optimizer.warmup_epochs=0"]
FP_TEACHER = ["backbone.kind=resnet18", "backbone.small_input_stem=true", "backbone.input_size=16"]


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    if not FASHION.exists():
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    run_dir = tmp_path_factory.mktemp("supervised_teacher")
    pretrain_stage(load_config("supervised", [*TINY, *FP_TEACHER]), 1, run_dir)
    return run_dir / "stage1" / "backbone"


def exported_weights(path):
    backbone = build_teacher_backbone("resnet18", (16, 16, 3), small_input_stem=True)
    backbone.load_weights(str(path / "backbone.weights.h5"))
    return backbone.get_weights()


def images(n=4, size=16):
    return np.random.default_rng(0).random((n, size, size, 3), dtype=np.float32)


def test_the_export_loads_frozen_with_the_exported_weights(export):
    teacher = build_teacher_from_export(export, "resnet18", small_input_stem=True)
    assert teacher.input_shape == (None, 16, 16, 3)  # the size it was pretrained at
    assert not teacher.trainable_weights and teacher.output_shape == (None, 512)
    for a, b in zip(teacher.get_weights(), exported_weights(export)):
        np.testing.assert_array_equal(a, b)
    # Not the random initialisation: the run trained it.
    fresh = build_teacher("resnet18", None, (16, 16, 3), small_input_stem=True)
    assert any(not np.array_equal(a, b) for a, b in zip(teacher.get_weights(), fresh.get_weights()))
    # Another input size: same weights (a fully convolutional net with global pooling).
    assert build_teacher_from_export(export, "resnet18", 32, True).input_shape == (None, 32, 32, 3)


def test_with_its_head_the_teacher_outputs_the_supervised_classifier(export):
    teacher = build_teacher_from_export(export, "resnet18", small_input_stem=True, include_head=True)
    assert teacher.output_shape == (None, 10) and not teacher.trainable_weights
    features = build_teacher_from_export(export, "resnet18", small_input_stem=True)
    classifier = load_keras_file(export / "classifier.keras")
    x = images()
    np.testing.assert_allclose(teacher(x).numpy(), classifier(features(x)).numpy(), rtol=1e-5, atol=1e-5)


def test_supervised_kl_pretrains_against_the_exported_teacher(export, tmp_path):
    cfg = load_config("supervised_kl", [*TINY, "backbone.width_multiplier=0.125", "backbone.blocks=4",
                                        f"teacher.weights={export}"])
    model = build_method(cfg, 1)
    assert model.teacher_backbone.output_shape == (None, 10) and model.student_classifier.output_shape == (None, 10)
    assert model.teacher_input_size == 16  # the student's 32 px view is resized to the export's size
    metrics = pretrain_stage(cfg, 1, tmp_path / "run")
    assert metrics["global_step"] == 2 and np.isfinite(metrics["kl"])
    meta = json.loads((tmp_path / "run" / "stage1" / "backbone" / "metadata.json").read_text())
    assert meta["teacher"]["weights"] == str(export)


def damage(export: Path, tmp_path: Path, kind: str) -> tuple[Path, str]:
    """A damaged copy of the export and the file its error must name."""
    bad = tmp_path / "backbone"
    shutil.copytree(export, bad)
    metadata, weights = bad / "metadata.json", bad / "backbone.weights.h5"
    if kind == "missing metadata":
        metadata.unlink()
        return bad, "metadata.json"
    if kind == "broken metadata":
        metadata.write_text("{not json")
        return bad, "metadata.json"
    if kind == "missing weights":
        weights.unlink()
        return bad, "backbone.weights.h5"
    if kind == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:2000])
        return bad, "backbone.weights.h5"
    if kind == "weights of another stem":
        build_teacher_backbone("resnet18", (16, 16, 3), small_input_stem=False).save_weights(str(weights))
        return bad, "backbone.weights.h5"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing metadata", "broken metadata", "missing weights", "truncated weights",
                                  "weights of another stem"])
def test_a_damaged_export_is_named(export, tmp_path, kind):
    bad, named = damage(export, tmp_path, kind)
    with pytest.raises(BackboneFormatError) as err:
        build_teacher_from_export(bad, "resnet18", small_input_stem=True)
    assert str(bad / named) in str(err.value)


@pytest.mark.parametrize("kind, stem", [("resnet50", True), ("resnet18", False)])
def test_a_teacher_kind_or_stem_other_than_the_exports_is_refused(export, kind, stem):
    with pytest.raises(BackboneFormatError, match="teacher.kind") as err:
        build_teacher_from_export(export, kind, small_input_stem=stem)
    assert str(export / "metadata.json") in str(err.value) and "backbone.kind='resnet18'" in str(err.value)


def test_a_run_directory_or_a_head_less_export_gets_a_hint(export, tmp_path):
    with pytest.raises(BackboneFormatError, match="stage1/backbone"):
        build_teacher_from_export(export.parent.parent, "resnet18", small_input_stem=True)
    headless = tmp_path / "headless"
    shutil.copytree(export, headless)
    (headless / "classifier.keras").unlink()
    with pytest.raises(BackboneFormatError, match="classifier.keras"):
        build_teacher_from_export(headless, "resnet18", small_input_stem=True, include_head=True)
    # build_teacher itself points a directory to the export loader.
    with pytest.raises(ValueError, match="build_teacher_from_export"):
        build_teacher("resnet18", str(export), (16, 16, 3), small_input_stem=True)


def test_the_cli_names_the_bad_export_in_one_line_and_writes_nothing(export, tmp_path, capsys):
    bad, named = damage(export, tmp_path, "truncated weights")
    run_dir = tmp_path / "run"
    args = ["--config", "supervised_kl", "--run-dir", str(run_dir)]
    for item in [*TINY, "backbone.width_multiplier=0.125", "backbone.blocks=4", f"teacher.weights={bad}"]:
        args += ["--set", item]
    assert pretrain_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and str(bad / named) in err and len(err.splitlines()) == 1
    assert not run_dir.exists()


def test_the_model_card_says_a_supervised_teacher_used_labels(export):
    origin = _teacher_origin({"kind": "resnet18", "weights": str(export)})
    assert "`supervised`" in origin and "with labels" in origin
