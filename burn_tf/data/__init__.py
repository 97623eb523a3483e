"""Data: sources (Fashion-MNIST, tfds, image folders, TFRecords) → tf.data → N augmented views.

A *source* is a ``tf.data.Dataset`` of ``(image uint8 [H, W, 3], label int64)`` (label −1
when unlabelled); augmented and evaluation pipelines yield float32 images in [0, 1].
"""

from burn_tf.data.augment import (
    AugmentConfig,
    augment_batch,
    augment_two_views,
    eval_dataset,
    multi_view_dataset,
    per_view_configs,
    two_view_dataset,
)
from burn_tf.data.sources import (
    DEFAULT_FASHION_MNIST_DIR,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_ENV,
    FASHION_MNIST_INSTALL,
    SOURCES,
    SUBSTITUTE_WINDOW,
    CorruptImageError,
    DataSourceError,
    MissingLabelError,
    RecordReader,
    SkippedFiles,
    SourceInfo,
    SourceNotFoundError,
    fashion_mnist,
    get_source_info,
    image_folder,
    load_fashion_mnist_arrays,
    record_at,
    seeded_record_stream,
    source_from_config,
    tfds_source,
    tfrecord,
    with_source_info,
)

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
    "augment_batch",
    "augment_two_views",
    "eval_dataset",
    "fashion_mnist",
    "get_source_info",
    "image_folder",
    "load_fashion_mnist_arrays",
    "multi_view_dataset",
    "per_view_configs",
    "record_at",
    "seeded_record_stream",
    "source_from_config",
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
