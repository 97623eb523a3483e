import numpy as np
import pytest

from burn_tf.data.composites import NUM_CLASSES, multilabel_composites
from burn_tf.data.source_fashion_mnist import load_fashion_mnist_arrays


def test_shapes_labels_and_boxes_agree():
    images, labels, boxes = multilabel_composites(200, canvas=64, max_items=3, seed=0,
                                                  split="train", return_boxes=True)
    assert images.shape == (200, 64, 64) and images.dtype == np.uint8
    assert labels.shape == (200, NUM_CLASSES) and set(np.unique(labels)) <= {0, 1}
    counts = np.array([len(b) for b in boxes])
    assert counts.min() >= 1 and counts.max() <= 3 and len(set(counts)) == 3
    for image, label, box in zip(images, labels, boxes):
        # the label is exactly the set of item classes
        assert set(np.flatnonzero(label)) == set(box[:, 4].tolist())
        # every lit pixel lies in some item's tight box
        inside = np.zeros_like(image, bool)
        for x0, y0, x1, y1, _ in box:
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
            inside[y0:y1, x0:x1] = True
        assert not image[~inside].any()
    # all classes occur, roughly equally often
    per_class = labels.sum(axis=0)
    assert per_class.min() > 0.5 * per_class.mean()


def test_deterministic_and_seeded():
    a = multilabel_composites(50, seed=3, split="train")
    b = multilabel_composites(50, seed=3, split="train")
    c = multilabel_composites(50, seed=4, split="train")
    d = multilabel_composites(50, seed=3, split="test")
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[0], d[0])


@pytest.mark.parametrize("split", ["train", "test"])
def test_items_come_from_the_named_split(split):
    # canvas = item size and one item: each composite *is* one Fashion-MNIST image
    images, labels = multilabel_composites(30, canvas=28, max_items=1, seed=0, split=split)
    items, item_labels = load_fashion_mnist_arrays(split)
    lookup = {item.tobytes(): int(lab) for item, lab in zip(items, item_labels)}
    other_items, _ = load_fashion_mnist_arrays("test" if split == "train" else "train")
    other = {item.tobytes() for item in other_items}
    for image, label in zip(images, labels):
        assert image.tobytes() in lookup
        assert np.flatnonzero(label).tolist() == [lookup[image.tobytes()]]
        assert image.tobytes() not in other


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(canvas=20), "canvas must be >= 28"),
        (dict(split="val"), "split must be one of"),
        (dict(max_items=1, min_items=2), "min_items <= max_items"),
        (dict(n=0), "n must be >= 1"),
    ],
)
def test_bad_arguments(kwargs, message):
    args = dict(n=4, canvas=64, max_items=3, seed=0, split="train")
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        multilabel_composites(**args)
