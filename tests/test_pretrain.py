import contextlib
import io
import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

from burn_tf.build import build_train_dataset
from burn_tf.config import load_config
from burn_tf.ops.schedules import lambda_at
from burn_tf.pretrain import main, pretrain, pretrain_stage
from burn_tf.rundir import RunDirError
from burn_tf.saved_backbone import load_backbone

TINY = [
    "teacher.kind=resnet18", "teacher.weights=null", "teacher.small_input_stem=true",
    "teacher.input_size=32", "backbone.input_size=32", "backbone.width_multiplier=0.125", "backbone.blocks=4",
    "method.head_width=32", "train.batch_size=8", "train.steps_per_epoch=2", "train.epochs=2",
    "train.verbose=0", "train.run_eagerly=true", "data.limit=64", "data.shuffle_buffer=64",
    "optimizer.warmup_epochs=0",
]


@pytest.fixture
def tiny_cfg(fashion_mnist_available):
    return load_config("demo", TINY)


# The tiny run, printing its progress lines (train.verbose=2) as a user's console shows them.
RUN = [*TINY, "train.verbose=2"]
# What stage 2 takes from stage 1: θ and φ (and, with L_FS on features, the projection).
TRANSFERRED = ("teacher_classifier", "student_backbone", "student_classifier", "student_projection")


class TransferredWeights(tf.keras.callbacks.Callback):
    """Copies of the TRANSFERRED networks' weights where each stage's training begins and
    ends: {("burn_stage1", "end"): {network: [arrays]}, …}."""

    def __init__(self):
        super().__init__()
        self.at = {}

    def _copy(self, moment):
        self.at[self.model.name, moment] = {name: [np.array(w.numpy()) for w in getattr(self.model, name).weights]
                                            for name in TRANSFERRED}

    def on_train_begin(self, logs=None):
        self._copy("begin")

    def on_train_end(self, logs=None):
        self._copy("end")


@pytest.fixture(scope="module")
def finished_run(fashion_mnist_available, tmp_path_factory):
    """One uninterrupted tiny run of both stages, shared by the tests that only read it (or
    copy its stage 1): its directory, pretrain's results, its config, what it printed and
    the TRANSFERRED weights where each stage began and ended."""
    run_dir = tmp_path_factory.mktemp("finished")
    cfg = load_config("demo", RUN)
    out, weights = io.StringIO(), TransferredWeights()
    with contextlib.redirect_stdout(out):
        results = pretrain(cfg, run_dir, "all", extra_callbacks=[weights])
    return SimpleNamespace(dir=run_dir, results=results, cfg=cfg, out=out.getvalue(), weights=weights.at)


def test_two_stages_write_the_run_dir_and_stage2_starts_from_stage1(finished_run):
    run_dir, results, cfg = finished_run.dir, finished_run.results, finished_run.cfg
    for stage in (1, 2):
        d = run_dir / f"stage{stage}"
        for name in ("config.yaml", "summary.txt", "metrics.json", "history.jsonl", "backbone/metadata.json",
                     "backbone/classifier.keras"):
            assert (d / name).exists(), name
        assert results[stage]["global_step"] == 4
        assert len((d / "history.jsonl").read_text().splitlines()) == 2
        assert any((d / "logs").rglob("events.out.tfevents*"))
    backbone, meta = load_backbone(run_dir / "stage2" / "backbone")
    assert meta["stage"] == 2 and meta["method"] == "burn" and meta["config_hash"] == cfg.hash()
    assert "Ratio of MACs that are binarized" in (run_dir / "stage2" / "summary.txt").read_text()

    # Stage 2's first step starts from stage 1's final θ and φ (and, with L_FS on features,
    # the projection), as the run trained them ...
    assert cfg.method.similarity_on == "features"
    weights = finished_run.weights
    stage1_begin, stage1_end = weights["burn_stage1", "begin"], weights["burn_stage1", "end"]
    stage2_begin = weights["burn_stage2", "begin"]
    for name in TRANSFERRED:
        assert stage1_end[name] and len(stage1_end[name]) == len(stage2_begin[name]), name
        for a, b in zip(stage1_end[name], stage2_begin[name]):
            np.testing.assert_array_equal(a, b, err_msg=f"{name}: stage 2 does not start from stage 1's end")
        # ... which stage 1 trained away from its initialisation: no fresh model starts there.
        assert any(not np.array_equal(a, b) for a, b in zip(stage1_begin[name], stage1_end[name])), \
            f"{name}: stage 1 ended where it began"


def test_stage2_without_stage1_says_so(tiny_cfg, tmp_path):
    with pytest.raises(RunDirError, match="run --stage 1 first"):
        pretrain(tiny_cfg, tmp_path, "2")


def test_cli_rejects_unknown_keys_and_keeps_existing_runs(tiny_cfg, tmp_path, capsys):
    assert main(["--config", "demo", "--set", "train.epoch=3"]) == 2
    err = capsys.readouterr().err
    assert "train.epoch" in err and "epochs" in err
    stage_dir = tmp_path / "stage1"
    stage_dir.mkdir(parents=True)
    keep = stage_dir / "precious.txt"
    keep.write_text("do not lose me")
    args = ["--config", "demo", "--run-dir", str(tmp_path), "--stage", "1"]
    for item in TINY:
        args += ["--set", item]
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert keep.read_text() == "do not lose me"


class InterruptStage2(tf.keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0 and self.model.name.endswith("stage2"):
            raise KeyboardInterrupt("killed during stage 2")


def test_stage_all_resume_reuses_stage1_and_resumes_stage2_at_the_uninterrupted_step_and_lambda(finished_run,
                                                                                                 tmp_path):
    # (A killed stage 1 resumes bit-exactly too: tests/test_faults.py.)
    full_dir, full, cfg = finished_run.dir, finished_run.results, finished_run.cfg
    shutil.copytree(full_dir / "stage1", tmp_path / "stage1")  # a finished stage 1
    with pytest.raises(KeyboardInterrupt):  # stage 1 reused, stage 2 started and killed after its epoch 1
        pretrain(cfg, tmp_path, "all", resume=True, extra_callbacks=[InterruptStage2()])
    # The kill left stage 2's epoch-1 checkpoint and no final result.
    assert (tmp_path / "stage1" / "final").exists() and not (tmp_path / "stage2" / "final").exists()
    assert tf.train.latest_checkpoint(str(tmp_path / "stage2" / "checkpoints")).endswith("-2")
    with pytest.raises(RunDirError, match="--resume"):  # not overwritten without --resume
        pretrain(cfg, tmp_path, "2")
    stage1_index = (tmp_path / "stage1" / "final" / "checkpoint").read_text()
    args = ["--config", "demo", "--run-dir", str(tmp_path), "--stage", "all", "--resume"]
    for item in RUN:
        args += ["--set", item]
    assert main(args) == 0
    assert (tmp_path / "stage1" / "final" / "checkpoint").read_text() == stage1_index  # reused, not rerun
    resumed = json.loads((tmp_path / "stage2" / "metrics.json").read_text())
    assert resumed["global_step"] == full[2]["global_step"] == 4
    assert resumed["lambda"] == pytest.approx(full[2]["lambda"]) == pytest.approx(lambda_at(3, 4))
    assert resumed["lr"] == pytest.approx(full[2]["lr"])
    lines = [json.loads(x) for x in (tmp_path / "stage2" / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]


class PoisonAtEpoch2(tf.keras.callbacks.Callback):
    """Makes the loss NaN from the second epoch on (a weight becomes NaN)."""

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            kernel = self.model.student_classifier.trainable_variables[0]
            kernel.assign(tf.fill(kernel.shape, float("nan")))


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tiny_cfg, tmp_path):
    with pytest.raises(FloatingPointError, match="NaN"):
        pretrain_stage(tiny_cfg, 1, tmp_path, extra_callbacks=[PoisonAtEpoch2()])
    checkpoints = tmp_path / "stage1" / "checkpoints"
    latest = tf.train.latest_checkpoint(str(checkpoints))
    assert latest.endswith("-2")  # epoch 1 (step 2), not one written after the NaN
    assert not (tmp_path / "stage1" / "final").exists()
    # Every weight it holds (the poisoned classifier kernel among them) is finite.
    reader = tf.train.load_checkpoint(latest)
    kernels = [k for k in reader.get_variable_to_shape_map() if "student_classifier" in k and "kernel" in k]
    assert kernels, sorted(reader.get_variable_to_shape_map())
    for key in reader.get_variable_to_shape_map():
        value = np.asarray(reader.get_tensor(key))
        if value.dtype.kind == "f":
            assert np.isfinite(value).all(), key


def test_s2bnn_trains_through_pretrain_with_its_own_config(fashion_mnist_available, tmp_path):
    tiny = [t for t in TINY if not t.startswith("method.")] + ["method.head_hidden=16", "train.epochs=1",
                                                               "train.steps_per_epoch=1"]
    cfg = load_config("s2bnn", tiny)
    results = pretrain(cfg, tmp_path, "all")
    assert results[2]["global_step"] == 1 and results[2]["method"] == "s2bnn"
    _, meta = load_backbone(tmp_path / "stage2" / "backbone")
    assert meta["method"] == "s2bnn" and (tmp_path / "stage2" / "backbone" / "classifier.keras").exists()


def test_cli_mistakes_are_one_error_line(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "no_such.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "no_such.yaml" in err and len(err.strip().splitlines()) == 1
    keep = tmp_path / "run" / "stage1" / "precious.txt"
    keep.parent.mkdir(parents=True)
    keep.write_text("do not lose me")
    weights = tmp_path / "missing_teacher.pth"
    assert main(["--config", "demo", "--run-dir", str(tmp_path / "run"), "--set", f"teacher.weights={weights}",
                 "--set", "teacher.kind=resnet18", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and str(weights) in err
    assert keep.read_text() == "do not lose me"  # the mistake was found before --overwrite acted


def _fashion_png_folder(root, n):
    """A flat folder of the first ``n`` Fashion-MNIST training images as PNG files."""
    from PIL import Image

    from burn_tf.data import load_fashion_mnist_arrays

    images, _ = load_fashion_mnist_arrays("train")
    root.mkdir()
    for i in range(n):
        Image.fromarray(images[i]).save(root / f"{i:04d}.png")
    return root


def _count_file_reads(monkeypatch):
    """Every file the pipelines built from now on read, in order (a spy around tf.io.read_file)."""
    reads = []
    read_file = tf.io.read_file

    def counting_read_file(path, name=None):
        counted = tf.numpy_function(lambda p: reads.append(p) or p, [path], tf.string, stateful=True)
        return read_file(counted, name=name)

    monkeypatch.setattr(tf.io, "read_file", counting_read_file)
    return reads


def test_a_stream_started_late_reads_only_what_it_yields_and_continues_the_run(fashion_mnist_available,
                                                                               tmp_path, monkeypatch):
    """Starting the training stream at step 50 (a resume) reads about as many images as
    starting at 0 — not the 50 × 8 before it — and yields batches 50, 51 of the run."""
    folder = _fashion_png_folder(tmp_path / "images", 40)
    cfg = load_config("demo", [*TINY, "data.source=image_folder", f"data.path={folder}",
                                            "data.limit=null"])
    reads = _count_file_reads(monkeypatch)
    late, _ = build_train_dataset(cfg, start_step=50)
    late_batches = [[v.numpy() for v in batch] for batch in late.take(2)]
    del late
    late_reads = len(reads)
    assert late_reads <= 12 * 8, f"{late_reads} images read for 2 batches of 8 starting at step 50"
    full, _ = build_train_dataset(cfg)
    for step, batch in enumerate(full.take(52)):
        if step >= 50:
            for a, b in zip(late_batches[step - 50], batch):
                np.testing.assert_array_equal(a, b.numpy())




def test_the_console_gets_the_totals_and_the_layer_table_goes_to_a_file(finished_run):
    run_dir, out = finished_run.dir, finished_run.out  # printed at train.verbose=2
    table = (run_dir / "stage1" / "summary.txt").read_text()
    # The file holds larq's whole summary: one row per layer, then the totals.
    assert "stem_conv" in table and "block_04_conv1x1" in table  # the last of TINY's 4 blocks
    assert "Total params" in table and "Number of MACs" in table
    # The console: the totals in a line or two, where the table is, the progress; no layer rows.
    assert "stem_conv" not in out and "block_" not in out and "+----" not in out
    assert "params" in out and "MACs" in out and str(run_dir / "stage1" / "summary.txt") in out
    assert "epoch 1/2  step 2/2" in out and "burn stage 2" in out


@pytest.mark.slow
def test_a_larq_zoo_student_trains_evaluates_and_exports_from_the_cli(fashion_mnist_available, tmp_path, capsys):
    # Issue 29's end to end: backbone.kind=larq_zoo through python -m burn_tf.pretrain
    # (stage 1, then stage 2 from it), the kNN evaluator on its export and the LCE export.
    from burn_tf.evaluate.__main__ import main as evaluate
    from burn_tf.export.cli import main as export

    run_dir = tmp_path / "run"
    zoo = ["backbone.kind=larq_zoo", "backbone.name=QuickNetSmall", "backbone.width_multiplier=1.0",
           "backbone.blocks=13", "train.epochs=1", "train.steps_per_epoch=2"]
    args = ["--config", "demo", "--run-dir", str(run_dir), "--stage", "all"]
    for item in [*TINY, *zoo]:
        args += ["--set", item]
    assert main(args) == 0, capsys.readouterr().err
    for stage in (1, 2):
        model, meta = load_backbone(run_dir / f"stage{stage}" / "backbone")
        assert meta["architecture"] == "larq_zoo" and meta["method"] == "burn" and meta["stage"] == stage
        assert model.zoo_config.name == "QuickNetSmall" and model.output_shape == (None, 512)
        assert "quant_conv2d" in (run_dir / f"stage{stage}" / "summary.txt").read_text()
    capsys.readouterr()
    assert evaluate(["knn", "--backbone", str(run_dir / "stage2" / "backbone"), "--set", "num_train=200",
                     "--set", "num_test=50", "--set", "k=5", "--json"]) == 0
    knn = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert knn["backbone"]["architecture"] == "larq_zoo" and knn["backbone"]["feature_dim"] == 512
    # Not a quality bar: a random QuickNetSmall at 32 px scores 15-25 % (its pooled features
    # share one large offset), and this one trained 1 + 1 steps.
    assert 0.0 <= knn["top1"] <= 1.0 and knn["num_test"] == 50
    out = tmp_path / "quicknet_small.tflite"
    assert export(["--run-dir", str(run_dir), "--format", "tflite", "--out", str(out)]) == 0
    report = json.loads((tmp_path / "quicknet_small.tflite.json").read_text())
    assert report["architecture"] == "larq_zoo" and report["stage"] == 2
    # LCE's optimised and reference binary kernels both give Keras's outputs, and every binary
    # layer of the student became a bit-packed LceBconv2d.
    assert report["check"]["exact"] and report["check"]["exact_reference_bconv"], report["check"]
    binary = [layer for layer in model.layers if getattr(layer, "kernel_quantizer", None) is not None]
    assert report["op_counts"]["LceBconv2d"] == len(binary) == 16
