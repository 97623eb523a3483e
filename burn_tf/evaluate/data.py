"""The labelled-data layer of the evaluators: one loader, one image and one label checker,
and the subset helpers.

:func:`load_labelled_data` turns every accepted ``data`` into a :class:`ClassificationData`
(train and test images with integer labels):

* ``"fashion_mnist"`` — the embedded Fashion-MNIST (the Debian package
  ``dataset-fashion-mnist``, read by :func:`burn_tf.data.source_fashion_mnist.load_fashion_mnist_arrays`);
* ``"tfds:<name>"`` — a tfds data set prepared under ``data_dir`` (never downloads);
* arrays: ``(x_train, y_train, x_test, y_test)``, the ``keras.datasets`` layout
  ``((x_train, y_train), (x_test, y_test))``, a dict or an object with those four keys
  (optionally ``name`` and ``class_names``), or a :class:`ClassificationData`.

Images are uint8 (or float in [0, 1]) [N,H,W] or [N,H,W,1|3]; labels are class ids ≥ 0.
The linear-probe family (linear, semisup, transfer) also asks
:func:`check_classification_data` (≥ 2 training classes, no test class unseen in training,
same image geometry in both splits); the kNN family (knn, layerwise, tsne, cluster,
retrieval) takes seeded random subsets with :func:`load_train_test`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from burn_tf.data.source_fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist_arrays
from burn_tf.data.source_tfds import tfds_source

DATA_SETS = ("fashion_mnist", "tfds:<name>")
ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
_DATA_HELP = ("use 'fashion_mnist', 'tfds:<name>' (with data_dir=), or pass arrays through the "
              "Python API: (x_train, y_train, x_test, y_test), ((x_train, y_train), (x_test, "
              "y_test)), or a dict / object with x_train, y_train, x_test, y_test")


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

    def split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(images, labels) of ``"train"`` or ``"test"``."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        return (self.x_train, self.y_train) if split == "train" else (self.x_test, self.y_test)


# ---------------------------------------------------------------------------- checks


def check_images(images, what: str = "images") -> np.ndarray:
    """Raises unless ``images`` is a non-empty uint8 / float [N,H,W] or [N,H,W,1|3] array."""
    x = np.asarray(images)
    if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3)):
        raise ValueError(
            f"{what}: images must be [N,H,W] or [N,H,W,1|3], got shape {tuple(x.shape)}"
        )
    if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{what}: images must be uint8 or float in [0, 1], got {x.dtype}")
    if len(x) == 0:
        raise ValueError(f"{what}: no images")
    return x


def check_labels(labels, what: str = "labels", *, num_images: int | None = None,
                 min_classes: int = 1) -> np.ndarray:
    """``labels`` as int64 class ids [N] (an [N, 1] column is flattened), or a clear error.

    Raises unless they are integer-valued, ≥ 0, ``num_images`` long (when given) and hold
    at least ``min_classes`` distinct classes.
    """
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{what} must be a 1-d array of class ids, got shape {tuple(y.shape)}")
    if num_images is not None and len(y) != num_images:
        raise ValueError(f"{what}: {num_images} images but {len(y)} labels")
    if len(y) == 0:
        raise ValueError(f"{what} is empty")
    if not np.issubdtype(y.dtype, np.integer):
        if not (np.issubdtype(y.dtype, np.number) and np.all(np.equal(np.mod(y, 1), 0))):
            raise ValueError(f"{what} must be integer class ids, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.min() < 0:
        raise ValueError(f"{what} contains negative ids (unlabelled data?); min is {y.min()}")
    present = len(np.unique(y))
    if present < min_classes:
        raise ValueError(f"{what} holds {present} class(es); this evaluation needs ≥ {min_classes}")
    return y


def check_multi_hot(labels, num_images: int, what: str) -> np.ndarray:
    """Multi-label targets [N, C]: 1 present, 0 absent, −1 difficult (VOC) → int64."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"{what}: labels must be multi-hot [N, classes], got shape {tuple(labels.shape)}")
    if labels.shape[0] != num_images:
        raise ValueError(f"{what}: {num_images} feature rows / images but {labels.shape[0]} label rows")
    if labels.shape[1] < 2:
        raise ValueError(f"{what}: labels hold {labels.shape[1]} class; the SVM task needs >= 2")
    bad = ~np.isin(labels, (-1, 0, 1))
    if bad.any():
        raise ValueError(f"{what}: labels must be 1 (present), 0 (absent) or -1 (difficult), "
                         f"found {np.unique(labels[bad])[:5].tolist()}")
    return labels.astype(np.int64)


def check_classification_data(data: ClassificationData) -> ClassificationData:
    """The linear-probe checks on top of :func:`load_labelled_data`'s: both splits have the
    same image geometry, training holds ≥ 2 classes, every test class occurs in training."""
    x_tr = check_images(data.x_train, f"{data.name} x_train")
    x_te = check_images(data.x_test, f"{data.name} x_test")
    y_tr = check_labels(data.y_train, f"{data.name} y_train", num_images=len(x_tr))
    y_te = check_labels(data.y_test, f"{data.name} y_test", num_images=len(x_te))

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


# ---------------------------------------------------------------------------- loading


def tfds_arrays(name: str, split: str, data_dir, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """A prepared tfds classification split (never downloads) → uint8 [N,S,S,3], int64 [N].

    Images are resized to ``image_size`` on the way in (tfds images may differ in size).
    """
    import tensorflow as tf


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


def _names(class_names) -> tuple:
    return () if class_names is None else tuple(str(n) for n in class_names)


def _from_arrays(data) -> ClassificationData | None:
    """``data`` in one of the array layouts → unchecked :class:`ClassificationData`."""
    if isinstance(data, ClassificationData):
        return data
    if isinstance(data, dict):
        missing = [k for k in ARRAY_KEYS if k not in data]
        if missing:
            raise ValueError(f"data dict lacks {missing}; expected keys {list(ARRAY_KEYS)}")
        return ClassificationData(str(data.get("name") or "arrays"), *(data[k] for k in ARRAY_KEYS),
                                  _names(data.get("class_names")))
    if all(hasattr(data, k) for k in ARRAY_KEYS):
        return ClassificationData(str(getattr(data, "name", None) or "arrays"),
                                  *(getattr(data, k) for k in ARRAY_KEYS),
                                  _names(getattr(data, "class_names", None)))
    if isinstance(data, (tuple, list)):
        if len(data) == 4:
            return ClassificationData("arrays", *data)
        if len(data) == 2 and all(isinstance(d, (tuple, list)) and len(d) == 2 for d in data):
            return ClassificationData("arrays", *data[0], *data[1])
        raise ValueError(f"data arrays must be (x_train, y_train, x_test, y_test), got {len(data)} items")
    return None


def load_labelled_data(
    data: Any,
    *,
    image_size: int | None = None,
    data_dir=None,
    train_split: str = "train",
    test_split: str = "test",
) -> ClassificationData:
    """``data`` (see the module docstring) → :class:`ClassificationData`, images and labels
    of each split checked by :func:`check_images` / :func:`check_labels`.

    ``image_size`` is needed only for ``"tfds:<name>"`` (its images are resized on load).
    """
    if isinstance(data, str):
        if data == "fashion_mnist":

            loaded = ClassificationData("fashion_mnist", *load_fashion_mnist_arrays("train"),
                                        *load_fashion_mnist_arrays("test"),
                                        tuple(FASHION_MNIST_CLASSES))
        elif data.startswith("tfds:"):
            if image_size is None:
                raise ValueError(f"data={data!r} needs the backbone's image_size to resize on load")
            name = data[len("tfds:"):]
            loaded = ClassificationData(data, *tfds_arrays(name, train_split, data_dir, image_size),
                                        *tfds_arrays(name, test_split, data_dir, image_size))
        else:
            raise ValueError(f"unknown data set {data!r}: {_DATA_HELP}")
    else:
        loaded = _from_arrays(data)
        if loaded is None:
            raise TypeError(f"data must be a name or arrays ({_DATA_HELP}); got {type(data).__name__}")
    x_tr = check_images(loaded.x_train, f"{loaded.name} x_train")
    x_te = check_images(loaded.x_test, f"{loaded.name} x_test")
    return dataclasses.replace(
        loaded,
        x_train=x_tr, y_train=check_labels(loaded.y_train, f"{loaded.name} y_train", num_images=len(x_tr)),
        x_test=x_te, y_test=check_labels(loaded.y_test, f"{loaded.name} y_test", num_images=len(x_te)),
    )


def load_classification_data(data: Any, **kwargs) -> ClassificationData:
    """:func:`load_labelled_data` + :func:`check_classification_data` (the linear family)."""
    return check_classification_data(load_labelled_data(data, **kwargs))


def data_name(data) -> str:
    """A short name of ``data`` for result files."""
    if isinstance(data, str):
        return data
    name = data.get("name") if isinstance(data, dict) else getattr(data, "name", None)
    return str(name) if name else "arrays"


def class_names_for(data, labels) -> dict[int, str]:
    """Class id → name for plot legends: Fashion-MNIST's names, ``class_names`` of a data
    dict/object when given, else the ids."""
    names = {}
    if isinstance(data, str) and data == "fashion_mnist":

        names = dict(enumerate(FASHION_MNIST_CLASSES))
    else:
        given = data.get("class_names") if isinstance(data, dict) else getattr(data, "class_names", None)
        if given:
            names = dict(enumerate(given))
    return {int(c): names.get(int(c), str(int(c))) for c in np.unique(labels)}


def load_train_test(data, num_train, num_test, seed: int = 0,
                    what=("train labels", "test labels")):
    """Seeded random subsets (:func:`random_subset`) of the train and test splits of
    ``data``: (x_train, y_train, x_test, y_test). The bank/probe side needs two classes,
    the query side one; ``what`` names the two sides in errors."""
    if isinstance(data, str) and data.startswith("tfds:"):
        raise ValueError(f"data={data!r}: this evaluator reads 'fashion_mnist' or labelled arrays; "
                         "load a tfds set with burn_tf.evaluate.data.load_labelled_data(data, "
                         "image_size=, data_dir=) and pass the result as data=")
    loaded = load_labelled_data(data)
    x_train, y_train = random_subset(loaded.x_train, loaded.y_train, num_train, seed)
    x_test, y_test = random_subset(loaded.x_test, loaded.y_test, num_test, seed + 1)
    check_labels(y_train, what[0], min_classes=2)
    check_labels(y_test, what[1], min_classes=1)
    return x_train, y_train, x_test, y_test


# ---------------------------------------------------------------------------- subsets


def random_subset(images: np.ndarray, labels: np.ndarray, n: int | None, seed: int = 0):
    """A seeded random subset of ``n`` items in their original order (all items when ``n``
    is None or not smaller than the set) → (images, labels)."""
    if n is None or n >= len(labels):
        return images, labels
    if n <= 0:
        raise ValueError(f"subset size must be positive, got {n}")
    index = np.sort(np.random.default_rng(seed).permutation(len(labels))[:n])
    return images[index], labels[index]


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


def first_n_balanced_data(data: ClassificationData, train_subset: int | None,
                          test_subset: int | None) -> ClassificationData:
    """``data`` cut to :func:`first_n_balanced` subsets of each split (a falsy size keeps
    the whole split)."""
    if train_subset:
        idx = first_n_balanced(data.y_train, train_subset)
        data = dataclasses.replace(data, x_train=data.x_train[idx], y_train=data.y_train[idx])
    if test_subset:
        idx = first_n_balanced(data.y_test, test_subset)
        data = dataclasses.replace(data, x_test=data.x_test[idx], y_test=data.y_test[idx])
    return data


def balanced_fraction(labels: np.ndarray, fraction: float, seed: int,
                      exclude: np.ndarray | None = None) -> np.ndarray:
    """A class-balanced random ``fraction`` of ``labels`` → sorted indices.

    Every class gets ``max(1, round(fraction · N / C))`` examples (N = ``len(labels)``, C =
    number of classes), drawn with ``numpy.random.default_rng(seed)`` from the examples not in
    ``exclude``. The same (labels, fraction, seed, exclude) always gives the same indices.
    """
    labels = np.asarray(labels)
    if not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    classes = np.unique(labels)
    if len(classes) < 2:
        raise ValueError(f"labels hold {len(classes)} class; a class-balanced subset needs >= 2")
    per_class = max(1, int(round(float(fraction) * len(labels) / len(classes))))
    available = np.ones(len(labels), bool)
    if exclude is not None and len(exclude):
        available[np.asarray(exclude, np.int64)] = False
    rng = np.random.default_rng(int(seed))
    chosen = []
    for c in classes:
        idx = np.flatnonzero((labels == c) & available)
        if len(idx) < per_class:
            raise ValueError(
                f"class {int(c)} has {len(idx)} available examples, fewer than the {per_class} "
                f"a class-balanced {fraction:g} subset needs"
            )
        chosen.append(idx[rng.permutation(len(idx))[:per_class]])
    return np.sort(np.concatenate(chosen))


def select_per_class(labels: np.ndarray, num_classes: int, per_class: int, seed: int = 0) -> np.ndarray:
    """Indices of ``per_class`` random items of each of the first ``num_classes`` classes
    (class by class; sorted within a class)."""
    classes = np.unique(labels)
    if num_classes > len(classes):
        raise ValueError(f"num_classes={num_classes} but the data holds {len(classes)} classes")
    if per_class < 1:
        raise ValueError(f"per_class must be ≥ 1, got {per_class}")
    rng = np.random.default_rng(seed)
    chosen = []
    for c in classes[:num_classes]:
        members = np.flatnonzero(labels == c)
        chosen.append(np.sort(rng.permutation(members)[:per_class]))
    return np.concatenate(chosen)
