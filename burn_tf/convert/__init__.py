"""PyTorch checkpoints → Keras: a safe torch-free reader and per-architecture converters.

>>> from burn_tf.convert import load_torch_state_dict, convert_torchvision_resnet
>>> from burn_tf.models.resnet import resnet50
>>> model = convert_torchvision_resnet(load_torch_state_dict("moco_v2_800ep.pth.tar"), resnet50())

CLI: ``python -m burn_tf.convert --arch resnet50 --checkpoint X.pth --out Y.weights.h5``.

The reader (:mod:`burn_tf.convert.torch_checkpoint`) needs only numpy; the converters
import TensorFlow, lazily, when first used.
"""

from burn_tf.convert.torch_checkpoint import (
    CheckpointFormatError,
    UnsafeCheckpointError,
    extract_state_dict,
    load_torch_checkpoint,
    load_torch_state_dict,
    strip_prefix,
)

_CONVERTERS = (
    "CheckpointMismatchError",
    "assign_state_dict",
    "convert_efficientnet_lite",
    "convert_torchvision_resnet",
)

__all__ = [
    "CheckpointFormatError",
    "CheckpointMismatchError",
    "UnsafeCheckpointError",
    "assign_state_dict",
    "convert_efficientnet_lite",
    "convert_torchvision_resnet",
    "extract_state_dict",
    "load_torch_checkpoint",
    "load_torch_state_dict",
    "strip_prefix",
]


def __getattr__(name):
    if name in _CONVERTERS:
        from burn_tf.convert import converters

        return getattr(converters, name)
    raise AttributeError(f"module 'burn_tf.convert' has no attribute {name!r}")
