"""The pickle side of a PyTorch checkpoint: the restricted unpickler and the two containers.

A ``torch.save`` file is a pickle whose tensors point ("persistent ids") at raw storages,
held in one of two containers: the zip format (``<archive>/data.pkl`` plus one
``<archive>/data/<key>`` entry per storage; :func:`load_zip`) and the legacy format (a
magic number, a protocol version, a sys-info dict, the object pickle, the list of storage
keys, then each storage as ``int64 numel`` + raw bytes; :func:`load_legacy`).

Unpickling is done by :class:`SafeUnpickler`, whose ``find_class`` resolves only the
globals a state_dict (or a training checkpoint around it) needs, each to *our own*
harmless callable — ``torch._utils._rebuild_tensor_v2`` becomes a lazy tensor checked
against its storage's bounds (:mod:`burn_tf.convert.torch_storage`), ``torch.FloatStorage``
a dtype marker, and so on. Any other global (``os.system``, ``builtins.eval``, a user class,
a TorchScript ``__torch__`` type…) raises :class:`UnsafeCheckpointError` naming the file and
the global: loading a checkpoint never executes pickled code. :func:`resolve_tensors` then
turns every lazy tensor of the loaded object into a numpy array.
"""

from __future__ import annotations

import _compat_pickle
import collections
import io
import pickle
import struct
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np

from burn_tf.convert.torch_storage import (
    STORAGE_DTYPES,
    TORCH_DTYPES,
    CheckpointFormatError,
    DType,
    LazyTensor,
    Storage,
    StorageView,
    widen,
)

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The checkpoint's pickle references a global outside the state_dict allow-list."""


# ----------------------------------------------------------------------------- safe callables


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    return LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None):
    if not isinstance(dtype, DType):
        raise pickle.UnpicklingError("_rebuild_tensor_v3 without a torch dtype")
    return LazyTensor(storage, storage_offset, size, stride, dtype)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *_state):
    if not isinstance(data, LazyTensor):
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
for _name, _dt in STORAGE_DTYPES.items():
    _ALLOWED_GLOBALS[("torch", _name)] = DType(_name, _dt)
for _name, _dt in TORCH_DTYPES.items():
    _ALLOWED_GLOBALS[("torch", _name)] = DType(_name, _dt)


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


def _check_storage_type(storage_type, source: str) -> DType:
    if not isinstance(storage_type, DType):
        raise pickle.UnpicklingError(f"{source}: storage of unknown type {storage_type!r}")
    return storage_type


def load_zip(zf: zipfile.ZipFile, source: str) -> Any:
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

    storages: dict[str, Storage] = {}

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
        st = Storage(dtype, arr.shape[0], key)
        st.data = arr
        storages[key] = st
        return st

    with zf.open(pkl[0]) as fh:
        return SafeUnpickler(io.BytesIO(fh.read()), source, storage_factory).load()


def load_legacy(fh: io.BytesIO, source: str) -> Any:
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

    storages: dict[str, Storage] = {}
    views: dict[str, StorageView] = {}

    def storage_factory(storage_type, root_key, location, numel, view_metadata=None):
        dtype = _check_storage_type(storage_type, source)
        root_key = str(root_key)
        if root_key not in storages:
            storages[root_key] = Storage(dtype, numel, root_key)
        root = storages[root_key]
        if view_metadata is None:
            return root
        view_key, offset, view_size = view_metadata
        view_key = str(view_key)
        if view_key not in views:
            views[view_key] = StorageView(root, offset, view_size, view_key)
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


def resolve_tensors(obj: Any, _depth: int = 0) -> Any:
    """Replace every lazy tensor in a (nested) container by a numpy array."""
    if _depth > 200:
        raise CheckpointFormatError("checkpoint nests containers more than 200 deep")
    if isinstance(obj, LazyTensor):
        return obj.resolve()
    if isinstance(obj, (Storage, StorageView)):
        return widen(obj.array(), obj.dtype)
    if isinstance(obj, collections.OrderedDict):
        return collections.OrderedDict((k, resolve_tensors(v, _depth + 1)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: resolve_tensors(v, _depth + 1) for k, v in obj.items()}
    if isinstance(obj, list):
        return [resolve_tensors(v, _depth + 1) for v in obj]
    if isinstance(obj, tuple):
        return tuple(resolve_tensors(v, _depth + 1) for v in obj)
    if isinstance(obj, _Namespace):
        obj.__dict__.update({k: resolve_tensors(v, _depth + 1) for k, v in obj.__dict__.items()})
    return obj
