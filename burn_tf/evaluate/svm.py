"""SVM image classification (VOC07 protocol of Goyal et al. 2019, BURN supplement §1).

Protocol source: BURN supplement (seed 000), § "SVM Image Classification": the last layer's
feature map **average-pooled to 4,096 dimensions** (ReActNet-A: 1024 channels × a 2×2 grid),
LIBLINEAR linear SVMs, VOC07 trainval → test mAP; few-shot k ∈ {1, 2, 4, 8, 16, 32, 64, 96},
5 independent samples, mean ± std. Low-shot sampling as Goyal et al.'s
``create_voc_low_shot_samples`` (VISSL ``extra_scripts``, MMSelfSup ``tools/benchmarks``):
see :func:`~burn_tf.evaluate.svm_classifiers.lowshot_targets`. The result's ``"protocol"``
names this source. The SVMs themselves (cost search, full-shot, low-shot samples, few-shot)
are in :mod:`burn_tf.evaluate.svm_classifiers`; this module holds the data, the features and
the task entry :func:`svm`.

Features (``pooling``):

* ``"grid"`` (default): the map the backbone's final global pooling reads is average-pooled
  to a g×g grid (:class:`~burn_tf.evaluate.features.GridAveragePooling`), g chosen so that
  channels · g² is closest to ``feature_dim`` (4,096): 2×2 for ReActNet-A, 4×4 for width
  0.25 (256 channels). ``pooling_grid`` sets g directly. When the backbone's own input
  gives a map smaller than g×g (the demo's 48-px student ends in a 2×2 map), the backbone
  is **rebuilt at a larger input** (the smallest multiple of its size, from
  ``ceil(g / map side)`` ×, whose map holds the grid — strides round up, so 2 × 48 px gives
  3×3, not 4×4; weights copied — a ReActNet-A's weights are size independent) and the
  images are resized up to it; the result's ``pooling`` records the grid, the input size, the
  feature dimension and why that size; we
  upsample rather than pool to min(g, map), which would silently give 256-d features.
  ``image_size`` forces the input size. A backbone whose output is not a global average
  pooling of a map (e.g. ``Flatten``, global max pooling) keeps its output.
* ``"global"``: the backbone's own (globally pooled) output at its own input size.

Features are L2-normalised, then one linear SVM per class (one-vs-rest, LIBLINEAR through
``sklearn.svm.LinearSVC``) with the settings of Goyal et al.'s benchmark code: squared hinge
loss, L2 penalty, dual solver, ``tol`` 1e-4, ``max_iter`` 2000, class weights {+1: 2, −1: 1}.
Labels per class: 1 present, 0 absent, −1 "difficult" (VOC) — difficult images count as
negatives when training the full-shot SVMs and are ignored when scoring, as in that code.

* **Full-shot**: for each class, the cost is chosen by ``folds``-fold cross-validation
  (sklearn's ``average_precision`` scorer, unshuffled stratified folds) over the cost grid
  :data:`~burn_tf.evaluate.svm_classifiers.DEFAULT_COSTS` (the benchmark's 10 decades
  1e-7…100 plus 0.5^4…0.5^19), the SVM is retrained on the whole train split with that cost
  and scored on the test split.
* **Few-shot**: for each k and each of ``samples`` independent samples, every class gets its
  *own* training set: k of its positive images and (C − 1)·k of its negative images, drawn
  independently per class (difficult images are never drawn); the SVM of class c trains on
  those images only (:func:`~burn_tf.evaluate.svm_classifiers.lowshot_targets`). The
  reference protocol (``fewshot_cost="reference"``, the default, what the paper's Table 2
  uses) trains every cost and reports, per k, the cost with the best mean test mAP over the
  samples — note: **chosen on the test split**, as in Goyal et al.'s low-shot scripts. A
  number instead uses that one cost for everything. mean ± std (population std, as the
  benchmark's aggregation) over the samples.

AP is reported both ways (:func:`burn_tf.evaluate.metrics.average_precision`); ``ap_method``
picks which one is called ``map``:

* ``"area"`` (default): area under the monotone (interpolated) precision/recall curve — what
  Goyal et al.'s benchmark code computes (``calculate_ap``) and hence the paper's numbers;
* ``"voc07"``: the VOC2007 devkit's 11-point interpolated AP (mean of the max precision at
  recall ≥ 0, 0.1, …, 1).

Data: ``"auto"`` (default): tfds ``voc/2007`` when it is prepared under ``data_dir``, the
embedded composites otherwise (the result's ``data`` says which); ``"composites"``:
Fashion-MNIST items pasted on 64×64 canvases, multi-hot over the 10 classes
(:mod:`burn_tf.data.composites`), 5,011 train / 4,952 test images like VOC07 trainval / test;
``"voc2007"``: tfds ``voc/2007`` prepared under ``data_dir`` (trainval → test; never
downloaded, an error if missing); or ``(x_train, Y_train, x_test, Y_test)`` with multi-hot
``Y``. No evaluator here ranks classes, so the top-k tie rule of
:mod:`burn_tf.evaluate.metrics` does not arise; AP sorts scores stably.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from burn_tf.data.composites import CLASS_NAMES, multilabel_composites
from burn_tf.data.source_info import SourceNotFoundError
from burn_tf.data.source_tfds import gcs_disabled, tfds_source
from burn_tf.evaluate import common
from burn_tf.evaluate.data import VOC_CLASSES, check_images, check_multi_hot
from burn_tf.evaluate.detection.model import backbone_at_size
from burn_tf.evaluate.features import (
    GridAveragePooling,
    final_feature_map,
    pooling_grid_for,
    resolve_input_size,
)
from burn_tf.evaluate.metrics import AP_METHODS
from burn_tf.evaluate.svm_classifiers import DEFAULT_COSTS, few_shot, full_shot, normalize_features

TASK = "svm"
DEFAULT_DATA = "auto"
DEFAULT_SHOTS = (1, 2, 4, 8, 16, 32, 64, 96)
DEFAULT_FEATURE_DIM = 4096
POOLINGS = ("grid", "global")
# How many times the input may grow by the backbone's own size to fit the grid (module docstring).
MAX_UPSAMPLING_STEPS = 8
VOC_NAMES = ("voc2007", "voc/2007", "tfds:voc/2007")
PROTOCOL_SOURCE = (
    "BURN supplement (seed 000) § 'SVM Image Classification', after Goyal et al. 2019 "
    "(ICCV, 'Scaling and benchmarking self-supervised visual representation learning'); "
    "low-shot samples as create_voc_low_shot_samples.py (facebookresearch/vissl extra_scripts)"
)

# ------------------------------------------------------------------------------ data


def voc_targets(labels, labels_no_difficult, num_classes: int = len(VOC_CLASSES)):
    """tfds VOC object class lists → multi-hot int32 [num_classes]: 1 where a non-difficult
    object of the class is present, −1 where only difficult ones are, 0 otherwise."""
    import tensorflow as tf

    def present(ids):
        counts = tf.reduce_sum(tf.one_hot(tf.cast(ids, tf.int32), num_classes, dtype=tf.int32), axis=0)
        return tf.cast(counts > 0, tf.int32)  # also right for an empty list

    every, easy = present(labels), present(labels_no_difficult)
    return easy - (every - easy)


def voc2007_arrays(data_dir, split: str, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """tfds ``voc/2007`` prepared under ``data_dir`` → uint8 [N,S,S,3], multi-hot [N,20]
    (see :func:`voc_targets`). Never downloads."""
    import tensorflow as tf


    tfds_source("voc/2007", split, data_dir, label_key=None)  # checks: prepared, split exists
    import tensorflow_datasets as tfds

    with gcs_disabled():
        builder = tfds.builder("voc/2007", data_dir=data_dir)
        ds = builder.as_dataset(split=split, shuffle_files=False)

    def convert(example):
        image = tf.image.resize(example["image"], (image_size, image_size))
        image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        return image, voc_targets(example["labels"], example["labels_no_difficult"])

    xs, ys = [], []
    for x, y in ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(256):
        xs.append(x.numpy())
        ys.append(y.numpy())
    if not xs:
        raise ValueError(f"tfds voc/2007 split {split!r} under {data_dir!r} is empty")
    return np.concatenate(xs), np.concatenate(ys).astype(np.int64)


def load_svm_data(data: Any, *, image_size: int, data_dir=None, n_train: int, n_test: int,
                  canvas: int, max_items: int, seed: int):
    """→ (name, x_train, Y_train, x_test, Y_test, class_names)."""
    if isinstance(data, (tuple, list)):
        if len(data) != 4:
            raise ValueError("data arrays must be (x_train, Y_train, x_test, Y_test)")
        x_tr, y_tr, x_te, y_te = data
        x_tr, x_te = check_images(x_tr, "x_train"), check_images(x_te, "x_test")
        y_tr = check_multi_hot(y_tr, len(x_tr), "train")
        y_te = check_multi_hot(y_te, len(x_te), "test")
        if y_tr.shape[1] != y_te.shape[1]:
            raise ValueError(f"train labels have {y_tr.shape[1]} classes, test labels {y_te.shape[1]}")
        if x_tr.shape[1:] != x_te.shape[1:]:
            raise ValueError(f"train images are {x_tr.shape[1:]} but test images {x_te.shape[1:]}")
        return "arrays", x_tr, y_tr, x_te, y_te, tuple(str(c) for c in range(y_tr.shape[1]))
    if data == "composites":

        x_tr, y_tr = multilabel_composites(n_train, canvas, max_items, seed, "train")
        x_te, y_te = multilabel_composites(n_test, canvas, max_items, seed, "test")
        return "composites", x_tr, y_tr.astype(np.int64), x_te, y_te.astype(np.int64), CLASS_NAMES
    if data in VOC_NAMES:
        x_tr, y_tr = voc2007_arrays(data_dir, "train+validation", image_size)
        x_te, y_te = voc2007_arrays(data_dir, "test", image_size)
        return "voc2007", x_tr, y_tr, x_te, y_te, VOC_CLASSES
    raise ValueError(
        f"unknown data {data!r}: use 'composites' (embedded), 'voc2007' (tfds voc/2007 "
        "prepared under data_dir=) or (x_train, Y_train, x_test, Y_test) arrays"
    )


def svm_features_model(model: tf.keras.Model, meta: dict, *, pooling: str, feature_dim: int,
                       pooling_grid: int | None, image_size: int | None) -> tuple[tf.keras.Model, int, dict]:
    """(images → features model, input size, description) for ``pooling`` (module docstring)."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if pooling == "global":
        size = resolve_input_size(model, image_size)
        return model, size, {"mode": "global", "input_size": size,
                             "feature_dim": int(model.outputs[0].shape[-1])}
    native = model.inputs[0].shape[1]
    feature_map = final_feature_map(model)
    if feature_map is None:
        size = resolve_input_size(model, image_size)
        return model, size, {"mode": "backbone output (no final global average pooling of a map to replace)",
                             "input_size": size, "feature_dim": int(model.outputs[0].shape[-1])}
    channels = int(feature_map.shape[-1])
    if pooling_grid is not None and (isinstance(pooling_grid, bool) or int(pooling_grid) < 1):
        raise ValueError(f"pooling_grid must be a positive integer, got {pooling_grid!r}")
    grid = int(pooling_grid) if pooling_grid is not None else pooling_grid_for(channels, int(feature_dim))
    side = feature_map.shape[1]
    if image_size is not None:
        size = int(image_size)
    elif native is None:
        raise ValueError(f"backbone {model.name!r} has no fixed input size; pass image_size=")
    elif side is not None and side < grid:
        size = int(native) * math.ceil(grid / int(side))  # upsample: the map must hold the grid
    else:
        size = int(native)
    sized = model
    if native is None or size != int(native):
        sized = backbone_at_size(model, meta, size)
        feature_map = final_feature_map(sized)
    # Strided 'same' convolutions round up, so k × the input is not k × the map (ReActNet-A:
    # 48 px → 2×2, 96 px → 3×3, 144 px → 5×5): add the backbone's own size until the grid fits.
    for _ in range(MAX_UPSAMPLING_STEPS):
        if image_size is not None or native is None or min(feature_map.shape[1:3]) >= grid:
            break
        size += int(native)
        sized = backbone_at_size(model, meta, size)
        feature_map = final_feature_map(sized)
    map_shape = [int(v) for v in feature_map.shape[1:]]
    if min(map_shape[:2]) < grid:
        raise ValueError(f"at image_size={size} the last feature map of {model.name!r} is "
                         f"{map_shape[0]}×{map_shape[1]}, smaller than the {grid}×{grid} pooling "
                         "grid; raise image_size or lower pooling_grid")
    pooled = GridAveragePooling(grid, name="svm_grid_pool")(feature_map)
    features = tf.keras.Model(sized.inputs, pooled, name=f"{model.name}_svm_features")
    return features, size, {
        "mode": "grid", "grid": grid, "feature_map": map_shape, "feature_dim": grid * grid * channels,
        "target_feature_dim": int(feature_dim), "input_size": size,
        "backbone_input_size": None if native is None else int(native),
        "rebuilt_at_input_size": size != native,
        "input_size_choice": ("image_size given" if image_size is not None else
                              "the backbone's own size" if size == native else
                              f"the smallest multiple of the backbone's {native} px whose last map "
                              f"({map_shape[0]}×{map_shape[1]}) holds the {grid}×{grid} grid"),
    }


def svm(
    backbone,
    *,
    data: Any = "auto",
    out_dir=None,
    costs: Sequence[float] | None = None,
    folds: int = 3,
    full: bool = True,
    fewshot: bool = True,
    shots: Sequence[int] = DEFAULT_SHOTS,
    samples: int = 5,
    fewshot_cost: Any = "reference",
    ap_method: str = "area",
    pooling: str = "grid",
    feature_dim: int = DEFAULT_FEATURE_DIM,
    pooling_grid: int | None = None,
    seed: int = 0,
    n_train: int = 5011,
    n_test: int = 4952,
    canvas: int = 64,
    max_items: int = 3,
    data_dir: str | None = None,
    image_size: int | None = None,
    batch_size: int = 256,
    n_jobs: int | None = None,
) -> dict:
    """Full-shot and few-shot SVM classification mAP of ``backbone``'s pooled last feature map."""
    started = time.time()
    if ap_method not in AP_METHODS:
        raise ValueError(f"ap_method must be one of {AP_METHODS}, got {ap_method!r}")
    if not (full or fewshot):
        raise ValueError("nothing to do: full and fewshot are both off")
    if fewshot_cost != "reference":
        try:
            fewshot_cost = float(fewshot_cost)
        except (TypeError, ValueError):
            raise ValueError("fewshot_cost must be 'reference' or a positive number, got "
                             f"{fewshot_cost!r}") from None
        if fewshot_cost <= 0:
            raise ValueError(f"fewshot_cost must be positive, got {fewshot_cost}")
    shots = sorted({int(k) for k in shots}) if fewshot else []
    if any(k < 1 for k in shots):
        raise ValueError(f"shots must be >= 1, got {shots}")
    if fewshot and int(samples) < 1:
        raise ValueError(f"samples must be >= 1, got {samples!r}")
    if isinstance(feature_dim, bool) or not isinstance(feature_dim, (int, np.integer)) or feature_dim < 1:
        raise ValueError(f"feature_dim must be a positive integer, got {feature_dim!r}")
    model, meta = common.resolve_backbone(backbone)
    features_model, size, pooling_info = svm_features_model(
        model, meta, pooling=pooling, feature_dim=int(feature_dim), pooling_grid=pooling_grid,
        image_size=image_size)
    data_note, loaded = None, None
    if isinstance(data, str) and data == "auto":
        data, data_note = "composites", "auto: no data_dir given, embedded composites"
        if data_dir is not None:
            try:
                loaded = load_svm_data("voc2007", image_size=size, data_dir=data_dir, n_train=0,
                                       n_test=0, canvas=0, max_items=0, seed=0)
                data_note = f"auto: tfds voc/2007 prepared under {data_dir}"
            except SourceNotFoundError as err:
                data_note = f"auto: no prepared tfds voc/2007 ({err}); embedded composites"
    if loaded is None:
        loaded = load_svm_data(
            data, image_size=size, data_dir=data_dir, n_train=int(n_train), n_test=int(n_test),
            canvas=int(canvas), max_items=int(max_items), seed=int(seed))
    name, x_tr, y_tr, x_te, y_te, class_names = loaded
    # Fail before the (slow) feature extraction on a k larger than some class's positives.
    if shots:
        counts = (y_tr == 1).sum(axis=0)
        if shots[-1] > counts.min():
            c = int(np.argmin(counts))
            raise ValueError(
                f"k={shots[-1]} is larger than the {int(counts[c])} positive training images of "
                f"class {c} ({class_names[c]}); lower the shots"
            )
    feats = common.extract_features(features_model, np.concatenate([x_tr, x_te]), int(batch_size), size,
                                    "svm features")
    feats = normalize_features(feats)
    f_tr, f_te = feats[: len(x_tr)], feats[len(x_tr):]
    costs = list(DEFAULT_COSTS if costs is None else costs)

    scores = {}
    if full:
        fs = full_shot(f_tr, y_tr, f_te, y_te, costs=costs, folds=int(folds),
                       class_names=class_names, n_jobs=n_jobs)
        scores["full"] = {"map": fs[f"map_{ap_method}"], **fs}
    if fewshot:
        scores["fewshot"] = few_shot(f_tr, y_tr, f_te, y_te, shots=shots, samples=int(samples),
                                     costs=costs, cost=fewshot_cost, ap_method=ap_method,
                                     seed=int(seed))
    protocol = {
        "source": PROTOCOL_SOURCE,
        "features": (f"last feature map average-pooled to a {pooling_info.get('grid')}×"
                     f"{pooling_info.get('grid')} grid ({int(f_tr.shape[1])}-d), L2-normalised"
                     if pooling_info["mode"] == "grid" else f"{pooling_info['mode']}, L2-normalised"),
        "fewshot_sampling": ("per class independently: k positives and (C − 1)·k negatives, "
                             "others ignored (Goyal et al. / VISSL create_voc_low_shot_samples)"),
        "costs": [float(c) for c in costs], "folds": int(folds), "shots": shots,
        "samples": int(samples), "fewshot_cost": fewshot_cost,
        "fewshot_cost_selection": (
            "per k, the cost with the best mean test mAP over the samples (Goyal et al. 2019 "
            "low-shot scripts; chosen on the test split)" if fewshot_cost == "reference"
            else f"fixed cost {fewshot_cost}"),
        "full_cost_selection": f"per class, best {int(folds)}-fold cross-validated AP on train",
        "ap_method": ap_method, "feature_norm": "l2", "seed": int(seed),
        "n_train": int(n_train), "n_test": int(n_test), "canvas": int(canvas),
        "max_items": int(max_items), "input_size": size,
    }
    result = common.evaluator_result(
        TASK,
        data=name,
        backbone=common.backbone_info(backbone, model, meta, input_size=size),
        protocol=protocol,
        seconds=time.time() - started,
        data_note=data_note,
        feature_dim=int(f_tr.shape[1]),
        pooling=pooling_info,
        num_classes=int(y_tr.shape[1]),
        num_train=int(len(x_tr)),
        num_test=int(len(x_te)),
        ap_method=ap_method,
        **scores,
    )
    common.write_results(out_dir, TASK, result)
    return result


def format_result(result: dict) -> str:
    rows = []
    for k, r in result.get("fewshot", {}).items():
        rows.append({"k": k, "mAP %": 100.0 * r["mean"], "± std": 100.0 * r["std"],
                     "cost": f"{r['cost']:.3g}"})
    if "full" in result:
        rows.append({"k": "full", "mAP %": 100.0 * result["full"]["map"], "± std": "",
                     "cost": "cv per class"})
    method = "area under PR (Goyal et al.)" if result["ap_method"] == "area" else "VOC07 11-point"
    title = (f"SVM classification of {result['backbone']['name']} on {result['data']} "
             f"({result['feature_dim']}-d features, input {result['protocol']['input_size']} px) "
             f"({result['num_train']} train / {result['num_test']} test, {result['num_classes']} "
             f"classes) — mAP, {method}")
    return title + "\n" + common.format_table(rows)
