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
