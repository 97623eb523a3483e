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


def test_heaviside_is_table7_literally():
    T = 100
    assert losses.lambda_at(0, T, schedule="heaviside") == 1.0
    assert losses.lambda_at(49, T, 0.9, 0.7, schedule="heaviside") == 1.0
    assert losses.lambda_at(50, T, 0.9, 0.7, schedule="heaviside") == 0.0


def test_kl_warmup_weight_ramps_linearly():
    assert losses.kl_warmup_weight(0, 4) == pytest.approx(0.25)
    assert losses.kl_warmup_weight(2, 4) == pytest.approx(0.75)
    assert losses.kl_warmup_weight(3, 4) == 1.0 and losses.kl_warmup_weight(100, 4) == 1.0
    assert losses.kl_warmup_weight(0, 0) == 1.0


def test_kl_to_target_equals_kl_divergence_on_a_softmax_target():
    t = np.array([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]], np.float32)
    s = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 3.0]], np.float32)
    log_p = tf.nn.log_softmax(t / 0.2)
    assert float(losses.kl_to_target(log_p, s, 0.2)) == pytest.approx(float(losses.kl_divergence(t, s, 0.2)), rel=1e-6)


def test_normalized_mse_is_twice_the_cosine_distance():
    v1 = np.array([[1.0, 0.0], [3.0, 4.0]], np.float32)
    v2 = np.array([[0.0, 2.0], [6.0, 8.0]], np.float32)
    # unit vectors [1,0] vs [0,1]: squared distance 2; identical directions: 0 → mean 1
    assert float(losses.feature_similarity(v1, v2, "normalized_mse")) == pytest.approx(1.0, abs=1e-6)


def test_target_entropies_tell_the_two_collapses_apart():
    C = 4
    one_class = np.log(np.tile([[1.0 - 3e-6, 1e-6, 1e-6, 1e-6]], (8, 1))).astype(np.float32)
    flat = np.full((8, C), -math.log(C), np.float32)
    spread = np.log(np.eye(C, dtype=np.float32).repeat(2, axis=0) * (1 - 4e-6) + 1e-6)
    # one class for every image: H(p̄) ≈ 0, E[H] ≈ 0
    assert float(losses.entropy_of_mean(one_class)) < 1e-3 and float(losses.mean_entropy(one_class)) < 1e-3
    # the same flat distribution for every image: H(p̄) = E[H] = log C, so no information
    assert float(losses.entropy_of_mean(flat)) == pytest.approx(math.log(C), abs=1e-5)
    assert float(losses.mean_entropy(flat)) == pytest.approx(math.log(C), abs=1e-5)
    # confident and spread: H(p̄) = log C, E[H] ≈ 0, mutual information ≈ log C
    mi = float(losses.entropy_of_mean(spread)) - float(losses.mean_entropy(spread))
    assert mi == pytest.approx(math.log(C), abs=1e-3)


def test_argmax_agreement_and_feature_std_by_hand():
    a = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]], np.float32)
    b = np.array([[5.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], np.float32)
    assert float(losses.argmax_agreement(a, b)) == pytest.approx(0.5)
    # rows [2,0] and [0,3] normalise to [1,0] and [0,1]: std over the batch 0.5 per dimension
    assert float(losses.normalized_feature_std(np.array([[2.0, 0.0], [0.0, 3.0]], np.float32))) == pytest.approx(0.5)
    assert float(losses.normalized_feature_std(np.tile([[1.0, 2.0]], (5, 1)).astype(np.float32))) < 1e-6


def test_centered_log_probs_by_hand():
    logits = np.array([[2.0, 0.0], [1.0, 1.0]], np.float32)
    center = np.array([1.0, 0.0], np.float32)
    got = np.exp(losses.centered_log_probs(logits, center, 0.5).numpy())
    # row 1: (1, 0)/0.5 = (2, 0) → softmax; row 2: (0, 1)/0.5 = (0, 2)
    e = math.exp(2.0)
    np.testing.assert_allclose(got, [[e / (e + 1), 1 / (e + 1)], [1 / (e + 1), e / (e + 1)]], rtol=1e-5)


def _swav_sinkhorn(scores, eps, iters):
    """SwAV's distributed_sinkhorn (single process) in numpy float64."""
    q = np.exp(scores / eps).T
    q /= q.sum()
    k, b = q.shape
    for _ in range(iters):
        q /= q.sum(axis=1, keepdims=True)
        q /= k
        q /= q.sum(axis=0, keepdims=True)
        q /= b
    return (q * b).T


def test_sinkhorn_matches_swav_and_equipartitions_without_gradient():
    rng = np.random.default_rng(0)
    scores = rng.uniform(-1, 1, (16, 8)).astype(np.float32)
    scores[:, 0] += 0.5  # one class preferred by every image
    log_q = losses.sinkhorn_log_assignment(scores, 0.05, 3)
    q = np.exp(log_q.numpy())
    np.testing.assert_allclose(q, _swav_sinkhorn(scores.astype(np.float64), 0.05, 3), rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-5)
    # the preferred class gets about its share B/C = 2, not the whole batch
    assert q[:, 0].sum() < 3.0
    # raw logits / 0.05 would overflow exp() outside the log domain
    assert np.isfinite(losses.sinkhorn_log_assignment(scores * 100, 0.05, 3).numpy()).all()
    x = tf.Variable(scores)
    with tf.GradientTape() as tape:
        out = tf.reduce_sum(losses.sinkhorn_log_assignment(x, 0.05, 3))
    assert tape.gradient(out, x) is None


def test_ema_simulation_of_eq5():
    sim = losses.ema_distance_simulation(runs=10, dim=100, iterations=100, lr=4.8, tau=0.99, seed=0)
    assert sim["fp"].shape == sim["binary"].shape == (10, 100)
    # after one step the target moved (1 − τ) of the way: distance τ·η·‖Δn‖ ≈ 0.99·4.8·√100
    assert sim["fp"][:, 0].mean() == pytest.approx(0.99 * 4.8 * 10, rel=0.1)
    # sign vectors differ by ±2 per flipped coordinate: squared distances are multiples of 4
    squared = sim["binary"] ** 2
    np.testing.assert_allclose(squared / 4, np.round(squared / 4), atol=1e-6)
    again = losses.ema_distance_simulation(runs=10, seed=0)
    np.testing.assert_array_equal(again["fp"], sim["fp"])
