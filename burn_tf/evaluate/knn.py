"""Weighted kNN classification (InstDisc, Wu et al. 2018; used by InvP and CLD).

Protocol (seed 002, InvP supplement §A, following InstDisc's ``kNN`` routine): features are
L2-normalised; each query takes its top-K neighbours in the labelled bank by cosine
similarity ``s_i`` (K = 200); neighbour ``i`` votes for its class with weight
``exp(s_i / τ)`` (τ = 0.07); the class scores are the summed votes, and the prediction is
the class with the largest score (top-5: the five largest).

:func:`weighted_knn` is the pure function every caller shares (this evaluator, the online
:class:`~burn_tf.evaluate.monitor.KNNMonitor`, the BURN demo). It runs on TensorFlow in
query chunks: ``tf.matmul`` (float32) against the whole bank, then ``tf.math.top_k``, so a
60k × 1024-d bank and 10k queries need one ``chunk × 60k`` similarity block at a time
(≈ 256 MB by default). That case costs ~16 s of CPU time (the float32 matmul runs at
~100 GFLOP/s per core, near this CPU's peak; the top-k is ~3 s), i.e. ≈ 8 s wall on an
idle 2-core machine — measure with ``benchmarks/evaluators.py``. Ties between equal
similarities at the k-th place are broken by TF's ``top_k`` (lower index first).

:func:`knn` is the evaluator: backbone → features of the train split (the bank) and the
test split (the queries) → top-1 / top-5 accuracy.

The helpers here (:func:`load_labelled_split`, :func:`subsample`, :func:`embed`,
:func:`cosine_topk`, :func:`save_png`, :func:`limit_blas_threads`) are shared by the other
evaluators of this family (monitor, layerwise, tsne, cluster, retrieval).
"""

from __future__ import annotations

import contextlib
import time
from typing import Sequence

import numpy as np
import tensorflow as tf

from burn_tf.evaluate.common import (
    backbone_input_size,
    extract_features,
    format_table,
    resolve_backbone,
    write_results,
)

DATA_SETS = ("fashion_mnist",)
# Bytes of one float32 similarity block [chunk, bank] when chunk_size is not given.
_SIMILARITY_BLOCK_BYTES = 256 * 2**20


# ------------------------------------------------------------------------------ data


_ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")
_DATA_HELP = ("data must be 'fashion_mnist', arrays (x_train, y_train, x_test, y_test) or "
              "((x_train, y_train), (x_test, y_test)), or a dict / object with x_train, y_train, "
              "x_test, y_test")


def _as_four_arrays(data):
    if isinstance(data, dict):
        missing = [k for k in _ARRAY_KEYS if k not in data]
        if missing:
            raise ValueError(f"data dict lacks {missing}; {_DATA_HELP}")
        return tuple(data[k] for k in _ARRAY_KEYS)
    if all(hasattr(data, k) for k in _ARRAY_KEYS):  # e.g. linear.ClassificationData
        return tuple(getattr(data, k) for k in _ARRAY_KEYS)
    if isinstance(data, (tuple, list)):
        if len(data) == 4:
            return tuple(data)
        if len(data) == 2 and all(isinstance(d, (tuple, list)) and len(d) == 2 for d in data):
            return (*data[0], *data[1])
    raise ValueError(f"{_DATA_HELP}; got {type(data).__name__}")


def data_name(data) -> str:
    """A short name of ``data`` for result files."""
    if isinstance(data, str):
        return data
    name = data.get("name") if isinstance(data, dict) else getattr(data, "name", None)
    return str(name) if name else "arrays"


def load_labelled_split(data, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images and int64 labels of one split (``"train"`` or ``"test"``) of ``data``.

    ``data`` is a data set name (``"fashion_mnist"``: the Debian package's idx files, read by
    :func:`burn_tf.data.sources.load_fashion_mnist_arrays`) or labelled arrays in the same
    layouts the linear evaluator takes — ``(x_train, y_train, x_test, y_test)``, a dict or
    object with those keys — or the ``keras.datasets`` layout ``((x_train, y_train),
    (x_test, y_test))``. Images are uint8 (or float in [0, 1]) [N,H,W] or [N,H,W,C].
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if isinstance(data, str):
        if data not in DATA_SETS:
            raise ValueError(f"unknown data set {data!r}; valid names: {', '.join(DATA_SETS)}. "
                             f"Otherwise {_DATA_HELP}")
        from burn_tf.data.sources import load_fashion_mnist_arrays

        images, labels = load_fashion_mnist_arrays(split)
        return images, np.asarray(labels, np.int64)
    x_train, y_train, x_test, y_test = _as_four_arrays(data)
    images, labels = (x_train, y_train) if split == "train" else (x_test, y_test)
    images, labels = np.asarray(images), np.asarray(labels)
    if labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"data[{split}]: {len(images)} images but labels of shape {labels.shape}")
    if images.ndim not in (3, 4):
        raise ValueError(f"data[{split}]: images must be [N,H,W] or [N,H,W,C], got shape {images.shape}")
    if images.ndim == 4 and images.shape[-1] not in (1, 3):
        raise ValueError(f"data[{split}]: images must have 1 or 3 channels, got shape {images.shape}")
    return images, labels.astype(np.int64)


def subsample(images: np.ndarray, labels: np.ndarray, n: int | None, seed: int = 0):
    """A seeded random subset of ``n`` items (all items, in order, when ``n`` is None)."""
    if n is None or n >= len(labels):
        return images, labels
    if n <= 0:
        raise ValueError(f"subset size must be positive, got {n}")
    index = np.sort(np.random.default_rng(seed).permutation(len(labels))[:n])
    return images[index], labels[index]


def check_labels(labels: np.ndarray, what: str = "labels", min_classes: int = 2) -> int:
    """Raises unless ``labels`` are integer class ids ≥ 0 with ≥ ``min_classes`` classes."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{what} must be a 1-d array of class ids, got shape {labels.shape}")
    if len(labels) == 0:
        raise ValueError(f"{what} is empty")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{what} must be integer class ids, got dtype {labels.dtype}")
    if labels.min() < 0:
        raise ValueError(f"{what} contains negative ids (unlabelled data?); min is {labels.min()}")
    present = len(np.unique(labels))
    if present < min_classes:
        raise ValueError(f"{what} holds {present} class(es); this evaluation needs ≥ {min_classes}")
    return present


def load_train_test(data, num_train, num_test, seed: int = 0,
                    what=("train labels", "test labels")):
    """Seeded subsets of the train and test splits of ``data``, labels checked:
    (x_train, y_train, x_test, y_test). The bank/probe side needs two classes, the query
    side one; ``what`` names the two sides in errors."""
    x_train, y_train = subsample(*load_labelled_split(data, "train"), num_train, seed)
    x_test, y_test = subsample(*load_labelled_split(data, "test"), num_test, seed + 1)
    check_labels(y_train, what[0])
    check_labels(y_test, what[1], min_classes=1)
    return x_train, y_train, x_test, y_test


def check_image_backbone(model: tf.keras.Model, image_size: int | None = None) -> int:
    """The square input size of an RGB feature extractor (clear error otherwise)."""
    channels = model.inputs[0].shape[-1]
    if channels not in (None, 3):
        raise ValueError(f"backbone {model.name!r} takes {channels}-channel images; evaluators feed "
                         "RGB images in [0, 1] (grey images are repeated to 3 channels)")
    if image_size is not None:
        size = model.inputs[0].shape[1]
        if size is not None and int(size) != int(image_size):
            raise ValueError(f"image_size={image_size} does not match backbone {model.name!r} "
                             f"input size {int(size)}")
        return int(image_size)
    return backbone_input_size(model)


def save_png(fig, path) -> str:
    """Saves a matplotlib ``Figure`` (built without pyplot, Agg canvas) atomically as PNG.

    No global backend is switched, so a notebook's inline backend is left alone.
    """
    import os
    import tempfile
    from pathlib import Path

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=fig.dpi, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return str(path)


def limit_blas_threads(threads: int | None):
    """Context limiting numpy/scipy BLAS and OpenMP (scikit-learn) to ``threads`` threads.

    ``None`` leaves the libraries' defaults. Measured on the shared 2-core reference machine
    under load: OpenBLAS's two spinning threads made a 10k × 1024 logistic-regression probe
    6× slower (62 s vs 10 s) and spherical k-means 2.6× slower than one thread, so the
    evaluators default to 1. TensorFlow's own thread pool is not affected.
    """
    if threads is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=int(threads))



def embed(model: tf.keras.Model, images, image_size: int, batch_size: int = 256) -> np.ndarray:
    """Features of ``images`` in inference mode, batch by batch (float32 [N, D]).

    :func:`burn_tf.evaluate.common.extract_features` traces the model once per input size
    and reuses it, so embedding a bank and then the queries (or once per epoch in the
    monitor) does not pay a new trace each time; this adds the pooled-output check.
    """
    out = extract_features(model, np.asarray(images), batch_size=int(batch_size), image_size=int(image_size))
    if out.ndim != 2:
        raise ValueError(f"model {model.name!r} does not return pooled features [B, D]")
    return out


# ------------------------------------------------------------------------ algorithm


def _as_features(x, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"{what} must be a 2-d array [N, D], got shape {x.shape}")
    if len(x) == 0:
        raise ValueError(f"{what} is empty")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} contains NaN or Inf")
    return x


def _auto_chunk(bank_size: int, chunk_size: int | None) -> int:
    if chunk_size is None:
        return int(max(1, min(1024, _SIMILARITY_BLOCK_BYTES // (4 * max(bank_size, 1)))))
    if int(chunk_size) <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    return int(chunk_size)


@tf.function(reduce_retracing=True)
def _topk_block(queries, bank, k, sort):
    sims = tf.matmul(queries, bank, transpose_b=True)
    return tf.math.top_k(sims, k=k, sorted=sort)


def cosine_topk(
    query_features,
    bank_features,
    k: int,
    *,
    chunk_size: int | None = None,
    normalize: bool = True,
    sort: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` cosine neighbours of every query in the bank → (similarities, indices).

    Both ``[Q, k]``; sorted by decreasing similarity unless ``sort=False`` (same set, in no
    particular order, ~15% cheaper). Computed in query chunks on TF (float32).
    """
    bank = _as_features(bank_features, "bank features")
    queries = _as_features(query_features, "query features")
    if queries.shape[1] != bank.shape[1]:
        raise ValueError(f"query features are {queries.shape[1]}-d but the bank is {bank.shape[1]}-d")
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be ≥ 1, got {k}")
    if k > len(bank):
        raise ValueError(f"k={k} is larger than the bank ({len(bank)} items); use k ≤ {len(bank)}")
    if normalize:
        bank = tf.math.l2_normalize(bank, axis=1)
        queries = tf.math.l2_normalize(queries, axis=1)
    bank = tf.convert_to_tensor(bank)
    chunk = _auto_chunk(len(bank_features), chunk_size)
    sims, index = [], []
    k_t = tf.constant(k, tf.int32)
    for start in range(0, int(queries.shape[0]), chunk):
        values, idx = _topk_block(queries[start : start + chunk], bank, k_t, bool(sort))
        sims.append(values.numpy())
        index.append(idx.numpy())
    return np.concatenate(sims), np.concatenate(index).astype(np.int64)


def weighted_knn(
    train_features,
    train_labels,
    query_features,
    k: int = 200,
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted kNN (InstDisc / InvP) → ``(predictions [Q] int64, scores [Q, C] float32)``.

    Cosine similarity on L2-normalised features; the top-``k`` neighbours of each query in
    the bank ``train_features`` vote ``exp(s / temperature)`` for their label; ``scores``
    are the summed votes per class and ``predictions`` their argmax (ties → lowest class id).
    ``num_classes`` defaults to ``max(train_labels) + 1``. The work runs in query chunks of
    ``chunk_size`` (default: a ~256 MB similarity block); the result does not depend on it.
    """
    labels = np.asarray(train_labels)
    bank = _as_features(train_features, "train features")
    if labels.ndim != 1 or len(labels) != len(bank):
        raise ValueError(f"train labels must be [N] with N = {len(bank)} train features; "
                         f"got shape {labels.shape}")
    check_labels(labels, "train labels", min_classes=1)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n_cls = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    if labels.max() >= n_cls:
        raise ValueError(f"train labels go up to {labels.max()} but num_classes={n_cls}")
    sims, index = cosine_topk(query_features, bank, k, chunk_size=chunk_size, sort=False)
    votes = np.exp(sims.astype(np.float64) / temperature)  # s ≤ 1: at most e^(1/τ), no overflow
    neighbour_labels = labels[index]
    flat = (np.arange(len(sims), dtype=np.int64)[:, None] * n_cls + neighbour_labels).ravel()
    scores = np.bincount(flat, weights=votes.ravel(), minlength=len(sims) * n_cls)
    scores = scores.reshape(len(sims), n_cls)
    return np.argmax(scores, axis=1).astype(np.int64), scores.astype(np.float32)


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, ks: Sequence[int] = (1, 5)) -> dict:
    """``{"top1": …, "top5": …}`` from class scores [Q, C] (ks above C are left out)."""
    labels = np.asarray(labels)
    order = np.argsort(-scores, axis=1, kind="stable")
    out = {}
    for kk in ks:
        if kk <= scores.shape[1]:
            out[f"top{kk}"] = float(np.mean(np.any(order[:, :kk] == labels[:, None], axis=1)))
    return out


def knn_accuracy(
    train_features,
    train_labels,
    test_features,
    test_labels,
    k: int = 200,
    temperature: float = 0.07,
    num_classes: int | None = None,
    ks: Sequence[int] = (1, 5),
    chunk_size: int | None = None,
) -> dict:
    """Top-1 (/top-5) accuracy of :func:`weighted_knn` on labelled queries."""
    test_labels = np.asarray(test_labels)
    if test_labels.ndim != 1 or len(test_labels) != len(test_features):
        raise ValueError(f"test labels must be [Q] with Q = {len(test_features)}, got {test_labels.shape}")
    n_cls = num_classes
    if n_cls is None:
        n_cls = int(max(np.max(train_labels), np.max(test_labels))) + 1
    _, scores = weighted_knn(train_features, train_labels, test_features, k=k,
                             temperature=temperature, num_classes=n_cls, chunk_size=chunk_size)
    return topk_accuracy(scores, test_labels, ks)


# ------------------------------------------------------------------------ evaluator


def knn(
    backbone,
    *,
    data="fashion_mnist",
    out_dir=None,
    k: int = 200,
    temperature: float = 0.07,
    num_train: int | None = None,
    num_test: int | None = None,
    batch_size: int = 256,
    chunk_size: int | None = None,
    image_size: int | None = None,
    seed: int = 0,
) -> dict:
    """Weighted-kNN accuracy of a backbone: bank = train split, queries = test split.

    ``num_train`` / ``num_test`` take seeded random subsets (default: the whole splits,
    60k / 10k for Fashion-MNIST).
    """
    model, meta = resolve_backbone(backbone)
    size = check_image_backbone(model, image_size)
    x_train, y_train, x_test, y_test = load_train_test(data, num_train, num_test, seed)
    if k > len(y_train):
        raise ValueError(f"k={k} is larger than the bank ({len(y_train)} train images)")
    start = time.perf_counter()
    f_train = embed(model, x_train, size, batch_size)
    f_test = embed(model, x_test, size, batch_size)
    extract_seconds = time.perf_counter() - start
    start = time.perf_counter()
    acc = knn_accuracy(f_train, y_train, f_test, y_test, k=k, temperature=temperature,
                       chunk_size=chunk_size)
    result = {
        "task": "knn",
        "data": data_name(data),
        "backbone": meta.get("name", model.name),
        **acc,
        "k": int(k),
        "temperature": float(temperature),
        "num_train": int(len(y_train)),
        "num_test": int(len(y_test)),
        "feature_dim": int(f_train.shape[1]),
        "extract_seconds": round(extract_seconds, 3),
        "knn_seconds": round(time.perf_counter() - start, 3),
    }
    write_results(out_dir, "knn", result)
    return result


def format_result(result: dict) -> str:
    row = {key: result[key] for key in ("top1", "top5", "k", "temperature", "num_train", "num_test")
           if key in result}
    return f"weighted kNN ({result.get('backbone', '')}, {result.get('data', '')})\n" + format_table([row])
