"""The tfds source: a tensorflow-datasets data set already prepared under a ``data_dir`` (never downloads).

Builders whose code is not registered are read from their files; a whole split whose shards
are plain TFRecords of encoded images can also be read at a record index (through the
TFRecord source's reader).
"""

from __future__ import annotations

import contextlib
import os
import re

import tensorflow as tf

from burn_tf.data.source_info import (
    DataSourceError,
    MissingLabelError,
    RecordReader,
    SourceInfo,
    SourceNotFoundError,
    with_source_info,
)
from burn_tf.data.source_tfrecord import tfrecord

AUTOTUNE = tf.data.AUTOTUNE
_graph_fn = tf.autograph.experimental.do_not_convert  # no AutoGraph needed in map fns


@contextlib.contextmanager
def gcs_disabled():
    """Keep tfds from looking anything up on GCS while we build/read a local builder."""
    try:
        from tensorflow_datasets.core.utils import gcs_utils
    except Exception:  # pragma: no cover
        yield
        return
    old = getattr(gcs_utils, "_is_gcs_disabled", False)
    gcs_utils._is_gcs_disabled = True
    try:
        yield
    finally:
        gcs_utils._is_gcs_disabled = old


def _split_names(split: str) -> list[str]:
    return [re.sub(r"\[.*\]$", "", part.strip()) for part in str(split).split("+")]


def tfds_source(
    name: str,
    split: str,
    data_dir: str | os.PathLike | None,
    image_key: str = "image",
    label_key: str | None = "label",
) -> tf.data.Dataset:
    """A tfds dataset already prepared under ``data_dir`` (never downloads).

    ``name`` is the tfds name (``"cifar10"``, ``"fashion_mnist"``, ``"name/config:1.0.0"``);
    builders whose code is not registered are read from their files.  ``label_key=None``
    gives label -1.
    """
    import tensorflow_datasets as tfds

    if data_dir is None:
        raise SourceNotFoundError(
            f"tfds_source({name!r}) needs data_dir=: the directory where {name!r} was "
            "prepared (nothing is downloaded at run time; prepare it elsewhere with "
            f"tfds.builder({name!r}, data_dir=...).download_and_prepare() and copy it)"
        )
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise SourceNotFoundError(
            f"tfds data_dir {data_dir!r} does not exist; pass data_dir= the directory that "
            f"contains the prepared {name.split('/')[0]}/ folder"
        )
    with gcs_disabled():
        try:
            builder = tfds.builder(name, data_dir=data_dir)
        except Exception as e:  # DatasetNotFoundError and friends
            raise SourceNotFoundError(
                f"tfds dataset {name!r} is neither registered nor prepared under {data_dir!r} "
                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); pass "
                "data_dir= the directory containing the prepared dataset folder"
            ) from e
        prepared = os.path.join(builder.data_dir, "dataset_info.json")
        if not tf.io.gfile.exists(prepared):
            raise SourceNotFoundError(
                f"tfds dataset {name!r} is not prepared under {data_dir!r} (no "
                f"{prepared}); nothing is downloaded at run time: pass data_dir= the directory "
                f"where it was prepared, or prepare it with tfds.builder({name!r}, "
                "data_dir=...).download_and_prepare() (manual_dir for manual datasets)"
            )
        info = builder.info
        known = set(info.splits.keys())
        for part in _split_names(split):
            if part not in known:
                raise DataSourceError(
                    f"tfds dataset {name!r} has no split {part!r}; available: {sorted(known)}"
                )
        features = info.features
        if image_key not in features:
            raise DataSourceError(
                f"tfds dataset {name!r} has no feature {image_key!r}; features: "
                f"{sorted(features.keys())} (pass image_key=)"
            )
        if label_key is not None and label_key not in features:
            raise MissingLabelError(
                f"tfds dataset {name!r} has no feature {label_key!r}; features: "
                f"{sorted(features.keys())} (pass label_key=, or None for unlabelled)"
            )
        image_feature = features[image_key]
        if getattr(image_feature, "dtype", tf.uint8) != tf.uint8:
            raise DataSourceError(f"tfds feature {image_key!r} must be a uint8 image")
        class_names: tuple[str, ...] = ()
        if label_key is not None and hasattr(features[label_key], "names"):
            class_names = tuple(features[label_key].names)
        try:
            num_examples = int(info.splits[split].num_examples)
        except Exception:
            num_examples = None
        ds = builder.as_dataset(split=split, shuffle_files=False)
        reader = _tfds_record_reader(info, split, image_key, label_key)

    @_graph_fn
    def convert(example):
        image = _to_rgb_uint8(example[image_key])
        if label_key is None:
            label = tf.constant(-1, tf.int64)
        else:
            label = tf.cast(example[label_key], tf.int64)
        return image, label

    ds = ds.map(convert, num_parallel_calls=AUTOTUNE, deterministic=True)
    source_info = SourceInfo(
        kind="tfds", location=f"{data_dir}:{name}:{split}", num_examples=num_examples,
        class_names=class_names, reader=reader,
    )
    return with_source_info(ds, source_info)


def _tfds_record_reader(info, split: str, image_key: str, label_key: str | None) -> RecordReader | None:
    """Direct access to the records of a whole tfds split (no ``[a:b]`` slice, no ``+``)
    whose shards are plain TFRecords of ``tf.train.Example`` with the image as encoded
    bytes — what tfds writes for image data sets such as imagenet2012 — read in the order
    ``as_dataset(shuffle_files=False)`` reads them. None when that does not hold."""
    if split not in info.splits or "[" in split:
        return None
    try:
        paths = [os.fspath(p) for p in info.splits[split].filepaths]
    except (AttributeError, KeyError, TypeError, ValueError):  # an older tfds, or no files
        return None
    if not paths or not all(os.path.isfile(p) and ".tfrecord" in os.path.basename(p) for p in paths):
        return None
    try:
        return tfrecord(paths, image_key=image_key, label_key=label_key).source_info.reader
    except (DataSourceError, SourceNotFoundError, ValueError):
        return None


def _to_rgb_uint8(image: tf.Tensor) -> tf.Tensor:
    """uint8 image [H, W, C] with C in {1, 3, 4} (or [H, W]) → [H, W, 3]."""
    image = tf.convert_to_tensor(image)
    if image.dtype != tf.uint8:
        raise DataSourceError(f"images must be uint8, got {image.dtype.name}")
    if image.shape.rank == 2:
        image = image[..., None]
    channels = image.shape[-1]
    if channels == 1:
        return tf.tile(image, [1, 1, 3])
    if channels == 3:
        return image
    if channels == 4:
        return image[..., :3]
    raise DataSourceError(f"images must have 1, 3 or 4 channels, got shape {image.shape}")
