import numpy as np
import pytest

from burn_tf.data import detection_composites as dc
from burn_tf.data.detection_composites import make_detection_composites, tight_box


@pytest.fixture(scope="module")
def items():
    """A small stand-in for Fashion-MNIST: 40 distinct blobs of known shape, classes 0–9."""
    rng = np.random.default_rng(0)
    images = np.zeros((40, 28, 28), np.uint8)
    for i in range(40):
        y0, x0 = rng.integers(0, 8, size=2)
        h, w = rng.integers(8, 20, size=2)
        images[i, y0 : y0 + h, x0 : x0 + w] = rng.integers(60, 256, size=(h, w))
    return images, np.arange(40) % 10


def test_deterministic_under_a_seed(items):
    a = make_detection_composites("train", 30, 96, seed=3, arrays=items)
    b = make_detection_composites("train", 30, 96, seed=3, arrays=items)
    c = make_detection_composites("train", 30, 96, seed=4, arrays=items)
    t = make_detection_composites("test", 30, 96, seed=3, arrays=items)
    for field in ("images", "boxes", "classes", "num_objects", "item_indices"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.images, c.images)
    assert not np.array_equal(a.images, t.images)  # the split is part of the seed


def test_shapes_padding_and_counts(items):
    d = make_detection_composites("train", 50, 64, min_objects=1, max_objects=3, seed=0, arrays=items)
    assert d.images.shape == (50, 64, 64) and d.images.dtype == np.uint8
    assert d.boxes.shape == (50, 3, 4) and d.classes.shape == (50, 3)
    assert d.bounding_box_format == "xyxy"
    assert d.num_objects.min() >= 1 and d.num_objects.max() <= 3
    for i in range(50):
        k = d.num_objects[i]
        assert np.all(d.classes[i, :k] >= 0) and np.all(d.classes[i, k:] == -1)
        assert np.all(d.boxes[i, k:] == -1) and np.all(d.item_indices[i, k:] == -1)
        np.testing.assert_array_equal(d.classes[i, :k], items[1][d.item_indices[i, :k]])


def test_boxes_inside_canvas_and_match_the_pasted_items(items):
    d = make_detection_composites("train", 60, 80, seed=1, max_iou=0.2, arrays=items)
    for i in range(len(d)):
        k = d.num_objects[i]
        boxes = d.boxes[i, :k].astype(int)
        assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2:] <= 80)
        assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
        # Every lit pixel lies in some box; every box's border rows/columns are lit
        # (the box is tight around its item's pixels).
        covered = np.zeros((80, 80), bool)
        for x0, y0, x1, y1 in boxes:
            covered[y0:y1, x0:x1] = True
            patch = d.images[i, y0:y1, x0:x1]
            assert patch[0].any() and patch[-1].any() and patch[:, 0].any() and patch[:, -1].any()
        assert not d.images[i][~covered].any()
        for a in range(k):
            for b in range(a + 1, k):
                assert dc.box_iou_matrix(d.boxes[i, a], d.boxes[i, b])[0, 0] <= 0.2 + 1e-6


def test_a_single_item_is_pasted_exactly():
    item = np.zeros((28, 28), np.uint8)
    item[5:15, 8:20] = 200
    d = make_detection_composites(
        "test", 5, 64, min_objects=1, max_objects=1, item_scale=(28 / 64, 28 / 64), seed=0,
        arrays=(item[None], np.array([7])),
    )
    for i in range(5):
        x0, y0, x1, y1 = d.boxes[i, 0].astype(int)
        assert (x1 - x0, y1 - y0) == (12, 10)
        assert d.classes[i, 0] == 7
        assert np.all(d.images[i, y0:y1, x0:x1] == 200)
        assert d.images[i].sum() == 200 * 120


def test_tight_box():
    a = np.zeros((10, 10), np.uint8)
    assert tight_box(a) is None
    a[2:5, 3:9] = 1
    assert tight_box(a) == (3, 2, 9, 5)


def test_to_dataset_gives_what_retinanet_reads(items):
    d = make_detection_composites("train", 6, 64, seed=0, arrays=items)
    batch = next(iter(d.to_dataset(batch_size=4)))
    assert batch["images"].shape == (4, 64, 64, 3)
    assert 0.0 <= float(batch["images"].numpy().min()) and float(batch["images"].numpy().max()) <= 1.0
    np.testing.assert_allclose(batch["bounding_boxes"]["boxes"].numpy(), d.boxes[:4])
    rel = next(iter(d.to_dataset(batch_size=6, rel=True)))["bounding_boxes"]["boxes"].numpy()
    valid = d.classes >= 0
    np.testing.assert_allclose(rel[valid], d.boxes[valid] / 64)
    # Flipped boxes still frame the flipped items.
    for batch in d.to_dataset(batch_size=6, flip=True).take(3):
        images = batch["images"].numpy()[..., 0]
        boxes, classes = batch["bounding_boxes"]["boxes"].numpy(), batch["bounding_boxes"]["classes"].numpy()
        for i in range(6):
            covered = np.zeros((64, 64), bool)
            for (x0, y0, x1, y1), c in zip(boxes[i].astype(int), classes[i]):
                if c >= 0:
                    covered[y0:y1, x0:x1] = True
            assert not images[i][~covered].any()


def test_bad_arguments(items):
    with pytest.raises(ValueError, match="split"):
        make_detection_composites("val", 2, arrays=items)
    with pytest.raises(ValueError, match="min_objects"):
        make_detection_composites("train", 2, min_objects=3, max_objects=2, arrays=items)
    with pytest.raises(ValueError, match="item_scale"):
        make_detection_composites("train", 2, item_scale=(0.5, 1.5), arrays=items)
    with pytest.raises(ValueError, match="arrays"):
        make_detection_composites("train", 2, arrays=(np.zeros((3, 28, 28), np.float32), np.zeros(3)))


def test_real_fashion_mnist_train_and_test_items():
    pytest.importorskip("burn_tf.data.source_info")
    from burn_tf.data.source_info import SourceNotFoundError

    try:
        train = make_detection_composites("train", 20, 128, seed=0)
        test = make_detection_composites("test", 20, 128, seed=0)
    except SourceNotFoundError as err:
        pytest.skip(str(err))
    assert train.class_names[0] == "T-shirt/top" and train.num_classes == 10
    assert train.item_indices.max() < 60000 and test.item_indices.max() < 10000
    valid = train.classes >= 0
    assert set(np.unique(train.classes[valid])).issubset(set(range(10)))
    sides = (train.boxes[valid][:, 2:] - train.boxes[valid][:, :2]).max(axis=1)
    assert sides.min() >= 1 and sides.max() <= round(0.45 * 128)


# ------------------------------------------------------------------ cluttered backgrounds


def test_clutter_keeps_exact_boxes_around_the_pasted_items():
    # One bright item of known shape, pasted at its own size, no occluder: its box is exact
    # and its pixels are intact (alpha 1 at >= 64), while the background is textured.
    item = np.zeros((28, 28), np.uint8)
    item[5:15, 8:20] = 200
    d = make_detection_composites(
        "test", 8, 64, min_objects=1, max_objects=1, item_scale=(28 / 64, 28 / 64), seed=0,
        background="clutter", occlusion=0.0, arrays=(item[None], np.array([7])),
    )
    for i in range(len(d)):
        x0, y0, x1, y1 = d.boxes[i, 0].astype(int)
        assert (x1 - x0, y1 - y0) == (12, 10) and d.classes[i, 0] == 7
        assert np.all(d.images[i, y0:y1, x0:x1] == 200)
        outside = np.ones((64, 64), bool)
        outside[y0:y1, x0:x1] = False
        assert (d.images[i][outside] > 0).mean() > 0.5  # texture, not a black canvas
        assert d.images[i][outside].std() > 3.0


def test_clutter_boxes_scales_and_determinism(items):
    kw = dict(background="clutter", item_scale=(0.15, 0.6), seed=2, arrays=items)
    d = make_detection_composites("train", 120, 64, **kw)
    again = make_detection_composites("train", 120, 64, **kw)
    other = make_detection_composites("train", 120, 64, **{**kw, "seed": 3})
    for field in ("images", "boxes", "classes", "num_objects", "item_indices"):
        np.testing.assert_array_equal(getattr(d, field), getattr(again, field))
    assert not np.array_equal(d.images, other.images)
    valid = d.classes >= 0
    boxes = d.boxes[valid]
    assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2:] <= 64)
    assert np.all(boxes[:, 2:] > boxes[:, :2])
    np.testing.assert_array_equal(d.classes[valid], items[1][d.item_indices[valid]])
    sides = (boxes[:, 2:] - boxes[:, :2]).max(axis=1)
    assert sides.min() <= 6 and sides.max() >= 24  # several scales (blobs of 8–20 of 28 px)
    assert (d.images == 0).mean() < 0.05  # a textured canvas, unlike the black one


def test_occluders_cover_a_band_of_the_object_and_keep_its_full_box():
    item = np.zeros((28, 28), np.uint8)
    item[4:24, 4:24] = 200  # a 20×20 square pasted at its own size
    d = make_detection_composites(
        "test", 30, 64, min_objects=1, max_objects=1, item_scale=(28 / 64, 28 / 64), seed=1,
        background="clutter", occlusion=1.0, arrays=(item[None], np.array([3])),
    )
    for i in range(len(d)):
        x0, y0, x1, y1 = d.boxes[i, 0].astype(int)
        assert (x1 - x0, y1 - y0) == (20, 20)  # amodal: the occluded item keeps its box
        visible = (d.images[i, y0:y1, x0:x1] == 200).mean()
        assert 0.55 <= visible <= 0.85, visible  # a 20–40 % band is covered


def test_bad_clutter_arguments(items):
    with pytest.raises(ValueError, match="background must be one of"):
        make_detection_composites("train", 2, background="grey", arrays=items)
    with pytest.raises(ValueError, match="occlusion"):
        make_detection_composites("train", 2, background="clutter", occlusion=1.5, arrays=items)


def test_both_composite_generators_share_the_split_ids_and_boxes():
    from burn_tf.data import composites

    for make in (lambda: composites.multilabel_composites(1, split="val"),
                 lambda: make_detection_composites("val", 1)):
        with pytest.raises(ValueError, match=r"split must be one of \['test', 'train'\], got 'val'"):
            make()
    assert dc.tight_box is composites.tight_box  # one tight box, in the lower module
