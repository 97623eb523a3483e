"""The image-folder source: classes, flat folders, extensions, corrupt files skipped or strict."""

import os

import numpy as np
import pytest
import tensorflow as tf
from data_helpers import check_source_spec, collect, encode_image, solid, write_image

from burn_tf.data import CorruptImageError, DataSourceError, get_source_info, image_folder


def make_class_folder(root):
    write_image(root / "cat" / "a.png", solid(8, 6, (200, 10, 10)))
    write_image(root / "cat" / "b.JPG", solid(10, 10, (10, 200, 10)))
    write_image(root / "cat" / "sub" / "c.png", np.full((5, 7), 90, np.uint8))  # grey
    write_image(root / "dog" / "d.jpeg", solid(12, 9, (10, 10, 200)))
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 128
    write_image(root / "dog" / "e.png", rgba)
    (root / "dog" / "notes.txt").write_text("not an image")
    return root


def test_image_folder_classes(tmp_path):
    root = make_class_folder(tmp_path / "imgs")
    ds = image_folder(root)
    check_source_spec(ds)
    images, labels = collect(ds)
    info = get_source_info(ds)
    assert info.class_names == ("cat", "dog") and info.num_examples == 5
    assert labels == [0, 0, 0, 1, 1]
    assert images[0].shape == (8, 6, 3) and tuple(images[0][0, 0]) == (200, 10, 10)
    assert tuple(images[2][0, 0]) == (90, 90, 90)  # grey → 3 channels
    assert images[4].shape == (4, 4, 3) and tuple(images[4][0, 0]) == (255, 0, 0)  # alpha dropped
    assert abs(int(images[1][5, 5, 1]) - 200) < 8  # JPEG, upper-case extension
    assert info.skipped.count == 0


def test_image_folder_flat_and_extensions(tmp_path):
    for i in range(3):
        write_image(tmp_path / f"{i}.png", solid(4, 4, (i, i, i)))
    write_image(tmp_path / "skip.jpg", solid(4, 4, (9, 9, 9)))
    ds = image_folder(tmp_path, extensions=("png",))
    images, labels = collect(ds)
    assert labels == [-1, -1, -1] and [int(x[0, 0, 0]) for x in images] == [0, 1, 2]
    assert get_source_info(ds).class_names == ()


def test_image_folder_corrupt_skipped_and_counted(tmp_path, caplog):
    root = make_class_folder(tmp_path / "imgs")
    jpeg = encode_image(solid(32, 32, (1, 2, 3)), "JPEG")
    (root / "cat" / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / "dog" / "zz_garbage.png").write_bytes(b"definitely not a png" * 3)
    ds = image_folder(root)
    assert get_source_info(ds).num_examples == 7
    with caplog.at_level("WARNING"):
        images, labels = collect(ds)
    assert len(images) == 5 and labels == [0, 0, 0, 1, 1]
    skipped = get_source_info(ds).skipped
    assert skipped.count == 2
    assert [os.path.basename(n) for n in skipped.names] == ["truncated.jpg", "zz_garbage.png"]
    assert "truncated.jpg" in caplog.text and "zz_garbage.png" in caplog.text
    collect(ds)  # a second epoch does not count them again
    assert skipped.count == 2 and "2 unreadable image(s) skipped" in skipped.summary()


def test_image_folder_validate_counts_up_front(tmp_path):
    root = make_class_folder(tmp_path / "imgs")
    (root / "dog" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    ds = image_folder(root, validate=True)
    assert get_source_info(ds).skipped.count == 1
    assert len(collect(ds)[0]) == 5


def test_image_folder_strict_raises_naming_file(tmp_path):
    root = make_class_folder(tmp_path / "imgs")
    png = encode_image(solid(16, 16, (5, 5, 5)))
    (root / "cat" / "broken.png").write_bytes(png[:30])
    with pytest.raises(CorruptImageError, match="broken.png"):
        image_folder(root, strict=True, validate=True)
    ds = image_folder(root, strict=True)
    with pytest.raises(tf.errors.OpError, match="broken.png"):
        collect(ds)


def test_image_folder_empty_and_missing(tmp_path):
    (tmp_path / "empty" / "class_a").mkdir(parents=True)
    with pytest.raises(DataSourceError, match="contains no images"):
        image_folder(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        image_folder(tmp_path / "missing")
