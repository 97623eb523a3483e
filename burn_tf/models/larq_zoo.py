"""Binary students from larq-zoo, built by name, in the two stages of the paper.

:func:`build_zoo_student` builds a larq-zoo network (:data:`ZOO_STUDENTS`: the QuickNet
family, Bi-Real Net, Real-to-Binary Net, BinaryDenseNet28/37, XNOR-Net) offline
(``weights=None``) at the run's input size, without the zoo's classifier, as the same kind
of feature extractor as ReActNet-A: float images in [0, 1] ``[B, S, S, 3]`` → ImageNet
normalisation (what larq-zoo's ``preprocess_input`` does after its crop: ``(x - mean) /
std`` of 0-255 pixels) → the zoo's layers → global average pool → features ``[B, D]``,
the vector the zoo's classifier reads (QuickNet's head has a ReLU before its pool; so
does this).

Two stages, as the paper trains ReActNet-A, set through the factories' quantizer fields
(a subclass of larq-zoo's factory; larq-zoo itself is not edited): stage 1 keeps every
binary layer's ``input_quantizer`` (binary activations) and sets ``kernel_quantizer`` and
``kernel_constraint`` to None (latent real weights); stage 2 is the zoo's own quantizers.
The layers larq-zoo keeps full precision (``ZooStudent.full_precision``) stay so in both.
Every layer is named as in a fresh session (Keras's default name, counted within this
model), so the names are the same in both stages and in every process, and stage 2
starts from stage 1 by layer name as ReActNet-A does (``transfer_stage1_to_stage2``).

Intermediate taps (layer-wise probes, detection pyramids): :func:`resolution_outputs`, the
last layer at each spatial resolution — each stage's output, whatever the zoo names it.

An architecture that cannot take the input size (:func:`zoo_min_input_size`) or cannot be
a binary student (:data:`REFUSED_ZOO_MODELS`) raises a ValueError naming it and the limit.

>>> model = build_zoo_student("QuickNet", input_size=32, stage=1)
>>> model.output_shape
(None, 512)
"""

from __future__ import annotations

import collections
import dataclasses
import math
import re
import warnings
from collections.abc import Callable

import tensorflow as tf
from larq_zoo.literature.birealnet import BiRealNetFactory
from larq_zoo.literature.densenet import BinaryDenseNet28Factory, BinaryDenseNet37Factory
from larq_zoo.literature.real_to_bin_nets import RealToBinNetBNNFactory
from larq_zoo.literature.xnornet import XNORNetFactory
from larq_zoo.sota.quicknet import QuickNetFactory, QuickNetLargeFactory, QuickNetSmallFactory
from zookeeper import factory

from burn_tf.models.reactnet import Normalize

ZOO_STAGES = (1, 2)
MAX_INPUT_SIZE = 1024


def _same(size: int, stride: int) -> int:
    return math.ceil(size / stride)


def _valid(size: int, kernel: int, stride: int) -> int:
    return (size - kernel) // stride + 1


def _quicknet_sizes(s: int) -> list[int]:
    # Stem: two stride-2 convs; each of the 3 transitions: MaxPool 2×2 stride 1 ("valid",
    # one pixel less) then a stride-2 blur-pool depthwise conv.
    sizes = [_same(s, 2)]
    sizes.append(_same(sizes[-1], 2))
    for _ in range(3):
        sizes.append(_valid(sizes[-1], 2, 1))
        sizes.append(_same(sizes[-1], 2))
    return sizes


def _resnet18_like_sizes(s: int) -> list[int]:
    # Bi-Real Net, Real-to-Binary Net: 7×7 stride-2 conv, 3×3 stride-2 max-pool ("same"),
    # three stride-2 stages ("same" convs, 2×2 stride-2 "same" average-pool shortcuts).
    sizes = [_same(s, 2)]
    for _ in range(4):
        sizes.append(_same(sizes[-1], 2))
    return sizes


def _densenet_sizes(s: int) -> list[int]:
    # larq-zoo builds a 3×3 stride-1 stem below 50 px, else 7×7 stride 2 + 3×3 stride-2
    # max-pool; then 3 transitions with a 2×2 stride-2 "valid" max-pool.
    sizes = [s] if s < 50 else [_same(s, 2), _same(_same(s, 2), 2)]
    for _ in range(3):
        sizes.append(_valid(sizes[-1], 2, 2))
    return sizes


def _xnornet_sizes(s: int) -> list[int]:
    # AlexNet layout: 11×11 stride-4 conv, three 3×3 stride-2 "valid" max-pools, and the
    # binary 6×6 "valid" conv (4096 filters) that ends the network without its top.
    sizes = [_same(s, 4)]
    for _ in range(3):
        sizes.append(_valid(sizes[-1], 3, 2))
    sizes.append(_valid(sizes[-1], 6, 1))
    return sizes


@dataclasses.dataclass(frozen=True)
class ZooStudent:
    """A larq-zoo network as a binary student: how it is built, what it may take, what it is.

    ``factory``: larq-zoo's factory (stage 2 = its own quantizers). ``spatial_sizes``: the
    feature-map sizes along the downsampling path for an input size (each must be ≥ 1).
    ``feature_dim``: D of the pooled features. ``full_precision``: the layers larq-zoo keeps
    full precision (in both stages). ``relu_before_pool``: the zoo's head applies a ReLU
    before its global pool. ``imagenet_top1`` (%) / ``parameters``: larq-zoo 2.4.0's
    published ImageNet numbers (its constructors' docstrings; 224 px, with the classifier).
    ``pixel1_ms``: LCE's published single-thread latency on a Pixel 1 at 224 px
    (larq/compute-engine README.md), where there is one.
    """

    name: str
    factory: type
    spatial_sizes: Callable[[int], list[int]]
    feature_dim: int
    full_precision: str
    relu_before_pool: bool = False
    imagenet_top1: float | None = None
    parameters: int | None = None
    pixel1_ms: float | None = None


_QUICKNET_FP = ("the stem (3×3 stride-2 conv, 3×3 stride-2 depthwise conv, 1×1 conv) and each of the 3 "
                "transitions (fixed blur-pool depthwise conv, 1×1 conv); shortcuts are identities")
_RESNET18_FP = ("the 7×7 stem conv and the 1×1 conv of each of the 3 downsampling shortcuts (after a 2×2 "
                "average pool); the other shortcuts are identities")
_DENSENET_FP = "the stem conv and the 1×1 conv of each of the 3 transitions; shortcuts are concatenations"

ZOO_STUDENTS: dict[str, ZooStudent] = {
    s.name: s
    for s in (
        ZooStudent("QuickNetSmall", QuickNetSmallFactory, _quicknet_sizes, 512, _QUICKNET_FP,
                   relu_before_pool=True, imagenet_top1=59.4, parameters=12_655_688, pixel1_ms=16.8),
        ZooStudent("QuickNet", QuickNetFactory, _quicknet_sizes, 512, _QUICKNET_FP,
                   relu_before_pool=True, imagenet_top1=63.3, parameters=13_234_088, pixel1_ms=25.5),
        ZooStudent("QuickNetLarge", QuickNetLargeFactory, _quicknet_sizes, 512, _QUICKNET_FP,
                   relu_before_pool=True, imagenet_top1=66.9, parameters=23_342_248, pixel1_ms=44.2),
        ZooStudent("BiRealNet", BiRealNetFactory, _resnet18_like_sizes, 512, _RESNET18_FP,
                   imagenet_top1=57.47, parameters=11_699_112, pixel1_ms=41.6),
        ZooStudent("RealToBinaryNet", RealToBinNetBNNFactory, _resnet18_like_sizes, 512,
                   _RESNET18_FP + "; and the two dense layers of each binary conv's data-dependent "
                   "scaling branch", imagenet_top1=65.01, parameters=11_995_624),
        ZooStudent("BinaryDenseNet28", BinaryDenseNet28Factory, _densenet_sizes, 576, _DENSENET_FP,
                   imagenet_top1=60.91, parameters=5_150_504),
        ZooStudent("BinaryDenseNet37", BinaryDenseNet37Factory, _densenet_sizes, 640, _DENSENET_FP,
                   imagenet_top1=62.89, parameters=8_734_120),
        ZooStudent("XNORNet", XNORNetFactory, _xnornet_sizes, 4096, "the first (11×11) conv; no shortcuts",
                   imagenet_top1=44.96, parameters=62_396_768),
    )
}

#: larq-zoo models that cannot be a binary student here, and why.
REFUSED_ZOO_MODELS: dict[str, str] = {
    "DoReFaNet": "its activations are 2-bit (DoReFaQuantizer k_bit=2), not 1-bit: the two-stage binary "
                 "schedule (binary activations, then binary weights) does not apply, and LCE runs its "
                 "2-bit layers as float convolutions",
}


def _check_name(name: str) -> ZooStudent:
    if name in REFUSED_ZOO_MODELS:
        raise ValueError(f"larq-zoo model {name!r} cannot be a binary student: {REFUSED_ZOO_MODELS[name]}")
    if name not in ZOO_STUDENTS:
        raise ValueError(f"larq-zoo model {name!r} is not one of the students {tuple(ZOO_STUDENTS)}")
    return ZOO_STUDENTS[name]


def zoo_min_input_size(name: str) -> int:
    """The smallest input size (pixels) at which larq-zoo's ``name`` builds."""
    student = _check_name(name)
    for size in range(1, MAX_INPUT_SIZE + 1):
        if min(student.spatial_sizes(size)) >= 1:
            return size
    raise ValueError(f"larq-zoo model {name!r} builds at no input size up to {MAX_INPUT_SIZE}")


@dataclasses.dataclass(frozen=True)
class ZooStudentConfig:
    """What defines a larq-zoo student (kept on the built model as ``zoo_config``)."""

    name: str
    input_size: int = 224
    stage: int = 2

    def __post_init__(self):
        _check_name(self.name)
        if self.stage not in ZOO_STAGES:
            raise ValueError(f"stage must be one of {ZOO_STAGES}, got {self.stage!r}")
        minimum = zoo_min_input_size(self.name)
        if not minimum <= int(self.input_size) <= MAX_INPUT_SIZE:
            raise ValueError(
                f"larq-zoo {self.name} cannot take {self.input_size!r} px inputs: it needs at least "
                f"{minimum} px (below that its downsampling shrinks a feature map to nothing) and at "
                f"most {MAX_INPUT_SIZE}"
            )


def zoo_stage_factory(name: str, stage: int) -> type:
    """larq-zoo's factory of ``name`` for ``stage``: 2 is the zoo's own; 1 a subclass with
    ``kernel_quantizer`` and ``kernel_constraint`` None (the ``input_quantizer`` stays)."""
    base = _check_name(name).factory
    if stage not in ZOO_STAGES:
        raise ValueError(f"stage must be one of {ZOO_STAGES}, got {stage!r}")
    if stage == 2:
        return base
    return factory(type(f"{base.__name__}Stage1", (base,), {"kernel_quantizer": None, "kernel_constraint": None}))


def _default_names(model: tf.keras.Model) -> dict[str, str]:
    """Old name → the name the layer gets in a fresh session: Keras's own stem (``quant_conv2d``)
    counted from 0 within this model, in layer order. Explicit names (Real-to-Binary Net's)
    stay as they are."""
    counts: collections.Counter = collections.Counter()
    names = {}
    for layer in model.layers:
        stem = re.sub(r"_\d+$", "", layer.name)
        names[layer.name] = stem if counts[stem] == 0 else f"{stem}_{counts[stem]}"
        counts[stem] += 1
    if len(set(names.values())) != len(names):
        raise ValueError(f"larq-zoo model {model.name!r}: its layer names do not map to unique names")
    return names


def _rename(value, names: dict[str, str]):
    """``value`` (a node of a functional config's ``inbound_nodes``) with layer names renamed."""
    if isinstance(value, str):
        return names.get(value, value)
    if isinstance(value, (list, tuple)):
        return [_rename(v, names) for v in value]
    if isinstance(value, dict):
        return {k: _rename(v, names) for k, v in value.items()}
    return value


def _is_identity_lambda(layer: tf.keras.layers.Layer) -> bool:
    if not isinstance(layer, tf.keras.layers.Lambda):
        return False
    probe = object()
    try:
        return layer.function(probe) is probe
    except Exception:  # any other function is not the identity
        return False


def _entry(layer: tf.keras.layers.Layer, inbound: list) -> dict:
    """The functional-config entry of a new ``layer`` called on the tensor ``inbound``."""
    return {**tf.keras.layers.serialize(layer), "name": layer.name, "inbound_nodes": [[[*inbound, {}]]]}


def _student_config(zoo: tf.keras.Model, student: ZooStudent, name: str) -> dict:
    """The functional config of ``image → Normalize → zoo layers → [ReLU] → pool``.

    Every zoo layer keeps its config under its default name (:func:`_default_names`); an
    identity ``Lambda`` (Real-to-Binary Net names its block outputs with one) becomes an
    ``Identity`` layer of the same name, so the model loads with ``safe_mode``.
    """
    with warnings.catch_warnings():
        # QuickNet's blur-pool initializer is a registered function, not an Initializer
        # object; Keras warns, and serialises it by its registered name.
        warnings.filterwarnings("ignore", message=".*keras.initializers.serialize.*", category=UserWarning)
        config = zoo.get_config()
    names = _default_names(zoo)
    (zoo_input,) = config["input_layers"]
    names[zoo_input[0]] = "normalize"
    layers = []
    for entry in config["layers"]:
        if entry["name"] == zoo_input[0]:
            layers.append({**entry, "name": "image", "config": {**entry["config"], "name": "image"}})
            layers.append(_entry(Normalize(name="normalize"), ["image", 0, 0]))
            continue
        new_name = names[entry["name"]]
        if _is_identity_lambda(zoo.get_layer(entry["name"])):
            entry = {**entry, **tf.keras.layers.serialize(tf.keras.layers.Identity(name=new_name))}
        layers.append({**entry, "name": new_name, "config": {**entry["config"], "name": new_name},
                       "inbound_nodes": _rename(entry["inbound_nodes"], names)})
    (last,) = _rename(config["output_layers"], names)
    if student.relu_before_pool:
        layers.append(_entry(tf.keras.layers.ReLU(name="relu_features"), last))
        last = ["relu_features", 0, 0]
    layers.append(_entry(tf.keras.layers.GlobalAveragePooling2D(name="pool"), last))
    return {"name": name, "layers": layers, "input_layers": [["image", 0, 0]], "output_layers": [["pool", 0, 0]]}


def build_zoo_student(name: str, input_size: int = 224, stage: int = 2, *,
                      model_name: str | None = None) -> tf.keras.Model:
    """larq-zoo's ``name`` as a student of ``stage``: images in [0, 1] ``[B, S, S, 3]`` →
    pooled features ``[B, D]`` (see the module docstring); ``model.zoo_config`` says what it is."""
    cfg = ZooStudentConfig(name, int(input_size), stage)
    student = ZOO_STUDENTS[name]
    zoo = zoo_stage_factory(name, stage)(
        include_top=False, weights=None, input_shape=(cfg.input_size, cfg.input_size, 3), num_classes=1000
    ).build()
    # The zoo's model is read for its config only; the student is rebuilt from that config,
    # so its weights are fresh draws of the zoo's own initializers.
    config = _student_config(zoo, student, model_name or f"{name.lower()}_stage{stage}")
    model = tf.keras.Model.from_config(config)
    model.zoo_config = cfg
    return model


def resolution_outputs(model: tf.keras.Model) -> list[tuple[str, int]]:
    """(layer name, map side) of the last layer at each spatial resolution of a student, from
    the input to the pooled features: the output of each of its stages (and, where larq-zoo
    downsamples in two steps, of the step between), whatever the zoo names its layers."""
    last: dict[int, str] = {}
    for layer in model.layers[1:]:  # the input layer is not a feature
        shape = layer.output.shape if not isinstance(layer.output, (list, tuple)) else None
        if shape is None or shape.rank != 4 or layer.name == "normalize":
            continue
        last.pop(int(shape[1]), None)  # re-inserted: ordered by where the resolution ends
        last[int(shape[1])] = layer.name
    return [(name, side) for side, name in last.items()]
