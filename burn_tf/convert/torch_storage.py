"""The tensors of a PyTorch checkpoint, decoded from raw storage bytes into numpy arrays.

What the restricted unpickler (:mod:`burn_tf.convert.torch_pickle`) builds in place of
torch objects: :class:`DType`, the stand-in for ``torch.<dtype>`` and ``torch.<X>Storage``
globals (bfloat16, which numpy lacks, is read as uint16 and widened to float32);
:class:`Storage`, a 1-D storage whose bytes the container reader fills; :class:`StorageView`,
a legacy-format view into a root storage; and :class:`LazyTensor`, a tensor (offset, size,
stride) resolved to an ndarray once its storage is read — bounds-checked first, so a
corrupt or hostile file can never make ``as_strided`` read memory outside its storage.
Also :class:`CheckpointFormatError`, raised for a file that is not a (supported) PyTorch
checkpoint or is corrupt.
"""

from __future__ import annotations

import pickle

import numpy as np


class CheckpointFormatError(ValueError):
    """The file is not a (supported) PyTorch checkpoint, or it is corrupt."""


# ----------------------------------------------------------------------------- dtypes

_BFLOAT16 = "bfloat16"  # numpy has no bfloat16: stored as uint16, widened to float32.

STORAGE_DTYPES = {
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

TORCH_DTYPES = {
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


class DType:
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


def widen(raw: np.ndarray, dtype: DType) -> np.ndarray:
    if dtype.np_dtype == _BFLOAT16:
        return (raw.astype(np.uint32) << 16).view(np.float32)
    return raw


# ----------------------------------------------------------------------------- storages


class Storage:
    """A 1-D storage; ``data`` is filled at once (zip) or after the pickle (legacy)."""

    __slots__ = ("dtype", "numel", "data", "key")

    def __init__(self, dtype: DType, numel: int, key: str):
        self.dtype = dtype
        self.numel = int(numel)
        self.key = key
        self.data: np.ndarray | None = None

    def array(self) -> np.ndarray:
        if self.data is None:
            raise CheckpointFormatError(f"storage {self.key!r} has no data in the file")
        return self.data


class StorageView:
    """A legacy-format view (offset, numel) into a root storage."""

    __slots__ = ("root", "offset", "numel", "dtype", "key")

    def __init__(self, root: Storage, offset: int, numel: int, key: str):
        self.root, self.offset, self.numel, self.key = root, int(offset), int(numel), key
        self.dtype = root.dtype

    def array(self) -> np.ndarray:
        data = self.root.array()
        if self.offset < 0 or self.offset + self.numel > data.shape[0]:
            raise CheckpointFormatError(f"storage view {self.key!r} lies outside its storage")
        return data[self.offset : self.offset + self.numel]


class LazyTensor:
    """A tensor whose storage may not be read yet; resolved to an ndarray at the end."""

    __slots__ = ("storage", "offset", "size", "stride", "dtype")

    def __init__(self, storage, offset, size, stride, dtype: DType | None = None):
        if not isinstance(storage, (Storage, StorageView)):
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
        out = widen(out, self.storage.dtype)
        if self.dtype is not None and self.dtype.np_dtype != self.storage.dtype.np_dtype:
            raise CheckpointFormatError(
                f"tensor dtype {self.dtype} differs from its storage's {self.storage.dtype}"
            )
        return out


def _as_int(x, what: str) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise pickle.UnpicklingError(f"tensor {what} is not an integer: {x!r}")
    return int(x)
