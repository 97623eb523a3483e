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


@pytest.fixture(scope="session")  # tfds registers the class by name: define it once
def tiny_tfds_builder_cls():
    import tensorflow_datasets as tfds

    class BurnTfTinyGrey(tfds.core.GeneratorBasedBuilder):
        """Five 6x5 grey images, labels 0..2, generated (no download)."""

        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict({
                    "image": tfds.features.Image(shape=(6, 5, 1)),
                    "label": tfds.features.ClassLabel(names=["a", "b", "c"]),
                }),
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for i in range(5):
                yield i, {"image": np.full((6, 5, 1), 10 * i, np.uint8), "label": i % 3}

    return BurnTfTinyGrey
