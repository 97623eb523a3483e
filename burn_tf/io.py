"""Atomic file and directory writes: a reader never sees a half-written output.

Backbones, JSON metrics and reports, model cards, exported models and converted weights
are written through :func:`atomic_output`: the content is written under a temporary name
next to the target and renamed into place only when complete, so a crash or an interrupt
leaves either the old output or the new one, never a mixture. Files and
directories get the permissions a plain ``open``/``mkdir`` would give them under the
process umask (temporary files are created 0600/0700).

This module imports nothing from burn_tf: every other module may use it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask would, for every thread)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _umask_mode(path: str | os.PathLike, directory: bool = False) -> None:
    """Gives a temporary file/dir (created 0600/0700) the mode a plain open/mkdir would."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def refuse_existing(path: str | os.PathLike, overwrite: bool, how: str = "overwrite=True") -> None:
    """Raises ``FileExistsError`` if ``path`` exists and may not be replaced; ``how`` says
    how to allow it (a keyword argument, a CLI flag)."""
    if Path(path).exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass {how} to replace it")


def replace_path(new: Path, path: Path) -> None:
    """Moves the finished ``new`` (file or directory) to ``path``, replacing what is there.

    ``os.replace`` cannot put anything over a non-empty directory, so an existing directory
    is first renamed aside to ``.<name>.old`` and deleted once ``new`` is in place.
    """
    if path.is_dir() and not path.is_symlink():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(new, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        if new.is_dir() and (path.exists() or path.is_symlink()):
            path.unlink()  # a file where a directory goes: rename cannot replace it
        os.replace(new, path)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, directory: bool = False) -> Iterator[Path]:
    """Yields a temporary path to write ``path``'s content to; on a clean exit it replaces ``path``.

    The temporary path sits in a hidden scratch directory next to ``path`` (same file
    system, so the final rename is atomic) and has the same name as ``path``, so writers
    that check the suffix (``model.save``, ``save_weights``) accept it. With
    ``directory=True`` the yielded path is an empty directory to fill. If the block raises,
    ``path`` is left as it was and the scratch directory is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        if directory:
            _umask_mode(scratch, directory=True)
            tmp = scratch
        else:
            tmp = scratch / path.name
        yield tmp
        replace_path(tmp, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` via a temporary file and a rename: all or nothing."""
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically, like :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Writes ``obj`` as indented, key-sorted JSON, atomically; dataclasses and numpy
    scalars / arrays are converted (see :func:`json_default`)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=json_default) + "\n")


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)``: dataclasses → dicts, numpy scalars and 1-element arrays →
    Python numbers (``.item()``), other arrays → nested lists (``.tolist()``)."""
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    if hasattr(obj, "item"):
        try:
            return obj.item()
        except ValueError:  # an array of several elements: .item() takes one
            pass
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Holds an exclusive ``flock`` on ``path`` (created if missing) for the block; another
    process (or another open of the same file) waits until it is released. The kernel drops
    the lock when its holder exits, so a killed process never leaves a stale lock."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def path_size(path: str | os.PathLike) -> int:
    """Size in bytes of a file, or of every file under a directory."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
