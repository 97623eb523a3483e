"""The supervised baselines: ``supervised`` (CE through a classifier) and ``supervised_kl``
(ReActNet's KL to a frozen supervised FP network) — both on real Fashion-MNIST with labels,
both refusing an unlabelled source before the run directory exists."""

import numpy as np
import pytest
import tensorflow as tf
from contrastive_helpers import TINY_CLI
from method_helpers import changed, snapshot, tiny_reactnet, tiny_teacher, view_pair

from burn_tf.config import ConfigError, load_config
from burn_tf.convert.pretrained_teacher import build_teacher_head
from burn_tf.data import AugmentConfig, fashion_mnist, multi_view_dataset
from burn_tf.methods import (
    Supervised,
    SupervisedConfig,
    SupervisedKL,
    SupervisedKLConfig,
    method_class,
)
from burn_tf.pretrain import main as pretrain_main
from burn_tf.pretrain import pretrain_stage


def tiny_student():
    return tiny_reactnet()


def ten_way_teacher():
    """A frozen FP network with a 10-way head (random: the loss, not the teacher, is tested)."""
    features = tiny_teacher()
    head = build_teacher_head("resnet18", None, int(features.output_shape[-1]), random_width=10)
    inputs = tf.keras.Input((32, 32, 3))
    model = tf.keras.Model(inputs, head(features(inputs)), name="ten_way_teacher")
    model.trainable = False
    return model


def labelled_batches(n=256, batch=32):
    view = AugmentConfig(image_size=32, jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0)
    return multi_view_dataset(fashion_mnist("train").take(n), [view], batch, seed=0, cache=True, with_labels=True)


def test_registered_and_need_labels():
    assert method_class("supervised") is Supervised and Supervised.Config is SupervisedConfig
    assert method_class("supervised_kl") is SupervisedKL and SupervisedKL.Config is SupervisedKLConfig
    assert Supervised.needs_labels and SupervisedKL.needs_labels and SupervisedKL.needs_teacher
    assert not Supervised.needs_teacher
    # ReActNet's DistributionLoss: T = 1 on raw logits, KL only.
    cfg = SupervisedKLConfig()
    assert (cfg.temperature, cfg.normalize, cfg.ce_weight, cfg.head) == (1.0, False, 0.0, "dense")
    with pytest.raises(ConfigError, match="method.num_classes"):
        SupervisedConfig(num_classes=1)
    with pytest.raises(ConfigError, match="method.ce_weight"):
        SupervisedKLConfig(ce_weight=-1.0)


def test_supervised_fit_on_fashion_mnist_lowers_the_cross_entropy(fashion_mnist_available):
    model = Supervised(tiny_student(), SupervisedConfig(num_classes=10))
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-2))
    assert model.exported_heads()["classifier"].output_shape == (None, 10)
    history = model.fit(labelled_batches(), epochs=4, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    assert history["cross_entropy"] == history["loss"]
    assert history["accuracy"][-1] > 0.2  # chance is 0.1


def test_supervised_loss_is_the_cross_entropy_of_the_classifier():
    model = Supervised(tiny_student(), SupervisedConfig(num_classes=10))
    images, _ = view_pair(8)
    labels = tf.constant([0, 1, 2, 3, 4, 5, 6, 9], tf.int64)
    terms = model.compute_losses([images], labels, training=False)
    logits = model.classifier(model.backbone(images, training=False)).numpy().astype(np.float64)
    log_p = (
        logits
        - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True))
        - logits.max(1, keepdims=True)
    )
    expected = -np.mean(log_p[np.arange(8), labels.numpy()])
    assert float(terms["cross_entropy"]) == pytest.approx(expected, rel=1e-5)
    assert float(terms["accuracy"]) == pytest.approx(np.mean(logits.argmax(1) == labels.numpy()))


@pytest.mark.parametrize("bad, message", [(-1, "unlabelled"), (10, "num_classes=10")])
def test_a_missing_or_out_of_range_label_fails_the_step(bad, message):
    model = Supervised(tiny_student(), SupervisedConfig(num_classes=10))
    images, _ = view_pair(4)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        model.compute_losses([images], tf.constant([0, 1, bad, 2], tf.int64), training=False)


def test_supervised_kl_fit_on_fashion_mnist_lowers_the_loss_and_never_trains_the_teacher(fashion_mnist_available):
    model = SupervisedKL(ten_way_teacher(), tiny_student(), SupervisedKLConfig(ce_weight=0.5))
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-2))
    teacher = snapshot(model.teacher_backbone.weights)
    student = snapshot(model.student_backbone.trainable_variables)
    history = model.fit(labelled_batches(), epochs=4, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    assert not changed(teacher, model.teacher_backbone.weights)
    assert changed(student, model.student_backbone.trainable_variables)
    for key in ("kl", "cross_entropy", "accuracy", "teacher_accuracy"):
        assert np.isfinite(history[key][-1]), key


def test_supervised_kl_loss_is_reactnets_kl_at_temperature_one_plus_weighted_ce():
    model = SupervisedKL(ten_way_teacher(), tiny_student(), SupervisedKLConfig(ce_weight=0.25))
    images, _ = view_pair(8)
    labels = tf.constant([0, 1, 2, 3, 4, 5, 6, 9], tf.int64)
    terms = model.compute_losses([images], labels, training=False)
    t = model.teacher_backbone(images).numpy().astype(np.float64)
    s = model.student_classifier(model.student_backbone(images, training=False)).numpy().astype(np.float64)

    def log_softmax(x):
        x = x - x.max(1, keepdims=True)
        return x - np.log(np.exp(x).sum(1, keepdims=True))

    kl = np.mean(np.sum(np.exp(log_softmax(t)) * (log_softmax(t) - log_softmax(s)), axis=1))
    ce = -np.mean(log_softmax(s)[np.arange(8), labels.numpy()])
    assert float(terms["kl"]) == pytest.approx(kl, rel=1e-4)
    assert float(terms["loss"]) == pytest.approx(kl + 0.25 * ce, rel=1e-4)
    assert float(terms["teacher_accuracy"]) == pytest.approx(np.mean(t.argmax(1) == labels.numpy()))


@pytest.mark.parametrize("name", ["supervised", "supervised_kl"])
def test_an_unlabelled_image_folder_is_refused_before_the_run_dir_exists(name, tmp_path, capsys):
    folder = tmp_path / "flat"
    folder.mkdir()
    for i in range(4):
        tf.io.write_file(str(folder / f"{i}.png"), tf.io.encode_png(np.full((28, 28, 3), 40 * i, np.uint8)))
    run_dir = tmp_path / "run"
    overrides = [
        *TINY_CLI,
        "data.source=image_folder",
        f"data.path={folder}",
        "teacher.weights=null",
        "teacher.input_size=32",
    ]
    with pytest.raises(ConfigError, match="data.source=image_folder") as err:
        pretrain_stage(load_config(name, overrides), 1, run_dir)
    assert "needs labels" in str(err.value) and str(folder) in str(err.value)
    assert not run_dir.exists()
    # The CLI: one error line, exit code 2, still nothing written.
    args = ["--config", name, "--run-dir", str(run_dir)]
    for item in overrides:
        args += ["--set", item]
    assert pretrain_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "needs labels" in err and len(err.splitlines()) == 1
    assert not run_dir.exists()
