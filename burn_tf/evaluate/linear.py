"""Linear evaluation: a dense softmax classifier on a frozen backbone.

The BURN supplement §1 (following Goyal et al. 2019 / MoCo): one fully-connected layer and a
softmax on the frozen backbone, SGD with momentum 0.9, 100 epochs, lr 30 multiplied by 0.1 at
epochs 60 and 80, no weight decay, batch 256; top-1 / top-5 on the test split.

Two paths, one protocol:

* ``augment=False`` (default, the fast path): features are extracted once (BatchNorm in
  inference mode) and the head is trained on the cached features — exact, since a frozen
  backbone with no augmentation maps each image to the same feature every epoch.
* ``augment=True``: every epoch sees a random resized crop + horizontal flip of each image
  through the frozen backbone (``training=False``: BatchNorm keeps its moving statistics).

The head is initialised N(0, 0.01) with zero bias, as in MoCo's ``main_lincls``; weight decay
is the coupled (PyTorch) kind, a gradient term ``wd · w``. Accuracies are fractions in [0, 1].

>>> from burn_tf.evaluate import linear
>>> result = linear("runs/burn/backbone", data="fashion_mnist", epochs=100)
>>> result["top1"], result["top5"]
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from burn_tf.evaluate import common

TASK = "linear"
DEFAULT_DATA = "fashion_mnist"


# ----------------------------------------------------------------------------- data


@dataclasses.dataclass
class ClassificationData:
    """Images (uint8 or float [N,H,W(,C)]) and integer labels for a train→test evaluation."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple = ()

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1


def _check_images(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3)):
        raise ValueError(
            f"{what}: images must be [N,H,W] or [N,H,W,1|3], got shape {tuple(x.shape)}"
        )
    if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{what}: images must be uint8 or float in [0, 1], got {x.dtype}")
    return x


def _check_labels(y: np.ndarray, n: int, what: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{what}: labels must be a vector of class ids, got shape {tuple(y.shape)}")
    if len(y) != n:
        raise ValueError(f"{what}: {n} images but {len(y)} labels")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError(f"{what}: labels must be integer class ids, got {y.dtype}")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise ValueError(f"{what}: labels must be >= 0, found {int(y.min())}")
    return y


def check_classification_data(data: ClassificationData) -> ClassificationData:
    """Validates shapes, label ranges and class counts; returns the (normalised) data."""
    x_tr = _check_images(data.x_train, f"{data.name} x_train")
    x_te = _check_images(data.x_test, f"{data.name} x_test")
    if len(x_tr) == 0 or len(x_te) == 0:
        raise ValueError(f"{data.name}: empty split (train {len(x_tr)}, test {len(x_te)} images)")
    y_tr = _check_labels(data.y_train, len(x_tr), f"{data.name} y_train")
    y_te = _check_labels(data.y_test, len(x_te), f"{data.name} y_test")

    def geometry(x):
        return tuple(x.shape[1:3]) + ((x.shape[3],) if x.ndim == 4 else (1,))

    if geometry(x_tr) != geometry(x_te):
        raise ValueError(
            f"{data.name}: train images are {'×'.join(map(str, geometry(x_tr)))} but test images "
            f"are {'×'.join(map(str, geometry(x_te)))} (H×W×C); both splits must match"
        )
    classes = np.unique(y_tr)
    if len(classes) < 2:
        raise ValueError(
            f"{data.name}: the training labels hold {len(classes)} class "
            f"({classes.tolist()}); classification needs at least 2"
        )
    unseen = np.setdiff1d(np.unique(y_te), classes)
    if unseen.size:
        raise ValueError(
            f"{data.name}: test labels {unseen.tolist()} never occur in the training labels"
        )
    return dataclasses.replace(data, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)


def tfds_arrays(name: str, split: str, data_dir, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """A prepared tfds classification split (never downloads) → uint8 [N,S,S,3], int64 [N].

    Images are resized to ``image_size`` on the way in (tfds images may differ in size).
    """
    from burn_tf.data.sources import tfds_source

    ds = tfds_source(name, split, data_dir)
    ds = ds.map(
        lambda x, y: (tf.cast(tf.clip_by_value(tf.round(tf.image.resize(x, (image_size, image_size))),
                                               0, 255), tf.uint8), y),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
    ).batch(512)
    xs, ys = [], []
    for x, y in ds:
        xs.append(x.numpy())
        ys.append(y.numpy())
    if not xs:
        raise ValueError(f"tfds {name!r} split {split!r} under {data_dir!r} is empty")
    return np.concatenate(xs), np.concatenate(ys)


def load_classification_data(
    data: Any,
    *,
    image_size: int,
    data_dir=None,
    train_split: str = "train",
    test_split: str = "test",
) -> ClassificationData:
    """``data`` → :class:`ClassificationData`.

    * ``"fashion_mnist"`` — the embedded Fashion-MNIST (train → test; Debian package
      ``dataset-fashion-mnist``);
    * ``"tfds:<name>"`` — a tfds data set prepared under ``data_dir`` (``train_split`` →
      ``test_split``; never downloads);
    * ``(x_train, y_train, x_test, y_test)`` arrays, or a dict with those keys (optionally
      ``"name"``);
    * a :class:`ClassificationData`.
    """
    if isinstance(data, ClassificationData):
        return check_classification_data(data)
    if isinstance(data, dict):
        keys = ("x_train", "y_train", "x_test", "y_test")
        missing = [k for k in keys if k not in data]
        if missing:
            raise ValueError(f"data dict lacks {missing}; expected keys {list(keys)}")
        return check_classification_data(
            ClassificationData(data.get("name", "arrays"), *(data[k] for k in keys))
        )
    if isinstance(data, (tuple, list)):
        if len(data) != 4:
            raise ValueError(
                f"data arrays must be (x_train, y_train, x_test, y_test), got {len(data)} items"
            )
        return check_classification_data(ClassificationData("arrays", *data))
    if not isinstance(data, str):
        raise TypeError("data must be a name or (x_train, y_train, x_test, y_test), got "
                        f"{type(data).__name__}")
    if data == "fashion_mnist":
        from burn_tf.data.sources import FASHION_MNIST_CLASSES, load_fashion_mnist_arrays

        x_tr, y_tr = load_fashion_mnist_arrays("train")
        x_te, y_te = load_fashion_mnist_arrays("test")
        return check_classification_data(
            ClassificationData("fashion_mnist", x_tr, y_tr, x_te, y_te, tuple(FASHION_MNIST_CLASSES))
        )
    if data.startswith("tfds:"):
        name = data[len("tfds:"):]
        x_tr, y_tr = tfds_arrays(name, train_split, data_dir, image_size)
        x_te, y_te = tfds_arrays(name, test_split, data_dir, image_size)
        return check_classification_data(ClassificationData(data, x_tr, y_tr, x_te, y_te))
    raise ValueError(
        f"unknown data {data!r}: use 'fashion_mnist', 'tfds:<name>' (with data_dir=), or pass "
        "(x_train, y_train, x_test, y_test) arrays through the Python API"
    )


def first_n_balanced(labels: np.ndarray, n: int) -> np.ndarray:
    """Indices of the first ``n`` examples taken class by class in file order.

    Each class gives ``n // C`` examples (the first ``n % C`` classes one more), so the
    subset is class-balanced and deterministic. Raises if a class has too few examples.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    n = int(n)
    if n < len(classes):
        raise ValueError(f"subset of {n} examples cannot hold all {len(classes)} classes")
    per, extra = divmod(n, len(classes))
    chosen = []
    for i, c in enumerate(classes):
        want = per + (1 if i < extra else 0)
        idx = np.flatnonzero(labels == c)
        if len(idx) < want:
            raise ValueError(f"class {int(c)} has {len(idx)} examples, fewer than the {want} requested")
        chosen.append(idx[:want])
    return np.sort(np.concatenate(chosen))


def subset(data: ClassificationData, train_subset: int | None, test_subset: int | None) -> ClassificationData:
    if train_subset:
        idx = first_n_balanced(data.y_train, train_subset)
        data = dataclasses.replace(data, x_train=data.x_train[idx], y_train=data.y_train[idx])
    if test_subset:
        idx = first_n_balanced(data.y_test, test_subset)
        data = dataclasses.replace(data, x_test=data.x_test[idx], y_test=data.y_test[idx])
    return data


def resolve_input_size(model: tf.keras.Model, image_size: int | None) -> int:
    """The backbone's fixed input size; ``image_size`` must agree with it when given."""
    fixed = model.inputs[0].shape[1]
    if fixed is None:
        if image_size is None:
            raise ValueError(f"backbone {model.name!r} has no fixed input size; pass image_size=")
        return int(image_size)
    if image_size is not None and int(image_size) != int(fixed):
        raise ValueError(
            f"image_size={image_size} does not match the backbone {model.name!r}, which takes "
            f"{fixed}×{fixed} inputs (images are resized to the backbone's size; leave "
            "image_size unset)"
        )
    return int(fixed)


# ------------------------------------------------------------------------- metrics


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose label is among the ``k`` largest logits (ties count as hits)."""
    logits = np.asarray(logits)
    labels = np.asarray(labels).astype(np.int64)
    k = min(int(k), logits.shape[1])
    true = logits[np.arange(len(labels)), labels]
    higher = (logits > true[:, None]).sum(axis=1)
    return float(np.mean(higher < k))


# ------------------------------------------------------------------------ training


def step_schedule(epochs: int, lr: float, milestones: Sequence[int], gamma: float,
                  steps_per_epoch: int):
    """lr × gamma^(number of milestones passed), switching at epoch boundaries."""
    milestones = sorted(int(m) for m in milestones if 0 < int(m) < int(epochs))
    if not milestones:
        return float(lr)
    boundaries = [m * steps_per_epoch for m in milestones]
    values = [float(lr) * float(gamma) ** i for i in range(len(milestones) + 1)]
    return tf.keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def dense_head(num_classes: int, weight_decay: float, seed: int, name: str = "classifier"):
    reg = tf.keras.regularizers.l2(weight_decay / 2.0) if weight_decay else None
    return tf.keras.layers.Dense(
        num_classes,
        kernel_initializer=tf.keras.initializers.RandomNormal(0.0, 0.01, seed=seed),
        bias_initializer="zeros",
        kernel_regularizer=reg,
        bias_regularizer=reg,
        name=name,
    )


class _NaNGuard(tf.keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            self.model.stop_training = True
            self.bad_loss = loss


def _fit(model, dataset, epochs: int, what: str, callbacks=()) -> list[float]:
    guard = _NaNGuard()
    history = model.fit(dataset, epochs=epochs, verbose=0, callbacks=[*callbacks, guard])
    if getattr(guard, "bad_loss", None) is not None:
        raise FloatingPointError(
            f"{what}: the training loss became {guard.bad_loss}; lower the learning rate"
        )
    return [float(v) for v in history.history.get("loss", [])]


def train_head_on_features(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    epochs: int,
    lr: float,
    milestones: Sequence[int],
    gamma: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    batch_size: int = 256,
    seed: int = 0,
) -> tuple[tf.keras.Model, list[float]]:
    """Trains a dense softmax head on cached features; returns (head model, per-epoch loss)."""
    features = np.asarray(features, np.float32)
    n, dim = features.shape
    steps = math.ceil(n / batch_size)
    inputs = tf.keras.Input((dim,), name="features")
    head = tf.keras.Model(inputs, dense_head(num_classes, weight_decay, seed)(inputs), name="linear_head")
    head.compile(
        optimizer=tf.keras.optimizers.SGD(step_schedule(epochs, lr, milestones, gamma, steps),
                                          momentum=momentum),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    ds = (
        tf.data.Dataset.from_tensor_slices((features, np.asarray(labels, np.int64)))
        .shuffle(n, seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    losses = _fit(head, ds, epochs, "linear head")
    return head, losses


def to_float_rgb(image: tf.Tensor) -> tf.Tensor:
    """One image uint8/float [H,W] or [H,W,1|3] → float32 [H,W,3] in [0, 1]."""
    if image.shape.rank == 2:
        image = image[..., tf.newaxis]
    if image.dtype == tf.uint8:
        image = tf.cast(image, tf.float32) / 255.0
    image = tf.cast(image, tf.float32)
    if image.shape[-1] == 1:
        image = tf.repeat(image, 3, axis=-1)
    return image


def augment_image(image: tf.Tensor, seed: tf.Tensor, size: int,
                  scale: Sequence[float] = (0.08, 1.0)) -> tf.Tensor:
    """RandomResizedCrop(size, scale, ratio 3/4–4/3) + horizontal flip, stateless (seed [2])."""
    image = to_float_rgb(image)
    begin, crop, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=seed,
        min_object_covered=0.0,
        aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=tuple(float(s) for s in scale),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    image = tf.slice(image, begin, crop)
    image = tf.image.resize(image, (size, size), method="bilinear")
    image = tf.image.stateless_random_flip_left_right(image, seed=seed[::-1])
    return tf.clip_by_value(image, 0.0, 1.0)


def image_dataset(x: np.ndarray, y: np.ndarray, size: int, batch_size: int, *, augment: bool,
                  seed: int, shuffle: bool = True, crop_scale=(0.08, 1.0)) -> tf.data.Dataset:
    """(images, labels) → batches of float [B,size,size,3] images, augmented if asked."""
    ds = tf.data.Dataset.from_tensor_slices((x, np.asarray(y, np.int64)))
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    if augment:
        rng = tf.random.Generator.from_seed(seed)

        def aug(image, label):
            return augment_image(image, rng.make_seeds(1)[:, 0], size, crop_scale), label

        ds = ds.map(aug, num_parallel_calls=1)
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    ds = ds.batch(batch_size).map(lambda a, b: (common.prepare_images(a, size), b))
    return ds.prefetch(tf.data.AUTOTUNE)


def backbone_info(backbone, model: tf.keras.Model, meta: dict) -> dict:
    info = {"name": model.name, "feature_dim": int(model.outputs[0].shape[-1])}
    if isinstance(backbone, (str, os.PathLike)):
        info["path"] = os.fspath(backbone)
    for key in ("architecture", "stage", "method", "input_size"):
        if key in meta:
            info[key] = meta[key]
    return info


def linear_probe(
    model: tf.keras.Model,
    data: ClassificationData,
    *,
    size: int,
    epochs: int,
    lr: float,
    milestones: Sequence[int],
    gamma: float,
    momentum: float,
    weight_decay: float,
    batch_size: int,
    augment: bool,
    seed: int,
    feature_batch_size: int = 256,
    crop_scale=(0.08, 1.0),
) -> dict:
    """The linear protocol on one train → test split; returns accuracies and the loss curve."""
    num_classes = data.num_classes
    if augment:
        was_trainable = model.trainable
        model.trainable = False
        try:
            inputs = tf.keras.Input((size, size, 3), name="image")
            logits = dense_head(num_classes, weight_decay, seed)(model(inputs, training=False))
            full = tf.keras.Model(inputs, logits, name="linear_eval")
            steps = math.ceil(len(data.x_train) / batch_size)
            full.compile(
                optimizer=tf.keras.optimizers.SGD(
                    step_schedule(epochs, lr, milestones, gamma, steps), momentum=momentum),
                loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            )
            train_ds = image_dataset(data.x_train, data.y_train, size, batch_size,
                                     augment=True, seed=seed, crop_scale=crop_scale)
            losses = _fit(full, train_ds, epochs, "linear evaluation")
            test_ds = image_dataset(data.x_test, data.y_test, size, feature_batch_size,
                                    augment=False, seed=seed, shuffle=False)
            logits = full.predict(test_ds.map(lambda a, b: a), verbose=0)
        finally:
            model.trainable = was_trainable
    else:
        # One call (one trace of the backbone): train and test images share their geometry.
        feats = common.extract_features(
            model, np.concatenate([data.x_train, data.x_test]), feature_batch_size, size)
        train_feats, test_feats = feats[: len(data.x_train)], feats[len(data.x_train):]
        head, losses = train_head_on_features(
            train_feats, data.y_train, num_classes, epochs=epochs, lr=lr, milestones=milestones,
            gamma=gamma, momentum=momentum, weight_decay=weight_decay, batch_size=batch_size,
            seed=seed,
        )
        logits = head.predict(test_feats, batch_size=4096, verbose=0)
    if not np.all(np.isfinite(logits)):
        raise FloatingPointError("the linear head produced non-finite logits; lower the learning rate")
    k5 = min(5, num_classes)
    return {
        "top1": topk_accuracy(logits, data.y_test, 1),
        "top5": topk_accuracy(logits, data.y_test, k5),
        "top5_k": k5,
        "num_classes": num_classes,
        "num_train": int(len(data.x_train)),
        "num_test": int(len(data.x_test)),
        "train_loss": losses,
    }


def linear(
    backbone,
    *,
    data: Any = DEFAULT_DATA,
    out_dir=None,
    epochs: int = 100,
    lr: float = 30.0,
    milestones: Sequence[int] = (60, 80),
    gamma: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    batch_size: int = 256,
    augment: bool = False,
    train_subset: int | None = None,
    test_subset: int | None = None,
    seed: int = 0,
    data_dir: str | None = None,
    image_size: int | None = None,
    feature_batch_size: int = 256,
) -> dict:
    """Linear evaluation of ``backbone`` (exported path or Keras feature extractor).

    ``data``: ``"fashion_mnist"`` (default), ``"tfds:<name>"`` with ``data_dir``, or
    ``(x_train, y_train, x_test, y_test)``. ``train_subset`` / ``test_subset`` keep the first
    N examples, class-balanced. Returns top-1 / top-5 (fractions) on the test split.
    """
    started = time.time()
    if int(epochs) < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs!r}")
    model, meta = common.resolve_backbone(backbone)
    size = resolve_input_size(model, image_size)
    dataset = load_classification_data(data, image_size=size, data_dir=data_dir)
    dataset = check_classification_data(subset(dataset, train_subset, test_subset))
    scores = linear_probe(
        model, dataset, size=size, epochs=int(epochs), lr=float(lr), milestones=list(milestones),
        gamma=float(gamma), momentum=float(momentum), weight_decay=float(weight_decay),
        batch_size=int(batch_size), augment=bool(augment), seed=int(seed),
        feature_batch_size=int(feature_batch_size),
    )
    result = {
        "task": TASK,
        "data": dataset.name,
        "backbone": backbone_info(backbone, model, meta),
        **scores,
        "protocol": {
            "epochs": int(epochs), "lr": float(lr), "milestones": [int(m) for m in milestones],
            "gamma": float(gamma), "momentum": float(momentum),
            "weight_decay": float(weight_decay), "batch_size": int(batch_size),
            "augment": bool(augment), "train_subset": train_subset, "test_subset": test_subset,
            "seed": int(seed), "input_size": size,
        },
        "seconds": round(time.time() - started, 2),
    }
    common.write_results(out_dir, TASK, result)
    return result


def format_result(result: dict) -> str:
    row = {
        "data": result["data"],
        "classes": result["num_classes"],
        "train": result["num_train"],
        "test": result["num_test"],
        "top1 %": 100.0 * result["top1"],
        f"top{result.get('top5_k', 5)} %": 100.0 * result["top5"],
        "final loss": result["train_loss"][-1] if result.get("train_loss") else float("nan"),
    }
    p = result["protocol"]
    title = (f"linear evaluation of {result['backbone']['name']} — {p['epochs']} epochs, lr "
             f"{p['lr']} ×{p['gamma']} at {p['milestones']}, wd {p['weight_decay']}, batch "
             f"{p['batch_size']}, augment {p['augment']}")
    return title + "\n" + common.format_table([row])
