"""The Fashion-MNIST source: the original idx files of the Debian package ``dataset-fashion-mnist``.

:func:`load_fashion_mnist_arrays` reads them as numpy (``*-ubyte.gz`` or uncompressed) from
``root``, else ``$BURN_TF_FASHION_MNIST_DIR``, else ``/usr/share/datasets/fashion-mnist``;
:func:`fashion_mnist` is the source (or a prepared tfds ``fashion_mnist`` under ``root``).
A missing file says how to install the package.
"""

from __future__ import annotations

import functools
import gzip
import os
import struct
import zlib

import numpy as np
import tensorflow as tf

from burn_tf.data.source_info import DataSourceError, RecordReader, SourceInfo, SourceNotFoundError, with_source_info
from burn_tf.data.source_tfds import tfds_source

AUTOTUNE = tf.data.AUTOTUNE
_graph_fn = tf.autograph.experimental.do_not_convert  # no AutoGraph needed in map fns

DEFAULT_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_ENV = "BURN_TF_FASHION_MNIST_DIR"
FASHION_MNIST_INSTALL = "sudo apt-get update && sudo apt-get install dataset-fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_FASHION_PREFIX = {"train": "train", "test": "t10k"}
_IDX_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
_IDX_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension


def _fashion_root(root: str | os.PathLike | None) -> tuple[str, str]:
    if root is not None:
        return os.fspath(root), "root argument"
    env = os.environ.get(FASHION_MNIST_ENV)
    if env:
        return env, f"${FASHION_MNIST_ENV}"
    return DEFAULT_FASHION_MNIST_DIR, "default location"


def _find_file(root: str, stem: str) -> str | None:
    for candidate in (stem + ".gz", stem):
        path = os.path.join(root, candidate)
        if os.path.isfile(path):
            return path
    return None


def _missing_fashion_message(root: str, how: str, missing: str) -> str:
    return (
        f"Fashion-MNIST file {missing} not found in {root!r} ({how}). Install the Debian "
        f"package: `{FASHION_MNIST_INSTALL}` (files go to {DEFAULT_FASHION_MNIST_DIR}); or "
        f"pass root= (or set ${FASHION_MNIST_ENV} to) a directory holding "
        "{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz], or a prepared tfds data_dir "
        "containing fashion_mnist/; or use image_folder(path) on your own images."
    )


def _read_idx(path: str, expected_magic: int) -> np.ndarray:
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (EOFError, OSError, zlib.error) as e:
        raise DataSourceError(f"{path}: cannot read idx file, it is truncated or corrupt ({e})") from e
    if len(data) < 4:
        raise DataSourceError(f"{path}: truncated idx file ({len(data)} bytes, no header)")
    magic = struct.unpack(">I", data[:4])[0]
    if magic != expected_magic:
        raise DataSourceError(
            f"{path}: bad idx magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
            "(wrong file, or not an uncompressed/gzipped idx file)"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataSourceError(f"{path}: truncated idx header ({len(data)} of {header} bytes)")
    dims = struct.unpack(">" + "I" * ndim, data[4:header])
    size = int(np.prod(dims, dtype=np.int64))
    if len(data) - header < size:
        raise DataSourceError(
            f"{path}: truncated idx file: header says {dims} = {size} bytes of data, "
            f"found {len(data) - header}"
        )
    if len(data) - header > size:
        raise DataSourceError(
            f"{path}: idx file has {len(data) - header - size} unexpected trailing bytes "
            f"after {dims}"
        )
    return np.frombuffer(data, dtype=np.uint8, count=size, offset=header).reshape(dims)


@functools.lru_cache(maxsize=8)
def _load_idx_pair(images_path: str, labels_path: str, _stamp: tuple):
    images = _read_idx(images_path, _IDX_IMAGES_MAGIC)
    labels = _read_idx(labels_path, _IDX_LABELS_MAGIC).astype(np.int64)
    if images.shape[0] != labels.shape[0]:
        raise DataSourceError(
            f"{images_path} holds {images.shape[0]} images but {labels_path} holds "
            f"{labels.shape[0]} labels"
        )
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def _check_split(split: str) -> str:
    if split not in _FASHION_PREFIX:
        raise ValueError(f"split must be one of {sorted(_FASHION_PREFIX)}, got {split!r}")
    return _FASHION_PREFIX[split]


def load_fashion_mnist_arrays(
    split: str = "train", root: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST as numpy: ``images`` uint8 ``[N, 28, 28]`` and ``labels`` int64 ``[N]``.

    Reads the original idx files (``*-ubyte.gz`` or uncompressed) from ``root``, else
    ``$BURN_TF_FASHION_MNIST_DIR``, else ``/usr/share/datasets/fashion-mnist`` (Debian
    package ``dataset-fashion-mnist``).  Results are cached per file; the arrays are
    read-only (copy them to modify).
    """
    prefix = _check_split(split)
    directory, how = _fashion_root(root)
    paths = []
    for kind in ("images-idx3", "labels-idx1"):
        stem = f"{prefix}-{kind}-ubyte"
        path = _find_file(directory, stem)
        if path is None:
            raise SourceNotFoundError(_missing_fashion_message(directory, how, stem + ".gz"))
        paths.append(os.path.realpath(path))
    stamp = tuple((os.path.getsize(p), os.path.getmtime(p)) for p in paths)
    return _load_idx_pair(paths[0], paths[1], stamp)


def fashion_mnist(
    split: str = "train", root: str | os.PathLike | None = None
) -> tf.data.Dataset:
    """Fashion-MNIST source: ``(uint8 [28, 28, 3], int64 label)``, file order.

    ``root`` may also be a prepared tfds data_dir containing ``fashion_mnist/`` (used through
    :func:`tfds_source`, never downloading).
    """
    _check_split(split)
    directory, how = _fashion_root(root)
    if root is not None and os.path.isdir(os.path.join(directory, "fashion_mnist")) and (
        _find_file(directory, f"{_FASHION_PREFIX[split]}-images-idx3-ubyte") is None
    ):
        return tfds_source("fashion_mnist", split, directory)
    images, labels = load_fashion_mnist_arrays(split, root)
    ds = tf.data.Dataset.from_tensor_slices((images[..., None], labels))
    to_rgb = _graph_fn(lambda x, y: (tf.tile(x, [1, 1, 3]), y))
    ds = ds.map(to_rgb, num_parallel_calls=AUTOTUNE, deterministic=True)
    # The arrays stay in Python (a lookup per call): captured as graph constants, 47 MB
    # would be serialized with every tf.data graph rewrite (seconds before the first batch).
    @_graph_fn
    def read_many(indices):
        image, label = tf.numpy_function(lambda i: (images[i], labels[i]), [indices], (tf.uint8, tf.int64),
                                         stateful=False)
        image = tf.ensure_shape(image, [None, *images.shape[1:]])
        return tf.tile(image[..., None], [1, 1, 1, 3]), tf.ensure_shape(label, [None])

    @_graph_fn
    def read(index):
        image, label = read_many(index[None])
        return image[0], label[0]

    info = SourceInfo(
        kind="fashion_mnist", location=directory, num_examples=int(images.shape[0]),
        class_names=FASHION_MNIST_CLASSES,
        reader=RecordReader(int(images.shape[0]), read, lambda i: f"{directory} {split} image {i}",
                            read_many=read_many),
    )
    return with_source_info(ds, info)
