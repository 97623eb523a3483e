"""Contrastive and EMA-regression losses (SimCLR v2, MoCo v2, InfoMin, BYOL), as pure
functions of tensors. The FIFO queue of negatives and the EMA update these methods keep are
in :mod:`burn_tf.ops.memory`.

- :func:`nt_xent` — SimCLR's normalized-temperature cross entropy over the 2N views of a
  batch (Chen et al., ICML 2020, Eq. 1); with ``keys_*`` gathered from every replica and
  ``first_index`` the replica's offset in the global batch, a replica computes its share of
  the global-batch loss (SimCLR's ``tpu_cross_replica_concat``).
- :func:`info_nce` — MoCo's InfoNCE with one positive key and a queue of negatives (He et
  al., CVPR 2020, Eq. 1; ``moco/builder.py``: logits ``[q·k₊, q·queue]/T``, label 0).
- :func:`byol_loss` — BYOL's 2 − 2·cos between a prediction and a target projection (Grill
  et al., NeurIPS 2020, Eq. 2).
"""

from __future__ import annotations

import tensorflow as tf

# Added to a logit to remove it from a softmax (a view is not its own negative); SimCLR's
# ``LARGE_NUM`` in ``objective.py``.
_MASKED_LOGIT = -1e9


def _unit(x):
    return tf.math.l2_normalize(tf.cast(x, tf.float32), axis=-1)


def nt_xent(queries_a, queries_b, keys_a=None, keys_b=None, first_index=0, temperature: float = 0.1):
    """Mean NT-Xent of the local views ``queries_a``/``queries_b`` ([n, d], row i of both is
    one image) against the keys of the whole global batch ``keys_a``/``keys_b`` ([N, d];
    default: the queries, i.e. one device). ``first_index``: where this replica's rows start
    in the global batch. Every view's positive is the other view of its image; its negatives
    are the other 2N − 2 views (itself is masked). Embeddings are L2-normalised here (cosine
    similarity). Averaged over the 2n local views: the mean over replicas is the global
    loss. Gradients flow through the keys as well as the queries."""
    queries_a, queries_b = _unit(queries_a), _unit(queries_b)
    keys_a = queries_a if keys_a is None else _unit(keys_a)
    keys_b = queries_b if keys_b is None else _unit(keys_b)
    local = tf.shape(queries_a)[0]
    total = tf.shape(keys_a)[0]
    positives = tf.range(local) + tf.cast(first_index, tf.int32)
    self_mask = tf.one_hot(positives, total) * _MASKED_LOGIT

    def one_direction(queries, keys_same_view, keys_other_view):
        other = tf.matmul(queries, keys_other_view, transpose_b=True) / temperature
        same = tf.matmul(queries, keys_same_view, transpose_b=True) / temperature + self_mask
        logits = tf.concat([other, same], axis=1)
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=positives, logits=logits)

    loss_a = one_direction(queries_a, keys_a, keys_b)
    loss_b = one_direction(queries_b, keys_b, keys_a)
    return tf.reduce_mean(tf.concat([loss_a, loss_b], axis=0))


def info_nce(queries, positive_keys, negatives, temperature: float = 0.2):
    """Mean InfoNCE: each query ([n, d]) against its positive key ([n, d]) and the shared
    negatives ([K, d], a queue). Queries and keys are L2-normalised here; the keys carry
    no gradient (the caller passes the momentum encoder's output)."""
    queries = _unit(queries)
    positive_keys = tf.stop_gradient(_unit(positive_keys))
    negatives = tf.stop_gradient(_unit(negatives))
    positive = tf.reduce_sum(queries * positive_keys, axis=1, keepdims=True)
    negative = tf.matmul(queries, negatives, transpose_b=True)
    logits = tf.concat([positive, negative], axis=1) / temperature
    labels = tf.zeros(tf.shape(queries)[:1], tf.int32)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def byol_loss(predictions, targets):
    """Mean of 2 − 2·cos(prediction, target) over the batch (BYOL Eq. 2); the target is
    a constant (the EMA network's projection)."""
    cosine = tf.reduce_sum(_unit(predictions) * tf.stop_gradient(_unit(targets)), axis=-1)
    return tf.reduce_mean(2.0 - 2.0 * cosine)
