"""The code style the project chose (pyproject.toml [tool.ruff]): `ruff check` finds nothing in
the package, its tests, benchmarks and scripts. Part of the test command, so a finding fails CI."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    ruff = Path(sys.executable).with_name("ruff")
    command = [str(ruff)] if ruff.exists() else [shutil.which("ruff") or pytest.fail("ruff is not installed")]
    result = subprocess.run([*command, "check", "--no-cache", "--output-format", "concise", "."], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
