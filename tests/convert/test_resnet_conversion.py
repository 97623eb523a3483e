"""torchvision ResNet → Keras: the converted model reproduces the PyTorch forward."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch_reference import randomize_bn, torch_resnet  # noqa: E402

from burn_tf.convert import CheckpointMismatchError, convert_torchvision_resnet  # noqa: E402
from burn_tf.convert.__main__ import main as convert_main  # noqa: E402
from burn_tf.convert.pretrained_teacher import build_teacher  # noqa: E402
from burn_tf.models.resnet import resnet18, resnet50  # noqa: E402
from burn_tf.models.teacher import teacher_feature_dim  # noqa: E402

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
TOL = 1e-4


def rel_err(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def torch_features(model, images):
    x = torch.from_numpy(((images - MEAN) / STD).transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        return model.features(x).numpy()


def state_dict_np(model):
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def torch_r50():
    torch.manual_seed(0)
    m = torch_resnet(50).eval()
    randomize_bn(m, seed=1)
    return m


@pytest.fixture(scope="module")
def keras_r50():
    return resnet50(input_shape=(None, None, 3))


@pytest.fixture(scope="module")
def torch_r18_small():
    torch.manual_seed(1)
    m = torch_resnet(18, small_input_stem=True).eval()
    randomize_bn(m, seed=2)
    return m


@pytest.fixture(scope="module")
def keras_r18_small():
    return resnet18(input_shape=(32, 32, 3), small_input_stem=True)


@pytest.mark.parametrize("size", [64, 57])  # 57: odd sizes exercise torch's padding
def test_resnet50_matches_torch(torch_r50, keras_r50, size):
    convert_torchvision_resnet(state_dict_np(torch_r50), keras_r50)
    images = np.random.RandomState(size).rand(2, size, size, 3).astype(np.float32)
    ref = torch_features(torch_r50, images)
    out = keras_r50(images, training=False).numpy()
    assert out.shape == ref.shape == (2, 2048)
    err = rel_err(out, ref)
    print(f"resnet50 @{size}px: max rel error {err:.2e}")
    assert err <= TOL


def test_resnet18_small_stem_matches_torch(torch_r18_small, keras_r18_small):
    convert_torchvision_resnet(state_dict_np(torch_r18_small), keras_r18_small)
    images = np.random.RandomState(0).rand(3, 32, 32, 3).astype(np.float32)
    ref = torch_features(torch_r18_small, images)
    out = keras_r18_small(images, training=False).numpy()
    assert out.shape == (3, 512)
    err = rel_err(out, ref)
    print(f"resnet18 small stem @32px: max rel error {err:.2e}")
    assert err <= TOL


def test_moco_checkpoint_through_cli_and_teacher(tmp_path, torch_r18_small):
    """A MoCo v2 style checkpoint: module.encoder_q./encoder_k., MLP fc head, queue."""
    sd = torch_r18_small.state_dict()
    q = {f"module.encoder_q.{k}": v for k, v in sd.items() if not k.startswith("fc.")}
    q.update(
        {"module.encoder_q.fc.0.weight": torch.randn(512, 512), "module.encoder_q.fc.2.weight": torch.randn(128, 512)}
    )
    k = {f"module.encoder_k.{name}": torch.randn_like(v.float()) for name, v in sd.items()}
    ckpt = {"epoch": 200, "arch": "resnet18", "state_dict": {**q, **k, "module.queue": torch.randn(128, 64)}}
    pth = tmp_path / "moco_v2.pth.tar"
    torch.save(ckpt, pth)
    out = tmp_path / "moco_r18.weights.h5"
    argv = ["--arch", "resnet18", "--checkpoint", str(pth), "--out", str(out), "--small-input-stem"]
    assert convert_main(argv) == 0 and out.exists()
    assert convert_main(argv) == 2  # never overwrites without --overwrite
    assert convert_main(argv + ["--overwrite"]) == 0

    images = np.random.RandomState(3).rand(2, 32, 32, 3).astype(np.float32)
    ref = torch_features(torch_r18_small, images)
    teacher = build_teacher("resnet18", weights=str(out), input_shape=(32, 32, 3), small_input_stem=True)
    assert teacher_feature_dim(teacher) == 512
    assert rel_err(teacher(images).numpy(), ref) <= TOL


# --------------------------------------------------------------------------- mismatches


def test_other_depth_names_first_bad_layer(torch_r18_small, keras_r50, keras_r18_small):
    torch.manual_seed(0)
    r18 = state_dict_np(torch_resnet(18))
    with pytest.raises(CheckpointMismatchError, match=r"'layer1\.0\.conv1\.weight'.*'layer1_0_conv1'"):
        convert_torchvision_resnet(r18, keras_r50)
    # The 7x7 stem does not fit the small 3x3 stem.
    with pytest.raises(CheckpointMismatchError, match=r"'conv1\.weight' has shape \(64, 3, 7, 7\).*'conv1'"):
        convert_torchvision_resnet(r18, keras_r18_small)


def test_missing_and_unexpected_keys(torch_r18_small, keras_r18_small):
    sd = state_dict_np(torch_r18_small)
    before = [w.copy() for w in keras_r18_small.get_weights()]
    missing = {k: v for k, v in sd.items() if not k.startswith("layer3.1.bn2.")}
    with pytest.raises(CheckpointMismatchError, match=r"missing key 'layer3\.1\.bn2\.weight'.*'layer3_1_bn2'"):
        convert_torchvision_resnet(missing, keras_r18_small)
    extra = {**sd, "layer2.2.conv1.weight": np.zeros((128, 128, 3, 3), np.float32)}  # a ResNet-34
    with pytest.raises(CheckpointMismatchError, match=r"unexpected key 'layer2\.2\.conv1\.weight'"):
        convert_torchvision_resnet(extra, keras_r18_small)
    # Nothing was assigned by the failed conversions.
    for a, b in zip(before, keras_r18_small.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_efficientnet_checkpoint_into_resnet_fails(keras_r18_small):
    sd = {"_conv_stem.weight": np.zeros((32, 3, 3, 3), np.float32), "_bn0.weight": np.ones(32, np.float32)}
    with pytest.raises(CheckpointMismatchError, match=r"missing key 'conv1\.weight'.*'conv1'"):
        convert_torchvision_resnet(sd, keras_r18_small)
