"""Classifier heads: g_θ on the teacher's features and l_φ on the student's."""

from __future__ import annotations

import tensorflow as tf

HEADS = ("mlp", "dense")


def build_head(kind: str, input_dim: int, width: int, name: str, hidden: int | None = None) -> tf.keras.Model:
    """``mlp``: Linear → BN → ReLU → Linear, output width ``width`` and hidden width
    ``hidden`` (default ``width``: the released BURN code's 1024→2000→2000 student side,
    2048→2000→2000 teacher side); ``dense``: one linear layer (the paper's "classifier")."""
    inputs = tf.keras.Input((input_dim,), name=f"{name}_features")
    if kind == "mlp":
        x = tf.keras.layers.Dense(hidden or width, name=f"{name}_fc1")(inputs)
        # synchronized: global-batch statistics under a tf.distribute strategy (no-op on one device).
        x = tf.keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, synchronized=True, name=f"{name}_bn")(x)
        x = tf.keras.layers.ReLU(name=f"{name}_relu")(x)
        x = tf.keras.layers.Dense(width, name=f"{name}_fc2")(x)
    elif kind == "dense":
        x = tf.keras.layers.Dense(width, name=f"{name}_fc")(inputs)
    else:
        raise ValueError(f"head {kind!r} is not one of {HEADS}")
    return tf.keras.Model(inputs, x, name=name)
