"""Weighted kNN classification (InstDisc, Wu et al. 2018; used by InvP and CLD).

Protocol (seed 002, InvP supplement §A, following InstDisc's ``kNN`` routine): features are
L2-normalised; each query takes its top-K neighbours in the labelled bank by cosine
similarity ``s_i`` (K = 200); neighbour ``i`` votes for its class with weight
``exp(s_i / τ)`` (τ = 0.07); the class scores are the summed votes, and the prediction is
the class with the largest score (top-5: the five largest).

:func:`weighted_knn` is the pure function every caller shares (this evaluator, the online
:class:`~burn_tf.evaluate.monitor.KNNMonitor`, the BURN demo). It runs on TensorFlow in
query chunks (:func:`burn_tf.evaluate.neighbours.cosine_topk`): ``tf.matmul`` (float32)
against the whole bank, then ``tf.math.top_k``, so a 60k × 1024-d bank and 10k queries need
one ``chunk × 60k`` similarity block at a time (≈ 256 MB by default). That case costs ~16 s
of CPU time (the float32 matmul runs at ~100 GFLOP/s per core, near this CPU's peak; the
top-k is ~3 s), i.e. ≈ 8 s wall on an idle 2-core machine — measure with
``benchmarks/evaluators.py``. Ties between equal similarities at the k-th place are broken
by TF's ``top_k`` (lower index first); ties between equal class scores follow
:func:`burn_tf.evaluate.metrics.topk_accuracy`'s rule (lower class id first, not counted as hits).

:func:`knn` is the evaluator: backbone → features of the train split (the bank) and the
test split (the queries) → top-1 / top-5 accuracy.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from burn_tf.evaluate import common
from burn_tf.evaluate.data import check_labels, data_name, load_train_test
from burn_tf.evaluate.features import check_features, embed_timed, resolve_input_size
from burn_tf.evaluate.metrics import topk_accuracies
from burn_tf.evaluate.neighbours import cosine_topk

PROTOCOL_SOURCE = (
    "weighted kNN of InstDisc (Wu et al. 2018, lemniscate.pytorch test.py kNN) as used "
    "by InvP (seed 002, supplement A) and CLD: cosine top-K, votes exp(s/tau)"
)

# ------------------------------------------------------------------------ algorithm


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
    are the summed votes per class and ``predictions`` their argmax (ties → lowest class id,
    the rank-0 class of :func:`burn_tf.evaluate.metrics.label_ranks`, so a prediction is
    right exactly when the query is a top-1 hit). ``num_classes`` defaults to
    ``max(train_labels) + 1``. The work runs in query chunks of ``chunk_size`` (default: a
    ~256 MB similarity block); the result does not depend on it.
    """
    labels = np.asarray(train_labels)
    bank = check_features(train_features, "train features")
    if labels.ndim != 1 or len(labels) != len(bank):
        raise ValueError(f"train labels must be [N] with N = {len(bank)} train features; got shape {labels.shape}")
    labels = check_labels(labels, "train labels", min_classes=1)
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
    _, scores = weighted_knn(
        train_features,
        train_labels,
        test_features,
        k=k,
        temperature=temperature,
        num_classes=n_cls,
        chunk_size=chunk_size,
    )
    return topk_accuracies(scores, test_labels, ks)


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
    started = time.perf_counter()
    model, meta = common.resolve_backbone(backbone)
    size = resolve_input_size(model, image_size)
    x_train, y_train, x_test, y_test = load_train_test(data, num_train, num_test, seed)
    if k > len(y_train):
        raise ValueError(f"k={k} is larger than the bank ({len(y_train)} train images)")
    (f_train, f_test), extract_seconds = embed_timed(model, (x_train, x_test), size, batch_size, "knn features")
    start = time.perf_counter()
    acc = knn_accuracy(f_train, y_train, f_test, y_test, k=k, temperature=temperature, chunk_size=chunk_size)
    knn_seconds = time.perf_counter() - start
    result = common.evaluator_result(
        "knn",
        data=data_name(data),
        backbone=common.backbone_info(backbone, model, meta, input_size=size),
        protocol={
            "source": PROTOCOL_SOURCE,
            "k": int(k),
            "temperature": float(temperature),
            "num_train": num_train,
            "num_test": num_test,
            "seed": int(seed),
            "input_size": size,
        },
        seconds=time.perf_counter() - started,
        **acc,
        k=int(k),
        temperature=float(temperature),
        num_train=int(len(y_train)),
        num_test=int(len(y_test)),
        feature_dim=int(f_train.shape[1]),
        extract_seconds=round(extract_seconds, 3),
        knn_seconds=round(knn_seconds, 3),
    )
    common.write_results(out_dir, "knn", result)
    return result


def format_result(result: dict) -> str:
    row = {key: result[key] for key in ("top1", "top5", "k", "temperature", "num_train", "num_test") if key in result}
    return f"weighted kNN ({result['backbone']['name']}, {result['data']})\n" + common.format_table([row])
