"""The detector: a binary backbone as a feature pyramid under keras-cv's RetinaNet.

An exported ReActNet-A is rebuilt at the detection input size from its metadata and its
weights copied (all of them are size independent); its P3/P4/P5 are the last block outputs
at strides 8/16/32 (``block_05_out``, ``block_11_out``, ``block_13_out``). A larq-zoo
student is rebuilt the same way; its P3/P4/P5 are its last layers at strides 8/16/32 (its
stage outputs), where its downsampling reaches exactly those sides. Another
functional Keras model is cloned at that size and names its levels (``pyramid_layers``)
unless it is a ``keras_cv.models.Backbone`` with ``pyramid_level_inputs``. The FPN and the
heads are keras-cv's with a configurable width; detections are decoded with per-class NMS
(:class:`PerClassNMS`) or keras-cv's class-agnostic ``NonMaxSuppression``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping

import numpy as np
import tensorflow as tf

from burn_tf.evaluate.metrics import box_iou_matrix
from burn_tf.models.larq_zoo import ZooStudentConfig, build_zoo_student, resolution_outputs
from burn_tf.models.reactnet import ReActNetConfig, reactnet_a

NMS_MODES = ("per_class", "class_agnostic")
LEVELS = ("P3", "P4", "P5")
LEVEL_STRIDES = {"P3": 8, "P4": 16, "P5": 32}
BOUNDING_BOX_FORMAT = "xyxy"


class DetectionConfigError(ValueError):
    """A bad argument to :func:`burn_tf.evaluate.detection.detect` (backbone, pyramid layers,
    sizes, data)."""


def reactnet_config(model, meta: Mapping):
    """The ReActNet-A config of ``model`` (attribute or export metadata), else None."""

    cfg = getattr(model, "reactnet_config", None)
    if cfg is not None:
        return cfg
    if meta.get("architecture") == "reactnet_a" and isinstance(meta.get("student"), Mapping):
        return ReActNetConfig(**meta["student"])
    return None


def zoo_config(model, meta: Mapping):
    """The larq-zoo student config of ``model`` (attribute or export metadata), else None."""
    cfg = getattr(model, "zoo_config", None)
    if cfg is not None:
        return cfg
    if meta.get("architecture") == "larq_zoo" and isinstance(meta.get("student"), Mapping):
        return ZooStudentConfig(**meta["student"])
    return None


def _rebuild_student(model, meta: Mapping, input_size: int):
    """A ReActNet-A or larq-zoo student of ``model``'s config rebuilt at ``input_size`` (fresh
    weights), else None; a size the student cannot take raises naming the model and limit."""
    cfg = reactnet_config(model, meta)
    if cfg is not None:
        return reactnet_a(dataclasses.replace(cfg, input_size=input_size), name=model.name)
    zoo = zoo_config(model, meta)
    if zoo is None:
        return None
    try:
        return build_zoo_student(zoo.name, input_size, zoo.stage, model_name=model.name)
    except ValueError as err:
        raise DetectionConfigError(f"backbone {model.name!r}: {err}") from None


def backbone_at_size(model: tf.keras.Model, meta: Mapping, input_size: int) -> tf.keras.Model:
    """A copy of the backbone (same weights) taking ``input_size`` × ``input_size`` images.

    Always a copy, so fine-tuning the detector never changes the caller's model.
    """
    rebuilt = _rebuild_student(model, meta, input_size)
    if rebuilt is not None:
        try:
            rebuilt.set_weights(model.get_weights())
        except ValueError as err:
            raise DetectionConfigError(
                f"backbone {model.name!r}: its weights do not fit its architecture rebuilt at "
                f"{input_size} px ({err})"
            ) from None
        return rebuilt
    shape = tuple(model.inputs[0].shape[1:])
    try:
        clone = tf.keras.models.clone_model(
            model, input_tensors=tf.keras.Input((input_size, input_size, shape[-1]), name="image")
        )
        clone.set_weights(model.get_weights())
    except Exception as err:  # clone_model raises many types for subclassed / odd models
        if shape[:2] == (input_size, input_size):
            return model  # cannot copy it: fine-tune it in place
        raise DetectionConfigError(
            f"backbone {model.name!r} takes {shape[:2]} images and could not be rebuilt at "
            f"{input_size} px ({type(err).__name__}: {err}); pass input_size={shape[0]}"
        ) from None
    return clone


def random_init_like(model: tf.keras.Model, meta: Mapping, input_size: int, seed: int) -> tf.keras.Model:
    """The same architecture as :func:`backbone_at_size` gives, freshly initialised (seeded):
    the floor a pretrained backbone has to beat. A ReActNet-A is rebuilt from its config;
    another functional model is cloned (``clone_model`` re-initialises every layer)."""
    tf.keras.utils.set_random_seed(int(seed))
    rebuilt = _rebuild_student(model, meta, input_size)
    if rebuilt is not None:
        return rebuilt
    channels = model.inputs[0].shape[-1]
    try:
        return tf.keras.models.clone_model(
            model, input_tensors=tf.keras.Input((input_size, input_size, channels), name="image"))
    except Exception as err:  # clone_model raises many types for subclassed / odd models
        raise DetectionConfigError(
            f"backbone {model.name!r} cannot be re-initialised for the random-init floor "
            f"({type(err).__name__}: {err}); pass random_init=False"
        ) from None


def _feature_maps(model: tf.keras.Model) -> list[tuple[str, tuple]]:
    """(layer name, output shape) of every layer with one 4-D output, in graph order."""
    found = []
    for layer in model.layers:
        try:
            shape = tuple(layer.output.shape)
        except (AttributeError, ValueError):
            continue
        if len(shape) == 4 and layer is not model.layers[0]:
            found.append((layer.name, shape))
    return found


def default_pyramid_layers(model: tf.keras.Model, input_size: int) -> dict[str, str] | None:
    """The last layer whose output has stride 8 / 16 / 32 (P3 / P4 / P5), if all exist.

    For a ReActNet-A this picks the last block output (``block_XX_out``) at each stride;
    for other models it is only a suggestion (see :func:`detect`'s ``pyramid_layers``).
    """
    maps = _feature_maps(model)
    blocks = [(n, s) for n, s in maps if n.startswith("block_") and n.endswith("_out")]
    candidates = blocks or maps
    levels = {}
    for level, stride in LEVEL_STRIDES.items():
        size = math.ceil(input_size / stride)
        names = [n for n, s in candidates if s[1] == size and s[2] == size]
        if not names:
            return None
        levels[level] = names[-1]
    return levels


def resolve_pyramid_layers(model: tf.keras.Model, pyramid_layers, input_size: int, reactnet: bool) -> dict[str, str]:
    """Validates / infers {"P3", "P4", "P5"} → layer name for ``model`` at ``input_size``."""
    if pyramid_layers is None:
        existing = getattr(model, "pyramid_level_inputs", None)
        if existing and all(level in existing for level in LEVELS):
            pyramid_layers = {level: existing[level] for level in LEVELS}
        elif reactnet:
            pyramid_layers = default_pyramid_layers(model, input_size)
            if pyramid_layers is None:
                raise DetectionConfigError(
                    f"ReActNet-A {model.name!r} at {input_size} px has no block outputs at "
                    "strides 8, 16 and 32"
                )
        elif getattr(model, "zoo_config", None) is not None:
            pyramid_layers = default_pyramid_layers(model, input_size)
            if pyramid_layers is None:
                sides = [side for _, side in resolution_outputs(model)]
                want = [math.ceil(input_size / stride) for stride in LEVEL_STRIDES.values()]
                raise DetectionConfigError(
                    f"larq-zoo {model.zoo_config.name} at {input_size} px has feature maps of sides {sides}, not "
                    f"the {want} of strides 8, 16 and 32 that P3-P5 need (its downsampling does not divide "
                    f"{input_size} px evenly); choose an input_size it does (e.g. a multiple of 32: "
                    f"{32 * max(2, math.ceil(input_size / 32))}) or pass pyramid_layers"
                )
        else:
            suggestion = default_pyramid_layers(model, input_size)
            hint = f" (the last layers at those strides are {suggestion})" if suggestion else ""
            raise DetectionConfigError(
                f"backbone {model.name!r} is not a ReActNet-A and names no pyramid levels: pass "
                "pyramid_layers={'P3': <layer at stride 8>, 'P4': <stride 16>, 'P5': <stride 32>} "
                f"or three layer names{hint}"
            )
    if isinstance(pyramid_layers, str):
        pyramid_layers = [p.strip() for p in pyramid_layers.split(",")]
    if isinstance(pyramid_layers, (list, tuple)):
        if len(pyramid_layers) != 3:
            raise DetectionConfigError(
                f"pyramid_layers needs three layer names (P3, P4, P5), got {list(pyramid_layers)}"
            )
        pyramid_layers = dict(zip(LEVELS, pyramid_layers))
    if not isinstance(pyramid_layers, Mapping) or sorted(pyramid_layers) != sorted(LEVELS):
        raise DetectionConfigError(
            f"pyramid_layers must map exactly P3, P4, P5 to layer names, got {pyramid_layers!r}"
        )
    names = {layer.name for layer in model.layers}
    for level in LEVELS:
        name = pyramid_layers[level]
        if name not in names:
            close = [n for n in names if n.endswith("_out")] or sorted(names)[:20]
            raise DetectionConfigError(
                f"pyramid level {level}: backbone {model.name!r} has no layer {name!r} "
                f"(some of its layers: {sorted(close)[:20]})"
            )
        shape = tuple(model.get_layer(name).output.shape)
        want = math.ceil(input_size / LEVEL_STRIDES[level])
        if len(shape) != 4 or shape[1] != want or shape[2] != want:
            raise DetectionConfigError(
                f"pyramid level {level} = layer {name!r} has output shape {shape}; at "
                f"{input_size} px it must be [batch, {want}, {want}, C] (stride {LEVEL_STRIDES[level]})"
            )
    return {level: str(pyramid_layers[level]) for level in LEVELS}


def _keras_cv():
    # keras-cv prints "Using TensorFlow backend" and is slow to import: only when detecting.
    import keras_cv

    return keras_cv


def pyramid_backbone(model: tf.keras.Model, pyramid_layers: Mapping[str, str]):
    """Wraps ``model`` as a ``keras_cv.models.Backbone`` with ``pyramid_level_inputs``.

    The wrapper shares ``model``'s layers (and weights); RetinaNet reads the named layers'
    outputs as P3–P5.
    """
    keras_cv = _keras_cv()

    class PyramidBackbone(keras_cv.models.Backbone):
        def __init__(self, inner, levels, **kwargs):
            super().__init__(inputs=inner.inputs, outputs=inner.outputs, **kwargs)
            self.pyramid_level_inputs = dict(levels)

    return PyramidBackbone(model, pyramid_layers, name=f"{model.name}_pyramid")


# ------------------------------------------------------------------------- the detector


class FeaturePyramid(tf.keras.layers.Layer):
    """keras-cv's RetinaNet FPN (P3–P5 lateral + top-down, P6/P7 by stride-2 convs on C5)
    with a configurable width (keras-cv's is fixed at 256)."""

    def __init__(self, width: int = 256, **kwargs):
        super().__init__(**kwargs)
        self.width = int(width)
        conv = tf.keras.layers.Conv2D
        self.lateral = [conv(self.width, 1, 1, "same", name=f"lateral_c{i}") for i in (3, 4, 5)]
        self.output_convs = [conv(self.width, 3, 1, "same", name=f"output_p{i}") for i in (3, 4, 5)]
        self.conv_p6 = conv(self.width, 3, 2, "same", name="conv_p6")
        self.conv_p7 = conv(self.width, 3, 2, "same", name="conv_p7")
        self.upsample = tf.keras.layers.UpSampling2D(2)

    def call(self, inputs, training=False):
        c3, c4, c5 = (inputs[k] for k in LEVELS) if isinstance(inputs, Mapping) else inputs
        p3, p4, p5 = (lat(c) for lat, c in zip(self.lateral, (c3, c4, c5)))
        p4 = p4 + self.upsample(p5)
        p3 = p3 + self.upsample(p4)
        p3, p4, p5 = (conv(p) for conv, p in zip(self.output_convs, (p3, p4, p5)))
        p6 = self.conv_p6(c5)
        p7 = self.conv_p7(tf.nn.relu(p6))
        return p3, p4, p5, p6, p7

    def get_config(self):
        return {**super().get_config(), "width": self.width}


class PredictionHead(tf.keras.layers.Layer):
    """keras-cv's RetinaNet head (``depth`` 3×3 ReLU convs, then a 3×3 prediction conv,
    shared over levels) with a configurable width."""

    def __init__(self, output_filters: int, bias_initializer, width: int = 256, depth: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.output_filters, self.width, self.depth = int(output_filters), int(width), int(depth)
        self.bias_initializer = tf.keras.initializers.get(bias_initializer)
        self.convs = [
            tf.keras.layers.Conv2D(self.width, 3, padding="same", kernel_initializer="orthogonal",
                                   activation="relu", name=f"conv_{i}")
            for i in range(self.depth)
        ]
        self.prediction = tf.keras.layers.Conv2D(
            self.output_filters, 3, padding="same", kernel_initializer="orthogonal",
            bias_initializer=self.bias_initializer, name="prediction",
        )

    def call(self, x, training=False):
        for conv in self.convs:
            x = conv(x)
        return self.prediction(x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.output_filters,)

    def get_config(self):
        return {**super().get_config(), "output_filters": self.output_filters, "width": self.width,
                "depth": self.depth, "bias_initializer": tf.keras.initializers.serialize(self.bias_initializer)}


class PerClassNMS(tf.keras.layers.Layer):
    """RetinaNet prediction decoder with per-class NMS (``combined_non_max_suppression``);
    same inputs and outputs as keras-cv's class-agnostic ``NonMaxSuppression``."""

    def __init__(self, bounding_box_format: str, iou_threshold: float = 0.5,
                 confidence_threshold: float = 0.05, max_detections: int = 100, **kwargs):
        super().__init__(**kwargs)
        self.bounding_box_format = bounding_box_format
        self.iou_threshold = float(iou_threshold)
        self.confidence_threshold = float(confidence_threshold)
        self.max_detections = int(max_detections)
        self.built = True

    def call(self, box_prediction, class_prediction, images=None, image_shape=None):
        bounding_box = _keras_cv().bounding_box
        boxes = bounding_box.convert_format(box_prediction, source=self.bounding_box_format,
                                            target="yxyx", images=images, image_shape=image_shape)
        scores = tf.sigmoid(tf.cast(class_prediction, tf.float32))
        boxes, scores, classes, valid = tf.image.combined_non_max_suppression(
            tf.cast(boxes, tf.float32)[:, :, None, :], scores,
            max_output_size_per_class=self.max_detections, max_total_size=self.max_detections,
            iou_threshold=self.iou_threshold, score_threshold=self.confidence_threshold,
            clip_boxes=False,
        )
        boxes = bounding_box.convert_format(boxes, source="yxyx", target=self.bounding_box_format,
                                            images=images, image_shape=image_shape)
        return {"boxes": boxes, "confidence": scores, "classes": classes, "num_detections": valid}

    def get_config(self):
        return {**super().get_config(), "bounding_box_format": self.bounding_box_format,
                "iou_threshold": self.iou_threshold, "confidence_threshold": self.confidence_threshold,
                "max_detections": self.max_detections}


def anchor_generator(anchor_size: float):
    """keras-cv's RetinaNet anchors (3 scales × 3 aspect ratios, strides 8–128) with the P3
    anchor side ``anchor_size`` (keras-cv's default is 32) doubling per level."""
    keras_cv = _keras_cv()
    return keras_cv.layers.AnchorGenerator(
        bounding_box_format=BOUNDING_BOX_FORMAT,
        sizes=[float(anchor_size) * 2**i for i in range(5)],
        scales=[2**x for x in (0, 1 / 3, 2 / 3)],
        aspect_ratios=[0.5, 1.0, 2.0],
        strides=[2**i for i in range(3, 8)],
        clip_boxes=True,
    )


def build_retinanet(
    backbone_model: tf.keras.Model,
    pyramid_layers: Mapping[str, str],
    num_classes: int,
    *,
    anchor_size: float,
    head_width: int = 64,
    head_depth: int = 3,
    nms: str = "per_class",
    nms_iou: float = 0.5,
    score_threshold: float = 0.05,
    max_detections: int = 100,
):
    """keras-cv ``RetinaNet`` on ``backbone_model`` (boxes in pixel xyxy)."""
    keras_cv = _keras_cv()
    if nms == "per_class":
        decoder = PerClassNMS(BOUNDING_BOX_FORMAT, nms_iou, score_threshold, max_detections)
    elif nms == "class_agnostic":
        decoder = keras_cv.layers.NonMaxSuppression(
            bounding_box_format=BOUNDING_BOX_FORMAT, from_logits=True, iou_threshold=nms_iou,
            confidence_threshold=score_threshold, max_detections=max_detections,
        )
    else:
        raise DetectionConfigError(f"nms must be one of {NMS_MODES}, got {nms!r}")
    prior = tf.keras.initializers.Constant(-np.log((1 - 0.01) / 0.01))
    return keras_cv.models.RetinaNet(
        backbone=pyramid_backbone(backbone_model, pyramid_layers),
        num_classes=num_classes,
        bounding_box_format=BOUNDING_BOX_FORMAT,
        anchor_generator=anchor_generator(anchor_size),
        prediction_decoder=decoder,
        feature_pyramid=FeaturePyramid(head_width, name="feature_pyramid"),
        classification_head=PredictionHead(9 * num_classes, prior, head_width, head_depth, name="classification_head"),
        box_head=PredictionHead(9 * 4, "zeros", head_width, head_depth, name="box_head"),
    )


def anchor_coverage(boxes: Iterable[np.ndarray], input_size: int, anchor_size: float, threshold: float = 0.5) -> float:
    """Fraction of ground-truth boxes whose best anchor has IoU ≥ ``threshold`` (boxes
    below it never become positives for RetinaNet's label encoder: pick ``anchor_size``)."""
    anchors = anchor_generator(anchor_size)(image_shape=(input_size, input_size, 3))
    anchors = np.concatenate([np.asarray(a) for a in anchors.values()])
    hit = total = 0
    for b in boxes:
        b = np.asarray(b, np.float64).reshape(-1, 4)
        if len(b):
            hit += int((box_iou_matrix(anchors, b).max(axis=0) >= threshold).sum())
            total += len(b)
    return hit / total if total else float("nan")
