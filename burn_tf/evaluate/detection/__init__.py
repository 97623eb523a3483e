"""Object detection with a binary backbone (keras-cv RetinaNet; COCO-style mAP / AP50 / AP75).

``train`` is the driver (:func:`detect`), ``results`` scores and summarises the runs,
``model`` builds the detector on the backbone (pyramid levels, RetinaNet, NMS) and ``data``
makes its batches (Fashion-MNIST composites offline, or a prepared tfds VOC). This package
is the task ``detect`` of ``burn_tf.evaluate``: ``from burn_tf.evaluate.detection import
detect`` and ``python -m burn_tf.evaluate detect`` run :func:`detect` (its ``format_result``
is here too); keras-cv is imported only when a detector is built.
"""

from burn_tf.evaluate.detection.data import (
    DetectionData,
    composites_data,
    open_voc,
    voc_detection_data,
)
from burn_tf.evaluate.detection.model import (
    LEVELS,
    NMS_MODES,
    DetectionConfigError,
    anchor_coverage,
    backbone_at_size,
    build_retinanet,
    pyramid_backbone,
    random_init_like,
    resolve_pyramid_layers,
)
from burn_tf.evaluate.detection.results import evaluate_detector, format_result, summarize_runs
from burn_tf.evaluate.detection.train import DATASETS, PROTOCOLS, detect

__all__ = [
    "DATASETS", "LEVELS", "NMS_MODES", "PROTOCOLS", "DetectionConfigError", "DetectionData",
    "anchor_coverage", "backbone_at_size", "build_retinanet", "composites_data", "detect",
    "evaluate_detector", "format_result", "open_voc", "pyramid_backbone", "random_init_like",
    "resolve_pyramid_layers", "summarize_runs", "voc_detection_data",
]
