"""What a person watching a run sees: progress lines of at most 120 columns with the time
left (burn_tf.progress, ProgressLines), the README's ``model.fit`` getting the per-step
logging of the CLI, no Keras "slow callback" warning in a pretraining stage, and per-step
TensorBoard scalars written as ``tf.summary.scalar`` writes them."""

import io
import logging
from pathlib import Path

import numpy as np
import tensorflow as tf

from burn_tf import progress
from burn_tf.callbacks import ProgressLines, ScalarWriter, StepScalarLogger
from burn_tf.config import load_config
from burn_tf.methods.burn import BURN, BURNConfig
from burn_tf.pretrain import pretrain_stage


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_durations_read_in_their_largest_sensible_unit():
    assert [progress.format_seconds(s) for s in (0, 41.2, 59.4, 59.6, 162, 3569, 3600, 5040)] == [
        "0 s", "41 s", "59 s", "1.0 min", "2.7 min", "59.5 min", "1.0 h", "1.4 h"]
    assert progress.format_value(0.62134) == "0.621" and progress.format_value(1234.5) == "1.23e+03"


def test_fields_that_do_not_fit_are_left_out_never_wrapped():
    head = "x" * 100
    assert progress.fit_columns(head, ["a 1", "b" * 30, "c 3"]) == head + "  a 1"
    assert progress.fit_columns("head", ["a 1", "b 2"], width=12) == "head  a 1"


def test_progress_prints_the_first_estimate_then_at_most_every_interval_then_the_end(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    out = io.StringIO()
    meter = progress.Progress("svm few-shot", 100, "SVMs", every_seconds=30, stream=out)
    clock.now = 10.0
    meter.advance()  # the first unit carries the warm-up: 10 s
    clock.now = 11.0
    meter.advance()  # 1 s a unit from here on; not due yet
    clock.now = 45.0
    meter.advance(33, note="k 4")
    clock.now = 110.0
    meter.advance(65)
    assert out.getvalue().splitlines() == [
        "svm few-shot: 1/100 SVMs (1%)  10 s, ~16.5 min left",
        "svm few-shot: 35/100 SVMs (35%)  45 s, ~1.1 min left  k 4",  # (45 − 10) s / 34 units × 65
        "svm few-shot: 100/100 SVMs (100%)  1.8 min",
    ]


def test_progress_lines_say_the_time_left_and_are_silent_under_keras_bar():
    out = io.StringIO()

    def run(verbose):
        callback = ProgressLines(prefix="burn stage 1", stream=out)
        callback.set_params({"verbose": verbose, "epochs": 2, "steps": 4})
        callback.on_train_begin()
        for epoch in range(2):
            callback.on_epoch_begin(epoch)
            for batch in range(4):
                callback.on_train_batch_end(batch, {"loss": 0.5 + batch, "loss_step": 1.0, "grad_norm_x": 3.0,
                                                    "kl": 1 / 3, "lr": 0.1})
            callback.on_epoch_end(epoch, {"loss": 1.5, "kl": 1 / 3, "knn_top1": 0.8})

    run(verbose=1)  # Keras draws its bar: no lines of ours
    assert out.getvalue() == ""
    run(verbose=2)
    lines = out.getvalue().splitlines()
    assert len(lines) == 8 and all(len(line) <= progress.WIDTH for line in lines)
    assert lines[0].startswith("burn stage 1  epoch 1/2  step 1/4 (25%)  0 s, ~")
    assert lines[0].endswith(" left  loss 0.5  kl 0.333")  # no lr, gradient norms or *_step values
    assert lines[3].startswith("burn stage 1  epoch 1/2  step 4/4 (100%)") and "knn_top1 0.8" in lines[3]
    assert "left" not in lines[-1]  # nothing left at the end of the last epoch


def small_cnn(name, dim):
    inputs = tf.keras.Input((32, 32, 3))
    x = tf.keras.layers.Conv2D(8, 3, strides=2)(inputs)
    x = tf.keras.layers.BatchNormalization()(x)
    x = tf.keras.layers.Conv2D(dim, 3, strides=2)(tf.keras.layers.ReLU()(x))
    return tf.keras.Model(inputs, tf.keras.layers.GlobalAveragePooling2D()(x), name=name)


def test_the_readmes_model_fit_logs_every_step_and_prints_progress_lines(tmp_path, capsys):
    model = BURN(small_cnn("teacher", 24), small_cnn("student", 16), BURNConfig(head_width=32, symmetric=True))
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), run_eagerly=True)
    model.log_dir = tmp_path
    images = np.random.default_rng(0).random((48, 32, 32, 3), dtype=np.float32)
    data = tf.data.Dataset.from_tensor_slices((images, images[::-1].copy())).batch(8)
    callbacks = model.callbacks(total_steps=len(data))
    model.fit(data, epochs=1, callbacks=callbacks)  # the README's line: Keras' bar (verbose=1)
    records = next(c for c in callbacks if isinstance(c, StepScalarLogger)).records
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert all({"loss", "kl", "fs", "lambda", "lr", "grad_norm_student_backbone"} <= set(r) for r in records)
    assert len((tmp_path / "steps.jsonl").read_text().splitlines()) == 6
    assert "epoch 1/1  step " not in capsys.readouterr().out
    model.fit(data, epochs=1, verbose=2, callbacks=model.callbacks(total_steps=len(data)))  # plain lines
    assert len((tmp_path / "steps.jsonl").read_text().splitlines()) == 12
    lines = [line for line in capsys.readouterr().out.splitlines() if "epoch 1/1  step " in line]
    assert len(lines) == 6 and lines[0].startswith(f"{model.name}  epoch 1/1  step 1/6 (16%)")
    assert "left" in lines[0] and all(len(line) <= progress.WIDTH for line in lines)


def test_the_traced_scalar_writer_writes_what_tf_summary_scalar_writes(tmp_path):
    def events(directory):
        found = []
        for path in sorted(Path(directory).glob("events*")):
            for event in tf.compat.v1.train.summary_iterator(str(path)):
                found += [(event.step, v.tag, tf.make_ndarray(v.tensor).item(), v.metadata.SerializeToString())
                          for v in event.summary.value]
        return found

    scalars = {"loss": 1.25, "kl": np.float32(0.5), "grad_norm_x": np.float64(3e7), "lambda": 0.9}
    eager = tf.summary.create_file_writer(str(tmp_path / "eager"))
    for step in (1, 2):
        with eager.as_default(step=step):
            for key, value in scalars.items():
                tf.summary.scalar(key, value)
    eager.flush()
    traced = tf.summary.create_file_writer(str(tmp_path / "traced"))
    write = ScalarWriter(traced)
    for step in (1, 2):
        write(step, scalars)
    traced.flush()
    assert len(events(tmp_path / "eager")) == 8
    assert events(tmp_path / "traced") == events(tmp_path / "eager")


TINY_DEMO = [
    "teacher.kind=resnet18", "teacher.weights=null", "teacher.small_input_stem=true",
    "teacher.input_size=32", "backbone.input_size=32", "backbone.width_multiplier=0.125", "backbone.blocks=4",
    "method.head_width=32", "train.batch_size=8", "train.steps_per_epoch=8", "train.epochs=1",
    "train.verbose=2", "data.limit=64", "data.shuffle_buffer=64", "optimizer.warmup_epochs=0",
]


def test_a_compiled_stage_has_no_slow_callback_warning_and_lines_fit_120_columns(fashion_mnist_available,
                                                                                 tmp_path, capsys):
    """The demo's config, tiny and compiled as the demo runs it. Keras times the batch hooks
    over the first 5 batches; the TensorBoard graph written in the first batch's hook (2–4 s)
    made every stage warn."""
    warnings = []
    handler = logging.Handler()
    handler.emit = warnings.append
    tf_logger = logging.getLogger("tensorflow")
    tf_logger.addHandler(handler)
    try:
        pretrain_stage(load_config("demo", TINY_DEMO), 1, tmp_path)
    finally:
        tf_logger.removeHandler(handler)
    slow = [r.getMessage() for r in warnings if "slow compared to the batch time" in r.getMessage()]
    assert not slow, slow
    assert list((tmp_path / "stage1" / "logs" / "train").glob("events*"))  # TensorBoard still written
    out = capsys.readouterr().out.splitlines()
    wide = [line for line in out if len(line) > progress.WIDTH and "layer table: " not in line]  # a path: the user's
    assert not wide, wide
    steps = [line for line in out if line.startswith("burn stage 1  epoch 1/1  step ")]
    assert len(steps) == 8 and "left" in steps[0]
