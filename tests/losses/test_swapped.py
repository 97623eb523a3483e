"""burn_tf.losses.swapped (SwAV's swapped prediction) against a direct NumPy computation."""

import numpy as np
import pytest

from burn_tf.losses import swapped


def log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def test_swapped_prediction_is_the_mean_cross_entropy_of_every_other_view(rng):
    scores = [rng.standard_normal((5, 4)).astype(np.float32) for _ in range(3)]
    codes = [log_softmax(rng.standard_normal((5, 4))).astype(np.float32) for _ in range(2)]
    got = float(swapped.swapped_prediction_loss(codes, scores, temperature=0.1))
    terms = [-(np.exp(codes[i]) * log_softmax(scores[v] / 0.1)).sum(axis=1).mean()
             for i in range(2) for v in range(3) if v != i]
    assert got == pytest.approx(np.mean(terms), rel=1e-5)
    with pytest.raises(ValueError, match="views"):
        swapped.swapped_prediction_loss(codes, scores[:1])
