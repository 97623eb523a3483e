"""The table of sources: a source built by its kind's name."""

import pytest
from data_helpers import collect, solid, write_image

from burn_tf.data import source_from_config


def test_source_from_config(tiny_fashion_dir, tmp_path):
    root, _ = tiny_fashion_dir
    ds = source_from_config("fashion_mnist", split="test", root=root)
    assert len(collect(ds)[0]) == 4
    write_image(tmp_path / "flat" / "a.png", solid(3, 3, (1, 2, 3)))
    assert collect(source_from_config("image_folder", path=tmp_path / "flat"))[1] == [-1]
    with pytest.raises(ValueError) as e:
        source_from_config("cifar")
    for name in ("fashion_mnist", "tfds", "image_folder", "tfrecord"):
        assert name in str(e.value)
    with pytest.raises(TypeError, match="accepted arguments"):
        source_from_config("image_folder", folder="x")
