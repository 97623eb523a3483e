import math

import numpy as np
import pytest
import tensorflow as tf

from burn_tf import losses


def test_kl_divergence_matches_hand_computation():
    t = np.array([[1.0, 0.0], [0.0, 0.0]], np.float32)
    s = np.array([[0.0, 0.0], [0.0, 2.0]], np.float32)
    T = 0.5

    def softmax(z):
        e = np.exp(z / T)
        return e / e.sum()

    want = np.mean([np.sum(softmax(a) * np.log(softmax(a) / softmax(b))) for a, b in zip(t, s)])
    got = float(losses.kl_divergence(t, s, T))
    assert got == pytest.approx(want, rel=1e-5)
    # First row by hand: p=[e²,1]/(e²+1), q=[.5,.5].
    p = np.array([math.e**2, 1]) / (math.e**2 + 1)
    row1 = float(np.sum(p * np.log(p / 0.5)))
    assert row1 == pytest.approx(np.sum(softmax(t[0]) * np.log(softmax(t[0]) / softmax(s[0]))), rel=1e-6)
    assert float(losses.kl_divergence(t, t, T)) == pytest.approx(0.0, abs=1e-6)


def test_feature_similarity_kinds():
    v1 = np.array([[1.0, 0.0], [3.0, 4.0]], np.float32)
    v2 = np.array([[0.0, 2.0], [3.0, 4.0]], np.float32)
    # cosine distances: 1 - 0 = 1 and 1 - 1 = 0 → mean 0.5
    assert float(losses.feature_similarity(v1, v2, "cosine")) == pytest.approx(0.5, abs=1e-6)
    # l1: |1|+|−2| = 3 and 0 → 1.5 ; l2: sqrt(5) and ~0 → sqrt(5)/2
    assert float(losses.feature_similarity(v1, v2, "l1")) == pytest.approx(1.5, abs=1e-6)
    assert float(losses.feature_similarity(v1, v2, "l2")) == pytest.approx(math.sqrt(5) / 2, abs=1e-5)
    with pytest.raises(ValueError, match="cosine"):
        losses.feature_similarity(v1, v2, "dot")


def test_cosine_is_scale_invariant_and_bounded():
    v = tf.random.normal((8, 16), seed=0)
    assert float(losses.feature_similarity(v, 10 * v)) == pytest.approx(0.0, abs=1e-5)
    assert float(losses.feature_similarity(v, -v)) == pytest.approx(2.0, abs=1e-5)


def test_burn_loss_weights_terms():
    assert float(losses.burn_loss(2.0, 1.0, 0.7)) == pytest.approx(0.3 * 2.0 + 0.7 * 1.0)


def test_lambda_cosine_at_0_half_and_end():
    T = 1000
    assert losses.lambda_at(0, T) == pytest.approx(0.9)
    assert losses.lambda_at(T / 2, T) == pytest.approx(0.8)
    assert losses.lambda_at(T, T) == pytest.approx(0.7)
    assert losses.lambda_at(2 * T, T) == pytest.approx(0.7)  # clamped past the end
    values = [losses.lambda_at(t, T) for t in range(0, T + 1, 50)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_lambda_alternatives_of_table7():
    T = 100
    assert losses.lambda_at(0, T, schedule="constant") == pytest.approx(0.7)
    assert losses.lambda_at(49, T, schedule="step") == pytest.approx(0.9)
    assert losses.lambda_at(50, T, schedule="step") == pytest.approx(0.7)
    with pytest.raises(ValueError, match="cosine"):
        losses.lambda_at(0, T, schedule="linear")


def test_batch_mean_entropy_detects_collapse():
    collapsed = np.tile([[10.0, 0.0, 0.0, 0.0]], (16, 1)).astype(np.float32)
    spread = np.eye(4, dtype=np.float32).repeat(4, axis=0) * 10
    assert float(losses.batch_mean_entropy(collapsed)) < 0.01
    assert float(losses.batch_mean_entropy(spread)) == pytest.approx(math.log(4), abs=1e-3)
