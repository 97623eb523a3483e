import importlib
import io
import json
import math
from contextlib import redirect_stdout

import numpy as np
import pytest
import tensorflow as tf

from burn_tf.backbone import save_backbone
from burn_tf.data.sources import SourceNotFoundError
from burn_tf.models.reactnet import ReActNetConfig, reactnet_a

detect_module = importlib.import_module("burn_tf.evaluate.detect")
coco_average_precision = detect_module.coco_average_precision
DetectionConfigError = detect_module.DetectionConfigError

TINY = ReActNetConfig(stage=2, input_size=32, width_multiplier=0.125)


@pytest.fixture(scope="module")
def tiny_backbone_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("detect") / "backbone"
    save_backbone(reactnet_a(TINY), path)
    return path


def small_cnn():
    """A plain functional Keras feature extractor (not a ReActNet-A), strides 2..32."""
    inputs = tf.keras.Input((64, 64, 3))
    x = inputs
    for i, filters in enumerate((8, 8, 16, 16, 16), start=1):
        x = tf.keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu", name=f"down_{i}")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    return tf.keras.Model(inputs, x, name="small_cnn")


# ------------------------------------------------------------------------------- metric


def hand_case():
    """One class, two images. Image 1: gt A, one detection of IoU 0.82 (score 0.9).
    Image 2: gts B and C; detections: IoU 0.62 with B (0.8), a false positive (0.7),
    exactly C (0.6)."""
    gt_boxes = [np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [50, 50, 60, 70]])]
    gt_classes = [np.array([0]), np.array([0, 0])]
    pred_boxes = [np.array([[0, 0, 10, 8.2]]), np.array([[0, 0, 10, 6.2], [80, 80, 90, 90], [50, 50, 60, 70]])]
    pred_scores = [np.array([0.9]), np.array([0.8, 0.7, 0.6])]
    pred_classes = [np.array([0]), np.array([0, 0, 0])]
    return gt_boxes, gt_classes, pred_boxes, pred_scores, pred_classes


def test_ap_against_a_hand_computed_case():
    # Ranked TP/FP and 101-point interpolated precision (COCO):
    #  t in .50-.60: TP TP FP TP -> recall 1/3 2/3 2/3 1, precision envelope 1 1 .75 .75
    #                 -> 67 recall points at 1, 34 at .75: AP = 92.5/101
    #  t in .65-.80: TP FP FP TP -> 34 points at 1, 33 at .5, 34 at 0: AP = 50.5/101
    #  t in .85-.95: FP FP FP TP -> 34 points at .25: AP = 8.5/101
    #  mean over the 10 thresholds: (3*92.5 + 4*50.5 + 3*8.5) / 1010 = 0.5
    result = coco_average_precision(*hand_case())
    assert result["AP50"] == pytest.approx(92.5 / 101, abs=1e-12)
    assert result["AP75"] == pytest.approx(50.5 / 101, abs=1e-12)
    assert result["mAP"] == pytest.approx(0.5, abs=1e-12)
    expected = [92.5] * 3 + [50.5] * 4 + [8.5] * 3
    np.testing.assert_allclose(result["ap"][:, 0], np.array(expected) / 101, atol=1e-12)
    assert result["num_gt"] == [3]


def test_ap_classes_perfect_missing_and_absent():
    box = np.array([[10, 10, 30, 40]])
    # class 0: found exactly; class 1: has gt, never detected; class 2: detected, no gt.
    result = coco_average_precision(
        [np.concatenate([box, box + 40])], [np.array([0, 1])],
        [np.concatenate([box, box + 5])], [np.array([0.9, 0.8])], [np.array([0, 2])],
        num_classes=3,
    )
    assert result["classes"] == [0, 1]
    np.testing.assert_allclose(result["ap"][:, 0], 1.0)
    np.testing.assert_allclose(result["ap"][:, 1], 0.0)
    assert np.isnan(result["ap"][:, 2]).all()
    assert result["mAP"] == pytest.approx(0.5) and result["AP50"] == pytest.approx(0.5)


def test_ap_duplicates_are_false_positives_and_ignored_gt_counts_neither_way():
    box = np.array([[0.0, 0, 20, 20]])
    dup = coco_average_precision([box], [np.array([0])], [np.concatenate([box, box])],
                                 [np.array([0.9, 0.8])], [np.array([0, 0])])
    assert dup["AP50"] == pytest.approx(1.0)  # the duplicate ranks after the hit
    low_first = coco_average_precision([box], [np.array([0])], [np.concatenate([box + 50, box])],
                                       [np.array([0.9, 0.8])], [np.array([0, 0])])
    assert low_first["AP50"] == pytest.approx(0.5 * 101 / 101)  # precision 1/2 at every recall
    # A detection on a "difficult" gt is neither a hit nor a false positive, and the
    # difficult gt is not a miss.
    gts = np.array([[0.0, 0, 20, 20], [50, 50, 70, 70]])
    ignored = coco_average_precision(
        [gts], [np.array([0, 0])], [np.array([[50.0, 50, 70, 70], [0, 0, 20, 20]])],
        [np.array([0.9, 0.8])], [np.array([0, 0])], gt_ignore=[np.array([False, True])],
    )
    assert ignored["AP50"] == pytest.approx(1.0) and ignored["num_gt"] == [1]


def test_ap_keeps_the_top_max_detections_per_image():
    box = np.array([[0.0, 0, 20, 20]])
    misses = np.tile(box + 100, (3, 1))
    boxes = np.concatenate([misses, box])
    result = coco_average_precision([box], [np.array([0])], [boxes], [np.array([0.9, 0.8, 0.7, 0.1])],
                                    [np.zeros(4, int)], max_detections=3)
    assert result["AP50"] == 0.0
    result = coco_average_precision([box], [np.array([0])], [boxes], [np.array([0.9, 0.8, 0.7, 0.1])],
                                    [np.zeros(4, int)], max_detections=4)
    assert result["AP50"] == pytest.approx(0.25)


def test_ap_matches_pycocotools_when_installed():
    pytest.importorskip("pycocotools")
    import contextlib

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(0)
    gb, gc, pb, ps, pc = [], [], [], [], []
    for _ in range(25):
        g = int(rng.integers(0, 6))
        xy = rng.uniform(0, 80, (g, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(5, 40, (g, 2))], 1)
        cls = rng.integers(0, 3, g)
        d = int(rng.integers(0, 10))
        src = rng.integers(0, max(g, 1), d)
        det = (boxes[src] if g else rng.uniform(0, 80, (d, 4))) + rng.normal(0, 4, (d, 4))
        det[:, 2:] = np.maximum(det[:, 2:], det[:, :2] + 1)
        gb.append(boxes), gc.append(cls), pb.append(det), ps.append(rng.random(d))
        pc.append(np.where(rng.random(d) < 0.8, cls[src] if g else 0, rng.integers(0, 3, d)))
    ours = coco_average_precision(gb, gc, pb, ps, pc, num_classes=3)

    def xywh(b):
        return [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]

    anns = [{"id": n + 1, "image_id": i + 1, "category_id": int(c) + 1, "bbox": xywh(b), "iscrowd": 0,
             "area": float((b[2] - b[0]) * (b[3] - b[1]))}
            for n, (i, b, c) in enumerate((i, b, c) for i in range(25) for b, c in zip(gb[i], gc[i]))]
    gt = COCO()
    gt.dataset = {"images": [{"id": i + 1} for i in range(25)], "annotations": anns,
                  "categories": [{"id": k + 1} for k in range(3)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes([{"image_id": i + 1, "category_id": int(c) + 1, "bbox": xywh(b), "score": float(s)}
                         for i in range(25) for b, s, c in zip(pb[i], ps[i], pc[i])])
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    np.testing.assert_allclose([ours["mAP"], ours["AP50"], ours["AP75"]], ev.stats[:3], atol=1e-9)


# --------------------------------------------------------------------------- backbone


def test_reactnet_pyramid_levels_and_rebuild_at_the_detection_size(tiny_backbone_dir):
    from burn_tf.backbone import load_backbone

    model, meta = load_backbone(tiny_backbone_dir)
    sized = detect_module.backbone_at_size(model, meta, 64)
    assert sized.inputs[0].shape[1:3] == (64, 64) and sized.reactnet_config.width_multiplier == 0.125
    for a, b in zip(model.get_weights(), sized.get_weights()):
        np.testing.assert_array_equal(a, b)
    for size, rebuilt in ((64, sized), (128, detect_module.backbone_at_size(model, meta, 128))):
        levels = detect_module.resolve_pyramid_layers(rebuilt, None, size, reactnet=True)
        assert levels == {"P3": "block_05_out", "P4": "block_11_out", "P5": "block_13_out"}
    backbone = detect_module.pyramid_backbone(sized, levels)
    import keras_cv

    # freeze_backbone: the RetinaNet's feature extractor shares the backbone's layers, so
    # freezing the wrapper leaves only the FPN and heads trainable.
    detector = detect_module.build_retinanet(sized, levels, 10, anchor_size=8, head_width=8, head_depth=1)
    backbone_ids = {id(v) for v in sized.weights}
    assert any(id(v) in backbone_ids for v in detector.trainable_variables)
    detector.backbone.trainable = False
    assert detector.trainable_variables and not any(id(v) in backbone_ids for v in detector.trainable_variables)

    assert isinstance(backbone, keras_cv.models.Backbone)
    assert backbone.pyramid_level_inputs == levels
    assert backbone.get_layer("block_11_out").output.shape[1:3] == (4, 4)


def test_generic_backbone_needs_pyramid_layers_and_then_builds():
    model = small_cnn()
    with pytest.raises(DetectionConfigError, match="pyramid_layers") as err:
        detect_module.resolve_pyramid_layers(model, None, 64, reactnet=False)
    assert "down_3" in str(err.value)  # suggests the layers at strides 8/16/32
    with pytest.raises(DetectionConfigError, match="no layer 'nope'"):
        detect_module.resolve_pyramid_layers(model, ["down_3", "down_4", "nope"], 64, reactnet=False)
    with pytest.raises(DetectionConfigError, match="stride 8"):
        detect_module.resolve_pyramid_layers(model, ["down_2", "down_4", "down_5"], 64, reactnet=False)
    with pytest.raises(DetectionConfigError, match="three layer names"):
        detect_module.resolve_pyramid_layers(model, ["down_3"], 64, reactnet=False)
    # Cloned at another size, given its levels, it builds a RetinaNet that runs.
    sized = detect_module.backbone_at_size(model, {}, 128)
    assert sized.inputs[0].shape[1:3] == (128, 128)
    levels = detect_module.resolve_pyramid_layers(sized, "down_3,down_4,down_5", 128, reactnet=False)
    detector = detect_module.build_retinanet(sized, levels, 3, anchor_size=16, head_width=8, head_depth=1)
    out = detector(tf.zeros((2, 128, 128, 3)), training=False)
    num_anchors = 9 * sum(math.ceil(128 / s) ** 2 for s in (8, 16, 32, 64, 128))
    assert out["box"].shape == (2, num_anchors, 4) and out["classification"].shape == (2, num_anchors, 3)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"input_size": 80}, DetectionConfigError, "multiple of 32"),
        ({"data": "coco"}, DetectionConfigError, "data must be one of"),
        ({"epochs": 0}, DetectionConfigError, "epochs"),
        ({"nms": "soft"}, DetectionConfigError, "nms"),
        ({"learning_rate": "fast"}, DetectionConfigError, "learning_rate must be a number"),
        ({"num_train": None}, DetectionConfigError, "num_train"),
        ({"data": "voc/2007"}, SourceNotFoundError, "data_dir"),
    ],
)
def test_bad_arguments_are_clear_errors(tiny_backbone_dir, kwargs, error, match):
    with pytest.raises(error, match=match):
        detect_module.detect(tiny_backbone_dir, **kwargs)


def test_voc_needs_a_prepared_data_dir(tiny_backbone_dir, tmp_path):
    with pytest.raises(SourceNotFoundError, match="not prepared"):
        detect_module.detect(tiny_backbone_dir, data="voc/2007", data_dir=tmp_path, input_size=64)


def test_generic_backbone_without_levels_is_refused_by_detect():
    with pytest.raises(DetectionConfigError, match="pyramid_layers"):
        detect_module.detect(small_cnn(), input_size=64)


def test_voc_examples_become_pixel_xyxy_batches():
    def example(h, w, bbox, labels, difficult):
        return {"image": np.full((h, w, 3), 255, np.uint8),
                "objects": {"bbox": np.array(bbox, np.float32), "label": np.array(labels, np.int64),
                            "is_difficult": np.array(difficult, bool)}}

    examples = [example(40, 60, [[0.1, 0.2, 0.5, 0.6]], [3], [False]),
                example(50, 30, [[0.0, 0.0, 1.0, 1.0], [0.25, 0.5, 0.75, 1.0]], [0, 19], [False, True])]

    def to_ds(items):
        return tf.data.Dataset.from_generator(
            lambda: iter(items),
            output_signature={"image": tf.TensorSpec([None, None, 3], tf.uint8),
                              "objects": {"bbox": tf.TensorSpec([None, 4], tf.float32),
                                          "label": tf.TensorSpec([None], tf.int64),
                                          "is_difficult": tf.TensorSpec([None], tf.bool)}})

    data = detect_module._voc_from_examples(to_ds(examples), to_ds(examples), detect_module.VOC_CLASSES, 64, 2,
                                            False, 0, "fake")
    np.testing.assert_allclose(data.test_gt[0][0], [[0.2 * 64, 0.1 * 64, 0.6 * 64, 0.5 * 64]], rtol=1e-6)
    np.testing.assert_array_equal(data.test_gt[1][1], [0, 19])
    np.testing.assert_array_equal(data.test_gt[1][2], [False, True])
    batch = next(iter(data.train))
    assert batch["images"].shape == (2, 64, 64, 3)
    assert batch["bounding_boxes"]["boxes"].shape == (2, 2, 4)
    assert sorted(batch["bounding_boxes"]["classes"].numpy().ravel().tolist()) == [-1.0, 0.0, 3.0, 19.0]
    images, index = next(iter(data.test))
    assert images.shape == (2, 64, 64, 3) and index.numpy().tolist() == [0, 1]
    assert data.num_train == 2 and data.num_test == 2


# -------------------------------------------------------------------------- end to end


def test_short_real_fine_tune_through_the_cli(tiny_backbone_dir, tmp_path):
    from burn_tf.evaluate.__main__ import main

    out = tmp_path / "eval"
    stdout = io.StringIO()
    with redirect_stdout(stdout):
        main(["detect", "--backbone", str(tiny_backbone_dir), "--out", str(out), "--json",
              "--set", "input_size=64", "--set", "epochs=3", "--set", "num_train=160",
              "--set", "num_test=32", "--set", "batch_size=16", "--set", "head_width=16",
              "--set", "head_depth=2", "--set", "verbose=0"])
    printed = json.loads(stdout.getvalue().strip().splitlines()[-1])
    assert "mAP@[.5:.95]" in stdout.getvalue()
    result = json.loads((out / "detect.json").read_text())
    assert result["task"] == "detect" and result["pyramid_layers"]["P5"] == "block_13_out"
    losses = result["train_loss"]
    assert len(losses) == 3 and all(np.isfinite(losses)) and losses[-1] < losses[0]
    for key in ("mAP", "AP50", "AP75"):
        assert 0.0 <= result[key] <= 1.0 and result[key] == printed[key]
    assert result["AP50"] >= result["AP75"]
    assert result["num_train"] == 160 and result["num_test"] == 32 and result["input_size"] == 64
    assert set(result["per_class"]) <= {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                                        "Shirt", "Sneaker", "Bag", "Ankle boot"}
