import numpy as np
import pytest
import tensorflow as tf

from burn_tf.config import OptimizerConfig
from burn_tf.optim import LARS, WarmupCosine, build_optimizer


def test_warmup_cosine_shape():
    s = WarmupCosine(1.0, warmup_steps=10, total_steps=110)
    assert float(s(0)) == pytest.approx(0.1)
    assert float(s(9)) == pytest.approx(1.0)
    assert float(s(10)) == pytest.approx(1.0)
    assert float(s(60)) == pytest.approx(0.5, abs=1e-6)
    assert float(s(110)) == pytest.approx(0.0, abs=1e-6)


def test_lars_step_uses_the_trust_ratio():
    w = tf.Variable([[3.0, 4.0]], name="kernel")  # ‖w‖ = 5
    g = tf.constant([[0.0, 10.0]])  # ‖g‖ = 10
    opt = LARS(learning_rate=1.0, momentum=0.0, eta=0.1)
    opt.apply_gradients([(g, w)])
    # trust = 0.1 * 5 / 10 = 0.05 → step = 1.0 * 0.05 * g
    np.testing.assert_allclose(w.numpy(), [[3.0, 3.5]], rtol=1e-6)


def test_lars_skips_biases():
    b = tf.Variable([1.0, 1.0], name="bias")
    opt = LARS(learning_rate=0.5, momentum=0.0, eta=0.001, weight_decay=0.1)
    opt.apply_gradients([(tf.constant([2.0, 2.0]), b)])
    np.testing.assert_allclose(b.numpy(), [0.0, 0.0], atol=1e-6)


def test_lars_minimises_a_quadratic():
    w = tf.Variable([[2.0, -3.0]], name="kernel")
    opt = LARS(learning_rate=5.0, momentum=0.9, eta=0.01)
    for _ in range(300):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(w - 1.0))
        opt.apply_gradients([(tape.gradient(loss, w), w)])
    assert float(tf.reduce_sum(tf.square(w - 1.0))) < 1e-2


def test_build_optimizer_kinds():
    assert isinstance(build_optimizer(OptimizerConfig(), 100, 10), tf.keras.optimizers.Adam)
    assert isinstance(build_optimizer(OptimizerConfig(name="lars", learning_rate=0.3), 100, 10), LARS)
