"""burn_tf.losses.instance (NPID's instance discrimination) against direct NumPy computations."""

import numpy as np
import pytest

from burn_tf.losses import instance


def log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_instance_discrimination_full_bank_and_sampled_negatives(rng):
    features = unit(rng.standard_normal((3, 4))).astype(np.float32)
    bank = unit(rng.standard_normal((6, 4))).astype(np.float32)
    index = np.array([4, 0, 2])
    full = float(instance.instance_discrimination_loss(features, bank, index, temperature=0.1))
    expected = -log_softmax(features @ bank.T / 0.1)[np.arange(3), index].mean()
    assert full == pytest.approx(expected, rel=1e-5)
    negatives = np.array([[1, 2], [5, 5], [3, 1]])
    sampled = float(instance.instance_discrimination_loss(features, bank, index, 0.1, negatives))
    logits = np.stack([np.concatenate([[features[b] @ bank[index[b]]], bank[negatives[b]] @ features[b]])
                       for b in range(3)]) / 0.1
    assert sampled == pytest.approx(-log_softmax(logits)[:, 0].mean(), rel=1e-5)
    from_rows = float(instance.sampled_instance_loss(features, bank[index], bank[negatives], 0.1))
    assert from_rows == pytest.approx(sampled, rel=1e-6)


def test_nce_loss_is_lemniscates_criterion_with_z_from_the_first_batch(rng):
    # lemniscate.pytorch lib/NCEAverage.py l. 19-36 and lib/NCECriterion.py l. 12-37, in NumPy:
    # out = exp(w·x/T), Z = mean(out)·N once, P = out/Z; loss = −(Σ log(P0/(P0 + K/N + eps))
    # + Σ log((K/N)/(Pk + K/N + eps))) / B.
    n_data, t, eps = 50, 0.1, 1e-7
    features = unit(rng.standard_normal((3, 4))).astype(np.float32)
    positive = unit(rng.standard_normal((3, 4))).astype(np.float32)
    negatives = unit(rng.standard_normal((3, 5, 4))).astype(np.float32)
    weight = np.concatenate([positive[:, None], negatives], axis=1)
    out = np.exp(np.einsum("bkd,bd->bk", weight, features) / t)
    z = out.mean() * n_data
    estimate = instance.estimate_nce_normaliser(features, positive, negatives, t, n_data)
    assert float(estimate) == pytest.approx(z, rel=1e-5)
    p = out / z
    noise = 5 / n_data
    expected = -(np.log(p[:, 0] / (p[:, 0] + noise + eps)).sum() + np.log(noise / (p[:, 1:] + noise + eps)).sum()) / 3
    got = float(instance.nce_loss(features, positive, negatives, t, z, n_data))
    assert got == pytest.approx(expected, rel=1e-5)
    # A larger Z (a later batch's features do not re-estimate it) changes the loss: Z is an input.
    assert float(instance.nce_loss(features, positive, negatives, t, 2 * z, n_data)) != pytest.approx(got)
