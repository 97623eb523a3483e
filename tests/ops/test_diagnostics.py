"""burn_tf.ops.diagnostics: the collapse watches by hand."""

import math

import numpy as np
import pytest

from burn_tf.ops import diagnostics


def test_batch_mean_entropy_detects_collapse():
    collapsed = np.tile([[10.0, 0.0, 0.0, 0.0]], (16, 1)).astype(np.float32)
    spread = np.eye(4, dtype=np.float32).repeat(4, axis=0) * 10
    assert float(diagnostics.batch_mean_entropy(collapsed)) < 0.01
    assert float(diagnostics.batch_mean_entropy(spread)) == pytest.approx(math.log(4), abs=1e-3)


def test_target_entropies_tell_the_two_collapses_apart():
    C = 4
    one_class = np.log(np.tile([[1.0 - 3e-6, 1e-6, 1e-6, 1e-6]], (8, 1))).astype(np.float32)
    flat = np.full((8, C), -math.log(C), np.float32)
    spread = np.log(np.eye(C, dtype=np.float32).repeat(2, axis=0) * (1 - 4e-6) + 1e-6)
    # one class for every image: H(p̄) ≈ 0, E[H] ≈ 0
    assert float(diagnostics.entropy_of_mean(one_class)) < 1e-3 and float(diagnostics.mean_entropy(one_class)) < 1e-3
    # the same flat distribution for every image: H(p̄) = E[H] = log C, so no information
    assert float(diagnostics.entropy_of_mean(flat)) == pytest.approx(math.log(C), abs=1e-5)
    assert float(diagnostics.mean_entropy(flat)) == pytest.approx(math.log(C), abs=1e-5)
    # confident and spread: H(p̄) = log C, E[H] ≈ 0, mutual information ≈ log C
    mi = float(diagnostics.entropy_of_mean(spread)) - float(diagnostics.mean_entropy(spread))
    assert mi == pytest.approx(math.log(C), abs=1e-3)


def test_argmax_agreement_and_feature_std_by_hand():
    a = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]], np.float32)
    b = np.array([[5.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], np.float32)
    assert float(diagnostics.argmax_agreement(a, b)) == pytest.approx(0.5)
    # rows [2,0] and [0,3] normalise to [1,0] and [0,1]: std over the batch 0.5 per dimension
    spread = np.array([[2.0, 0.0], [0.0, 3.0]], np.float32)
    assert float(diagnostics.normalized_feature_std(spread)) == pytest.approx(0.5)
    assert float(diagnostics.normalized_feature_std(np.tile([[1.0, 2.0]], (5, 1)).astype(np.float32))) < 1e-6
