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
pycocotools is not a runtime dependency of burn_tf (it is a dev extra), so keras-cv's
``BoxCOCO`` / ``PyCOCOCallback`` (which need it) are not used.
:func:`burn_tf.evaluate.metrics.coco_average_precision` is a small numpy re-implementation
of COCOeval's bounding-box AP (greedy matching by score, IoU thresholds 0.50:0.05:0.95,
101-point interpolated precision, ≤ ``max_detections`` per image, area range "all",
classes without ground truth skipped); tests check it against hand-computed cases and, in
the dev environment, against pycocotools. Detections are decoded with per-class NMS
(``nms="per_class"``, as RetinaNet is usually evaluated) or keras-cv's class-agnostic
``NonMaxSuppression`` (``nms="class_agnostic"``).

Modules: this one is the driver (:func:`detect`, :func:`evaluate_detector`);
:mod:`burn_tf.evaluate.detection_model` builds the detector,
:mod:`burn_tf.evaluate.detection_data` the data.

>>> from burn_tf.evaluate import detect
>>> result = detect("runs/burn/backbone", epochs=8, input_size=128)
>>> result["mAP"], result["AP50"], result["AP75"]
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import numpy as np
import tensorflow as tf

from burn_tf.evaluate.common import (
    backbone_info,
    format_table,
    resolve_backbone,
    write_results,
)
from burn_tf.evaluate.detection_data import (
    composites_data,
    open_voc,
    voc_detection_data,
)
from burn_tf.evaluate.detection_model import (
    LEVELS,
    NMS_MODES,
    DetectionConfigError,
    anchor_coverage,
    backbone_at_size,
    build_retinanet,
    reactnet_config,
    resolve_pyramid_layers,
)
from burn_tf.evaluate.metrics import coco_average_precision

DATASETS = ("composites", "voc/2007")


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
    is_reactnet = reactnet_config(model, meta) is not None
    existing = getattr(model, "pyramid_level_inputs", None)  # a keras_cv Backbone's own levels
    if pyramid_layers is None and not is_reactnet and existing and all(k in existing for k in LEVELS):
        pyramid_layers = {k: existing[k] for k in LEVELS}
    sized = backbone_at_size(model, meta, input_size)
    levels = resolve_pyramid_layers(sized, pyramid_layers, input_size, is_reactnet)

    tf.keras.utils.set_random_seed(int(seed))
    if data == "composites":
        dataset = composites_data(input_size, num_train, num_test, batch_size, augment, seed, data_dir)
    else:
        train_raw, test_raw, names, description = open_voc(data, data_dir, num_train, num_test)
        dataset = voc_detection_data(train_raw, test_raw, names, input_size, batch_size, augment, seed, description)
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
        "backbone": backbone_info(backbone, model, meta, "reactnet_a" if is_reactnet else "keras"),
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
