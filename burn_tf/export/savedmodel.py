"""A signature-only TensorFlow SavedModel of a Keras model (for serving and LCE's converter)."""

from __future__ import annotations

import os
from pathlib import Path

import tensorflow as tf

from burn_tf.export.errors import OVERWRITE_HINT
from burn_tf.io import atomic_output, refuse_existing


def _serving_function(model: tf.keras.Model, batch_size: int | None = None):
    spec = tf.TensorSpec([batch_size, *model.inputs[0].shape[1:]], model.inputs[0].dtype, name="image")

    @tf.function(input_signature=[spec])
    def serve(image):
        return {"output": model(image, training=False)}

    return serve


def write_signature_savedmodel(model: tf.keras.Model, directory: Path) -> None:
    """Writes ``model``'s variables and one signature ``serving_default(image) -> {"output"}``
    to ``directory`` (not atomically: :func:`save_savedmodel` is the atomic writer)."""
    # Only the variables and one inference signature: no per-layer Keras traces, which
    # make Keras' own SavedModel export of a ReActNet-A ~2x slower (measured).
    serve = _serving_function(model)
    module = tf.Module()
    module.model_variables = list(model.variables)
    module.serve = serve
    tf.saved_model.save(module, str(directory), signatures={"serving_default": serve.get_concrete_function()})


def save_savedmodel(model: tf.keras.Model, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """A TensorFlow SavedModel for serving / other converters, atomically.

    It holds the variables and one signature ``serving_default(image) -> {"output"}``
    (inference mode, any batch size): load it with ``tf.saved_model.load`` or TF Serving.
    It is not a Keras model — the ``.keras`` file is (``--format keras``).
    """
    path = Path(path)
    refuse_existing(path, overwrite, OVERWRITE_HINT)
    with atomic_output(path, directory=True) as tmp:
        write_signature_savedmodel(model, tmp)
        refuse_existing(path, overwrite, OVERWRITE_HINT)  # appeared while we were writing
    return path
