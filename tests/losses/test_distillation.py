"""burn_tf.losses.distillation (KL, L_FS, Eq. 4) against hand computations."""

import math

import numpy as np
import pytest
import tensorflow as tf

from burn_tf.losses import distillation


def test_kl_divergence_matches_hand_computation():
    t = np.array([[1.0, 0.0], [0.0, 0.0]], np.float32)
    s = np.array([[0.0, 0.0], [0.0, 2.0]], np.float32)
    T = 0.5

    def softmax(z):
        e = np.exp(z / T)
        return e / e.sum()

    want = np.mean([np.sum(softmax(a) * np.log(softmax(a) / softmax(b))) for a, b in zip(t, s)])
    got = float(distillation.kl_divergence(t, s, T))
    assert got == pytest.approx(want, rel=1e-5)
    # First row by hand: p=[e²,1]/(e²+1), q=[.5,.5].
    p = np.array([math.e**2, 1]) / (math.e**2 + 1)
    row1 = float(np.sum(p * np.log(p / 0.5)))
    assert row1 == pytest.approx(np.sum(softmax(t[0]) * np.log(softmax(t[0]) / softmax(s[0]))), rel=1e-6)
    assert float(distillation.kl_divergence(t, t, T)) == pytest.approx(0.0, abs=1e-6)


def test_feature_similarity_kinds():
    v1 = np.array([[1.0, 0.0], [3.0, 4.0]], np.float32)
    v2 = np.array([[0.0, 2.0], [3.0, 4.0]], np.float32)
    # cosine distances: 1 - 0 = 1 and 1 - 1 = 0 → mean 0.5
    assert float(distillation.feature_similarity(v1, v2, "cosine")) == pytest.approx(0.5, abs=1e-6)
    # l1: |1|+|−2| = 3 and 0 → 1.5 ; l2: sqrt(5) and ~0 → sqrt(5)/2
    assert float(distillation.feature_similarity(v1, v2, "l1")) == pytest.approx(1.5, abs=1e-6)
    assert float(distillation.feature_similarity(v1, v2, "l2")) == pytest.approx(math.sqrt(5) / 2, abs=1e-5)
    with pytest.raises(ValueError, match="cosine"):
        distillation.feature_similarity(v1, v2, "dot")


def test_cosine_is_scale_invariant_and_bounded():
    v = tf.random.normal((8, 16), seed=0)
    assert float(distillation.feature_similarity(v, 10 * v)) == pytest.approx(0.0, abs=1e-5)
    assert float(distillation.feature_similarity(v, -v)) == pytest.approx(2.0, abs=1e-5)


def test_burn_loss_weights_terms():
    assert float(distillation.burn_loss(2.0, 1.0, 0.7)) == pytest.approx(0.3 * 2.0 + 0.7 * 1.0)


def test_kl_to_target_equals_kl_divergence_on_a_softmax_target():
    t = np.array([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]], np.float32)
    s = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 3.0]], np.float32)
    log_p = tf.nn.log_softmax(t / 0.2)
    assert float(distillation.kl_to_target(log_p, s, 0.2)) == pytest.approx(
        float(distillation.kl_divergence(t, s, 0.2)), rel=1e-6)


def test_normalized_mse_is_twice_the_cosine_distance():
    v1 = np.array([[1.0, 0.0], [3.0, 4.0]], np.float32)
    v2 = np.array([[0.0, 2.0], [6.0, 8.0]], np.float32)
    # unit vectors [1,0] vs [0,1]: squared distance 2; identical directions: 0 → mean 1
    assert float(distillation.feature_similarity(v1, v2, "normalized_mse")) == pytest.approx(1.0, abs=1e-6)


def test_normalized_mse_is_the_released_squared_distance_with_twice_the_cosine_gradient():
    # naver-ai/burn burn_heads.py:41-46: MSELoss(normalize(input), normalize(target)).sum() / N.
    a = tf.random.normal((6, 10), seed=2)
    b = tf.random.normal((6, 10), seed=3)
    released = tf.reduce_mean(tf.reduce_sum(tf.square(tf.math.l2_normalize(a, -1) - tf.math.l2_normalize(b, -1)), -1))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(a)
        squared = distillation.feature_similarity(a, b, "normalized_mse")
        cosine = distillation.feature_similarity(a, b, "cosine")
    assert float(squared) == pytest.approx(float(released), rel=1e-5)
    assert float(squared) == pytest.approx(2 * float(cosine), rel=1e-6)
    np.testing.assert_allclose(tape.gradient(squared, a).numpy(), 2 * tape.gradient(cosine, a).numpy(), rtol=1e-5,
                               atol=1e-7)
