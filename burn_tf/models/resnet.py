"""torchvision-compatible ResNets (v1.5) in Keras, built to load PyTorch checkpoints exactly.

torchvision's ResNet — the architecture of MoCo v2 and of most self-supervised ResNet-50
checkpoints, including BURN's teacher — is "ResNet v1.5": the bottleneck's stride sits in
its 3×3 conv. ``tf.keras.applications.ResNet50`` is ResNet v1 with the stride in the first
1×1 conv, so it cannot reproduce a torchvision checkpoint (the layer shapes match, the
function does not). This module rebuilds torchvision's network layer for layer:

* PyTorch's symmetric padding is an explicit ``ZeroPadding2D`` followed by a ``'valid'``
  conv / max-pool (Keras ``'same'`` pads asymmetrically under stride 2 and would shift
  every feature map by a pixel);
* BatchNorm uses torch's ``eps=1e-5`` and momentum 0.1 (Keras ``momentum=0.9``);
* every weighted layer is named after its torchvision parameter prefix with ``.`` → ``_``
  (``layer1.0.downsample.0`` → ``layer1_0_downsample_0``), so conversion is a name map
  (:func:`torch_name_map`); each block's output is the ReLU layer ``layer{s}_{b}_out``.

Input: float32 images in [0, 1], ``[B, H, W, 3]``; ImageNet mean/std normalisation is the
first layer. Output: the global-average-pooled feature, 2048-d (ResNet-50/101/152) or
512-d (ResNet-18/34).

``small_input_stem=True`` replaces the 7×7/2 conv + max-pool stem by a 3×3/1 conv without
max-pool (the CIFAR-style stem of SimCLR / solo-learn) for 28–64 px inputs; ``conv1`` then
holds a 3×3 kernel and loads from checkpoints trained the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from burn_tf.models.reactnet import IMAGENET_MEAN, IMAGENET_STD, Normalize

__all__ = ["RESNET_SPECS", "build_resnet", "resnet18", "resnet50", "torch_name_map"]

# depth -> (block type, blocks per stage)
RESNET_SPECS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
_EXPANSION = {"basic": 1, "bottleneck": 4}
BN_EPSILON = 1e-5  # torch.nn.BatchNorm2d default
BN_MOMENTUM = 0.9  # = 1 - torch's momentum 0.1


def _conv(x, filters: int, kernel: int, stride: int, name: str):
    pad = (kernel - 1) // 2
    if pad:
        x = tf.keras.layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
    return tf.keras.layers.Conv2D(
        filters, kernel, strides=stride, padding="valid", use_bias=False,
        kernel_initializer="he_normal", name=name,
    )(x)


def _bn(x, name: str, zero_gamma: bool = False):
    return tf.keras.layers.BatchNormalization(
        axis=-1, epsilon=BN_EPSILON, momentum=BN_MOMENTUM,
        gamma_initializer="zeros" if zero_gamma else "ones", name=name,
    )(x)


def _basic_block(x, planes: int, stride: int, name: str):
    in_ch = x.shape[-1]
    out = _conv(x, planes, 3, stride, f"{name}_conv1")
    out = _bn(out, f"{name}_bn1")
    out = tf.keras.layers.ReLU(name=f"{name}_relu1")(out)
    out = _conv(out, planes, 3, 1, f"{name}_conv2")
    out = _bn(out, f"{name}_bn2")
    shortcut = x
    if stride != 1 or in_ch != planes:
        shortcut = _conv(x, planes, 1, stride, f"{name}_downsample_0")
        shortcut = _bn(shortcut, f"{name}_downsample_1")
    out = tf.keras.layers.Add(name=f"{name}_add")([out, shortcut])
    return tf.keras.layers.ReLU(name=f"{name}_out")(out)


def _bottleneck(x, planes: int, stride: int, name: str):
    in_ch = x.shape[-1]
    out_ch = planes * _EXPANSION["bottleneck"]
    out = _conv(x, planes, 1, 1, f"{name}_conv1")
    out = _bn(out, f"{name}_bn1")
    out = tf.keras.layers.ReLU(name=f"{name}_relu1")(out)
    out = _conv(out, planes, 3, stride, f"{name}_conv2")  # v1.5: stride in the 3x3 conv
    out = _bn(out, f"{name}_bn2")
    out = tf.keras.layers.ReLU(name=f"{name}_relu2")(out)
    out = _conv(out, out_ch, 1, 1, f"{name}_conv3")
    out = _bn(out, f"{name}_bn3")
    shortcut = x
    if stride != 1 or in_ch != out_ch:
        shortcut = _conv(x, out_ch, 1, stride, f"{name}_downsample_0")
        shortcut = _bn(shortcut, f"{name}_downsample_1")
    out = tf.keras.layers.Add(name=f"{name}_add")([out, shortcut])
    return tf.keras.layers.ReLU(name=f"{name}_out")(out)


def build_resnet(
    depth: int = 50,
    input_shape: Sequence[int | None] = (224, 224, 3),
    small_input_stem: bool = False,
    include_preprocessing: bool = True,
    blocks: Sequence[int] | None = None,
    name: str | None = None,
) -> tf.keras.Model:
    """A torchvision ResNet-``depth`` feature extractor: images in [0, 1] → pooled feature.

    ``blocks`` overrides the blocks per stage (e.g. ``(1, 1, 1, 1)`` for a test-sized net
    with the same layout). ``include_preprocessing=False`` expects already-normalised input.
    """
    if depth not in RESNET_SPECS:
        raise ValueError(f"ResNet depth {depth} is not one of {sorted(RESNET_SPECS)}")
    block_type, stage_blocks = RESNET_SPECS[depth]
    if blocks is not None:
        if len(blocks) != 4 or any(int(b) < 1 for b in blocks):
            raise ValueError(f"blocks must be 4 positive counts, got {blocks!r}")
        stage_blocks = tuple(int(b) for b in blocks)
    block_fn = _bottleneck if block_type == "bottleneck" else _basic_block
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"input_shape must be (H, W, 3), got {input_shape!r}")

    inputs = tf.keras.Input(shape=input_shape, name="images")
    x = Normalize(IMAGENET_MEAN, IMAGENET_STD, name="normalize")(inputs) if include_preprocessing else inputs
    if small_input_stem:
        x = _conv(x, 64, 3, 1, "conv1")
        x = _bn(x, "bn1")
        x = tf.keras.layers.ReLU(name="relu")(x)
    else:
        x = _conv(x, 64, 7, 2, "conv1")
        x = _bn(x, "bn1")
        x = tf.keras.layers.ReLU(name="relu")(x)
        # torch pads max-pool with -inf; after ReLU every value is >= 0, so zeros are exact.
        x = tf.keras.layers.ZeroPadding2D(1, name="maxpool_pad")(x)
        x = tf.keras.layers.MaxPooling2D(3, strides=2, padding="valid", name="maxpool")(x)
    for stage, (planes, n) in enumerate(zip((64, 128, 256, 512), stage_blocks), start=1):
        for b in range(n):
            stride = 2 if (b == 0 and stage > 1) else 1
            x = block_fn(x, planes, stride, f"layer{stage}_{b}")
    # The pooling sums H·W values before it divides: under mixed_float16 that sum overflows
    # 65504 (measured: ResNet-50 with random weights at 224 px, last map up to 1.1e4 over 7×7
    # → inf features, NaN loss). Pooled in float32, the convolutions stay float16.
    outputs = tf.keras.layers.GlobalAveragePooling2D(name="avgpool", dtype="float32")(x)
    if name is None:
        name = f"resnet{depth}" + ("_small" if small_input_stem else "")
    return tf.keras.Model(inputs, outputs, name=name)


def resnet50(**kwargs) -> tf.keras.Model:
    """torchvision ResNet-50 (v1.5) feature extractor, 2048-d; see :func:`build_resnet`."""
    return build_resnet(50, **kwargs)


def resnet18(**kwargs) -> tf.keras.Model:
    """torchvision ResNet-18 feature extractor, 512-d; see :func:`build_resnet`."""
    return build_resnet(18, **kwargs)


def torch_name_map(model: tf.keras.Model) -> dict[str, str]:
    """``{keras layer name: torchvision parameter prefix}`` for every weighted layer."""
    out = {}
    for layer in model.layers:
        if layer.weights:
            # torchvision names have no underscores, so '.' -> '_' inverts uniquely.
            out[layer.name] = layer.name.replace("_", ".")
    return out

