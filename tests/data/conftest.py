"""Fixtures for the data tests; helpers live in data_helpers.py."""

import numpy as np
import pytest
from data_helpers import write_idx


@pytest.fixture
def tiny_fashion_dir(tmp_path):
    """A tiny Fashion-MNIST-format directory: 6 train and 4 test images with known content."""
    rng = np.random.default_rng(0)
    out = {}
    for prefix, n in (("train", 6), ("t10k", 4)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels)
        out[prefix] = (images, labels)
    return tmp_path, out
