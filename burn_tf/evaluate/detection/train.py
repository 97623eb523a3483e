"""Object detection with a binary backbone: keras-cv RetinaNet, mAP / AP50 / AP75.

The paper (BURN, CVPR 2022, Table 4) fine-tunes Faster R-CNN (detectron2) on
VOC07+12 trainval and reports AP / AP50 / AP75 on VOC07 test. This is a **Keras-native
stand-in**, not that protocol: keras-cv 0.9 ``RetinaNet`` (FPN P3–P7, focal loss,
smooth-L1 boxes) on the binary backbone's intermediate block outputs, scored with COCO-style
AP. Numbers are comparable between backbones evaluated the same way here, not to the paper's.

Protocols (``protocols=``, both by default, each named in the JSON's ``"protocol"``)
-------------------------------------------------------------------------------------
- ``"frozen"``: the backbone is frozen (inference-mode BatchNorm), only FPN and heads train —
  what the features alone give a detector;
- ``"finetune"``: everything trains end to end, as the paper does.

With ``random_init=True`` (default) each protocol also trains the *same* detector on a
freshly initialised copy of the backbone (same architecture, seeded): the floor. Over
``num_seeds`` seeds the JSON reports AP, AP50, AP75 mean ± std for both and the paired
margin trained − random per seed (``summary[protocol]["margin_AP50"]``, with
``exceeds_seed_std``).

Data
----
- ``"composites"`` (default, offline): Fashion-MNIST items pasted on ``input_size``-pixel
  canvases, 1–4 per image, 10 classes, sides 25–60 % of the canvas, on a **cluttered
  background** (texture, noise, item fragments, partial occluders; ``background="black"``
  is the old plain canvas, on which a random backbone scored AP50 0.238 against 0.245
  fine-tuned) — :mod:`burn_tf.data.detection_composites`. Train items come from the
  Fashion-MNIST train split, test items from the test split.
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

Modules: this one is the driver (:func:`detect`);
:mod:`burn_tf.evaluate.detection.results` scores and summarises the runs;
:mod:`burn_tf.evaluate.detection.model` builds the detector,
:mod:`burn_tf.evaluate.detection.data` the data.

Example::

    from burn_tf.evaluate.detection import detect
    result = detect("runs/burn/backbone", num_seeds=3)
    result["summary"]["frozen"]["margin_AP50"]      # trained − random init, per seed
"""

from __future__ import annotations

import functools
import math
import os
import time
from typing import Any

import numpy as np
import tensorflow as tf

from burn_tf.callbacks import FitProgress
from burn_tf.evaluate.common import (
    backbone_info,
    evaluator_result,
    resolve_backbone,
    write_results,
)
from burn_tf.evaluate.detection.data import (
    composites_data,
    open_voc,
    voc_detection_data,
)
from burn_tf.evaluate.detection.model import (
    LEVELS,
    NMS_MODES,
    DetectionConfigError,
    anchor_coverage,
    backbone_at_size,
    build_retinanet,
    random_init_like,
    reactnet_config,
    resolve_pyramid_layers,
    zoo_config,
)
from burn_tf.evaluate.detection.results import evaluate_detector, summarize_runs
from burn_tf.evaluate.probe import as_strategy, create_optimizer_variables
from burn_tf.progress import Progress

DATASETS = ("composites", "voc/2007")


def _create_lazy_variables(detector, train: tf.data.Dataset) -> None:
    """Creates the optimizer slots and the loss/metric variables eagerly, before ``fit``.

    Created inside the first traced train step they make TensorFlow trace that (large)
    step twice. The loss is computed on one batch in inference mode: no weight, slot or
    BatchNorm statistic changes.
    """
    create_optimizer_variables(detector)
    batch = next(iter(train.take(1)))
    images, boxes = batch["images"], batch["bounding_boxes"]
    # In replica context (the strategy whose scope the caller is in; without one, a plain
    # call): keras-cv's label encoder updates a metric, which a strategy refuses to do from
    # cross-replica context.
    tf.distribute.get_strategy().run(
        lambda: detector.compute_loss(images, boxes, detector(images, training=False), None))


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


PROTOCOLS = ("frozen", "finetune")
PROTOCOL_SOURCE = (
    "BURN (CVPR 2022) Table 4 fine-tunes Faster R-CNN on VOC07+12 (detectron2, after MoCo's "
    "detection protocol); burn_tf's Keras-native stand-in: keras-cv RetinaNet, COCO-style AP, "
    "both a frozen-backbone and a fine-tuned protocol, and the same detector on a randomly "
    "initialised backbone as the floor"
)
LIMITS = (
    "Comparable only between backbones run with the same settings here, not with the paper's "
    "VOC numbers. The frozen protocol measures what the backbone's features give a detector "
    "that cannot change them; fine-tuning mostly measures the architecture and the "
    "initialisation's trainability in a short schedule. On the black-background composites a "
    "random backbone localises nearly as well as a trained one (objects are the only non-zero "
    "pixels); the cluttered composites need shape features, so the gap to the random floor "
    "is what the benchmark shows. It cannot show VOC-scale transfer (64-px scenes, 10 "
    "Fashion-MNIST classes, a few thousand images)."
)


def _train_and_score(make_backbone, levels, dataset, num_classes, *, frozen, epochs, batch_size,
                     learning_rate, warmup_epochs, anchor_size, head_width, head_depth, nms, nms_iou,
                     score_threshold, max_detections, seed, verbose, strategy, progress=None) -> dict:
    """One detector on the backbone ``make_backbone()`` returns: train (frozen or fine-tuned),
    then score the test set. Backbone, detector and optimizer are made in ``strategy``'s scope
    (variables made outside it cannot be trained under it): training runs on every replica,
    ``batch_size`` being the global batch. ``progress`` names the training's progress lines
    (:class:`~burn_tf.callbacks.FitProgress`; None: none)."""
    tf.keras.utils.set_random_seed(int(seed))
    with strategy.scope():
        detector = build_retinanet(
            make_backbone(), levels, num_classes, anchor_size=anchor_size, head_width=head_width,
            head_depth=head_depth, nms=nms, nms_iou=nms_iou, score_threshold=score_threshold,
            max_detections=max_detections,
        )
        if frozen:
            detector.backbone.trainable = False  # also puts its BatchNorm in inference mode
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
        detector.compile(optimizer=optimizer, classification_loss="focal", box_loss="smoothl1",
                         jit_compile=False)
        _create_lazy_variables(detector, dataset.train)
    start = time.perf_counter()
    callbacks = [tf.keras.callbacks.TerminateOnNaN()] + ([FitProgress(progress)] if progress else [])
    history = detector.fit(dataset.train, epochs=epochs, verbose=verbose, callbacks=callbacks)
    train_seconds = time.perf_counter() - start
    losses = [float(v) for v in history.history.get("loss", [])]
    if len(losses) < epochs or not all(np.isfinite(losses)):
        raise FloatingPointError(
            f"detection training diverged (loss per epoch: {losses}); try a lower learning_rate "
            f"(now {learning_rate}) or protocols=['frozen']"
        )
    start = time.perf_counter()
    scores = evaluate_detector(detector, dataset.test, dataset.test_gt, num_classes, max_detections)
    return {
        "scores": scores,
        "train_loss": losses,
        "train_box_loss": [float(v) for v in history.history.get("box_loss", [])],
        "train_classification_loss": [float(v) for v in history.history.get("classification_loss", [])],
        "train_seconds": train_seconds,
        "eval_seconds": time.perf_counter() - start,
    }


def detect(
    backbone,
    *,
    data: str = "composites",
    out_dir: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    input_size: int = 64,
    epochs: int = 10,
    batch_size: int = 64,
    learning_rate: float = 2e-3,
    warmup_epochs: float = 1.0,
    protocols: Any = PROTOCOLS,
    random_init: bool = True,
    num_seeds: int = 1,
    num_train: int | None = 2000,
    num_test: int | None = 500,
    background: str = "clutter",
    item_scale: Any = (0.25, 0.6),
    occlusion: float = 0.3,
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
    strategy: str = "default",
) -> dict:
    """Trains keras-cv RetinaNet on the backbone (frozen and/or fine-tuned, and on a random
    initialisation of it) and reports COCO-style box AP.

    Args:
      backbone: exported backbone directory / ``.keras`` file, or a Keras feature extractor.
      data: ``"composites"`` (Fashion-MNIST composites, offline) or ``"voc/2007"`` (tfds,
        prepared under ``data_dir``). ``data_dir`` is also the Fashion-MNIST root override.
      input_size: detector input side in pixels (multiple of 32); composites are generated
        at this size; VOC images are resized to it. The backbone is rebuilt at this size
        (a ReActNet-A's weights are size independent).
      epochs, batch_size, learning_rate: Adam, linear warm-up over ``warmup_epochs`` then
        cosine decay to 0, global gradient clip-norm 10, focal + smooth-L1 losses.
      protocols: ``"frozen"`` (train only the FPN and heads, backbone in inference mode)
        and/or ``"finetune"`` (train everything); a name or a list.
      random_init: also train the same detector on a freshly initialised copy of the backbone
        (seeded per run) — the floor the pretrained backbone has to beat.
      num_seeds: runs with seeds ``seed … seed + num_seeds − 1``; each seed draws its own
        composites, detector initialisation and order, shared by the trained and the
        random-init run of that seed (paired margins). Results are mean ± std (population).
      num_train, num_test: number of images (composites: generated; VOC: first N, None = all).
      background, item_scale, occlusion: composites only — ``"clutter"`` (default) or
        ``"black"`` backgrounds, item side as fractions of the canvas, occluder probability
        (:func:`burn_tf.data.detection_composites.make_detection_composites`).
      pyramid_layers: {"P3", "P4", "P5"} → layer names (or three names) for a backbone
        that is not a ReActNet-A.
      anchor_size: side of the P3 anchors in pixels (default ``input_size / 8`` for
        composites, 32 for VOC); check ``anchor_coverage`` in the result.
      head_width, head_depth: FPN / head channels and conv layers per head (keras-cv's
        reference is 256 and 3; 64 keeps CPU runs short).
      nms: ``"per_class"`` or ``"class_agnostic"`` (keras-cv's NonMaxSuppression).
      nms_iou, score_threshold, max_detections: decoding for evaluation.
      augment: random horizontal flips while training.
      strategy: default | mirrored | multiworker | tpu (as ``train.strategy``): every detector
        trains on every replica; ``batch_size`` is the global batch.

    Returns a dict with ``runs`` (one entry per protocol × init × seed: mAP, AP50, AP75,
    losses, seconds), ``summary`` (per protocol: mean ± std of trained and random-init AP,
    and the paired margins), and at the top ``mAP`` / ``AP50`` / ``AP75`` of the trained
    backbone under the first protocol (mean over seeds) with ``random_init_floor`` beside
    them; written to ``<out_dir>/detect.json`` when given.
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
    num_seeds = _check_positive_int("num_seeds", num_seeds)
    for name, value in (("num_train", num_train), ("num_test", num_test)):
        if value is not None:
            _check_positive_int(name, value)
    if data == "composites" and (num_train is None or num_test is None):
        raise DetectionConfigError("composites are generated: num_train and num_test must be numbers")
    if isinstance(protocols, str):
        protocols = [protocols]
    protocols = list(dict.fromkeys(protocols or []))
    if not protocols or any(p not in PROTOCOLS for p in protocols):
        raise DetectionConfigError(f"protocols must be one or more of {PROTOCOLS}, got {protocols!r}")
    learning_rate = _as_float("learning_rate", learning_rate)
    warmup_epochs = _as_float("warmup_epochs", warmup_epochs)
    nms_iou = _as_float("nms_iou", nms_iou)
    score_threshold = _as_float("score_threshold", score_threshold)
    occlusion = _as_float("occlusion", occlusion)
    if not learning_rate > 0:
        raise DetectionConfigError(f"learning_rate must be > 0, got {learning_rate!r}")
    if not 0 <= warmup_epochs <= epochs:
        raise DetectionConfigError(f"warmup_epochs must be in [0, epochs], got {warmup_epochs!r}")
    if nms not in NMS_MODES:
        raise DetectionConfigError(f"nms must be one of {NMS_MODES}, got {nms!r}")
    if not 0 < float(nms_iou) <= 1 or not 0 <= float(score_threshold) < 1:
        raise DetectionConfigError(
            f"need 0 < nms_iou <= 1 and 0 <= score_threshold < 1, got {nms_iou!r}, {score_threshold!r}")
    if anchor_size is None:
        anchor_size = input_size / 8 if data == "composites" else 32.0
    anchor_size = _as_float("anchor_size", anchor_size)
    if not anchor_size > 0:
        raise DetectionConfigError(f"anchor_size must be > 0, got {anchor_size!r}")
    composite_options = {"background": background, "item_scale": item_scale, "occlusion": occlusion}
    # Resolved once: every detector of the evaluation trains under the same strategy.
    distribution = as_strategy(strategy)

    started = time.perf_counter()
    model, meta = resolve_backbone(backbone)
    is_reactnet = reactnet_config(model, meta) is not None
    architecture = "reactnet_a" if is_reactnet else "larq_zoo" if zoo_config(model, meta) is not None else "keras"
    existing = getattr(model, "pyramid_level_inputs", None)  # a keras_cv Backbone's own levels
    if pyramid_layers is None and not is_reactnet and existing and all(k in existing for k in LEVELS):
        pyramid_layers = {k: existing[k] for k in LEVELS}
    levels = resolve_pyramid_layers(backbone_at_size(model, meta, input_size), pyramid_layers, input_size, is_reactnet)
    settings = dict(
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        warmup_epochs=warmup_epochs,
        anchor_size=anchor_size,
        head_width=head_width,
        head_depth=head_depth,
        nms=nms,
        nms_iou=nms_iou,
        score_threshold=score_threshold,
        max_detections=max_detections,
        verbose=verbose,
        strategy=distribution,
    )

    runs, first = [], None
    inits = ("trained", "random_init") if random_init else ("trained",)
    runs_total = num_seeds * len(protocols) * len(inits)
    meter = Progress("detect", runs_total, "runs", every_seconds=0) if verbose else None
    for run_seed in range(int(seed), int(seed) + num_seeds):
        if data == "composites":
            try:
                dataset = composites_data(
                    input_size, num_train, num_test, batch_size, augment, run_seed, data_dir, **composite_options
                )
            except ValueError as err:
                raise DetectionConfigError(f"composites: {err}") from None
        else:
            train_raw, test_raw, names, description = open_voc(data, data_dir, num_train, num_test)
            dataset = voc_detection_data(
                train_raw, test_raw, names, input_size, batch_size, augment, run_seed, description
            )
        num_classes = len(dataset.class_names)
        for protocol in protocols:
            for init in inits:
                if init == "trained":
                    # A copy: fine-tuning never touches `model`.
                    make_backbone = functools.partial(backbone_at_size, model, meta, input_size)
                else:
                    make_backbone = functools.partial(random_init_like, model, meta, input_size, seed=10_000 + run_seed)
                name = f"detect {protocol} {init} seed {run_seed}"
                out = _train_and_score(
                    make_backbone,
                    levels,
                    dataset,
                    num_classes,
                    frozen=protocol == "frozen",
                    seed=run_seed,
                    progress=name if verbose else None,
                    **settings,
                )
                scores = out.pop("scores")
                runs.append(
                    {
                        "protocol": protocol,
                        "init": init,
                        "seed": run_seed,
                        "mAP": scores["mAP"],
                        "AP50": scores["AP50"],
                        "AP75": scores["AP75"],
                        **out,
                    }
                )
                if first is None:
                    first = (scores, dataset)
                if meter:
                    meter.advance(
                        note=f"{protocol} {init} seed {run_seed}: AP {scores['mAP']:.4f} "
                        f"AP50 {scores['AP50']:.4f} AP75 {scores['AP75']:.4f}"
                    )

    scores, dataset = first
    ap = scores["ap"]
    per_class = {
        dataset.class_names[k]: {"AP": float(np.mean(ap[:, k])), "AP50": float(ap[0, k]), "num_gt": scores["num_gt"][k]}
        for k in scores["classes"]
    }
    summary = summarize_runs(runs, protocols, random_init)
    head = summary[protocols[0]]
    first_run = runs[0]
    result = evaluator_result(
        "detect",
        data=data,
        backbone=backbone_info(backbone, model, meta, architecture, input_size=input_size),
        protocol={
            "source": PROTOCOL_SOURCE,
            "protocols": protocols,
            "random_init_floor": bool(random_init),
            "seeds": list(range(int(seed), int(seed) + num_seeds)),
            "limits": LIMITS,
        },
        seconds=time.perf_counter() - started,
        data_description=dataset.description,
        detector="keras-cv RetinaNet (stand-in for the paper's Faster R-CNN on VOC07+12)",
        metric="COCO-style box AP (0.50:0.95, 101-point), burn_tf implementation",
        mAP=head["trained"]["mAP"]["mean"],
        AP50=head["trained"]["AP50"]["mean"],
        AP75=head["trained"]["AP75"]["mean"],
        random_init_floor=(
            {p: {k: summary[p]["random_init"][k]["mean"] for k in ("mAP", "AP50", "AP75")} for p in protocols}
            if random_init
            else None
        ),
        summary=summary,
        runs=runs,
        per_class=per_class,  # the first run's (first protocol, trained, first seed)
        num_train=dataset.num_train,
        num_test=dataset.num_test,
        num_test_objects=int(sum(int((~g[2]).sum()) for g in dataset.test_gt)),
        input_size=input_size,
        composites={k: (list(v) if isinstance(v, (tuple, list)) else v) for k, v in composite_options.items()}
        if data == "composites"
        else None,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=float(learning_rate),
        warmup_epochs=float(warmup_epochs),
        pyramid_layers=levels,
        anchor_size=anchor_size,
        anchor_coverage=anchor_coverage(dataset.train_boxes, input_size, anchor_size),
        head_width=head_width,
        head_depth=head_depth,
        nms=nms,
        nms_iou=float(nms_iou),
        score_threshold=float(score_threshold),
        max_detections=max_detections,
        augment=bool(augment),
        seed=int(seed),
        strategy=str(strategy),
        train_loss=first_run["train_loss"],
        train_seconds=float(sum(r["train_seconds"] for r in runs)),
        eval_seconds=float(sum(r["eval_seconds"] for r in runs)),
    )
    write_results(out_dir, "detect", result)
    return result
