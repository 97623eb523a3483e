import numpy as np
import pytest
import tensorflow as tf

from burn_tf.callbacks import LambdaScheduler
from burn_tf.config import MethodConfig
from burn_tf.losses import lambda_at
from burn_tf.methods.burn import BURN
from burn_tf.models.reactnet import ReActNetConfig, reactnet_a


def tiny_teacher(size=32, dim=24):
    """A small FP CNN with BatchNorm: a real (random) frozen feature extractor."""
    inputs = tf.keras.Input((size, size, 3))
    x = tf.keras.layers.Conv2D(16, 3, strides=2, name="t_conv")(inputs)
    x = tf.keras.layers.BatchNormalization(name="t_bn")(x)
    x = tf.keras.layers.ReLU()(x)
    x = tf.keras.layers.Conv2D(dim, 3, strides=2, name="t_conv2")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    return tf.keras.Model(inputs, x, name="tiny_teacher")


def make_burn(stage=1, **method):
    student = reactnet_a(ReActNetConfig(stage=stage, input_size=32, width_multiplier=0.125))
    cfg = MethodConfig(head_width=32, **method)
    model = BURN(tiny_teacher(), student, cfg)
    # Eager: tracing the binary net's train step costs more than the few steps a test runs;
    # train_step is the same code either way (pretrain tests run it compiled).
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-2), run_eagerly=True)
    return model


def batch(n=16, seed=0):
    rng = np.random.default_rng(seed)
    v1 = rng.random((n, 32, 32, 3), dtype=np.float32)
    v2 = np.clip(v1 + 0.1 * rng.standard_normal(v1.shape).astype(np.float32), 0, 1)
    return tf.constant(v1), tf.constant(v2)


def snapshot(variables):
    return [v.numpy().copy() for v in variables]


def changed(before, variables):
    return any(not np.array_equal(b, v.numpy()) for b, v in zip(before, variables))


def test_one_step_trains_theta_and_phi_but_not_zeta_nor_its_bn_stats():
    model = make_burn()
    model.build_all()
    teacher_all = snapshot(model.teacher_backbone.weights)  # includes BN moving mean/var
    theta = snapshot(model.teacher_classifier.trainable_variables)
    phi_k = snapshot(model.student_backbone.trainable_variables)
    phi_l = snapshot(model.student_classifier.trainable_variables)
    logs = model.train_on_batch(batch(), return_dict=True)
    assert not changed(teacher_all, model.teacher_backbone.weights)
    assert changed(theta, model.teacher_classifier.trainable_variables)
    assert changed(phi_k, model.student_backbone.trainable_variables)
    assert changed(phi_l, model.student_classifier.trainable_variables)
    for key in ("loss", "kl", "fs", "lambda", "lr", "grad_norm_student_classifier",
                "grad_norm_student_backbone", "target_entropy"):
        assert np.isfinite(logs[key]), key
    assert logs["grad_norm_student_backbone"] > 0


def test_frozen_teacher_classifier_stays_fixed():
    model = make_burn(train_teacher_classifier=False)
    model.build_all()
    theta_all = snapshot(model.teacher_classifier.weights)
    phi = snapshot(model.student_backbone.trainable_variables)
    model.train_on_batch(batch())
    assert not changed(theta_all, model.teacher_classifier.weights)
    assert changed(phi, model.student_backbone.trainable_variables)


@pytest.mark.parametrize("similarity_on, kind", [("features", "cosine"), ("head", "l2"), ("head", "l1")])
def test_options_train(similarity_on, kind):
    model = make_burn(similarity_on=similarity_on, feature_similarity=kind, head="dense")
    logs = model.train_on_batch(batch(), return_dict=True)
    assert np.isfinite(logs["loss"])
    if similarity_on == "features":
        assert model.student_projection is not None
        assert model.student_projection.outputs[0].shape[-1] == model.teacher_dim


def test_loss_is_eq4_of_its_terms():
    model = make_burn()
    model.lambda_value.assign(0.8)
    loss, kl, fs, _ = model.compute_losses(*batch(), training=False)
    assert float(loss) == pytest.approx(0.2 * float(kl) + 0.8 * float(fs), rel=1e-5)


def test_single_view_mode_is_alg1():
    model = make_burn(symmetric=False)
    v1, _ = batch()
    logs = model.train_on_batch(v1, return_dict=True)
    assert np.isfinite(logs["loss"])
    with pytest.raises(ValueError, match="view1, view2"):
        make_burn(symmetric=True).train_on_batch(v1)


def test_lambda_scheduler_follows_global_step():
    model = make_burn()
    v1, v2 = batch(8)
    ds = tf.data.Dataset.from_tensors((v1, v2)).repeat(6)
    seen = []

    class Record(tf.keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(float(self.model.lambda_value.numpy()))

    model.fit(ds, epochs=1, callbacks=[LambdaScheduler(total_steps=6), Record()], verbose=0)
    assert seen == pytest.approx([lambda_at(t, 6) for t in range(6)], abs=1e-6)
    assert int(model.global_step.numpy()) == 6


def test_gradient_accumulation_applies_every_n_batches():
    student = reactnet_a(ReActNetConfig(stage=1, input_size=32, width_multiplier=0.125))
    model = BURN(tiny_teacher(), student, MethodConfig(head_width=32), accumulation_steps=3)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-2), run_eagerly=True)
    model.build_all()
    phi = snapshot(model.student_backbone.trainable_variables)
    model.train_on_batch(batch(seed=1))
    model.train_on_batch(batch(seed=2))
    assert int(model.optimizer.iterations.numpy()) == 0
    assert not changed(phi, model.student_backbone.trainable_variables)
    model.train_on_batch(batch(seed=3))
    assert int(model.optimizer.iterations.numpy()) == 1
    assert changed(phi, model.student_backbone.trainable_variables)


def test_short_fit_on_fashion_mnist_lowers_the_loss(fashion_mnist_available):
    from burn_tf.data import AugmentConfig, fashion_mnist, two_view_dataset

    model = make_burn(head="dense")
    source = fashion_mnist("train").take(256)
    ds = two_view_dataset(source, AugmentConfig(image_size=32), batch_size=32, seed=0, cache=True)
    model.lambda_value.assign(0.7)
    history = model.fit(ds, epochs=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
