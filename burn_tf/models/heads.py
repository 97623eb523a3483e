"""The heads methods put on a backbone: classifiers (:func:`build_head`: BURN's g_θ and
l_φ, S2-BNN's l_φ, the supervised classifier), projection MLPs (:func:`build_projector`:
MoCo v2, BYOL, SimCLR v2) and the two custom layers of BURN's bounded-logits head
(:class:`L2Normalize`, :class:`CosineDense`).

The custom layers are registered with Keras here, in the models layer, so an exported
head (``classifier.keras``) loads once ``burn_tf.models`` is imported — no method module
needed. Keras looks a layer up by its registered name (``burn_tf>L2Normalize``,
``burn_tf>CosineDense``) before its module, so a saved head loads wherever the layer's code
lives.
"""

from __future__ import annotations

import tensorflow as tf

HEADS = ("mlp", "dense", "cosine")


def build_head(kind: str, input_dim: int, width: int, name: str, hidden: int | None = None) -> tf.keras.Model:
    """``mlp``: Linear → BN → ReLU → Linear, output width ``width`` and hidden width
    ``hidden`` (default ``width``: the released BURN code's 1024→2000→2000 student side,
    2048→2000→2000 teacher side); ``dense``: one linear layer (the paper's "classifier");
    ``cosine``: normalised input times column-normalised weights, no bias (CLD's
    ``NormedLinear``, ``--normlinear``: ``models/resnet_cifar.py`` l. 17-25)."""
    inputs = tf.keras.Input((input_dim,), name=f"{name}_features")
    if kind == "mlp":
        x = tf.keras.layers.Dense(hidden or width, name=f"{name}_fc1")(inputs)
        # synchronized: global-batch statistics under a tf.distribute strategy (no-op on one device).
        x = tf.keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, synchronized=True, name=f"{name}_bn")(x)
        x = tf.keras.layers.ReLU(name=f"{name}_relu")(x)
        x = tf.keras.layers.Dense(width, name=f"{name}_fc2")(x)
    elif kind == "dense":
        x = tf.keras.layers.Dense(width, name=f"{name}_fc")(inputs)
    elif kind == "cosine":
        x = CosineDense(width, name=f"{name}_fc")(L2Normalize(name=f"{name}_normalize")(inputs))
    else:
        raise ValueError(f"head {kind!r} is not one of {HEADS}")
    return tf.keras.Model(inputs, x, name=name)


def build_projector(input_dim: int, hidden: int, output: int, name: str, layers: int = 2,
                    batchnorm: bool = True, output_batchnorm: bool = False) -> tf.keras.Model:
    """An MLP projection head: (Linear → [BN] → ReLU) × (layers − 1) → Linear → [BN].

    MoCo v2: 2 layers, no BatchNorm; BYOL: 2 layers with BatchNorm; SimCLR v2: 3 layers with
    BatchNorm after every Linear, the last without centring (``simclr/tf2/model.py``
    ``ProjectionHead``: ``use_bias=False, use_bn=True``). A Linear followed by BatchNorm has
    no bias (the BN's β replaces it). BatchNorm is synchronized: global-batch statistics
    under a strategy (no-op on one device)."""
    inputs = tf.keras.Input((input_dim,), name=f"{name}_features")
    x = inputs
    for i in range(1, layers):
        x = tf.keras.layers.Dense(hidden, use_bias=not batchnorm, name=f"{name}_fc{i}")(x)
        if batchnorm:
            x = tf.keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, synchronized=True,
                                                   name=f"{name}_bn{i}")(x)
        x = tf.keras.layers.ReLU(name=f"{name}_relu{i}")(x)
    x = tf.keras.layers.Dense(output, use_bias=not output_batchnorm, name=f"{name}_fc{layers}")(x)
    if output_batchnorm:
        x = tf.keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, center=False, synchronized=True,
                                               name=f"{name}_bn{layers}")(x)
    return tf.keras.Model(inputs, x, name=name)


@tf.keras.utils.register_keras_serializable(package="burn_tf")
class L2Normalize(tf.keras.layers.Layer):
    """x / ‖x‖ along the last axis."""

    def call(self, x):
        return tf.math.l2_normalize(x, axis=-1, epsilon=1e-12)


@tf.keras.utils.register_keras_serializable(package="burn_tf")
class CosineDense(tf.keras.layers.Layer):
    """A linear layer without bias whose weight columns are L2-normalised: on unit inputs
    its outputs are cosines in [−1, 1] (DINO's weight-normalised last layer, g fixed to 1)."""

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)

    def build(self, input_shape):
        self.kernel = self.add_weight("kernel", (int(input_shape[-1]), self.units), initializer="glorot_uniform")

    def call(self, x):
        return tf.matmul(x, tf.math.l2_normalize(self.kernel, axis=0, epsilon=1e-12))

    def get_config(self):
        return {**super().get_config(), "units": self.units}
