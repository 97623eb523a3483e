"""Cosine nearest neighbours in a feature bank (weighted kNN, retrieval, spectral graphs).

Runs on TensorFlow in query chunks: ``tf.matmul`` (float32) against the whole bank, then
``tf.math.top_k``, so a 60k × 1024-d bank and 10k queries need one ``chunk × 60k``
similarity block at a time (≈ 256 MB by default). Ties between equal similarities at the
k-th place are broken by TF's ``top_k`` (lower index first).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from burn_tf.evaluate.features import check_features

# Bytes of one float32 similarity block [chunk, bank] when chunk_size is not given.
_SIMILARITY_BLOCK_BYTES = 256 * 2**20


def _auto_chunk(bank_size: int, chunk_size: int | None) -> int:
    if chunk_size is None:
        return int(max(1, min(1024, _SIMILARITY_BLOCK_BYTES // (4 * max(bank_size, 1)))))
    if int(chunk_size) <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    return int(chunk_size)


@tf.function(reduce_retracing=True)
def _topk_block(queries, bank, k, sort):
    sims = tf.matmul(queries, bank, transpose_b=True)
    return tf.math.top_k(sims, k=k, sorted=sort)


def cosine_topk(
    query_features,
    bank_features,
    k: int,
    *,
    chunk_size: int | None = None,
    normalize: bool = True,
    sort: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` cosine neighbours of every query in the bank → (similarities, indices).

    Both ``[Q, k]``; sorted by decreasing similarity unless ``sort=False`` (same set, in no
    particular order, ~15% cheaper). Computed in query chunks on TF (float32).
    """
    bank = check_features(bank_features, "bank features")
    queries = check_features(query_features, "query features")
    if queries.shape[1] != bank.shape[1]:
        raise ValueError(f"query features are {queries.shape[1]}-d but the bank is {bank.shape[1]}-d")
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be ≥ 1, got {k}")
    if k > len(bank):
        raise ValueError(f"k={k} is larger than the bank ({len(bank)} items); use k ≤ {len(bank)}")
    if normalize:
        bank = tf.math.l2_normalize(bank, axis=1)
        queries = tf.math.l2_normalize(queries, axis=1)
    bank = tf.convert_to_tensor(bank)
    chunk = _auto_chunk(len(bank_features), chunk_size)
    sims, index = [], []
    k_t = tf.constant(k, tf.int32)
    for start in range(0, int(queries.shape[0]), chunk):
        values, idx = _topk_block(queries[start : start + chunk], bank, k_t, bool(sort))
        sims.append(values.numpy())
        index.append(idx.numpy())
    return np.concatenate(sims), np.concatenate(index).astype(np.int64)
