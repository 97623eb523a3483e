"""ReActNet-A in Larq, block for block the reference `mobilenet/2_step2/reactnet.py`.

The network is a stem, 13 residual blocks and a global-average-pool head (``blocks`` keeps
the first N of them: a shallower net for the tests, never the paper's). Every block is

    RSign → binary 3×3 conv (stride s) → BN → + shortcut → RPReLU
          → RSign → binary 1×1 conv(s) → BN → + previous → RPReLU

with an AvgPool 2×2 shortcut where the block downsamples, and two C→C binary 1×1 convs
concatenated where the width doubles.

RSign is a Larq quantizer *with a learnable per-channel shift*, passed to
``QuantConv2D(input_quantizer=...)``: the conv then knows its input is 1-bit, so
``lq.models.summary`` counts its MACs as binary and Larq Compute Engine fuses
shift + sign + conv into one bit-packed op. Stage 1 keeps FP kernels; stage 2 binarizes
them as sign(W)·mean|W| per output channel (``MagnitudeAwareSign``).

Every block is named ``block_{i:02d}`` (its output layer is ``block_{i:02d}_out``), so
layer-wise probes and detection heads can read any block (:func:`block_output_names`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import larq as lq
import tensorflow as tf

# The stem's width, then each block's (at width multiplier 1).
BASE_CHANNELS = (32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
NUM_BLOCKS = len(BASE_CHANNELS) - 1
ACTIVATION_GRADIENTS = ("approx_sign", "ste")
# What a binary conv pads its ±1 input map with ("same" padding): 0 is the reference's zero
# padding, 1 what LCE runs fastest. Only these two: LCE's bit-packed binary conv takes a pad
# value of 0 or 1 and nothing else (larq_compute_engine's BConv2DParams: "pad_value: Must be
# 0 or 1"), so a backbone padded with any other value (a negative one, 0.5) cannot be
# exported as the bit-packed network it was trained as.
PAD_VALUES = (0.0, 1.0)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _NoStarvedWeightsWarning(logging.Filter):
    # larq warns when a binary kernel has no clipping constraint. The reference clips
    # nothing either: MagnitudeAwareSign's straight-through gradient is already zero for
    # |w| > 1, exactly as in the reference HardBinaryConv. One warning per conv is noise.
    def filter(self, record):
        return "starved weights" not in record.getMessage()


logging.getLogger("larq.layers_base").addFilter(_NoStarvedWeightsWarning())


def _sign_fn(activation_gradient: str):
    if activation_gradient == "approx_sign":
        # ReActNet / Bi-Real Net piecewise-polynomial surrogate: 2 - 2|x| on |x| < 1.
        return lq.quantizers.approx_sign
    if activation_gradient == "ste":
        # The BURN code's BinaryActivation: straight-through, clipped at |x| <= 1.
        return lambda x: lq.quantizers.ste_sign(x, clip_value=1.0)
    raise ValueError(
        f"activation_gradient={activation_gradient!r} is not one of {ACTIVATION_GRADIENTS}"
    )


@tf.keras.utils.register_keras_serializable(package="burn_tf")
class RSign(lq.quantizers.Quantizer):
    """ReAct-Sign: ``sign(x + b)`` with a learnable per-channel shift ``b`` (init 0).

    A Keras layer and a Larq quantizer at once: use it alone, or as the
    ``input_quantizer`` of a ``QuantConv2D`` so the conv is counted and converted as binary.

    >>> conv = lq.layers.QuantConv2D(64, 3, input_quantizer=RSign(), use_bias=False)
    """

    precision = 1

    def __init__(self, activation_gradient: str = "approx_sign", **kwargs):
        super().__init__(**kwargs)
        _sign_fn(activation_gradient)  # validate early, with the valid names
        self.activation_gradient = activation_gradient

    def build(self, input_shape):
        # Named "bias" on purpose: larq's summary counts MACs for every non-bias weight
        # of a conv, and this shift is an addition, not a multiplication.
        self.bias = self.add_weight(
            name="bias", shape=(int(input_shape[-1]),), initializer="zeros", trainable=True
        )
        super().build(input_shape)

    def call(self, inputs):
        return _sign_fn(self.activation_gradient)(inputs + self.bias)

    def get_config(self):
        return {**super().get_config(), "activation_gradient": self.activation_gradient}


@tf.keras.utils.register_keras_serializable(package="burn_tf")
class RPReLU(tf.keras.layers.Layer):
    """ReAct-PReLU: shift → per-channel PReLU → shift.

    The PReLU slope starts at 0.25 as in the reference. Keras' own ``PReLU`` starts at 0
    (a ReLU): the next RSign then sees only non-negative inputs, its sign is constant,
    the following BatchNorm divides by sqrt(eps) and the first gradients explode.
    """

    def __init__(self, alpha_initializer: float = 0.25, **kwargs):
        super().__init__(**kwargs)
        self.alpha_initializer = float(alpha_initializer)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.shift_in = self.add_weight(name="shift_in", shape=(channels,), initializer="zeros")
        self.alpha = self.add_weight(
            name="alpha",
            shape=(channels,),
            initializer=tf.keras.initializers.Constant(self.alpha_initializer),
        )
        self.shift_out = self.add_weight(
            name="shift_out", shape=(channels,), initializer="zeros"
        )
        super().build(input_shape)

    def call(self, inputs):
        x = inputs + self.shift_in
        x = tf.maximum(x, 0.0) + self.alpha * tf.minimum(x, 0.0)
        return x + self.shift_out

    def get_config(self):
        return {**super().get_config(), "alpha_initializer": self.alpha_initializer}


@tf.keras.utils.register_keras_serializable(package="burn_tf")
class Normalize(tf.keras.layers.Layer):
    """Maps images in [0, 1] to (x - mean) / std, so every model takes the same input."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD, **kwargs):
        super().__init__(**kwargs)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def call(self, inputs):
        return (tf.cast(inputs, self.compute_dtype) - self.mean) / self.std

    def get_config(self):
        return {**super().get_config(), "mean": list(self.mean), "std": list(self.std)}


@dataclasses.dataclass
class ReActNetConfig:
    """Everything that defines a ReActNet-A (the YAML section ``backbone`` holds these keys)."""

    stage: int = 2
    input_size: int = 224
    width_multiplier: float = 1.0
    activation_gradient: str = "approx_sign"
    # 0.0 is the reference (zero padding of the ±1 map); 1.0 is what LCE runs fastest.
    pad_values: float = 0.0
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    # How many of the 13 blocks to build, from the first. 13 is ReActNet-A (every shipped
    # config); fewer gives a shallower binary net ending in that block (4: 256·w features).
    # The tests use 4: a model's build and trace time grows with its blocks, not its width.
    blocks: int = NUM_BLOCKS

    def __post_init__(self):
        if not (isinstance(self.blocks, int) and not isinstance(self.blocks, bool) and 1 <= self.blocks <= NUM_BLOCKS):
            raise ValueError(f"backbone.blocks must be an integer in [1, {NUM_BLOCKS}], got {self.blocks!r}")
        if self.stage not in (1, 2):
            raise ValueError(f"backbone.stage must be 1 or 2, got {self.stage!r}")
        if not 16 <= int(self.input_size) <= 1024:
            raise ValueError(f"backbone.input_size must be in [16, 1024], got {self.input_size!r}")
        if self.width_multiplier <= 0:
            raise ValueError(f"backbone.width_multiplier must be > 0, got {self.width_multiplier!r}")
        if self.pad_values not in PAD_VALUES:
            raise ValueError(
                f"backbone.pad_values must be 0 (zero padding, the reference) or 1 (one-padding, what LCE "
                f"runs fastest), got {self.pad_values!r}"
            )
        _sign_fn(self.activation_gradient)

    def channels(self) -> list[int]:
        base = max(1, int(round(BASE_CHANNELS[0] * self.width_multiplier)))
        # Scale the 32-channel unit, not each entry, so "the width doubles" stays exact.
        return [base * (c // BASE_CHANNELS[0]) for c in BASE_CHANNELS[: self.blocks + 1]]


def block_strides(channels: Sequence[int]) -> list[int]:
    """Stride of each block: 2 where the width changes and is not 64·w."""
    return [
        2 if channels[i - 1] != channels[i] and channels[i] != channels[1] else 1
        for i in range(1, len(channels))
    ]


def _binary_conv(cfg: ReActNetConfig, filters: int, kernel_size: int, strides: int, name: str):
    return lq.layers.QuantConv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        pad_values=cfg.pad_values,
        use_bias=False,
        input_quantizer=RSign(cfg.activation_gradient, name="rsign"),
        kernel_quantizer="magnitude_aware_sign" if cfg.stage == 2 else None,
        kernel_constraint=None,
        kernel_initializer="glorot_normal",
        name=name,
    )


def _bn(cfg: ReActNetConfig, name: str):
    return tf.keras.layers.BatchNormalization(
        momentum=cfg.bn_momentum, epsilon=cfg.bn_epsilon, name=name
    )


def reactnet_block(x, cfg: ReActNetConfig, out_channels: int, strides: int, name: str):
    """One ReActNet-A block (see module docstring); returns its output tensor."""
    in_channels = int(x.shape[-1])
    if out_channels not in (in_channels, 2 * in_channels):
        raise ValueError(f"{name}: width may stay or double, got {in_channels}→{out_channels}")

    out1 = _binary_conv(cfg, in_channels, 3, strides, f"{name}_conv3x3")(x)
    out1 = _bn(cfg, f"{name}_bn1")(out1)
    shortcut = x
    if strides == 2:
        shortcut = tf.keras.layers.AveragePooling2D(2, 2, padding="same", name=f"{name}_pool")(x)
    out1 = tf.keras.layers.Add(name=f"{name}_add1")([shortcut, out1])
    out1 = RPReLU(name=f"{name}_rprelu1")(out1)

    # Where the width doubles the reference has two C→C binary 1×1 convs (own BN each)
    # on the same RSign output, each added to out1, then concatenated. That is exactly one
    # C→2C conv with a 2C-channel BN plus [out1, out1]: same function, same parameters
    # (one shared RSign shift), one larger bit-packed op for LCE.
    out2 = _binary_conv(cfg, out_channels, 1, 1, f"{name}_conv1x1")(out1)
    out2 = _bn(cfg, f"{name}_bn2")(out2)
    residual = out1
    if out_channels != in_channels:
        residual = tf.keras.layers.Concatenate(name=f"{name}_concat")([out1, out1])
    out2 = tf.keras.layers.Add(name=f"{name}_add2")([residual, out2])
    return RPReLU(name=f"{name}_out")(out2)


def reactnet_a(
    config: ReActNetConfig | None = None,
    *,
    include_top: bool = False,
    num_classes: int = 1000,
    name: str | None = None,
    **overrides,
) -> tf.keras.Model:
    """Builds ReActNet-A.

    Takes float images in [0, 1] of ``config.input_size`` pixels; returns the 1024·w-d
    pooled feature (``include_top=False``; the last block's width when ``blocks`` < 13) or
    ``num_classes`` logits.

    >>> model = reactnet_a(ReActNetConfig(stage=2, input_size=32, width_multiplier=0.25))
    >>> lq.models.summary(model)
    """
    cfg = dataclasses.replace(config or ReActNetConfig(), **overrides)
    channels = cfg.channels()
    inputs = tf.keras.Input((cfg.input_size, cfg.input_size, 3), name="image")
    x = Normalize(name="normalize")(inputs)
    # The stem stays full precision (its 3 input channels would lose too much as signs).
    x = tf.keras.layers.Conv2D(
        channels[0], 3, strides=2, padding="same", use_bias=False, name="stem_conv"
    )(x)
    x = _bn(cfg, "stem_bn")(x)
    for i, stride in enumerate(block_strides(channels), start=1):
        x = reactnet_block(x, cfg, channels[i], stride, name=f"block_{i:02d}")
    x = tf.keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if include_top:
        x = tf.keras.layers.Dense(num_classes, name="classifier")(x)
    model_name = name or f"reactnet_a_stage{cfg.stage}"
    model = tf.keras.Model(inputs, x, name=model_name)
    model.reactnet_config = cfg
    return model


def block_output_names(model: tf.keras.Model) -> list[str]:
    """Names of the block outputs of a ReActNet-A (13 unless ``blocks`` says fewer), in order."""
    names = [layer.name for layer in model.layers if layer.name.startswith("block_") and layer.name.endswith("_out")]
    if not names:
        raise ValueError(f"model {model.name!r} has no ReActNet-A block outputs (block_XX_out)")
    return names


def binary_convs(model: tf.keras.Model) -> list[lq.layers.QuantConv2D]:
    return [layer for layer in model.layers if isinstance(layer, lq.layers.QuantConv2D)]


def transfer_stage1_to_stage2(stage1: tf.keras.Model, stage2: tf.keras.Model) -> list[str]:
    """Copies every weight of a stage-1 ReActNet-A into a stage-2 one, by layer name.

    The reference code loads with ``strict=False`` and silently drops what does not match;
    here any layer of ``stage2`` that receives nothing, or a shape mismatch, raises naming
    the layer. Returns the names of the layers copied.
    """
    source = {layer.name: layer for layer in stage1.layers}
    copied = []
    for layer in stage2.layers:
        if not layer.weights:
            continue
        if layer.name not in source:
            raise ValueError(
                f"stage-2 layer {layer.name!r} has no counterpart in stage-1 model {stage1.name!r}"
            )
        src_weights = source[layer.name].get_weights()
        dst_shapes = [tuple(w.shape) for w in layer.get_weights()]
        src_shapes = [tuple(w.shape) for w in src_weights]
        if src_shapes != dst_shapes:
            raise ValueError(
                f"layer {layer.name!r}: stage-1 weight shapes {src_shapes} do not fit stage-2 {dst_shapes}"
            )
        layer.set_weights(src_weights)
        copied.append(layer.name)
    missing = [conv.name for conv in binary_convs(stage2) if conv.name not in copied]
    if missing:
        raise ValueError(f"binary convs received no stage-1 weights: {missing}")
    return copied
