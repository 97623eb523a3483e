"""The labelled-data layer: one loader for every layout, the image and label checks, and
the subset helpers (seeded random, first-n balanced, balanced fraction, per class)."""

from types import SimpleNamespace

import numpy as np
import pytest

from burn_tf.evaluate.data import (
    ClassificationData,
    balanced_fraction,
    check_images,
    check_labels,
    first_n_balanced,
    first_n_balanced_data,
    load_labelled_data,
    load_train_test,
    random_subset,
    select_per_class,
)

# ---------------------------------------------------------------------------- loading


def tiny_arrays():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (12, 8, 8), dtype=np.uint8)
    y = np.arange(12) % 3
    return x[:8], y[:8], x[8:], y[8:]


def test_every_array_layout_loads_the_same():
    x_tr, y_tr, x_te, y_te = tiny_arrays()
    layouts = [
        (x_tr, y_tr, x_te, y_te),
        ((x_tr, y_tr), (x_te, y_te)),
        {"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te, "name": "mine"},
        SimpleNamespace(x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te, name="mine"),
        ClassificationData("mine", x_tr, y_tr, x_te, y_te),
    ]
    for layout in layouts:
        data = load_labelled_data(layout)
        np.testing.assert_array_equal(data.x_train, x_tr)
        np.testing.assert_array_equal(data.y_test, y_te)
        assert data.y_train.dtype == np.int64 and data.num_classes == 3
        assert data.name in ("arrays", "mine")
        np.testing.assert_array_equal(data.split("test")[0], x_te)


def test_fashion_mnist_by_name(fashion_splits):
    data = load_labelled_data("fashion_mnist")
    assert data.x_train.shape == (60000, 28, 28) and data.x_test.shape == (10000, 28, 28)
    assert data.class_names[0] == "T-shirt/top" and data.num_classes == 10


def test_loader_errors_name_what_is_wrong():
    x_tr, y_tr, x_te, y_te = tiny_arrays()
    with pytest.raises(ValueError, match="unknown data set 'cifar10'"):
        load_labelled_data("cifar10")
    with pytest.raises(ValueError, match="lacks \\['y_test'\\]"):
        load_labelled_data({"x_train": x_tr, "y_train": y_tr, "x_test": x_te})
    with pytest.raises(ValueError, match="got 3 items"):
        load_labelled_data((x_tr, y_tr, x_te))
    with pytest.raises(TypeError, match="got int"):
        load_labelled_data(3)
    with pytest.raises(ValueError, match="arrays y_train: 8 images but 7 labels"):
        load_labelled_data((x_tr, y_tr[:7], x_te, y_te))
    with pytest.raises(ValueError, match="needs the backbone's image_size"):
        load_labelled_data("tfds:cifar10")
    with pytest.raises(ValueError, match="reads 'fashion_mnist' or labelled arrays"):
        load_train_test("tfds:cifar10", None, None)


def test_image_and_label_checks():
    assert check_images(np.zeros((2, 5, 5, 3), np.float32)).shape == (2, 5, 5, 3)
    with pytest.raises(ValueError, match=r"x: images must be \[N,H,W\] or \[N,H,W,1\|3\]"):
        check_images(np.zeros((2, 5, 5, 2), np.uint8), "x")
    with pytest.raises(ValueError, match="uint8 or float"):
        check_images(np.zeros((2, 5, 5), np.int32))
    with pytest.raises(ValueError, match="no images"):
        check_images(np.zeros((0, 5, 5), np.uint8))
    np.testing.assert_array_equal(check_labels(np.array([[1.0], [0.0]])), [1, 0])  # [N, 1] floats
    with pytest.raises(ValueError, match="integer class ids"):
        check_labels(np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="negative ids"):
        check_labels(np.array([0, -1]))
    with pytest.raises(ValueError, match="y: 3 images but 2 labels"):
        check_labels(np.array([0, 1]), "y", num_images=3)
    with pytest.raises(ValueError, match="holds 1 class"):
        check_labels(np.zeros(4, int), min_classes=2)


# ---------------------------------------------------------------------------- subsets


def test_random_subset_is_seeded_and_keeps_order():
    x = np.arange(100) * 10
    y = np.arange(100) % 4
    xs, ys = random_subset(x, y, 30, seed=3)
    assert len(xs) == 30 and np.all(np.diff(xs) > 0)  # original order
    np.testing.assert_array_equal(xs // 10 % 4, ys)  # images and labels stay paired
    np.testing.assert_array_equal(xs, random_subset(x, y, 30, seed=3)[0])
    assert not np.array_equal(xs, random_subset(x, y, 30, seed=4)[0])
    assert random_subset(x, y, None)[0] is x and random_subset(x, y, 100)[0] is x
    with pytest.raises(ValueError, match="positive"):
        random_subset(x, y, 0)


def test_first_n_balanced():
    labels = np.array([0, 1, 0, 2, 1, 0, 2, 2, 1, 0])
    idx = first_n_balanced(labels, 7)
    assert np.bincount(labels[idx]).tolist() == [3, 2, 2]
    assert idx.tolist() == [0, 1, 2, 3, 4, 5, 6]  # the first ones of each class, in order
    assert np.array_equal(idx, first_n_balanced(labels, 7))
    with pytest.raises(ValueError, match="class 1 has 3 examples"):
        first_n_balanced(labels, 12)


def test_first_n_balanced_data_cuts_each_split():
    x_tr, y_tr, x_te, y_te = tiny_arrays()
    data = first_n_balanced_data(ClassificationData("a", x_tr, y_tr, x_te, y_te), 6, None)
    assert np.bincount(data.y_train).tolist() == [2, 2, 2] and len(data.y_test) == 4


def test_balanced_fraction_is_balanced_reproducible_and_disjoint(fashion_splits):
    labels = fashion_splits["train"][1]
    holdout = balanced_fraction(labels, 0.1, seed=1)
    one = balanced_fraction(labels, 0.01, seed=0, exclude=holdout)
    ten = balanced_fraction(labels, 0.1, seed=0, exclude=holdout)
    assert np.bincount(labels[holdout]).tolist() == [600] * 10
    assert np.bincount(labels[one]).tolist() == [60] * 10  # 1% of 60k, balanced
    assert np.bincount(labels[ten]).tolist() == [600] * 10
    assert not set(one) & set(holdout) and not set(ten) & set(holdout)
    assert np.array_equal(one, balanced_fraction(labels, 0.01, seed=0, exclude=holdout))
    assert not np.array_equal(one, balanced_fraction(labels, 0.01, seed=5, exclude=holdout))
    assert len(np.unique(one)) == len(one) and np.all(np.diff(one) > 0)


def test_balanced_fraction_errors():
    labels = np.array([0] * 10 + [1] * 3)
    with pytest.raises(ValueError, match="class 1 has 3 available examples, fewer than the 5"):
        balanced_fraction(labels, 0.8, seed=0)  # round(0.8 · 13 / 2) = 5 per class
    with pytest.raises(ValueError, match="class 1 has 1 available examples"):
        balanced_fraction(labels, 0.3, seed=0, exclude=[10, 11])
    with pytest.raises(ValueError, match="needs >= 2"):
        balanced_fraction(np.zeros(10, int), 0.5, seed=0)
    with pytest.raises(ValueError, match="fraction must be in"):
        balanced_fraction(labels, 0.0, seed=0)


def test_select_per_class():
    labels = np.repeat(np.arange(3), 5)
    with pytest.raises(ValueError, match="num_classes=5"):
        select_per_class(labels, 5, 2)
    assert len(select_per_class(labels, 2, 3)) == 6
    idx = select_per_class(labels, 2, 3, seed=1)
    assert labels[idx].tolist() == [0, 0, 0, 1, 1, 1]
    np.testing.assert_array_equal(idx, select_per_class(labels, 2, 3, seed=1))
