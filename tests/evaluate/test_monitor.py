"""KNNMonitor during a real (tiny) model.fit: knn_top1 lands in History, CSV and TensorBoard."""

import csv
import math

import numpy as np
import pytest
import tensorflow as tf

from burn_tf.evaluate.monitor import KNNMonitor


@pytest.fixture
def data(fashion_splits):
    x, y = fashion_splits["train"]
    return x[:600], y[:600]


def small_backbone(size):
    inputs = tf.keras.Input((size, size, 3))
    h = tf.keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    return tf.keras.Model(inputs, tf.keras.layers.GlobalAveragePooling2D()(h), name="small")


def scalars(log_dir, tag):
    values = []
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for v in event.summary.value:
                if v.tag == tag:
                    values.append((event.step, float(tf.make_ndarray(v.tensor))))
    return values


def test_student_reached_by_callable_history_csv_tensorboard(data, tmp_path):
    x, y = data
    inputs = tf.keras.Input((28, 28, 3))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(10)(small_backbone(28)(inputs)))
    model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    images = np.repeat(x[:256, ..., None], 3, -1).astype(np.float32) / 255.0
    monitor = KNNMonitor(lambda m: m.get_layer("small"), x[300:500], y[300:500], x[500:600], y[500:600],
                         every_n_epochs=2, k=50, log_dir=str(tmp_path / "tb"))
    history = model.fit(images, y[:256], batch_size=64, epochs=3, verbose=0,
                        callbacks=[monitor, tf.keras.callbacks.CSVLogger(str(tmp_path / "log.csv"))])
    values = history.history["knn_top1"]
    assert len(values) == 3
    assert math.isnan(values[0])  # epoch 1 skipped (every 2), epochs 2 and 3 (the last) evaluated
    assert all(0.0 <= v <= 1.0 for v in values[1:])
    assert [h["epoch"] for h in monitor.history] == [1, 2]
    with open(tmp_path / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[2]["knn_top1"]) == pytest.approx(values[2])
    logged = scalars(tmp_path / "tb", "knn_top1")
    assert [step for step, _ in logged] == [1, 2]
    assert logged[1][1] == pytest.approx(values[2])


@pytest.mark.slow
def test_reactnet_student_during_fit(data, tiny_reactnet):
    x, y = data
    backbone = tiny_reactnet()
    inputs = tf.keras.Input((32, 32, 3))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(10)(backbone(inputs)))
    # Eager: tracing even a tiny ReActNet-A train step costs more than these 8 steps.
    model.compile(tf.keras.optimizers.Adam(1e-3),
                  tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), run_eagerly=True)
    train = tf.image.resize(tf.cast(np.repeat(x[:256, ..., None], 3, -1), tf.float32) / 255.0, (32, 32))
    monitor = KNNMonitor(lambda m: m.layers[1], x[300:500], y[300:500], x[500:600], y[500:600], k=50)
    history = model.fit(train, y[:256], batch_size=64, epochs=2, verbose=0, callbacks=[monitor])
    assert len(history.history["knn_top1"]) == 2
    assert all(0.0 <= v <= 1.0 for v in history.history["knn_top1"])


def test_keras_model_given_directly_and_top5(data):
    x, y = data
    backbone = small_backbone(28)
    model = tf.keras.Sequential([backbone, tf.keras.layers.Dense(10)])
    model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    monitor = KNNMonitor(backbone, x[300:500], y[300:500], x[500:600], y[500:600], k=20, top5=True)
    images = np.repeat(x[:128, ..., None], 3, -1).astype(np.float32) / 255.0
    history = model.fit(images, y[:128], epochs=2, verbose=0, callbacks=[monitor])
    assert len(history.history["knn_top1"]) == 2
    top1, top5 = history.history["knn_top1"][-1], history.history["knn_top5"][-1]
    assert 0.2 < top1 <= top5 <= 1.0  # random conv features of Fashion-MNIST beat chance (0.1)


def test_bad_arguments(data):
    x, y = data
    backbone = tf.keras.Sequential([tf.keras.Input((28, 28, 3)), tf.keras.layers.GlobalAveragePooling2D()])
    with pytest.raises(ValueError, match="larger than the labelled bank"):
        KNNMonitor(backbone, x[:10], y[:10], x[10:20], y[10:20], k=200)
    assert KNNMonitor(backbone, x[:10], y[:10], x[10:20], y[10:20], k=200, cap_k=True).k == 10
    with pytest.raises(ValueError, match="labels"):
        KNNMonitor(backbone, x[:10], y[:9], x[10:20], y[10:20], k=5)
    with pytest.raises(ValueError, match="1 class"):
        KNNMonitor(backbone, x[:10], np.zeros(10, int), x[10:20], y[10:20], k=5)
    with pytest.raises(ValueError, match="every_n_epochs"):
        KNNMonitor(backbone, x[:10], y[:10], x[10:20], y[10:20], k=5, every_n_epochs=0)
