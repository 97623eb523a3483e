"""Data: sources (Fashion-MNIST, tfds, image folders, TFRecords) → tf.data → N augmented views.

A *source* is a ``tf.data.Dataset`` of ``(image uint8 [H, W, 3], label int64)`` (label −1
when unlabelled); augmented and evaluation pipelines yield float32 images in [0, 1].

This front door re-exports the room's public API from the modules that hold it:

* sources — :mod:`~burn_tf.data.source_info` (errors, ``SourceInfo``, skip tracking), one
  module per kind (:mod:`~burn_tf.data.source_fashion_mnist`, :mod:`~burn_tf.data.source_tfds`,
  :mod:`~burn_tf.data.source_image_folder`, :mod:`~burn_tf.data.source_tfrecord`), the table
  of kinds (:mod:`~burn_tf.data.sources`) and the seeded record order
  (:mod:`~burn_tf.data.record_order`);
* views — the view config (:mod:`~burn_tf.data.views`), its ops (:mod:`~burn_tf.data.crops`,
  :mod:`~burn_tf.data.colour`, :mod:`~burn_tf.data.randaugment`), one augmentation of a batch
  (:mod:`~burn_tf.data.view_augmentation`) and the multi-view pipeline
  (:mod:`~burn_tf.data.pipeline`);
* evaluation images (:mod:`~burn_tf.data.eval_images`);
* generated composites for the SVM and detection evaluators (:mod:`~burn_tf.data.composites`,
  :mod:`~burn_tf.data.detection_composites`) and the pipeline's throughput
  (:mod:`~burn_tf.data.throughput`), imported by name.
"""

from burn_tf.data.eval_images import eval_dataset, prepare_images
from burn_tf.data.pipeline import multi_view_dataset, two_view_dataset
from burn_tf.data.record_order import SUBSTITUTE_WINDOW, record_at, seeded_record_stream
from burn_tf.data.source_fashion_mnist import (
    DEFAULT_FASHION_MNIST_DIR,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_ENV,
    FASHION_MNIST_INSTALL,
    fashion_mnist,
    load_fashion_mnist_arrays,
)
from burn_tf.data.source_image_folder import image_folder
from burn_tf.data.source_info import (
    CorruptImageError,
    DataSourceError,
    MissingLabelError,
    RecordReader,
    SkippedFiles,
    SourceInfo,
    SourceNotFoundError,
    get_source_info,
    with_source_info,
)
from burn_tf.data.source_tfds import tfds_source
from burn_tf.data.source_tfrecord import tfrecord
from burn_tf.data.sources import SOURCES, source_from_config, source_from_data_config
from burn_tf.data.view_augmentation import augment_views
from burn_tf.data.views import AugmentConfig, per_view_configs

__all__ = [
    "AugmentConfig",
    "CorruptImageError",
    "DataSourceError",
    "MissingLabelError",
    "DEFAULT_FASHION_MNIST_DIR",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_ENV",
    "FASHION_MNIST_INSTALL",
    "SOURCES",
    "SUBSTITUTE_WINDOW",
    "RecordReader",
    "SkippedFiles",
    "SourceInfo",
    "SourceNotFoundError",
    "augment_views",
    "eval_dataset",
    "fashion_mnist",
    "get_source_info",
    "image_folder",
    "load_fashion_mnist_arrays",
    "multi_view_dataset",
    "per_view_configs",
    "prepare_images",
    "record_at",
    "seeded_record_stream",
    "source_from_config",
    "source_from_data_config",
    "tfds_source",
    "tfrecord",
    "two_view_dataset",
    "two_view_throughput",
    "with_source_info",
]


def __getattr__(name):
    # Lazy, so that `python -m burn_tf.data.throughput` does not import the module twice.
    if name == "two_view_throughput":
        from burn_tf.data.throughput import two_view_throughput

        return two_view_throughput
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
