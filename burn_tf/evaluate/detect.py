"""Object detection with a binary backbone: keras-cv RetinaNet, mAP / AP50 / AP75.

The paper (BURN, CVPR 2022, Table 4) fine-tunes Faster R-CNN (detectron2) on
VOC07+12 trainval and reports AP / AP50 / AP75 on VOC07 test. This is a **Keras-native
stand-in**, not that protocol: keras-cv 0.9 ``RetinaNet`` (FPN P3–P7, focal loss,
smooth-L1 boxes) on the binary backbone's intermediate block outputs, fine-tuned end to end
(or with the backbone frozen) and scored with COCO-style AP. Numbers are comparable between
backbones evaluated the same way here, not to the paper's.

Data
----
- ``"composites"`` (default, offline): Fashion-MNIST items pasted on ``input_size``-pixel
  canvases, 1–4 per image, 10 classes (:mod:`burn_tf.data.detection_composites`); train
  items from the Fashion-MNIST train split, test items from the test split.
- ``"voc/2007"``: tfds ``voc/2007`` already prepared under ``data_dir`` (never downloaded):
  trains on ``train+validation``, tests on ``test``; images are resized (not letterboxed) to
  ``input_size``; "difficult" objects are ignored in the evaluation (neither hit nor miss),
  as in the VOC protocol.

Backbone
--------
An exported backbone (or a Keras feature extractor). A ReActNet-A is rebuilt at
``input_size`` from its metadata and its weights copied (all its weights are size
independent); its P3/P4/P5 are the last block outputs at strides 8/16/32
(``block_05_out``, ``block_11_out``, ``block_13_out``). Another functional Keras model is
cloned at ``input_size``; pass ``pyramid_layers`` ({"P3": name, "P4": name, "P5": name}
or three names) unless it is a ``keras_cv.models.Backbone`` with ``pyramid_level_inputs``.

Metric
------
pycocotools is not a dependency of burn_tf, so keras-cv's ``BoxCOCO`` / ``PyCOCOCallback``
(which need it) are not used. :func:`coco_average_precision` is a small numpy
re-implementation of COCOeval's bounding-box AP (greedy matching by score, IoU thresholds
0.50:0.05:0.95, 101-point interpolated precision, ≤ ``max_detections`` per image, area
range "all", classes without ground truth skipped); tests check it against hand-computed
cases (and against pycocotools when that happens to be installed). Detections are decoded
with per-class NMS (``nms="per_class"``, as RetinaNet is usually evaluated) or keras-cv's
class-agnostic ``NonMaxSuppression`` (``nms="class_agnostic"``).

>>> from burn_tf.evaluate import detect
>>> result = detect("runs/burn/backbone", epochs=8, input_size=128)
>>> result["mAP"], result["AP50"], result["AP75"]
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from burn_tf.evaluate.common import format_table, resolve_backbone, write_results

DATASETS = ("composites", "voc/2007")
NMS_MODES = ("per_class", "class_agnostic")
LEVELS = ("P3", "P4", "P5")
LEVEL_STRIDES = {"P3": 8, "P4": 16, "P5": 32}
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
COCO_RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
BOUNDING_BOX_FORMAT = "xyxy"
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)


class DetectionConfigError(ValueError):
    """A bad argument to :func:`detect` (backbone, pyramid layers, sizes, data)."""


# ------------------------------------------------------------------------ metric (numpy)


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every xyxy box in ``a`` [N,4] with every box in ``b`` [M,4] → [N,M]."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


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

    ``gt_boxes[i]`` [G,4] and ``pred_boxes[i]`` [D,4] are xyxy boxes in one coordinate
    system, ``gt_classes[i]`` / ``pred_classes[i]`` integer class ids, ``pred_scores[i]``
    confidences; ``gt_ignore[i]`` (optional bool [G]) marks ground truth that counts as
    neither hit nor miss (VOC "difficult", COCO "crowd"-like). Follows COCOeval
    (``iouType="bbox"``, area "all"): per image and class, the ``max_detections``
    highest-scoring detections are matched greedily, each to the unmatched ground truth of
    highest IoU ≥ t; precision is made monotone and read at 101 recall points.

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
    ignore = [np.zeros(len(np.asarray(c).reshape(-1)), bool) if gt_ignore is None else np.asarray(gt_ignore[i], bool).reshape(-1)
              for i, c in enumerate(gt_classes)]
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


# ------------------------------------------------------------------- backbone handling


def _reactnet_config(model, meta: Mapping):
    from burn_tf.models.reactnet import ReActNetConfig

    cfg = getattr(model, "reactnet_config", None)
    if cfg is not None:
        return cfg
    if meta.get("architecture") == "reactnet_a" and isinstance(meta.get("student"), Mapping):
        return ReActNetConfig(**meta["student"])
    return None


def backbone_at_size(model: tf.keras.Model, meta: Mapping, input_size: int) -> tf.keras.Model:
    """A copy of the backbone (same weights) taking ``input_size`` × ``input_size`` images.

    Always a copy, so fine-tuning the detector never changes the caller's model.
    """
    cfg = _reactnet_config(model, meta)
    if cfg is not None:
        from burn_tf.models.reactnet import reactnet_a

        rebuilt = reactnet_a(dataclasses.replace(cfg, input_size=input_size), name=model.name)
        try:
            rebuilt.set_weights(model.get_weights())
        except ValueError as err:
            raise DetectionConfigError(
                f"backbone {model.name!r}: its weights do not fit a ReActNet-A {cfg} rebuilt at "
                f"{input_size} px ({err})"
            ) from None
        return rebuilt
    shape = tuple(model.inputs[0].shape[1:])
    try:
        clone = tf.keras.models.clone_model(
            model, input_tensors=tf.keras.Input((input_size, input_size, shape[-1]), name="image")
        )
        clone.set_weights(model.get_weights())
    except Exception as err:  # clone_model raises many types for subclassed / odd models
        if shape[:2] == (input_size, input_size):
            return model  # cannot copy it: fine-tune it in place
        raise DetectionConfigError(
            f"backbone {model.name!r} takes {shape[:2]} images and could not be rebuilt at "
            f"{input_size} px ({type(err).__name__}: {err}); pass input_size={shape[0]}"
        ) from None
    return clone


def _feature_maps(model: tf.keras.Model) -> list[tuple[str, tuple]]:
    """(layer name, output shape) of every layer with one 4-D output, in graph order."""
    found = []
    for layer in model.layers:
        try:
            shape = tuple(layer.output.shape)
        except (AttributeError, ValueError):
            continue
        if len(shape) == 4 and layer is not model.layers[0]:
            found.append((layer.name, shape))
    return found


def default_pyramid_layers(model: tf.keras.Model, input_size: int) -> dict[str, str] | None:
    """The last layer whose output has stride 8 / 16 / 32 (P3 / P4 / P5), if all exist.

    For a ReActNet-A this picks the last block output (``block_XX_out``) at each stride;
    for other models it is only a suggestion (see :func:`detect`'s ``pyramid_layers``).
    """
    maps = _feature_maps(model)
    blocks = [(n, s) for n, s in maps if n.startswith("block_") and n.endswith("_out")]
    candidates = blocks or maps
    levels = {}
    for level, stride in LEVEL_STRIDES.items():
        size = math.ceil(input_size / stride)
        names = [n for n, s in candidates if s[1] == size and s[2] == size]
        if not names:
            return None
        levels[level] = names[-1]
    return levels


def resolve_pyramid_layers(model: tf.keras.Model, pyramid_layers, input_size: int, reactnet: bool) -> dict[str, str]:
    """Validates / infers {"P3", "P4", "P5"} → layer name for ``model`` at ``input_size``."""
    if pyramid_layers is None:
        existing = getattr(model, "pyramid_level_inputs", None)
        if existing and all(level in existing for level in LEVELS):
            pyramid_layers = {level: existing[level] for level in LEVELS}
        elif reactnet:
            pyramid_layers = default_pyramid_layers(model, input_size)
            if pyramid_layers is None:
                raise DetectionConfigError(
                    f"ReActNet-A {model.name!r} at {input_size} px has no block outputs at "
                    "strides 8, 16 and 32"
                )
        else:
            suggestion = default_pyramid_layers(model, input_size)
            hint = f" (the last layers at those strides are {suggestion})" if suggestion else ""
            raise DetectionConfigError(
                f"backbone {model.name!r} is not a ReActNet-A and names no pyramid levels: pass "
                "pyramid_layers={'P3': <layer at stride 8>, 'P4': <stride 16>, 'P5': <stride 32>} "
                f"or three layer names{hint}"
            )
    if isinstance(pyramid_layers, str):
        pyramid_layers = [p.strip() for p in pyramid_layers.split(",")]
    if isinstance(pyramid_layers, (list, tuple)):
        if len(pyramid_layers) != 3:
            raise DetectionConfigError(
                f"pyramid_layers needs three layer names (P3, P4, P5), got {list(pyramid_layers)}"
            )
        pyramid_layers = dict(zip(LEVELS, pyramid_layers))
    if not isinstance(pyramid_layers, Mapping) or sorted(pyramid_layers) != sorted(LEVELS):
        raise DetectionConfigError(
            f"pyramid_layers must map exactly P3, P4, P5 to layer names, got {pyramid_layers!r}"
        )
    names = {layer.name for layer in model.layers}
    for level in LEVELS:
        name = pyramid_layers[level]
        if name not in names:
            close = [n for n in names if n.endswith("_out")] or sorted(names)[:20]
            raise DetectionConfigError(
                f"pyramid level {level}: backbone {model.name!r} has no layer {name!r} "
                f"(some of its layers: {sorted(close)[:20]})"
            )
        shape = tuple(model.get_layer(name).output.shape)
        want = math.ceil(input_size / LEVEL_STRIDES[level])
        if len(shape) != 4 or shape[1] != want or shape[2] != want:
            raise DetectionConfigError(
                f"pyramid level {level} = layer {name!r} has output shape {shape}; at "
                f"{input_size} px it must be [batch, {want}, {want}, C] (stride {LEVEL_STRIDES[level]})"
            )
    return {level: str(pyramid_layers[level]) for level in LEVELS}


def _keras_cv():
    # keras-cv prints "Using TensorFlow backend" and is slow to import: only when detecting.
    import keras_cv

    return keras_cv


def pyramid_backbone(model: tf.keras.Model, pyramid_layers: Mapping[str, str]):
    """Wraps ``model`` as a ``keras_cv.models.Backbone`` with ``pyramid_level_inputs``.

    The wrapper shares ``model``'s layers (and weights); RetinaNet reads the named layers'
    outputs as P3–P5.
    """
    keras_cv = _keras_cv()

    class PyramidBackbone(keras_cv.models.Backbone):
        def __init__(self, inner, levels, **kwargs):
            super().__init__(inputs=inner.inputs, outputs=inner.outputs, **kwargs)
            self.pyramid_level_inputs = dict(levels)

    return PyramidBackbone(model, pyramid_layers, name=f"{model.name}_pyramid")


# ------------------------------------------------------------------------- the detector


class FeaturePyramid(tf.keras.layers.Layer):
    """keras-cv's RetinaNet FPN (P3–P5 lateral + top-down, P6/P7 by stride-2 convs on C5)
    with a configurable width (keras-cv's is fixed at 256)."""

    def __init__(self, width: int = 256, **kwargs):
        super().__init__(**kwargs)
        self.width = int(width)
        conv = tf.keras.layers.Conv2D
        self.lateral = [conv(self.width, 1, 1, "same", name=f"lateral_c{i}") for i in (3, 4, 5)]
        self.output_convs = [conv(self.width, 3, 1, "same", name=f"output_p{i}") for i in (3, 4, 5)]
        self.conv_p6 = conv(self.width, 3, 2, "same", name="conv_p6")
        self.conv_p7 = conv(self.width, 3, 2, "same", name="conv_p7")
        self.upsample = tf.keras.layers.UpSampling2D(2)

    def call(self, inputs, training=False):
        c3, c4, c5 = (inputs[k] for k in LEVELS) if isinstance(inputs, Mapping) else inputs
        p3, p4, p5 = (lat(c) for lat, c in zip(self.lateral, (c3, c4, c5)))
        p4 = p4 + self.upsample(p5)
        p3 = p3 + self.upsample(p4)
        p3, p4, p5 = (conv(p) for conv, p in zip(self.output_convs, (p3, p4, p5)))
        p6 = self.conv_p6(c5)
        p7 = self.conv_p7(tf.nn.relu(p6))
        return p3, p4, p5, p6, p7

    def get_config(self):
        return {**super().get_config(), "width": self.width}


class PredictionHead(tf.keras.layers.Layer):
    """keras-cv's RetinaNet head (``depth`` 3×3 ReLU convs, then a 3×3 prediction conv,
    shared over levels) with a configurable width."""

    def __init__(self, output_filters: int, bias_initializer, width: int = 256, depth: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.output_filters, self.width, self.depth = int(output_filters), int(width), int(depth)
        self.bias_initializer = tf.keras.initializers.get(bias_initializer)
        self.convs = [
            tf.keras.layers.Conv2D(self.width, 3, padding="same", kernel_initializer="orthogonal",
                                   activation="relu", name=f"conv_{i}")
            for i in range(self.depth)
        ]
        self.prediction = tf.keras.layers.Conv2D(
            self.output_filters, 3, padding="same", kernel_initializer="orthogonal",
            bias_initializer=self.bias_initializer, name="prediction",
        )

    def call(self, x, training=False):
        for conv in self.convs:
            x = conv(x)
        return self.prediction(x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.output_filters,)

    def get_config(self):
        return {**super().get_config(), "output_filters": self.output_filters, "width": self.width,
                "depth": self.depth, "bias_initializer": tf.keras.initializers.serialize(self.bias_initializer)}


class PerClassNMS(tf.keras.layers.Layer):
    """RetinaNet prediction decoder with per-class NMS (``combined_non_max_suppression``);
    same inputs and outputs as keras-cv's class-agnostic ``NonMaxSuppression``."""

    def __init__(self, bounding_box_format: str, iou_threshold: float = 0.5,
                 confidence_threshold: float = 0.05, max_detections: int = 100, **kwargs):
        super().__init__(**kwargs)
        self.bounding_box_format = bounding_box_format
        self.iou_threshold = float(iou_threshold)
        self.confidence_threshold = float(confidence_threshold)
        self.max_detections = int(max_detections)
        self.built = True

    def call(self, box_prediction, class_prediction, images=None, image_shape=None):
        bounding_box = _keras_cv().bounding_box
        boxes = bounding_box.convert_format(box_prediction, source=self.bounding_box_format,
                                            target="yxyx", images=images, image_shape=image_shape)
        scores = tf.sigmoid(tf.cast(class_prediction, tf.float32))
        boxes, scores, classes, valid = tf.image.combined_non_max_suppression(
            tf.cast(boxes, tf.float32)[:, :, None, :], scores,
            max_output_size_per_class=self.max_detections, max_total_size=self.max_detections,
            iou_threshold=self.iou_threshold, score_threshold=self.confidence_threshold,
            clip_boxes=False,
        )
        boxes = bounding_box.convert_format(boxes, source="yxyx", target=self.bounding_box_format,
                                            images=images, image_shape=image_shape)
        return {"boxes": boxes, "confidence": scores, "classes": classes, "num_detections": valid}

    def get_config(self):
        return {**super().get_config(), "bounding_box_format": self.bounding_box_format,
                "iou_threshold": self.iou_threshold, "confidence_threshold": self.confidence_threshold,
                "max_detections": self.max_detections}


def anchor_generator(anchor_size: float):
    """keras-cv's RetinaNet anchors (3 scales × 3 aspect ratios, strides 8–128) with the P3
    anchor side ``anchor_size`` (keras-cv's default is 32) doubling per level."""
    keras_cv = _keras_cv()
    return keras_cv.layers.AnchorGenerator(
        bounding_box_format=BOUNDING_BOX_FORMAT,
        sizes=[float(anchor_size) * 2**i for i in range(5)],
        scales=[2**x for x in (0, 1 / 3, 2 / 3)],
        aspect_ratios=[0.5, 1.0, 2.0],
        strides=[2**i for i in range(3, 8)],
        clip_boxes=True,
    )


def build_retinanet(
    backbone_model: tf.keras.Model,
    pyramid_layers: Mapping[str, str],
    num_classes: int,
    *,
    anchor_size: float,
    head_width: int = 64,
    head_depth: int = 3,
    nms: str = "per_class",
    nms_iou: float = 0.5,
    score_threshold: float = 0.05,
    max_detections: int = 100,
):
    """keras-cv ``RetinaNet`` on ``backbone_model`` (boxes in pixel xyxy)."""
    keras_cv = _keras_cv()
    if nms == "per_class":
        decoder = PerClassNMS(BOUNDING_BOX_FORMAT, nms_iou, score_threshold, max_detections)
    elif nms == "class_agnostic":
        decoder = keras_cv.layers.NonMaxSuppression(
            bounding_box_format=BOUNDING_BOX_FORMAT, from_logits=True, iou_threshold=nms_iou,
            confidence_threshold=score_threshold, max_detections=max_detections,
        )
    else:
        raise DetectionConfigError(f"nms must be one of {NMS_MODES}, got {nms!r}")
    prior = tf.keras.initializers.Constant(-np.log((1 - 0.01) / 0.01))
    return keras_cv.models.RetinaNet(
        backbone=pyramid_backbone(backbone_model, pyramid_layers),
        num_classes=num_classes,
        bounding_box_format=BOUNDING_BOX_FORMAT,
        anchor_generator=anchor_generator(anchor_size),
        prediction_decoder=decoder,
        feature_pyramid=FeaturePyramid(head_width, name="feature_pyramid"),
        classification_head=PredictionHead(9 * num_classes, prior, head_width, head_depth, name="classification_head"),
        box_head=PredictionHead(9 * 4, "zeros", head_width, head_depth, name="box_head"),
    )


def anchor_coverage(boxes: Iterable[np.ndarray], input_size: int, anchor_size: float, threshold: float = 0.5) -> float:
    """Fraction of ground-truth boxes whose best anchor has IoU ≥ ``threshold`` (boxes
    below it never become positives for RetinaNet's label encoder: pick ``anchor_size``)."""
    anchors = anchor_generator(anchor_size)(image_shape=(input_size, input_size, 3))
    anchors = np.concatenate([np.asarray(a) for a in anchors.values()])
    hit = total = 0
    for b in boxes:
        b = np.asarray(b, np.float64).reshape(-1, 4)
        if len(b):
            hit += int((box_iou_matrix(anchors, b).max(axis=0) >= threshold).sum())
            total += len(b)
    return hit / total if total else float("nan")


# -------------------------------------------------------------------------------- data


@dataclasses.dataclass
class _DetectionData:
    train: tf.data.Dataset  # batches of {"images", "bounding_boxes"}
    test: tf.data.Dataset  # batches of (images, index)
    test_gt: list  # per test image: (boxes [G,4], classes [G], ignore [G])
    train_boxes: list  # per train image boxes (anchor coverage)
    class_names: tuple
    num_train: int
    num_test: int
    description: str


def _images_with_index(index, example):
    return example["images"], index


def _first_with_index(index, example):
    return example[0], index


def _coin(r):
    return r % 2 == 1


def _zero(example):
    return tf.constant(0)


def _composites_data(input_size, num_train, num_test, batch_size, augment, seed, root) -> _DetectionData:
    from burn_tf.data.detection_composites import make_detection_composites

    train = make_detection_composites("train", num_train, input_size, seed=seed, root=root)
    test = make_detection_composites("test", num_test, input_size, seed=seed, root=root)
    test_gt = []
    for i in range(len(test)):
        k = int(test.num_objects[i])
        test_gt.append((test.boxes[i, :k], test.classes[i, :k].astype(np.int64), np.zeros(k, bool)))
    test_ds = test.to_dataset()
    test_ds = test_ds.enumerate().map(_images_with_index).batch(batch_size)
    return _DetectionData(
        train=train.to_dataset(batch_size, shuffle=True, seed=seed, flip=augment),
        test=test_ds,
        test_gt=test_gt,
        train_boxes=[train.boxes[i, : train.num_objects[i]] for i in range(min(len(train), 500))],
        class_names=train.class_names,
        num_train=len(train),
        num_test=len(test),
        description=f"Fashion-MNIST composites ({input_size} px canvases, 1-4 items, seed {seed})",
    )


def _open_voc(name, data_dir, num_train, num_test):
    """tfds VOC prepared under ``data_dir`` → (train examples, test examples, class names,
    description). Never downloads: a missing data_dir or unprepared dataset is an error."""
    from burn_tf.data.sources import SourceNotFoundError, gcs_disabled

    if data_dir is None:
        raise SourceNotFoundError(
            f"data={name!r} needs data_dir=: the tfds data_dir where {name} is prepared "
            "(nothing is downloaded at run time; prepare it where the VOC tar files are with "
            f"tfds.builder({name!r}, data_dir=...).download_and_prepare() and copy the folder)"
        )
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise SourceNotFoundError(f"tfds data_dir {data_dir!r} does not exist (data={name!r})")
    import tensorflow_datasets as tfds

    with gcs_disabled():
        try:
            builder = tfds.builder(name, data_dir=data_dir)
        except Exception as err:
            raise SourceNotFoundError(f"tfds dataset {name!r} cannot be opened under {data_dir!r} ({err})") from None
        info_file = os.path.join(builder.data_dir, "dataset_info.json")
        if not tf.io.gfile.exists(info_file):
            raise SourceNotFoundError(
                f"tfds dataset {name!r} is not prepared under {data_dir!r} (no {info_file}); "
                f"nothing is downloaded at run time: prepare it with tfds.builder({name!r}, "
                "data_dir=...).download_and_prepare() where the VOC files are"
            )
        missing = {"train", "validation", "test"} - set(builder.info.splits.keys())
        if missing:
            raise SourceNotFoundError(f"tfds dataset {name!r} under {data_dir!r} lacks split(s) {sorted(missing)}")
        train_raw = builder.as_dataset(split="train+validation", shuffle_files=False)
        test_raw = builder.as_dataset(split="test", shuffle_files=False)
        class_names = tuple(builder.info.features["objects"]["label"].names)
    if num_train is not None:
        train_raw = train_raw.take(int(num_train))
    if num_test is not None:
        test_raw = test_raw.take(int(num_test))
    def first(n):
        return "" if n is None else f", first {n}"

    return train_raw, test_raw, class_names, (
        f"tfds {name} (train+validation{first(num_train)} → test{first(num_test)}) from {data_dir}"
    )


def _voc_from_examples(train_raw, test_raw, class_names, input_size, batch_size, augment, seed,
                       description) -> _DetectionData:
    """tfds VOC examples ({"image", "objects": {"bbox" rel yxyx, "label", "is_difficult"}})
    → detection batches at ``input_size`` (resized, boxes in pixel xyxy)."""
    size = float(input_size)

    def convert(example):
        image = tf.image.resize(tf.cast(example["image"], tf.float32) / 255.0, (input_size, input_size))
        rel = tf.reshape(tf.cast(example["objects"]["bbox"], tf.float32), (-1, 4))  # ymin, xmin, ymax, xmax
        boxes = tf.stack([rel[:, 1], rel[:, 0], rel[:, 3], rel[:, 2]], axis=-1) * size
        classes = tf.cast(example["objects"]["label"], tf.float32)
        return image, boxes, classes, tf.cast(example["objects"]["is_difficult"], tf.bool)

    def to_train(example, flip):
        image, boxes, classes, _ = example
        if augment:
            image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
            flipped = tf.stack([size - boxes[:, 2], boxes[:, 1], size - boxes[:, 0], boxes[:, 3]], axis=-1)
            boxes = tf.cond(flip, lambda: flipped, lambda: boxes)
        return {"images": image, "bounding_boxes": {"boxes": boxes, "classes": classes}}

    train = train_raw.map(convert, num_parallel_calls=tf.data.AUTOTUNE).shuffle(1000, seed=seed)
    coins = tf.data.Dataset.random(seed=seed).map(_coin)
    train = tf.data.Dataset.zip((train, coins)).map(to_train, num_parallel_calls=tf.data.AUTOTUNE)
    train = train.padded_batch(
        batch_size, padding_values={"images": 0.0, "bounding_boxes": {"boxes": -1.0, "classes": -1.0}}
    ).prefetch(tf.data.AUTOTUNE)
    test_gt = []
    def boxes_only(example):
        return convert({**example, "image": tf.zeros([1, 1, 3], tf.uint8)})

    for _, boxes, classes, difficult in test_raw.map(boxes_only):
        test_gt.append((boxes.numpy(), classes.numpy().astype(np.int64), difficult.numpy()))
    test = test_raw.map(convert).enumerate().map(_first_with_index).batch(batch_size)
    train_boxes = [b.numpy() for _, b, _, _ in train_raw.take(500).map(boxes_only)]
    num_train = int(train_raw.cardinality())
    if num_train < 0:
        num_train = sum(1 for _ in train_raw.map(_zero))
    return _DetectionData(
        train=train, test=test, test_gt=test_gt, train_boxes=train_boxes, class_names=tuple(class_names),
        num_train=num_train, num_test=len(test_gt), description=description,
    )


# ---------------------------------------------------------------------------- evaluate


def evaluate_detector(model, test: tf.data.Dataset, test_gt: list, num_classes: int, max_detections: int = 100) -> dict:
    """Runs ``model`` (a keras-cv RetinaNet) on ``test`` batches of (images, index) and
    scores its decoded detections with :func:`coco_average_precision`."""

    size = model.inputs["images"].shape[1:] if isinstance(model.inputs, dict) else model.inputs[0].shape[1:]

    @tf.function(input_signature=[tf.TensorSpec([None, *size], tf.float32)])
    def predict(images):
        return model.decode_predictions(model(images, training=False), images)

    preds = [None] * len(test_gt)
    for images, index in test:
        out = {k: v.numpy() for k, v in predict(images).items()}
        for row, i in enumerate(index.numpy()):
            n = int(out["num_detections"][row])
            preds[int(i)] = (out["boxes"][row, :n], out["confidence"][row, :n], out["classes"][row, :n])
    if any(p is None for p in preds):
        raise RuntimeError("detection evaluation lost test images (dataset and ground truth disagree)")
    return coco_average_precision(
        [g[0] for g in test_gt], [g[1] for g in test_gt],
        [p[0] for p in preds], [p[1] for p in preds], [p[2] for p in preds],
        num_classes=num_classes, gt_ignore=[g[2] for g in test_gt], max_detections=max_detections,
    )


def _create_lazy_variables(detector, train: tf.data.Dataset) -> None:
    """Creates the optimizer slots and the loss/metric variables eagerly, before ``fit``.

    Created inside the first traced train step they make TensorFlow trace that (large)
    step twice. The loss is computed on one batch in inference mode: no weight, slot or
    BatchNorm statistic changes.
    """
    create = getattr(detector.optimizer, "_create_all_weights", None)
    if create is not None:
        create(detector.trainable_variables)
    batch = next(iter(train.take(1)))
    images, boxes = batch["images"], batch["bounding_boxes"]
    detector.compute_loss(images, boxes, detector(images, training=False), None)


def _backbone_info(backbone, model: tf.keras.Model, meta: Mapping, is_reactnet: bool) -> dict:
    info = {"name": model.name, "feature_dim": int(model.outputs[0].shape[-1]),
            "architecture": meta.get("architecture", "reactnet_a" if is_reactnet else "keras")}
    if isinstance(backbone, (str, os.PathLike)):
        info["path"] = os.fspath(backbone)
    for key in ("stage", "method", "input_size"):
        if key in meta:
            info[key] = meta[key]
    return info


def _as_float(name, value) -> float:
    # Also accepts strings: YAML (the CLI's --set) reads "1e-3" as a string.
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise DetectionConfigError(f"{name} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(result):
        raise DetectionConfigError(f"{name} must be a finite number, got {value!r}")
    return result


def _check_positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise DetectionConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def detect(
    backbone,
    *,
    data: str = "composites",
    out_dir: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    input_size: int = 128,
    epochs: int = 10,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    warmup_epochs: float = 1.0,
    freeze_backbone: bool = False,
    num_train: int | None = 2000,
    num_test: int | None = 500,
    pyramid_layers: Any = None,
    anchor_size: float | None = None,
    head_width: int = 64,
    head_depth: int = 3,
    nms: str = "per_class",
    nms_iou: float = 0.5,
    score_threshold: float = 0.05,
    max_detections: int = 100,
    augment: bool = True,
    seed: int = 0,
    verbose: int = 2,
) -> dict:
    """Fine-tunes keras-cv RetinaNet on the backbone and reports COCO-style box AP.

    Args:
      backbone: exported backbone directory / ``.keras`` file, or a Keras feature extractor.
      data: ``"composites"`` (Fashion-MNIST composites, offline) or ``"voc/2007"`` (tfds,
        prepared under ``data_dir``). ``data_dir`` is also the Fashion-MNIST root override.
      input_size: detector input side in pixels (multiple of 32); composites are generated
        at this size; VOC images are resized to it.
      epochs, batch_size, learning_rate: Adam, linear warm-up over ``warmup_epochs`` then
        cosine decay to 0, global gradient clip-norm 10, focal + smooth-L1 losses. On a CPU
        the step time is mostly per-op overhead, so larger batches train faster per image
        (measured: 64 → ~3× the images/s of 16). The defaults (128 px, 2000 images, 10
        epochs of 64, ``head_width`` 64; 320 steps) took 9.3 minutes for a ReActNet-A of
        width 0.25 on 2 CPU cores shared with other jobs (~1 s/step when less loaded).
      freeze_backbone: train only the FPN and heads (backbone in inference mode) instead of
        fine-tuning everything.
      num_train, num_test: number of images (composites: generated; VOC: first N, None = all).
      pyramid_layers: {"P3", "P4", "P5"} → layer names (or three names) for a backbone
        that is not a ReActNet-A.
      anchor_size: side of the P3 anchors in pixels (default ``input_size / 8`` for
        composites, 32 for VOC); check ``anchor_coverage`` in the result.
      head_width, head_depth: FPN / head channels and conv layers per head (keras-cv's
        reference is 256 and 3; 64 keeps CPU runs short).
      nms: ``"per_class"`` or ``"class_agnostic"`` (keras-cv's NonMaxSuppression).
      nms_iou, score_threshold, max_detections: decoding for evaluation.
      augment: random horizontal flips while training.

    Returns a dict with ``mAP`` (0.5:0.95), ``AP50``, ``AP75``, per-class AP, the training
    loss per epoch and the settings; written to ``<out_dir>/detect.json`` when given.
    """
    if data not in DATASETS:
        raise DetectionConfigError(f"data must be one of {DATASETS}, got {data!r}")
    input_size = _check_positive_int("input_size", input_size, 32)
    if input_size % 32:
        raise DetectionConfigError(
            f"input_size must be a multiple of 32 (the FPN upsamples P5 (stride 32) onto P4 and "
            f"P3), got {input_size}"
        )
    epochs = _check_positive_int("epochs", epochs)
    batch_size = _check_positive_int("batch_size", batch_size)
    head_width = _check_positive_int("head_width", head_width)
    head_depth = _check_positive_int("head_depth", head_depth, 0)
    max_detections = _check_positive_int("max_detections", max_detections)
    for name, value in (("num_train", num_train), ("num_test", num_test)):
        if value is not None:
            _check_positive_int(name, value)
    if data == "composites" and (num_train is None or num_test is None):
        raise DetectionConfigError("composites are generated: num_train and num_test must be numbers")
    learning_rate = _as_float("learning_rate", learning_rate)
    warmup_epochs = _as_float("warmup_epochs", warmup_epochs)
    nms_iou = _as_float("nms_iou", nms_iou)
    score_threshold = _as_float("score_threshold", score_threshold)
    if not learning_rate > 0:
        raise DetectionConfigError(f"learning_rate must be > 0, got {learning_rate!r}")
    if not 0 <= warmup_epochs <= epochs:
        raise DetectionConfigError(f"warmup_epochs must be in [0, epochs], got {warmup_epochs!r}")
    if nms not in NMS_MODES:
        raise DetectionConfigError(f"nms must be one of {NMS_MODES}, got {nms!r}")
    if not 0 < float(nms_iou) <= 1 or not 0 <= float(score_threshold) < 1:
        raise DetectionConfigError(f"need 0 < nms_iou <= 1 and 0 <= score_threshold < 1, got {nms_iou!r}, {score_threshold!r}")
    if anchor_size is None:
        anchor_size = input_size / 8 if data == "composites" else 32.0
    anchor_size = _as_float("anchor_size", anchor_size)
    if not anchor_size > 0:
        raise DetectionConfigError(f"anchor_size must be > 0, got {anchor_size!r}")

    started = time.perf_counter()
    model, meta = resolve_backbone(backbone)
    is_reactnet = _reactnet_config(model, meta) is not None
    existing = getattr(model, "pyramid_level_inputs", None)  # a keras_cv Backbone's own levels
    if pyramid_layers is None and not is_reactnet and existing and all(k in existing for k in LEVELS):
        pyramid_layers = {k: existing[k] for k in LEVELS}
    sized = backbone_at_size(model, meta, input_size)
    levels = resolve_pyramid_layers(sized, pyramid_layers, input_size, is_reactnet)

    tf.keras.utils.set_random_seed(int(seed))
    if data == "composites":
        dataset = _composites_data(input_size, num_train, num_test, batch_size, augment, seed, data_dir)
    else:
        train_raw, test_raw, names, description = _open_voc(data, data_dir, num_train, num_test)
        dataset = _voc_from_examples(train_raw, test_raw, names, input_size, batch_size, augment, seed, description)
    num_classes = len(dataset.class_names)
    coverage = anchor_coverage(dataset.train_boxes, input_size, anchor_size)

    detector = build_retinanet(
        sized, levels, num_classes, anchor_size=anchor_size, head_width=head_width, head_depth=head_depth,
        nms=nms, nms_iou=nms_iou, score_threshold=score_threshold, max_detections=max_detections,
    )
    if freeze_backbone:
        detector.backbone.trainable = False
    steps_per_epoch = max(1, math.ceil(dataset.num_train / batch_size))
    total = steps_per_epoch * epochs
    warmup = int(round(float(warmup_epochs) * steps_per_epoch))
    schedule = tf.keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else float(learning_rate), max(1, total - warmup),
        warmup_target=float(learning_rate) if warmup else None, warmup_steps=warmup,
    )
    # The legacy Adam applies one fused op per variable (the new one ~15): the training
    # graph traces ~2x faster on CPU, which dominates short runs.
    optimizer = tf.keras.optimizers.legacy.Adam(schedule, global_clipnorm=10.0)
    detector.compile(optimizer=optimizer, classification_loss="focal", box_loss="smoothl1", jit_compile=False)
    _create_lazy_variables(detector, dataset.train)
    start = time.perf_counter()
    history = detector.fit(dataset.train, epochs=epochs, verbose=verbose,
                           callbacks=[tf.keras.callbacks.TerminateOnNaN()])
    train_seconds = time.perf_counter() - start
    losses = [float(v) for v in history.history.get("loss", [])]
    if len(losses) < epochs or not all(np.isfinite(losses)):
        raise FloatingPointError(
            f"detection training diverged (loss per epoch: {losses}); try a lower learning_rate "
            f"(now {learning_rate}) or freeze_backbone=True"
        )
    start = time.perf_counter()
    scores = evaluate_detector(detector, dataset.test, dataset.test_gt, num_classes, max_detections)
    eval_seconds = time.perf_counter() - start

    ap = scores["ap"]
    per_class = {
        dataset.class_names[k]: {"AP": float(np.mean(ap[:, k])), "AP50": float(ap[0, k]), "num_gt": scores["num_gt"][k]}
        for k in scores["classes"]
    }
    result = {
        "task": "detect",
        "data": data,
        "data_description": dataset.description,
        "detector": "keras-cv RetinaNet (stand-in for the paper's Faster R-CNN on VOC07+12)",
        "metric": "COCO-style box AP (0.50:0.95, 101-point), burn_tf implementation",
        "mAP": scores["mAP"],
        "AP50": scores["AP50"],
        "AP75": scores["AP75"],
        "per_class": per_class,
        "num_train": dataset.num_train,
        "num_test": dataset.num_test,
        "num_test_objects": int(sum(int((~g[2]).sum()) for g in dataset.test_gt)),
        "input_size": input_size,
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": float(learning_rate),
        "warmup_epochs": float(warmup_epochs),
        "freeze_backbone": bool(freeze_backbone),
        "pyramid_layers": levels,
        "anchor_size": anchor_size,
        "anchor_coverage": coverage,
        "head_width": head_width,
        "head_depth": head_depth,
        "nms": nms,
        "nms_iou": float(nms_iou),
        "score_threshold": float(score_threshold),
        "max_detections": max_detections,
        "augment": bool(augment),
        "seed": int(seed),
        "train_loss": losses,
        "train_box_loss": [float(v) for v in history.history.get("box_loss", [])],
        "train_classification_loss": [float(v) for v in history.history.get("classification_loss", [])],
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "backbone": _backbone_info(backbone, model, meta, is_reactnet),
        "seconds": round(time.perf_counter() - started, 2),
    }
    write_results(out_dir, "detect", result)
    return result


def format_result(result: dict) -> str:
    head = (
        f"detect [{result['data']}] {result['detector']}\n"
        f"  mAP@[.5:.95] {result['mAP']:.4f}   AP50 {result['AP50']:.4f}   AP75 {result['AP75']:.4f}\n"
        f"  {result['num_train']} train / {result['num_test']} test images, {result['input_size']} px, "
        f"{result['epochs']} epochs ({result['train_seconds']:.0f} s), "
        f"backbone {'frozen' if result['freeze_backbone'] else 'fine-tuned'}, "
        f"loss {result['train_loss'][0]:.3f} → {result['train_loss'][-1]:.3f}, "
        f"anchor coverage {result['anchor_coverage']:.2f}"
    )
    rows = [{"class": name, "AP": v["AP"], "AP50": v["AP50"], "objects": v["num_gt"]}
            for name, v in result["per_class"].items()]
    return head + "\n" + format_table(rows, ["class", "AP", "AP50", "objects"])
