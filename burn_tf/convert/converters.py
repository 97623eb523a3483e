"""PyTorch state_dict → Keras weights for the models of :mod:`burn_tf.models`.

Each Keras weighted layer has a PyTorch parameter prefix (the model module's
``torch_name_map``). Conversion reads ``<prefix>.weight`` etc., transposes and assigns:

* ``Conv2D``: ``[O, I, kh, kw]`` → ``[kh, kw, I, O]`` (+ bias);
* ``DepthwiseConv2D``: ``[C·m, 1, kh, kw]`` → ``[kh, kw, C, m]``;
* ``Dense``: ``[out, in]`` → ``[in, out]`` (+ bias);
* ``BatchNormalization``: weight → gamma, bias → beta, running_mean / running_var →
  moving mean / variance (eps and momentum are fixed by the Keras model to the source's:
  torch 1e-5 / 0.1 for torchvision ResNets, 1e-3 / 0.01 for lukemelas EfficientNet).

Classifier weights (``fc.*``, ``_fc.*``), ``num_batches_tracked`` and, for MoCo, the key
encoder / queue are ignored. Anything else — a missing key, a shape that does not fit,
a backbone key no Keras layer takes (another architecture) — raises
:class:`CheckpointMismatchError` naming the first offending key and Keras layer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import tensorflow as tf

from burn_tf.models import efficientnet_lite, resnet

__all__ = [
    "CheckpointMismatchError",
    "assign_state_dict",
    "convert_torchvision_resnet",
    "convert_efficientnet_lite",
    "find_layers",
]

# Prefixes under which self-supervised frameworks keep the backbone, tried when the
# state_dict does not match as it is (MoCo's module.encoder_q. is stripped on reading).
CANDIDATE_PREFIXES = (
    "",
    "backbone.",
    "encoder.",
    "base_encoder.",
    "module.base_encoder.",
    "model.",
    "net.",
    "online_network.encoder.",
)

RESNET_IGNORE = (r"^fc\.", r"\.num_batches_tracked$")
EFFICIENTNET_IGNORE = (r"^_fc\.", r"\.num_batches_tracked$")


class CheckpointMismatchError(ValueError):
    """The state_dict does not fit the Keras model; the message names the key and layer."""


def find_layers(model: tf.keras.Model) -> dict[str, tf.keras.layers.Layer]:
    """All leaf layers by name, descending into nested models (e.g. a teacher wrapper)."""
    out: dict[str, tf.keras.layers.Layer] = {}
    for layer in model.layers:
        if isinstance(layer, tf.keras.Model):
            out.update(find_layers(layer))
        else:
            out[layer.name] = layer
    return out


def _layer_params(layer) -> list[tuple[str, Callable[[np.ndarray], np.ndarray]]]:
    """(torch parameter suffix, transform) for each of the layer's weights, in Keras order."""
    ident = lambda a: a  # noqa: E731
    if isinstance(layer, tf.keras.layers.DepthwiseConv2D):
        params = [
            ("weight", lambda a: a.reshape(layer.depthwise_kernel.shape[2], -1, *a.shape[2:]).transpose(2, 3, 0, 1))
        ]
        if layer.use_bias:
            params.append(("bias", ident))
        return params
    if isinstance(layer, tf.keras.layers.Conv2D):
        if layer.groups != 1:
            raise CheckpointMismatchError(f"grouped Conv2D {layer.name!r} is not supported")
        params = [("weight", lambda a: a.transpose(2, 3, 1, 0))]
        if layer.use_bias:
            params.append(("bias", ident))
        return params
    if isinstance(layer, tf.keras.layers.Dense):
        params = [("weight", lambda a: a.T)]
        if layer.use_bias:
            params.append(("bias", ident))
        return params
    if isinstance(layer, tf.keras.layers.BatchNormalization):
        params = []
        if layer.scale:
            params.append(("weight", ident))
        if layer.center:
            params.append(("bias", ident))
        return params + [("running_mean", ident), ("running_var", ident)]
    raise CheckpointMismatchError(f"no PyTorch conversion rule for Keras layer {layer.name!r} ({type(layer).__name__})")


def _choose_prefix(state_dict: Mapping[str, np.ndarray], first_key: str, prefix: str | None) -> str:
    if prefix is not None:
        return prefix
    for cand in CANDIDATE_PREFIXES:
        if cand + first_key in state_dict:
            return cand
    return ""


def assign_state_dict(
    state_dict: Mapping[str, np.ndarray],
    keras_model: tf.keras.Model,
    name_map: Mapping[str, str],
    ignore: Iterable[str] = (),
    prefix: str | None = None,
    source: str = "state_dict",
) -> list[str]:
    """Assign ``state_dict`` to the layers of ``keras_model`` named in ``name_map``.

    ``name_map`` maps Keras layer names to PyTorch prefixes, in the model's layer order.
    ``prefix`` is prepended to every PyTorch key (auto-detected among
    :data:`CANDIDATE_PREFIXES` when None); keys outside it are not looked at. Everything is
    checked before anything is assigned, so a mismatch leaves the model untouched.
    Returns the ignored keys (classifier, counters).
    """
    layers = find_layers(keras_model)
    items = list(name_map.items())
    if not items:
        raise CheckpointMismatchError(f"{keras_model.name!r} has no layers to convert")
    first_layer, first_prefix = items[0]
    first_key = f"{first_prefix}.{_layer_params(layers[first_layer])[0][0]}"
    prefix = _choose_prefix(state_dict, first_key, prefix)
    scoped = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not scoped:
        raise CheckpointMismatchError(f"{source}: no key starts with prefix {prefix!r}")

    pending: list[tuple[tf.keras.layers.Layer, list[np.ndarray]]] = []
    used: set[str] = set()
    for keras_name, torch_prefix in items:
        layer = layers.get(keras_name)
        if layer is None:
            raise CheckpointMismatchError(f"Keras model {keras_model.name!r} has no layer {keras_name!r}")
        current = layer.get_weights()
        values = []
        for (suffix, transform), cur in zip(_layer_params(layer), current):
            key = f"{torch_prefix}.{suffix}"
            if key not in scoped:
                raise CheckpointMismatchError(
                    f"{source}: missing key {prefix + key!r} needed by Keras layer {keras_name!r} "
                    "(a checkpoint of another architecture?)"
                )
            arr = np.asarray(scoped[key])
            try:
                value = transform(arr)
            except ValueError:
                value = arr
            if value.shape != cur.shape:
                raise CheckpointMismatchError(
                    f"{source}: key {prefix + key!r} has shape {tuple(arr.shape)}, which does not "
                    f"fit Keras layer {keras_name!r} (weight shape {tuple(cur.shape)}; PyTorch "
                    "layout expected)"
                )
            if not np.issubdtype(value.dtype, np.floating):
                raise CheckpointMismatchError(f"{source}: key {prefix + key!r} is not floating point ({value.dtype})")
            values.append(value.astype(cur.dtype))
            used.add(key)
        pending.append((layer, values))

    ignore_re = [re.compile(p) for p in ignore]
    ignored = []
    for key in scoped:
        if key in used:
            continue
        if any(r.search(key) for r in ignore_re):
            ignored.append(prefix + key)
            continue
        raise CheckpointMismatchError(
            f"{source}: unexpected key {prefix + key!r} that no layer of Keras model "
            f"{keras_model.name!r} takes (a checkpoint of another architecture or depth?)"
        )
    for layer, values in pending:
        layer.set_weights(values)
    return ignored


def convert_torchvision_resnet(
    state_dict: Mapping[str, np.ndarray],
    keras_model: tf.keras.Model,
    prefix: str | None = None,
    source: str = "state_dict",
) -> tf.keras.Model:
    """Load a torchvision ResNet state_dict (e.g. MoCo v2's query encoder) into a model
    from :func:`burn_tf.models.resnet.build_resnet` (or a wrapper around one).

    ``fc.*`` (classifier, or MoCo's MLP head) is ignored. Returns ``keras_model``.
    """
    backbone = _find_backbone(keras_model, "conv1")
    assign_state_dict(state_dict, keras_model, resnet.torch_name_map(backbone), RESNET_IGNORE, prefix, source)
    return keras_model


def convert_efficientnet_lite(
    state_dict: Mapping[str, np.ndarray],
    keras_model: tf.keras.Model,
    prefix: str | None = None,
    source: str = "state_dict",
) -> tf.keras.Model:
    """Load a lukemelas-style EfficientNet-Lite0 state_dict (``_conv_stem``, ``_blocks.N.…``)
    into :func:`burn_tf.models.efficientnet_lite.build_efficientnet_lite0`. ``_fc.*`` is
    ignored. Returns ``keras_model``.
    """
    backbone = _find_backbone(keras_model, "conv_stem")
    assign_state_dict(
        state_dict, keras_model, efficientnet_lite.torch_name_map(backbone), EFFICIENTNET_IGNORE, prefix, source
    )
    return keras_model


def _find_backbone(model: tf.keras.Model, first_layer: str) -> tf.keras.Model:
    """The (possibly nested) functional model that owns ``first_layer``."""
    names = {layer.name for layer in model.layers}
    if first_layer in names:
        return model
    for layer in model.layers:
        if isinstance(layer, tf.keras.Model):
            try:
                return _find_backbone(layer, first_layer)
            except CheckpointMismatchError:
                pass
    raise CheckpointMismatchError(
        f"Keras model {model.name!r} has no layer {first_layer!r}: not a model of the expected architecture"
    )
