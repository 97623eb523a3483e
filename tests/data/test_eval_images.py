"""Evaluation images: unaugmented batches in source order at the model's input size."""

import numpy as np
import tensorflow as tf
from data_helpers import solid, synthetic_source, write_image

from burn_tf.data import eval_dataset, image_folder, prepare_images


def test_eval_dataset_deterministic_and_resized():
    source, images = synthetic_source(10, 28)
    same = list(eval_dataset(source, 28, 4).as_numpy_iterator())
    assert [b[0].shape[0] for b in same] == [4, 4, 2]
    np.testing.assert_allclose(np.concatenate([b[0] for b in same]), images / 255.0, atol=1e-7)
    assert np.concatenate([b[1] for b in same]).tolist() == list(range(10))
    up = list(eval_dataset(source, 32, 4).as_numpy_iterator())
    assert up[0][0].shape == (4, 32, 32, 3) and up[0][0].dtype == np.float32
    assert 0.0 <= up[0][0].min() and up[0][0].max() <= 1.0
    again = list(eval_dataset(source, 32, 4).as_numpy_iterator())
    np.testing.assert_array_equal(up[1][0], again[1][0])


def test_eval_dataset_varying_sizes_center_crop(tmp_path):
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, 20:60] = 255  # white centre square, black sides
    write_image(tmp_path / "a.png", img)
    write_image(tmp_path / "b.png", solid(30, 20, (10, 20, 30)))
    ds = eval_dataset(image_folder(tmp_path), 16, 8, center_crop=1.0)
    (x, y), = list(ds.as_numpy_iterator())
    assert x.shape == (2, 16, 16, 3) and y.tolist() == [-1, -1]
    assert x[0][:, 1:-1].min() > 0.95  # the centre square only (edge columns mix)
    np.testing.assert_allclose(x[1][8, 8], np.array([10, 20, 30]) / 255.0, atol=1e-3)



def test_one_path_bilinear_plain_when_enlarging_anti_aliased_when_shrinking():
    rng = np.random.default_rng(3)
    grey = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=-1) / np.float32(255.0)
    # Enlarging: tf's plain bilinear, bit for bit (the evaluators' figures were measured so).
    np.testing.assert_array_equal(prepare_images(grey, 32).numpy(),
                                  tf.clip_by_value(tf.image.resize(rgb, (32, 32), "bilinear"), 0.0, 1.0).numpy())
    np.testing.assert_array_equal(prepare_images(grey, 28).numpy(), rgb)
    # Shrinking: anti-aliased, as PIL's bilinear resize.
    np.testing.assert_allclose(prepare_images(grey, 12).numpy(),
                               tf.image.resize(rgb, (12, 12), "bilinear", antialias=True).numpy(), atol=1e-6)
    # The data sets go through the same function.
    source = tf.data.Dataset.from_tensor_slices((np.repeat(grey[..., None], 3, axis=-1), np.zeros(5, np.int64)))
    for size in (32, 12):
        batches = [x for x, _ in eval_dataset(source, size, 2).as_numpy_iterator()]
        np.testing.assert_array_equal(np.concatenate(batches), prepare_images(grey, size).numpy())
