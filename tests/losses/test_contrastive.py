"""burn_tf.losses.contrastive against direct NumPy computations."""

import numpy as np
import pytest
import tensorflow as tf

from burn_tf.losses import contrastive


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def nt_xent_numpy(a, b, temperature):
    """SimCLR Eq. 1 written out: ℓ(i, j) = −log exp(s_ij/τ) / Σ_{k≠i} exp(s_ik/τ), averaged
    over all 2N views."""
    z = unit(np.concatenate([a, b]).astype(np.float64))
    n = len(a)
    sim = z @ z.T / temperature
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        others = [sim[i, k] for k in range(2 * n) if k != i]
        total += -(sim[i, j] - np.log(np.sum(np.exp(others))))
    return total / (2 * n)


def test_nt_xent_is_simclrs_loss(rng):
    a, b = rng.standard_normal((6, 5)), rng.standard_normal((6, 5))
    got = contrastive.nt_xent(tf.constant(a, tf.float32), tf.constant(b, tf.float32), temperature=0.5)
    assert float(got) == pytest.approx(nt_xent_numpy(a, b, 0.5), rel=1e-5)


def test_nt_xent_of_replica_shares_with_global_keys_is_the_global_loss_and_gradient(rng):
    """Two "replicas" of 3 images each, keys = the concatenation of both: the mean of their
    losses and the summed gradient are the one-device loss and gradient on all 6."""
    a = tf.Variable(rng.standard_normal((6, 4)), dtype=tf.float32)
    b = tf.Variable(rng.standard_normal((6, 4)), dtype=tf.float32)
    with tf.GradientTape() as tape:
        whole = contrastive.nt_xent(a, b, temperature=0.2)
    whole_grads = tape.gradient(whole, [a, b])
    with tf.GradientTape() as tape:
        keys_a, keys_b = tf.identity(a), tf.identity(b)  # the gathered keys, on the tape
        shares = [contrastive.nt_xent(a[s:s + 3], b[s:s + 3], keys_a, keys_b, first_index=s, temperature=0.2)
                  for s in (0, 3)]
        mean = tf.add_n(shares) / 2
    share_grads = tape.gradient(mean, [a, b])
    assert float(mean) == pytest.approx(float(whole), rel=1e-6)
    for got, want in zip(share_grads, whole_grads):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-7)


def test_info_nce_is_cross_entropy_with_the_positive_first(rng):
    q, k, queue = rng.standard_normal((4, 3)), rng.standard_normal((4, 3)), rng.standard_normal((7, 3))
    got = contrastive.info_nce(tf.constant(q, tf.float32), tf.constant(k, tf.float32),
                               tf.constant(queue, tf.float32), temperature=0.2)
    qn, kn, nn = unit(q), unit(k), unit(queue)
    logits = np.concatenate([np.sum(qn * kn, 1, keepdims=True), qn @ nn.T], 1) / 0.2
    want = np.mean(np.log(np.sum(np.exp(logits), 1)) - logits[:, 0])
    assert float(got) == pytest.approx(want, rel=1e-5)


def test_info_nce_sends_no_gradient_to_keys_or_queue(rng):
    q, k, queue = (tf.Variable(rng.standard_normal(s), dtype=tf.float32) for s in ((4, 3), (4, 3), (5, 3)))
    with tf.GradientTape() as tape:
        loss = contrastive.info_nce(q, k, queue)
    grad_q, grad_k, grad_queue = tape.gradient(loss, [q, k, queue])
    assert grad_q is not None and grad_k is None and grad_queue is None


def test_byol_loss_is_two_minus_two_cosine(rng):
    p, z = rng.standard_normal((5, 8)), rng.standard_normal((5, 8))
    got = contrastive.byol_loss(tf.constant(p, tf.float32), tf.constant(z, tf.float32))
    assert float(got) == pytest.approx(np.mean(2 - 2 * np.sum(unit(p) * unit(z), 1)), rel=1e-5)
    assert float(contrastive.byol_loss(tf.constant(p, tf.float32), tf.constant(3 * p, tf.float32))) == \
        pytest.approx(0.0, abs=1e-6)
    assert float(contrastive.byol_loss(tf.constant(p, tf.float32), tf.constant(-p, tf.float32))) == \
        pytest.approx(4.0, abs=1e-5)
