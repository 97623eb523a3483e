"""The image-folder source: images in a folder (class sub-folders give labels), in sorted file order.

Unreadable images are skipped and counted (or raise with ``strict=True``), as
:mod:`burn_tf.data.source_info` describes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from burn_tf.data.source_info import (
    DataSourceError,
    RecordReader,
    SourceInfo,
    SourceNotFoundError,
    decode_image,
    run_validation,
    track_skips,
    with_source_info,
)

logger = logging.getLogger(__name__)

AUTOTUNE = tf.data.AUTOTUNE
_graph_fn = tf.autograph.experimental.do_not_convert  # no AutoGraph needed in map fns

DEFAULT_IMAGE_EXTENSIONS = ("jpg", "jpeg", "png")


def _normalise_extensions(extensions: Sequence[str]) -> tuple[str, ...]:
    if isinstance(extensions, str):
        extensions = (extensions,)
    return tuple("." + e.lower().lstrip(".") for e in extensions)


def _list_images(directory: str, exts: tuple[str, ...], recursive: bool) -> list[str]:
    found = []
    if recursive:
        for dirpath, dirnames, filenames in os.walk(directory, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for f in sorted(filenames):
                if not f.startswith(".") and f.lower().endswith(exts):
                    found.append(os.path.join(dirpath, f))
    else:
        for f in sorted(os.listdir(directory)):
            p = os.path.join(directory, f)
            if not f.startswith(".") and f.lower().endswith(exts) and os.path.isfile(p):
                found.append(p)
    return found


def image_folder(
    path: str | os.PathLike,
    strict: bool = False,
    extensions: Sequence[str] = DEFAULT_IMAGE_EXTENSIONS,
    validate: bool = False,
) -> tf.data.Dataset:
    """Images from a folder, in sorted file order.

    With class sub-folders (``path/<class>/**/<image>``) the label is the index of the
    class in the sorted list of sub-folder names (``source_info.class_names``); a flat
    folder of images gives label -1.  Images are decoded as RGB (grey repeated, alpha
    dropped).  Unreadable images are skipped and counted in ``source_info.skipped``
    (``strict=True``: raise naming the file).  ``validate=True`` decodes everything once
    now so the count is known (and strict errors raised) before use.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise SourceNotFoundError(f"image folder {path!r} does not exist or is not a directory")
    exts = _normalise_extensions(extensions)
    subdirs = sorted(
        d for d in os.listdir(path) if not d.startswith(".") and os.path.isdir(os.path.join(path, d))
    )
    per_class = {d: _list_images(os.path.join(path, d), exts, recursive=True) for d in subdirs}
    top_level = _list_images(path, exts, recursive=False)
    files: list[str] = []
    labels: list[int] = []
    if any(per_class.values()):
        class_names = tuple(subdirs)
        for index, d in enumerate(subdirs):
            if not per_class[d]:
                logger.warning(
                    "burn_tf.data: class folder %s holds no %s images",
                    os.path.join(path, d), "/".join(exts),
                )
            files.extend(per_class[d])
            labels.extend([index] * len(per_class[d]))
        if top_level:
            logger.warning(
                "burn_tf.data: %d image(s) directly in %s ignored: the folder has class "
                "sub-folders", len(top_level), path,
            )
    else:
        class_names = ()
        files = top_level
        labels = [-1] * len(files)
    if not files:
        raise DataSourceError(
            f"image folder {path!r} contains no images with extensions "
            f"{', '.join(exts)} (neither directly nor in class sub-folders)"
        )
    label_array = np.asarray(labels, np.int64)

    @_graph_fn
    def read(index):  # the lists stay in Python (see fashion_mnist's reader)
        path, label = tf.numpy_function(lambda i: (np.bytes_(files[i].encode()), label_array[i]), [index],
                                        (tf.string, tf.int64), stateful=False)
        return decode_image(tf.io.read_file(tf.ensure_shape(path, []))), tf.ensure_shape(label, [])

    info = SourceInfo(
        kind="image_folder", location=path, num_examples=len(files), class_names=class_names,
        reader=RecordReader(len(files), read, files.__getitem__, may_fail=True),
    )

    def build(strict_mode):
        ds = tf.data.Dataset.from_tensor_slices(
            (tf.range(len(files), dtype=tf.int64), tf.constant(files), tf.constant(labels, tf.int64))
        )
        ds = ds.map(
            _graph_fn(lambda i, f, y: (i, decode_image(tf.io.read_file(f)), y)),
            num_parallel_calls=AUTOTUNE, deterministic=True,
        )
        return track_skips(ds, len(files), files, info.skipped, strict_mode)

    if validate:
        run_validation(build(False), info, strict)
    return with_source_info(build(strict), info)
