"""burn_tf.ops.schedules: λ(t) and its Table-7 alternatives, the KL warm-up weight."""

import pytest

from burn_tf.ops import schedules


def test_lambda_cosine_at_0_half_and_end():
    T = 1000
    assert schedules.lambda_at(0, T) == pytest.approx(0.9)
    assert schedules.lambda_at(T / 2, T) == pytest.approx(0.8)
    assert schedules.lambda_at(T, T) == pytest.approx(0.7)
    assert schedules.lambda_at(2 * T, T) == pytest.approx(0.7)  # clamped past the end
    values = [schedules.lambda_at(t, T) for t in range(0, T + 1, 50)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_lambda_alternatives_of_table7():
    T = 100
    assert schedules.lambda_at(0, T, schedule="constant") == pytest.approx(0.7)
    assert schedules.lambda_at(49, T, schedule="step") == pytest.approx(0.9)
    assert schedules.lambda_at(50, T, schedule="step") == pytest.approx(0.7)
    with pytest.raises(ValueError, match="cosine"):
        schedules.lambda_at(0, T, schedule="linear")


def test_heaviside_is_table7_literally():
    T = 100
    assert schedules.lambda_at(0, T, schedule="heaviside") == 1.0
    assert schedules.lambda_at(49, T, 0.9, 0.7, schedule="heaviside") == 1.0
    assert schedules.lambda_at(50, T, 0.9, 0.7, schedule="heaviside") == 0.0


def test_kl_warmup_weight_ramps_linearly():
    assert schedules.kl_warmup_weight(0, 4) == pytest.approx(0.25)
    assert schedules.kl_warmup_weight(2, 4) == pytest.approx(0.75)
    assert schedules.kl_warmup_weight(3, 4) == 1.0 and schedules.kl_warmup_weight(100, 4) == 1.0
    assert schedules.kl_warmup_weight(0, 0) == 1.0
