"""Deployment export: one ``.keras`` file, SavedModel or Larq Compute Engine ``.tflite``.

It reads an exported backbone (:mod:`burn_tf.saved_backbone`) — optionally composed with the
``classifier.keras`` next to it — and writes one file (or SavedModel directory) plus a
report ``<out>.json``::

    python -m burn_tf.export --run-dir runs/demo --format tflite        # stage 2, LCE
    python -m burn_tf.export --run-dir runs/demo --format keras --with-classifier
    python -m burn_tf.export --backbone runs/demo/stage2/backbone --format savedmodel --out sm

``tflite`` goes through Larq Compute Engine (``larq_compute_engine.convert_keras_model``):
binary convolutions become bit-packed ``LceBconv2d`` ops fed by ``LceQuantize``; the report
lists the op types found in the flatbuffer and the error of LCE's interpreter against Keras
on random inputs (:func:`check_tflite`). A stage-1 model (full-precision kernels) is refused
for that binary export unless ``--allow-fp``. Nothing is overwritten without
``--overwrite``; every output is written under a temporary name and renamed into place.
With ``--run-dir`` the CLI then rewrites the run's model card (:mod:`~burn_tf.export.model_card`).

Modules: :mod:`~burn_tf.export.exporter` (:func:`export_model` and the ``.keras`` file),
:mod:`~burn_tf.export.savedmodel`, :mod:`~burn_tf.export.tflite` (conversion, flatbuffer
reading, the check against Keras), :mod:`~burn_tf.export.cli` (the command line).
"""

from burn_tf.export.cli import main
from burn_tf.export.errors import ExportError
from burn_tf.export.exporter import (
    EXPORT_FORMATS,
    check_binary_export,
    compose_with_classifier,
    default_output,
    export_model,
    report_path,
    save_keras_file,
)
from burn_tf.export.savedmodel import save_savedmodel, write_signature_savedmodel
from burn_tf.export.tflite import (
    CONVERTERS,
    check_tflite,
    lce_small_map_bconvs,
    sign_margins,
    tflite_io_types,
    tflite_op_counts,
    to_tflite,
)

__all__ = [
    "CONVERTERS",
    "EXPORT_FORMATS",
    "ExportError",
    "check_binary_export",
    "check_tflite",
    "compose_with_classifier",
    "default_output",
    "export_model",
    "lce_small_map_bconvs",
    "main",
    "report_path",
    "save_keras_file",
    "save_savedmodel",
    "sign_margins",
    "tflite_io_types",
    "tflite_op_counts",
    "to_tflite",
    "write_signature_savedmodel",
]
