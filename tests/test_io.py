"""Atomic writes: all or nothing, the mode a plain open/mkdir gives, no temporaries left."""

import dataclasses
import json
import os
import stat

import numpy as np
import pytest

from burn_tf.io import (
    atomic_output,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    path_size,
    refuse_existing,
)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_files_replace_atomically_with_umask_mode(tmp_path):
    path = tmp_path / "sub" / "a.txt"
    atomic_write_text(path, "one")
    atomic_write_bytes(path, b"two")
    assert path.read_bytes() == b"two"
    assert _mode(path) == 0o666 & ~_umask()
    assert [p.name for p in path.parent.iterdir()] == ["a.txt"]  # no temporaries left


def test_json_converts_numpy_and_dataclasses(tmp_path):
    @dataclasses.dataclass
    class Point:
        x: int

    path = tmp_path / "r.json"
    atomic_write_json(path, {"f": np.float32(0.5), "i": np.int64(3), "a": np.arange(3), "one": np.array([7]),
                             "p": Point(1)})
    assert json.loads(path.read_text()) == {"a": [0, 1, 2], "f": 0.5, "i": 3, "one": 7, "p": {"x": 1}}
    with pytest.raises(TypeError, match="object is not JSON serialisable"):
        atomic_write_json(tmp_path / "bad.json", {"x": object()})
    assert not (tmp_path / "bad.json").exists()


def test_directory_output_replaces_the_old_one_only_when_complete(tmp_path):
    path = tmp_path / "out"
    with atomic_output(path, directory=True) as tmp:
        (tmp / "f").write_text("first")
    assert _mode(path) == 0o777 & ~_umask()
    with pytest.raises(RuntimeError):
        with atomic_output(path, directory=True) as tmp:
            (tmp / "f").write_text("half")
            raise RuntimeError("interrupted")
    assert (path / "f").read_text() == "first"  # the failed write left the old output
    with atomic_output(path, directory=True) as tmp:
        (tmp / "g").write_text("second")
    assert [p.name for p in path.iterdir()] == ["g"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert path_size(path) == len("second")


def test_refuse_existing_names_the_path_and_the_way_out(tmp_path):
    (tmp_path / "x").write_text("")
    refuse_existing(tmp_path / "y", overwrite=False)
    refuse_existing(tmp_path / "x", overwrite=True)
    with pytest.raises(FileExistsError, match=r"x exists; pass --overwrite to replace it"):
        refuse_existing(tmp_path / "x", overwrite=False, how="--overwrite")
