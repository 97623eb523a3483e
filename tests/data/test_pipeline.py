"""The multi-view pipeline: shapes, determinism under a seed, remainders, chunks, varying sizes."""

import numpy as np
import pytest
import tensorflow as tf
from data_helpers import quiet, real_fashion_available, solid, synthetic_source, write_image

from burn_tf.data import AugmentConfig, image_folder, two_view_dataset


@pytest.mark.parametrize("size", [28, 32])
def test_two_view_shapes_dtypes_ranges(size):
    source, _ = synthetic_source(52, 28)
    ds = two_view_dataset(source, AugmentConfig(image_size=size), batch_size=16, seed=0)
    spec = ds.element_spec
    assert spec[0].shape.as_list() == [16, size, size, 3] and spec[0].dtype == tf.float32
    batches = list(ds.as_numpy_iterator())
    assert len(batches) == 3  # remainder of 4 dropped
    for v1, v2 in batches:
        for v in (v1, v2):
            assert v.shape == (16, size, size, 3) and v.dtype == np.float32
            assert v.min() >= 0.0 and v.max() <= 1.0
        assert not np.allclose(v1, v2)  # two different views


@pytest.mark.skipif(not real_fashion_available(), reason="Debian package dataset-fashion-mnist not installed")
def test_two_view_on_real_fashion_mnist():
    from burn_tf.data import fashion_mnist

    ds = two_view_dataset(fashion_mnist("test").take(64), AugmentConfig(image_size=32), 32, seed=0)
    (v1, v2), _ = list(ds.as_numpy_iterator())
    assert v1.shape == v2.shape == (32, 32, 32, 3) and v1.dtype == np.float32
    assert 0.0 <= min(v1.min(), v2.min()) and max(v1.max(), v2.max()) <= 1.0
    assert 0.05 < v1.mean() < 0.9 and v1.std() > 0.05


def test_two_view_deterministic_under_seed():
    source, _ = synthetic_source(40, 28)
    cfg = AugmentConfig(image_size=32, solarize_prob=(0.0, 0.2))
    ds1 = two_view_dataset(source, cfg, 8, seed=7, shuffle_buffer=40)
    run1 = list(ds1.as_numpy_iterator())
    run2 = list(two_view_dataset(source, cfg, 8, seed=7, shuffle_buffer=40).as_numpy_iterator())
    other = list(two_view_dataset(source, cfg, 8, seed=8, shuffle_buffer=40).as_numpy_iterator())
    assert len(run1) == len(run2) == 5
    for (a1, a2), (b1, b2) in zip(run1, run2):
        np.testing.assert_array_equal(a1, b1)
        np.testing.assert_array_equal(a2, b2)
    assert not np.allclose(run1[0][0], other[0][0])
    # a new epoch (new iterator) of the same dataset gets a new order and new augmentations
    epoch2 = list(ds1.as_numpy_iterator())
    assert not np.allclose(run1[0][0], epoch2[0][0])


def test_two_view_remainder_repeat_labels_and_chunks():
    source, _ = synthetic_source(20, 28)
    cfg = AugmentConfig(image_size=28)
    kept = list(two_view_dataset(
        source, cfg, 8, seed=0, drop_remainder=False, shuffle_buffer=0, with_labels=True,
    ).as_numpy_iterator())
    assert [b[0].shape[0] for b in kept] == [8, 8, 4]
    assert np.concatenate([b[2] for b in kept]).tolist() == [i % 10 for i in range(20)]
    rep = two_view_dataset(source, cfg, 8, seed=0, repeat=True, chunk_size=3)
    assert rep.element_spec[0].shape.as_list() == [8, 28, 28, 3]  # static after rebatching
    shapes = [b[0].shape[0] for b in rep.take(6)]
    assert shapes == [8] * 6


def test_two_view_on_image_folder_of_varying_sizes(tmp_path):
    for i, (h, w) in enumerate([(20, 30), (40, 25), (28, 28), (50, 60)]):
        write_image(tmp_path / "c" / f"{i}.png", solid(h, w, (60 * i, 100, 200 - 40 * i)))
    source = image_folder(tmp_path)
    ds = two_view_dataset(source, AugmentConfig(image_size=32), 2, seed=1, with_labels=True)
    batches = list(ds.as_numpy_iterator())
    assert len(batches) == 2
    for v1, v2, y in batches:
        assert v1.shape == v2.shape == (2, 32, 32, 3) and v1.dtype == np.float32
        assert 0.0 <= v1.min() and v1.max() <= 1.0 and (y == 0).all()
    assert ds.source_info is source.source_info


def test_each_view_gets_its_own_probabilities_in_the_pipeline(tmp_path):
    # BYOL's views: the first never solarizes, the second does. The pipeline once ran the
    # solarize only when the first view's probability was positive, so it never solarized.
    source, images = synthetic_source(8, 28)
    cfg = quiet(28, solarize_prob=(0.0, 1.0))
    (v1, v2), = list(two_view_dataset(source, cfg, 8, seed=0, shuffle_buffer=0).as_numpy_iterator())
    np.testing.assert_allclose(v1, images / 255.0, atol=1e-6)  # full crop, nothing else
    np.testing.assert_allclose(v2, np.where(v1 >= 0.5, 1.0 - v1, v1), atol=1e-6)
    # Images of varying size take the other path (crop one by one, then the rest as a batch).
    for i, (h, w) in enumerate([(20, 30), (40, 25)]):
        write_image(tmp_path / f"{i}.png", solid(h, w, (200, 40 * i, 100)))
    (v1, v2), = list(two_view_dataset(image_folder(tmp_path), quiet(16, solarize_prob=(0.0, 1.0)), 2, seed=0,
                                      shuffle_buffer=0).as_numpy_iterator())
    np.testing.assert_allclose(v2, np.where(v1 >= 0.5, 1.0 - v1, v1), atol=1e-6)
    assert not np.allclose(v1, v2)
