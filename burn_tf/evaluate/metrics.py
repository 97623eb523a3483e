"""The scores every evaluator reports, defined once (numpy, no framework state).

* :func:`topk_accuracy` / :func:`topk_accuracies` — classification (linear, semisup,
  transfer, kNN, the kNN monitor, the demo), with **one tie rule**, stated there;
* :func:`precision_recall`, :func:`average_precision` (area under the monotone curve, as in
  Goyal et al.'s benchmark code, or VOC07 11-point) and :func:`mean_ap` — SVM classification;
* :func:`box_iou_matrix` (defined with the detection composites, whose placement uses it)
  and :func:`coco_average_precision` — detection (COCOeval's box AP);
* :func:`precision_at_k` — retrieval;
* :func:`purity` — clustering (NMI and ARI are scikit-learn's, called where they are used);
* :func:`seed_std` — the one spread over seeds (or repeated runs) every table and figure shows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from burn_tf.data.detection_composites import box_iou_matrix

AP_METHODS = ("area", "voc07")
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
COCO_RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)


# -------------------------------------------------------------------- spread over seeds


def seed_std(values, axis: int = 0):
    """Sample standard deviation (ddof 1) of ``values`` over seeds / repeated runs along
    ``axis``; 0 when there is a single run (not NaN). Every ``mean ± std`` over seeds in
    burn_tf (compare, ablate, detect, the figures) uses it, so they all mean the same thing."""
    values = np.asarray(values, np.float64)
    if values.shape[axis] < 2:
        return np.zeros_like(values.sum(axis=axis)) if values.ndim > 1 else 0.0
    std = values.std(axis=axis, ddof=1)
    return float(std) if np.ndim(std) == 0 else std


# -------------------------------------------------------------------- classification


def label_ranks(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Rank (0 = best) of each row's true class among its class scores [N, C].

    Ties are broken deterministically towards the lower class index: the rank of class
    ``y`` is the number of classes with a strictly greater score plus the number of classes
    with an *equal* score and a lower index than ``y``. This is the position of ``y`` in a
    stable descending sort of the row, and ``np.argmax`` of a row is its rank-0 class.
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels).astype(np.int64)
    if scores.ndim != 2 or labels.shape != (len(scores),):
        raise ValueError(f"scores must be [N, C] and labels [N]; got {scores.shape} and {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= scores.shape[1]):
        raise ValueError(f"labels must be class ids in [0, {scores.shape[1]}), "
                         f"got {labels.min()}…{labels.max()}")
    true = scores[np.arange(len(labels)), labels][:, None]
    lower_index = np.arange(scores.shape[1])[None, :] < labels[:, None]
    return (scores > true).sum(axis=1) + ((scores == true) & lower_index).sum(axis=1)


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose true class is among the ``k`` best of ``scores`` [N, C].

    Tie rule (every evaluator): a row is a hit iff its :func:`label_ranks` rank is < ``k`` —
    ties are broken towards the lower class index and are *not* counted as hits, so a row
    of equal scores is a hit at top-1 only for class 0. ``k`` ≥ C makes every row a hit.
    """
    return float(np.mean(label_ranks(scores, labels) < int(k)))


def topk_accuracies(scores: np.ndarray, labels: np.ndarray, ks: Sequence[int] = (1, 5)) -> dict:
    """``{"top1": …, "top5": …}`` by :func:`topk_accuracy` (ks above C are left out)."""
    ranks = label_ranks(scores, labels)
    return {f"top{k}": float(np.mean(ranks < k)) for k in ks if k <= np.shape(scores)[1]}


# ------------------------------------------------------------------ AP (classification)


def precision_recall(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall down the ranking by decreasing score (label −1 ignored)."""
    scores = np.asarray(scores, np.float64).ravel()
    labels = np.asarray(labels).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"{scores.size} scores but {labels.size} labels")
    keep = labels != -1
    scores, labels = scores[keep], labels[keep] > 0
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(labels[order])
    fp = np.cumsum(~labels[order])
    positives = int(labels.sum())
    precision = tp / np.maximum(tp + fp, 1)
    recall = tp / positives if positives else np.full(len(tp), np.nan)
    return precision, recall


def average_precision(scores: np.ndarray, labels: np.ndarray, method: str = "area") -> float:
    """AP of one class: ``labels`` 1 positive, 0 negative, −1 ignored (VOC "difficult").

    ``method="area"``: area under the precision/recall curve made monotone (precision at
    recall r = max precision at recall ≥ r) — Goyal et al.'s ``calculate_ap``.
    ``method="voc07"``: VOC2007 11-point AP. NaN when there is no positive.
    """
    if method not in AP_METHODS:
        raise ValueError(f"ap method must be one of {AP_METHODS}, got {method!r}")
    precision, recall = precision_recall(scores, labels)
    if recall.size == 0 or np.isnan(recall[-1]):
        return float("nan")
    if method == "voc07":
        ap = 0.0
        for t in np.linspace(0.0, 1.0, 11):
            hits = precision[recall >= t]
            ap += (hits.max() if hits.size else 0.0) / 11.0
        return float(ap)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * mpre[steps]))


def mean_ap(aps: Sequence[float]) -> float:
    """Mean of the per-class APs that are defined (NaN ones — no positive — left out)."""
    aps = np.asarray(aps, np.float64)
    aps = aps[~np.isnan(aps)]
    return float(aps.mean()) if aps.size else float("nan")


# ------------------------------------------------------------------ AP (detection)


def _match_image(ious: np.ndarray, gt_ignore: np.ndarray, thresholds: np.ndarray):
    """COCOeval.evaluateImg for one image and class. ``ious`` [D,G] with detections sorted
    by descending score and ground truth sorted non-ignored first. Returns (matched
    [T,D] bool, det_ignored [T,D] bool)."""
    num_t, (num_d, num_g) = len(thresholds), ious.shape
    matched = np.zeros((num_t, num_d), bool)
    det_ignored = np.zeros((num_t, num_d), bool)
    for ti, t in enumerate(thresholds):
        gt_taken = np.zeros(num_g, bool)
        for d in range(num_d):
            best, m = min(t, 1 - 1e-10), -1
            for g in range(num_g):
                if gt_taken[g]:
                    continue
                # Once matched to a regular gt, stop at the ignored ones (sorted last).
                if m > -1 and not gt_ignore[m] and gt_ignore[g]:
                    break
                if ious[d, g] < best:
                    continue
                best, m = ious[d, g], g
            if m == -1:
                continue
            gt_taken[m] = True
            matched[ti, d] = True
            det_ignored[ti, d] = gt_ignore[m]
    return matched, det_ignored


def coco_average_precision(
    gt_boxes: Sequence[np.ndarray],
    gt_classes: Sequence[np.ndarray],
    pred_boxes: Sequence[np.ndarray],
    pred_scores: Sequence[np.ndarray],
    pred_classes: Sequence[np.ndarray],
    *,
    num_classes: int | None = None,
    gt_ignore: Sequence[np.ndarray] | None = None,
    iou_thresholds: Sequence[float] = COCO_IOU_THRESHOLDS,
    max_detections: int = 100,
) -> dict:
    """COCO-style box AP over a set of images (one list entry per image).

    A numpy re-implementation of pycocotools' COCOeval (``iouType="bbox"``, area range
    "all"), so that pycocotools is not a runtime dependency; a dev test checks it against
    pycocotools (a dev extra). ``gt_boxes[i]`` [G,4] and ``pred_boxes[i]`` [D,4] are xyxy
    boxes in one coordinate system, ``gt_classes[i]`` / ``pred_classes[i]`` integer class
    ids, ``pred_scores[i]`` confidences; ``gt_ignore[i]`` (optional bool [G]) marks ground
    truth that counts as neither hit nor miss (VOC "difficult", COCO "crowd"-like). Per image
    and class, the ``max_detections`` highest-scoring detections are matched greedily, each
    to the unmatched ground truth of highest IoU ≥ t; precision is made monotone and read at
    101 recall points.

    Returns ``{"mAP", "AP50", "AP75", "ap": [T,K] array (nan for classes without ground
    truth), "classes": ids evaluated, "num_gt": per class}``; mAP averages over thresholds
    and the classes that have ground truth.
    """
    n = len(gt_boxes)
    if not (len(gt_classes) == len(pred_boxes) == len(pred_scores) == len(pred_classes) == n):
        raise ValueError("coco_average_precision: every argument needs one entry per image")
    thresholds = np.asarray(iou_thresholds, np.float64)
    if num_classes is None:
        ids = [np.asarray(c).reshape(-1) for c in list(gt_classes) + list(pred_classes)]
        ids = np.concatenate(ids) if ids else np.zeros(0)
        num_classes = int(ids.max()) + 1 if ids.size else 0
    ignore = [
        np.zeros(len(np.asarray(c).reshape(-1)), bool)
        if gt_ignore is None
        else np.asarray(gt_ignore[i], bool).reshape(-1)
        for i, c in enumerate(gt_classes)
    ]
    num_t = len(thresholds)
    ap = np.full((num_t, num_classes), np.nan)
    num_gt = np.zeros(num_classes, np.int64)
    for k in range(num_classes):
        scores, matched, det_ignored = [], [], []
        npig = 0
        for i in range(n):
            g_cls = np.asarray(gt_classes[i]).reshape(-1).astype(np.int64)
            g_sel = np.flatnonzero(g_cls == k)
            g_ign = ignore[i][g_sel]
            order = np.argsort(g_ign, kind="mergesort")  # regular first, ignored last
            g_sel, g_ign = g_sel[order], g_ign[order]
            npig += int((~g_ign).sum())
            d_cls = np.asarray(pred_classes[i]).reshape(-1).astype(np.int64)
            d_sel = np.flatnonzero(d_cls == k)
            d_scores = np.asarray(pred_scores[i], np.float64).reshape(-1)[d_sel]
            order = np.argsort(-d_scores, kind="mergesort")[:max_detections]
            d_sel, d_scores = d_sel[order], d_scores[order]
            if len(d_sel) == 0:
                continue
            g_b = np.asarray(gt_boxes[i], np.float64).reshape(-1, 4)[g_sel]
            d_b = np.asarray(pred_boxes[i], np.float64).reshape(-1, 4)[d_sel]
            m, di = _match_image(box_iou_matrix(d_b, g_b), g_ign, thresholds)
            scores.append(d_scores)
            matched.append(m)
            det_ignored.append(di)
        num_gt[k] = npig
        if npig == 0:
            continue
        if not scores:
            ap[:, k] = 0.0
            continue
        scores = np.concatenate(scores)
        order = np.argsort(-scores, kind="mergesort")
        matched = np.concatenate(matched, axis=1)[:, order]
        det_ignored = np.concatenate(det_ignored, axis=1)[:, order]
        for ti in range(num_t):
            tps = np.cumsum(matched[ti] & ~det_ignored[ti]).astype(np.float64)
            fps = np.cumsum(~matched[ti] & ~det_ignored[ti]).astype(np.float64)
            recall = tps / npig
            precision = tps / np.maximum(tps + fps, np.spacing(1))
            precision = np.maximum.accumulate(precision[::-1])[::-1]  # monotone envelope
            idx = np.searchsorted(recall, COCO_RECALL_THRESHOLDS, side="left")
            q = np.zeros(len(COCO_RECALL_THRESHOLDS))
            valid = idx < len(precision)
            q[valid] = precision[idx[valid]]
            ap[ti, k] = q.mean()
    has_gt = num_gt > 0

    def at(t):
        hits = np.flatnonzero(np.isclose(thresholds, t))
        if not hits.size or not has_gt.any():
            return float("nan")
        return float(np.mean(ap[hits[0], has_gt]))

    return {
        "mAP": float(np.mean(ap[:, has_gt])) if has_gt.any() else float("nan"),
        "AP50": at(0.5),
        "AP75": at(0.75),
        "ap": ap,
        "classes": np.flatnonzero(has_gt).tolist(),
        "num_gt": num_gt.tolist(),
    }


# ------------------------------------------------------------------------- retrieval


def check_ks(ks) -> list[int]:
    """``ks`` (one int or several) → sorted distinct positive ints (clear error otherwise)."""
    if isinstance(ks, int):
        ks = [ks]
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    return ks


def precision_at_k(query_labels, bank_labels, neighbours, ks: Sequence[int] = (1, 5, 10, 20)) -> dict:
    """``{"precision@k": …, "hit@k": …}`` from ranked neighbour indices [Q, ≥ max(ks)].

    precision@k: the fraction of the k retrievals that share the query's class, averaged
    over the queries; hit@k: the fraction of queries with at least one such retrieval.
    """
    query_labels = np.asarray(query_labels)
    neighbours = np.asarray(neighbours)
    ks = check_ks(ks)
    if neighbours.ndim != 2 or len(neighbours) != len(query_labels):
        raise ValueError(f"neighbours must be [Q, k] with Q = {len(query_labels)}, got {neighbours.shape}")
    if neighbours.shape[1] < ks[-1]:
        raise ValueError(f"only {neighbours.shape[1]} neighbours per query for precision@{ks[-1]}")
    correct = np.asarray(bank_labels)[neighbours] == query_labels[:, None]
    out = {}
    for k in ks:
        out[f"precision@{k}"] = float(np.mean(correct[:, :k]))
    for k in ks:
        out[f"hit@{k}"] = float(np.mean(np.any(correct[:, :k], axis=1)))
    return out


# ------------------------------------------------------------------------ clustering


def purity(labels_true, labels_pred) -> float:
    """Fraction of items whose cluster's majority class is their class."""
    from sklearn.metrics.cluster import contingency_matrix

    table = contingency_matrix(labels_true, labels_pred)
    return float(table.max(axis=0).sum() / table.sum())
