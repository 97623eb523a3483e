"""The metrics every evaluator reports: top-k with its one tie rule (hand-made ties), AP
(area and VOC07 11-point) by hand and against scikit-learn, COCO box AP by hand and against
pycocotools (a dev extra), purity."""

import io

import numpy as np
import pytest

from burn_tf.evaluate.knn import weighted_knn
from burn_tf.evaluate.metrics import (
    average_precision,
    box_iou_matrix,
    coco_average_precision,
    label_ranks,
    mean_ap,
    purity,
    seed_std,
    topk_accuracies,
    topk_accuracy,
)

# ------------------------------------------------------------------------------ top-k


def test_topk_accuracy_by_hand():
    logits = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.3, 0.3, 0.4]])
    labels = np.array([1, 2, 0, 1])
    # row 0 hit; row 1 label ranked 3rd; row 2 label ranked 3rd; row 3: 0.4 is greater and
    # class 0 ties with the label at 0.3 and has the lower index, so the label ranks 3rd.
    # (The old linear.topk_accuracy counted that tie as a hit: top-2 was 0.5.)
    assert topk_accuracy(logits, labels, 1) == pytest.approx(0.25)
    assert topk_accuracy(logits, labels, 2) == pytest.approx(0.25)
    assert topk_accuracy(logits, labels, 3) == pytest.approx(1.0)
    assert topk_accuracy(logits, labels, 5) == pytest.approx(1.0)  # k above 3 classes: all hits


def test_ties_go_to_the_lower_class_index_and_are_not_hits():
    equal = np.zeros((4, 4))
    labels = np.arange(4)
    # All scores equal: class c has rank c, so only class 0 is a top-1 hit, classes 0-1 top-2.
    np.testing.assert_array_equal(label_ranks(equal, labels), [0, 1, 2, 3])
    assert topk_accuracy(equal, labels, 1) == pytest.approx(0.25)
    assert topk_accuracy(equal, labels, 2) == pytest.approx(0.5)
    # A tie above the label counts against it; a tie below does not.
    scores = np.array([[0.5, 0.9, 0.9, 0.1],    # label 2: 1 tied with lower index → rank 1
                       [0.5, 0.9, 0.9, 0.1],    # label 1: 2 ties but with a higher index → rank 0
                       [0.7, 0.7, 0.2, 0.7],    # label 3: two equal with lower index → rank 2
                       [0.2, 0.2, 0.9, 0.2]])   # label 0: one greater, ties after it → rank 1
    labels = np.array([2, 1, 3, 0])
    np.testing.assert_array_equal(label_ranks(scores, labels), [1, 0, 2, 1])
    assert topk_accuracies(scores, labels, ks=(1, 2, 3, 5)) == {
        "top1": 0.25, "top2": 0.75, "top3": 1.0}  # top5 left out: only 4 classes


def test_rank_is_the_stable_descending_sort_and_argmax_is_rank_zero():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, (200, 6)).astype(np.float32)  # many ties
    labels = rng.integers(0, 6, 200)
    order = np.argsort(-scores, axis=1, kind="stable")
    np.testing.assert_array_equal(label_ranks(scores, labels), np.argmax(order == labels[:, None], axis=1))
    assert topk_accuracy(scores, labels, 1) == pytest.approx(np.mean(np.argmax(scores, 1) == labels))


def test_weighted_knn_prediction_is_the_top1_hit_under_ties():
    # Two bank items at the same cosine to the query, of classes 1 and 0: the votes tie and
    # both the prediction and top-1 pick class 0.
    bank = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 0.0]], np.float32)
    labels = np.array([1, 0, 2])
    query = np.array([[1.0, 0.0]], np.float32)
    pred, scores = weighted_knn(bank, labels, query, k=2)
    assert scores[0, 0] == scores[0, 1] and pred.tolist() == [0]
    assert topk_accuracy(scores, np.array([0]), 1) == 1.0
    assert topk_accuracy(scores, np.array([1]), 1) == 0.0


def test_bad_topk_input():
    with pytest.raises(ValueError, match="class ids"):
        topk_accuracy(np.zeros((2, 3)), np.array([0, 3]), 1)
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        topk_accuracy(np.zeros(3), np.array([0]), 1)


# --------------------------------------------------------------------- AP (classification)


def test_ap_by_hand():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    labels = np.array([1, 0, 1, 0, 1])
    # ranks: P = 1, 1/2, 2/3, 2/4, 3/5 at R = 1/3, 1/3, 2/3, 2/3, 1
    # area under the monotone curve: 1/3·1 + 1/3·2/3 + 1/3·3/5
    assert average_precision(scores, labels, "area") == pytest.approx((1 + 2 / 3 + 0.6) / 3)
    # 11-point: t = 0, .1, .2, .3 → 1; t = .4, .5, .6 → 2/3; t = .7 … 1 → 3/5
    assert average_precision(scores, labels, "voc07") == pytest.approx((4 + 3 * 2 / 3 + 4 * 0.6) / 11)
    # a "difficult" (-1) image is ignored wherever it ranks
    s2, l2 = np.append(scores, 0.95), np.append(labels, -1)
    assert average_precision(s2, l2, "area") == pytest.approx((1 + 2 / 3 + 0.6) / 3)
    # perfect and worst rankings, and no positive
    assert average_precision([3, 2, 1], [1, 1, 0]) == pytest.approx(1.0)
    assert average_precision([3, 2, 1], [0, 0, 1]) == pytest.approx(1 / 3)
    assert average_precision([3, 2, 1], [0, 0, 1], "voc07") == pytest.approx(1 / 3)
    assert np.isnan(average_precision([1, 2], [0, 0]))
    assert mean_ap([0.5, float("nan"), 0.7]) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="ap method"):
        average_precision(scores, labels, "coco")


def test_ap_area_against_sklearn():
    from sklearn.metrics import average_precision_score

    # sklearn's AP is Σ ΔR·P without interpolation: never above the interpolated area
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = labels + rng.standard_normal(300)
    assert average_precision(scores, labels) >= average_precision_score(labels, scores) - 1e-12
    # precision non-increasing at every hit: the two agree (1/3 + 1/3 + 1/3 · 3/4)
    ranked = np.array([1, 1, 0, 1, 0, 0])
    s = -np.arange(6.0)
    assert average_precision(s, ranked) == pytest.approx(average_precision_score(ranked, s))
    assert average_precision(s, ranked) == pytest.approx(11 / 12)


# ------------------------------------------------------------------------ AP (detection)


def test_box_iou_by_hand():
    iou = box_iou_matrix(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 5], [20, 20, 30, 30]]))
    np.testing.assert_allclose(iou, [[0.5, 0.0]])


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


# ------------------------------------------------------------------------ clustering


def test_purity_hand_computed():
    assert purity([0, 0, 1, 1, 1], [0, 0, 0, 1, 1]) == pytest.approx(4 / 5)


def test_seed_std_is_the_sample_std_over_seeds():
    assert seed_std([0.10, 0.14, 0.12]) == pytest.approx(0.02)  # ddof 1: sqrt(0.0008 / 2)
    assert seed_std([0.5]) == 0.0  # one seed: no spread, not NaN
    runs = np.array([[1.0, 2.0, 4.0], [3.0, 2.0, 0.0]])  # 2 runs × 3 steps
    np.testing.assert_allclose(seed_std(runs, axis=0), [np.sqrt(2.0), 0.0, np.sqrt(8.0)])
    np.testing.assert_array_equal(seed_std(runs[:1], axis=0), [0.0, 0.0, 0.0])
