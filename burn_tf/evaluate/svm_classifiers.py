"""The per-class linear SVMs of the SVM evaluator (:mod:`burn_tf.evaluate.svm`), on features.

LIBLINEAR through ``sklearn.svm.LinearSVC`` with Goyal et al.'s benchmark settings
(:func:`make_svm`), on L2-normalised features (:func:`normalize_features`): the
cross-validated cost search over :data:`DEFAULT_COSTS` (:func:`cost_sweep`), the full-shot
SVMs retrained with each class's best cost (:func:`full_shot`), the low-shot samples of
``create_voc_low_shot_samples`` (:func:`lowshot_targets`) and the few-shot SVMs trained on
them (:func:`few_shot`). Features and labels are numpy arrays: nothing here touches a
backbone or TensorFlow; the protocol as a whole is described in :mod:`burn_tf.evaluate.svm`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence

import numpy as np

from burn_tf.evaluate.data import check_multi_hot
from burn_tf.evaluate.metrics import AP_METHODS, average_precision, mean_ap
from burn_tf.progress import Progress

DEFAULT_COSTS = tuple(
    [1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0] + [0.5 ** k for k in range(4, 20)]
)


def normalize_features(features: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation as in the benchmark: x / (‖x‖ + 1e-5)."""
    features = np.asarray(features, np.float64)
    return features / (np.linalg.norm(features, axis=1, keepdims=True) + 1e-5)


def make_svm(cost: float):
    from sklearn.svm import LinearSVC

    return LinearSVC(
        C=float(cost), class_weight={1: 2, -1: 1}, intercept_scaling=1.0, penalty="l2",
        loss="squared_hinge", tol=1e-4, dual=True, max_iter=2000,
    )


def _binary(labels: np.ndarray, c: int) -> np.ndarray:
    return np.where(labels[:, c] == 1, 1, -1)


@contextlib.contextmanager
def _quiet():
    """LIBLINEAR warns when max_iter stops it (as the benchmark allows): keep the log clean."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def cost_sweep(features: np.ndarray, labels_multi_hot: np.ndarray,
               costs: Sequence[float] | None = None, folds: int = 3, *,
               normalize: bool = True, n_jobs: int | None = None) -> dict:
    """k-fold cross-validated AP of a per-class linear SVM for every cost.

    ``labels_multi_hot`` is [N, C] with 1 present, 0 absent, −1 difficult (counted as
    negative, as in the benchmark's training). Features are L2-normalised first unless
    ``normalize=False``. Returns ``costs``, ``cv_ap`` (``[C][len(costs)]``, mean over folds),
    ``best_cost`` and ``best_cv_ap`` per class (first best on ties) and ``folds``.
    """
    from sklearn.model_selection import cross_val_score

    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"features must be [N, D], got shape {tuple(features.shape)}")
    labels = check_multi_hot(labels_multi_hot, len(features), "cost_sweep")
    costs = [float(c) for c in (DEFAULT_COSTS if costs is None else costs)]
    if not costs or min(costs) <= 0:
        raise ValueError(f"costs must be a non-empty list of positive numbers, got {costs}")
    folds = int(folds)
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    x = normalize_features(features) if normalize else np.asarray(features, np.float64)
    cv_ap = np.zeros((labels.shape[1], len(costs)))
    meter = Progress("svm full-shot", labels.shape[1] * len(costs), f"{folds}-fold cross-validations")
    with _quiet():
        for c in range(labels.shape[1]):
            y = _binary(labels, c)
            n_pos, n_neg = int((y == 1).sum()), int((y == -1).sum())
            if n_pos < folds or n_neg < folds:
                raise ValueError(
                    f"class {c} has {n_pos} positive and {n_neg} negative training examples; "
                    f"{folds}-fold cross-validation needs at least {folds} of each"
                )
            for j, cost in enumerate(costs):
                cv_ap[c, j] = cross_val_score(make_svm(cost), x, y, cv=folds,
                                              scoring="average_precision", n_jobs=n_jobs).mean()
                meter.advance(note=f"class {c}")
    best = np.argmax(cv_ap, axis=1)
    return {
        "costs": costs,
        "cv_ap": cv_ap.tolist(),
        "best_cost": [costs[j] for j in best],
        "best_cv_ap": [float(cv_ap[c, j]) for c, j in enumerate(best)],
        "folds": folds,
    }


def _class_aps(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    return average_precision(scores, labels, "area"), average_precision(scores, labels, "voc07")


def full_shot(train_x, train_y, test_x, test_y, *, costs, folds, class_names, n_jobs=None) -> dict:
    """Cross-validated cost per class, retrain on all of train, AP on test."""
    sweep = cost_sweep(train_x, train_y, costs, folds, normalize=False, n_jobs=n_jobs)
    per_class = []
    with _quiet():
        for c, cost in enumerate(sweep["best_cost"]):
            clf = make_svm(cost).fit(train_x, _binary(train_y, c))
            scores = clf.decision_function(test_x)
            area, voc07 = _class_aps(scores, test_y[:, c])
            per_class.append({"class": class_names[c], "cost": cost,
                              "cv_ap": sweep["best_cv_ap"][c], "ap": area, "ap_voc07": voc07})
    missing = [p["class"] for p in per_class if np.isnan(p["ap"])]
    return {
        "classes_without_test_positives": missing,  # left out of the mean
        "map_area": mean_ap([p["ap"] for p in per_class]),
        "map_voc07": mean_ap([p["ap_voc07"] for p in per_class]),
        "per_class": per_class,
        "cv_ap": sweep["cv_ap"],
    }


def lowshot_targets(labels_multi_hot: np.ndarray, k: int, seed: int, sample: int) -> np.ndarray:
    """One low-shot sample of Goyal et al.'s protocol: targets [N, C] of 1 / 0 / −1 (ignored).

    Independently for every class c: k images with label 1 in column c become its
    positives, then (C − 1)·k images with label 0 in column c its negatives; every other
    entry is −1, so the SVM of class c trains on exactly k + (C − 1)·k images. Difficult
    (−1) images are never drawn. Positives are drawn for all classes first, then negatives,
    as in ``create_voc_low_shot_samples.py``; the random stream is seeded by
    ``(seed, sample, k)``, so each sample and k has its own draw, repeatable run to run.
    Raises if a class has fewer than k positives or (C − 1)·k negatives.
    """
    labels = np.asarray(labels_multi_hot)
    k, num_classes = int(k), labels.shape[1]
    rng = np.random.default_rng([int(seed), int(sample), k])
    out = np.full(labels.shape, -1, np.int64)
    for symbol, count in ((1, k), (0, (num_classes - 1) * k)):
        for c in range(num_classes):
            pool = np.flatnonzero(labels[:, c] == symbol)
            if len(pool) < count:
                kind = "positive" if symbol == 1 else "negative"
                raise ValueError(f"k={k} needs {count} {kind} training images of class {c}, "
                                 f"which has {len(pool)}; lower the shots")
            out[rng.choice(pool, size=count, replace=False), c] = symbol
    return out


def few_shot(train_x, train_y, test_x, test_y, *, shots, samples, costs, cost, ap_method,
             seed) -> dict:
    """Few-shot SVMs: per k, ``samples`` independent low-shot samples (:func:`lowshot_targets`),
    every cost (or the given one)."""
    costs = [float(cost)] if cost != "reference" else [float(c) for c in costs]
    num_classes = train_y.shape[1]
    out = {}
    meter = Progress("svm few-shot", len(shots) * samples * len(costs) * num_classes, "SVMs")
    with _quiet():
        for k in shots:
            # maps[method][sample, cost]
            maps = {m: np.zeros((samples, len(costs))) for m in AP_METHODS}
            for s in range(samples):
                targets = lowshot_targets(train_y, int(k), seed, s)
                for j, cst in enumerate(costs):
                    aps = {m: [] for m in AP_METHODS}
                    for c in range(num_classes):
                        keep = targets[:, c] != -1  # class c's own k + (C − 1)·k images
                        clf = make_svm(cst).fit(train_x[keep], _binary(targets[keep], c))
                        scores = clf.decision_function(test_x)
                        area, voc07 = _class_aps(scores, test_y[:, c])
                        aps["area"].append(area)
                        aps["voc07"].append(voc07)
                        meter.advance(note=f"k {k}, sample {s + 1}/{samples}")
                    for m in AP_METHODS:
                        maps[m][s, j] = mean_ap(aps[m])
            best = int(np.argmax(maps[ap_method].mean(axis=0)))
            # Spread over the low-shot samples as the reference aggregates it: np.std (ddof 0),
            # VISSL SVMLowShotTrainer.aggregate_stats; not a spread over training seeds
            # (metrics.seed_std), and the README's few-shot ± are these.
            out[str(int(k))] = {
                "k": int(k),
                "cost": costs[best],
                "mean": float(maps[ap_method][:, best].mean()),
                "std": float(maps[ap_method][:, best].std()),
                "samples": maps[ap_method][:, best].tolist(),
                **{f"mean_{m}": float(maps[m][:, best].mean()) for m in AP_METHODS},
                **{f"std_{m}": float(maps[m][:, best].std()) for m in AP_METHODS},
            }
    return out
