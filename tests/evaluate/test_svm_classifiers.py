"""The per-class linear SVMs of the SVM evaluator: cost search and low-shot samples."""

import numpy as np
import pytest

from burn_tf.evaluate.svm_classifiers import DEFAULT_COSTS, cost_sweep, lowshot_targets


def test_cost_sweep_on_features_with_known_answers():
    rng = np.random.default_rng(0)
    labels = (rng.random((300, 4)) < 0.3).astype(int)
    labels[labels.sum(1) == 0, 0] = 1
    oracle = labels + 0.05 * rng.standard_normal(labels.shape)
    costs = [1e-3, 0.1, 10.0]
    sweep = cost_sweep(oracle, labels, costs, folds=3)
    assert sweep["costs"] == costs and sweep["folds"] == 3
    assert np.array(sweep["cv_ap"]).shape == (4, 3)
    assert min(sweep["best_cv_ap"]) > 0.99
    assert all(c in costs for c in sweep["best_cost"])
    noise = cost_sweep(rng.standard_normal((300, 16)), labels, costs, folds=3)
    prevalence = labels.mean(axis=0)
    assert np.all(np.abs(np.array(noise["best_cv_ap"]) - prevalence) < 0.2)
    # the default grid is the benchmark's: 10 decades and 0.5^4 … 0.5^19
    assert len(DEFAULT_COSTS) == 26 and DEFAULT_COSTS[-1] == 0.5 ** 19
    with pytest.raises(ValueError, match="300 feature rows / images but 299 label rows"):
        cost_sweep(oracle, labels[:-1], costs)
    few = labels.copy()
    few[:, 2] = 0
    few[:2, 2] = 1
    with pytest.raises(ValueError, match="class 2 has 2 positive"):
        cost_sweep(oracle, few, costs, folds=3)
    with pytest.raises(ValueError, match="needs >= 2"):
        cost_sweep(oracle[:, :1], labels[:, :1], costs)


def test_lowshot_targets_give_each_class_exactly_k_positives_and_its_own_negatives():
    rng = np.random.default_rng(0)
    labels = (rng.random((400, 5)) < 0.3).astype(int)
    labels[rng.random((400, 5)) < 0.05] = -1  # difficult: never drawn
    for k in (1, 4, 8):
        for sample in range(3):
            t = lowshot_targets(labels, k, seed=0, sample=sample)
            assert t.shape == labels.shape and set(np.unique(t)) <= {-1, 0, 1}
            for c in range(5):
                assert (t[:, c] == 1).sum() == k and (t[:, c] == 0).sum() == 4 * k
                # drawn from the right pools: positives are present, negatives absent
                assert np.all(labels[t[:, c] == 1, c] == 1) and np.all(labels[t[:, c] == 0, c] == 0)
    a = lowshot_targets(labels, 4, seed=0, sample=0)
    np.testing.assert_array_equal(a, lowshot_targets(labels, 4, seed=0, sample=0))
    assert not np.array_equal(a, lowshot_targets(labels, 4, seed=1, sample=0))  # seeds differ
    assert not np.array_equal(a, lowshot_targets(labels, 4, seed=0, sample=1))  # samples differ
    # Per class, not a union: class 0's positives are not all of the drawn images' class-0 ones.
    drawn = np.flatnonzero((a != -1).any(axis=1))
    assert (labels[drawn, 0] == 1).sum() > (a[:, 0] == 1).sum()
    few = (labels == 1).sum(0).min()
    with pytest.raises(ValueError, match=f"k={few + 1} needs {few + 1} positive"):
        lowshot_targets(labels, few + 1, seed=0, sample=0)
    with pytest.raises(ValueError, match="negative training images of class"):
        lowshot_targets(labels, 70, seed=0, sample=0)  # 280 negatives needed
