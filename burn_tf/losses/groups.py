"""CLD's cross-level instance–group discrimination (Wang, Liu & Yu, CVPR 2021) as a pure
function of tensors: each view's features must pick, among the other view's group
centroids, the group the other view's copy of the image fell in. The groups (labels and
centroids) come from :func:`burn_tf.ops.clustering.group_features`.

>>> loss = cross_level_group_loss(features_a, features_b, groups_a, groups_b, temperature=0.2)
"""

from __future__ import annotations

import tensorflow as tf


def cross_level_group_loss(features_a, features_b, groups_a, groups_b, temperature: float = 0.2):
    """CLD's cross-level instance–group discrimination (Wang et al. 2021, Eq. 5;
    ``train_cifar_npid_cld.py``): view a's group features must pick, among the centroids
    of view b's groups, the group view b's copy of the image fell in, and vice versa —
    CE(f_a·C_bᵀ/T, y_b) and CE(f_b·C_aᵀ/T, y_a), averaged. ``groups_x`` = (labels,
    centroids) of view x; features are L2-normalised rows. The gradient reaches the
    features through the centroids too when they are functions of them (``kmeans``'s
    ``centroids="mean"``, as CLD's code); the grouping decides what is constant."""
    def one_way(features, groups):
        labels, centroids = groups
        logits = tf.matmul(features, centroids, transpose_b=True) / temperature
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))

    return (one_way(features_a, groups_b) + one_way(features_b, groups_a)) / 2.0
