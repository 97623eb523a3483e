"""Image sources: ``tf.data.Dataset`` of ``(image, label)``.

Every source yields ``image`` as ``uint8 [H, W, 3]`` (grey inputs are repeated to three
channels, alpha is dropped) and ``label`` as an ``int64`` scalar (``-1`` when unlabelled).

Sources never download anything.  Each dataset returned here carries a
:class:`SourceInfo` as its ``source_info`` attribute (read it with :func:`get_source_info`):
where the data came from, how many examples were listed, the class names, and a
:class:`SkippedFiles` record of every image that could not be read or decoded.

Skipping unreadable images (``image_folder``, ``tfrecord``)
---------------------------------------------------------
Decoding happens inside ``tf.data`` (graph mode, in parallel).  A corrupt or truncated
image makes the decode op fail; ``Dataset.ignore_errors`` drops that element, and a
sequential ``scan`` over the surviving elements' indices (plus an end sentinel) finds the
gaps and records exactly which files/records were dropped: ``info.skipped`` is filled while
the data is iterated, once per file (a second epoch does not count it again), and each skip
is logged once at WARNING level.  With ``strict=True`` the first gap raises instead, naming
the file.  ``validate=True`` runs that pass once at construction, so the count (and, in
strict mode, a clean :class:`CorruptImageError`) is there before training starts; it costs
one decoding pass over the data.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gzip
import logging
import os
import re
import struct
import threading
import zlib
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

logger = logging.getLogger(__name__)

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

DEFAULT_IMAGE_EXTENSIONS = ("jpg", "jpeg", "png")


# --------------------------------------------------------------------------- errors


class DataSourceError(ValueError):
    """A data source exists but its content is unusable (bad header, wrong key, empty...)."""


class MissingLabelError(DataSourceError):
    """A label was asked for (``label_key``) but the data has no such feature."""


class SourceNotFoundError(FileNotFoundError):
    """A data source (file, folder, tfds data_dir) is missing; the message says what to pass."""


class CorruptImageError(DataSourceError):
    """Raised in strict mode for an image/record that cannot be read or decoded."""

    def __init__(self, names: Sequence[str]):
        self.names = list(names)
        shown = ", ".join(self.names[:5]) + (" ..." if len(self.names) > 5 else "")
        super().__init__(
            f"cannot read or decode {len(self.names)} image(s): {shown} "
            "(pass strict=False to skip and count them instead)"
        )


# ------------------------------------------------------------------ info / skip count


class SkippedFiles:
    """Thread-safe record of the images a source skipped because they could not be decoded.

    ``count`` / ``len()`` is the number of distinct files (or records) skipped so far;
    ``names`` lists them in the order they were found; ``summary()`` is a one-line report.
    """

    def __init__(self) -> None:
        self._names: List[str] = []
        self._seen: set = set()
        self._lock = threading.Lock()

    def add(self, name: str, reason: str = "cannot be read or decoded") -> bool:
        with self._lock:
            if name in self._seen:
                return False
            self._seen.add(name)
            self._names.append(name)
            n = len(self._names)
        logger.warning("burn_tf.data: skipped %s: %s (%d skipped so far)", name, reason, n)
        return True

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._names)

    @property
    def names(self) -> List[str]:
        with self._lock:
            return list(self._names)

    def __len__(self) -> int:
        return self.count

    def summary(self) -> str:
        names = self.names
        if not names:
            return "no images skipped"
        shown = ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")
        return f"{len(names)} unreadable image(s) skipped: {shown}"

    def __repr__(self) -> str:
        return f"SkippedFiles(count={self.count})"


@dataclasses.dataclass
class SourceInfo:
    """What a source is; attached to the dataset as ``ds.source_info``."""

    kind: str
    location: str
    num_examples: Optional[int] = None  # listed before skipping; None when unknown
    class_names: Tuple[str, ...] = ()
    skipped: SkippedFiles = dataclasses.field(default_factory=SkippedFiles)
    # Direct access to record i (None: the source can only be read in order).
    reader: Optional[RecordReader] = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclasses.dataclass(frozen=True)
class RecordReader:
    """Reads record ``i`` of a source without touching records ``0 … i−1``.

    ``read`` is a graph function: int64 index → ``(uint8 image [H, W, 3], int64 label)``
    (it may fail on a corrupt record when ``may_fail``); ``record_name(i)`` names record
    ``i`` in reports (its file, or ``"<file> record <k>"``). Records are numbered in the
    order the sequential source yields them.
    """

    num_records: int
    read: Callable[[tf.Tensor], Tuple[tf.Tensor, tf.Tensor]]
    record_name: Callable[[int], str]
    may_fail: bool = False
    # Optional: int64 [n] indices → (uint8 [n, H, W, 3], int64 [n]) in one call (in-memory data).
    read_many: Optional[Callable[[tf.Tensor], Tuple[tf.Tensor, tf.Tensor]]] = None


def get_source_info(ds: tf.data.Dataset) -> Optional[SourceInfo]:
    """The :class:`SourceInfo` attached to a source (or a pipeline built on it), else None."""
    return getattr(ds, "source_info", None)


def with_source_info(ds: tf.data.Dataset, info: Optional[SourceInfo]) -> tf.data.Dataset:
    """``ds`` carrying ``info`` (e.g. a ``take`` of a source, which drops the attribute)."""
    return _attach(ds, info)


def _attach(ds: tf.data.Dataset, info: Optional[SourceInfo]) -> tf.data.Dataset:
    if info is not None:
        try:
            ds.source_info = info
        except AttributeError:  # pragma: no cover - defensive, datasets accept attributes
            pass
    return ds


# -------------------------------------------------------------------- common helpers


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


def _decode_image(data: tf.Tensor) -> tf.Tensor:
    image = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
    image.set_shape([None, None, 3])
    return image


def _track_skips(
    decoded: tf.data.Dataset,
    num_items: int,
    names: Sequence[str],
    skipped: SkippedFiles,
    strict: bool,
) -> tf.data.Dataset:
    """Turn ``(index, image, label)`` elements (some indices missing because their decode
    failed and ``ignore_errors`` dropped them) into ``(image, label)``, recording the
    missing indices in ``skipped`` (or raising, when strict)."""
    names = list(names)

    def report(lo, hi):
        lo, hi = int(lo), int(hi)
        missing = names[lo:hi]
        if strict:
            raise CorruptImageError(missing)
        for name in missing:
            skipped.add(name)
        return np.int64(0)

    sentinel = tf.data.Dataset.from_tensors(
        (tf.constant(num_items, tf.int64), tf.zeros([1, 1, 3], tf.uint8), tf.constant(-1, tf.int64))
    )
    ds = decoded.ignore_errors().concatenate(sentinel)

    @_graph_fn
    def step(last, element):
        index, image, label = element
        return index, (index, image, label, last + 1)

    ds = ds.scan(tf.constant(-1, tf.int64), step)

    @_graph_fn
    def check(index, image, label, gap_start):
        done = tf.cond(
            index > gap_start,
            lambda: tf.py_function(report, [gap_start, index], tf.int64),
            lambda: tf.constant(0, tf.int64),
        )
        with tf.control_dependencies([done]):
            index = tf.identity(index)
        return index, image, label

    ds = ds.map(check)  # sequential: report order = file order
    ds = ds.filter(_graph_fn(lambda index, image, label: index < num_items))
    return ds.map(_graph_fn(lambda index, image, label: (image, label)))


def _run_validation(ds: tf.data.Dataset, info: SourceInfo, strict: bool) -> None:
    """Iterate once (non-strict) so ``info.skipped`` is complete; raise cleanly if strict."""
    for _ in ds:
        pass
    if strict and info.skipped.count:
        raise CorruptImageError(info.skipped.names)


# ------------------------------------------------------------------ Fashion-MNIST (idx)


def _fashion_root(root: Optional[Union[str, os.PathLike]]) -> Tuple[str, str]:
    if root is not None:
        return os.fspath(root), "root argument"
    env = os.environ.get(FASHION_MNIST_ENV)
    if env:
        return env, f"${FASHION_MNIST_ENV}"
    return DEFAULT_FASHION_MNIST_DIR, "default location"


def _find_file(root: str, stem: str) -> Optional[str]:
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
    split: str = "train", root: Optional[Union[str, os.PathLike]] = None
) -> Tuple[np.ndarray, np.ndarray]:
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
    split: str = "train", root: Optional[Union[str, os.PathLike]] = None
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
    return _attach(ds, info)


# --------------------------------------------------------------------------------- tfds


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


def _split_names(split: str) -> List[str]:
    return [re.sub(r"\[.*\]$", "", part.strip()) for part in str(split).split("+")]


def tfds_source(
    name: str,
    split: str,
    data_dir: Optional[Union[str, os.PathLike]],
    image_key: str = "image",
    label_key: Optional[str] = "label",
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
        class_names: Tuple[str, ...] = ()
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
    return _attach(ds, source_info)


def _tfds_record_reader(info, split: str, image_key: str, label_key: Optional[str]) -> Optional[RecordReader]:
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


# ------------------------------------------------------------------------- image folder


def _normalise_extensions(extensions: Sequence[str]) -> Tuple[str, ...]:
    if isinstance(extensions, str):
        extensions = (extensions,)
    return tuple("." + e.lower().lstrip(".") for e in extensions)


def _list_images(directory: str, exts: Tuple[str, ...], recursive: bool) -> List[str]:
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
    path: Union[str, os.PathLike],
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
    files: List[str] = []
    labels: List[int] = []
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
        return _decode_image(tf.io.read_file(tf.ensure_shape(path, []))), tf.ensure_shape(label, [])

    info = SourceInfo(
        kind="image_folder", location=path, num_examples=len(files), class_names=class_names,
        reader=RecordReader(len(files), read, files.__getitem__, may_fail=True),
    )

    def build(strict_mode):
        ds = tf.data.Dataset.from_tensor_slices(
            (tf.range(len(files), dtype=tf.int64), tf.constant(files), tf.constant(labels, tf.int64))
        )
        ds = ds.map(
            _graph_fn(lambda i, f, y: (i, _decode_image(tf.io.read_file(f)), y)),
            num_parallel_calls=AUTOTUNE, deterministic=True,
        )
        return _track_skips(ds, len(files), files, info.skipped, strict_mode)

    if validate:
        _run_validation(build(False), info, strict)
    return _attach(build(strict), info)


# ----------------------------------------------------------------------------- tfrecord


def _open_maybe_compressed(path: str, compression: str):
    if compression == "GZIP":
        return gzip.open(path, "rb")
    if compression == "ZLIB":
        import io

        with open(path, "rb") as f:
            return io.BytesIO(zlib.decompress(f.read()))
    return open(path, "rb")


def _scan_tfrecord(path: str, compression: str) -> Tuple[int, Optional[str], List[Tuple[int, int]]]:
    """Count complete records by walking the framing (length headers).  Returns
    ``(complete_records, problem, spans)`` where problem describes a truncated tail (None
    when the file ends cleanly) and ``spans`` lists each record's (payload offset, length)
    in an uncompressed file (empty for a compressed one).  An uncompressed file's payloads
    are seeked over, not read."""
    count, spans = 0, []
    try:
        size = os.path.getsize(path) if not compression else None
        with _open_maybe_compressed(path, compression) as f:
            while True:
                start = f.tell() if size is not None else 0
                header = f.read(12)
                if not header:
                    return count, None, spans
                if len(header) < 12:
                    return count, f"truncated record header at record {count}", spans
                (length,) = struct.unpack("<Q", header[:8])
                if size is not None:
                    if start + 12 + length + 4 > size:
                        return count, f"truncated record {count} (header says {length} bytes)", spans
                    f.seek(length + 4, os.SEEK_CUR)
                    spans.append((start + 12, length))
                else:
                    payload = f.read(length + 4) if length < (1 << 40) else b""
                    if len(payload) < length + 4:
                        return count, f"truncated record {count} (header says {length} bytes)", spans
                count += 1
    except (OSError, EOFError, zlib.error) as e:
        return count, f"unreadable after record {count} ({e})", spans


def tfrecord(
    files: Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]],
    image_key: str = "image/encoded",
    label_key: Optional[str] = "image/class/label",
    strict: bool = False,
    compression_type: Optional[str] = None,
    validate: bool = False,
) -> tf.data.Dataset:
    """Images from TFRecord files of ``tf.train.Example`` with an encoded image (JPEG/PNG/
    GIF/BMP bytes) under ``image_key`` and an int64 label under ``label_key`` (missing or
    ``label_key=None`` → -1).  ``files`` is a path, a glob pattern or a list of them.

    Records whose image cannot be decoded, or that cannot be read (bad CRC, truncated
    file), are skipped and counted in ``source_info.skipped`` as ``"<file> record <k>"``
    (``strict=True``: raise naming file and record).  A truncated tail is found when the
    dataset is built (the framing is checked up front).
    """
    if isinstance(files, (str, os.PathLike)):
        patterns = [os.fspath(files)]
    else:
        patterns = [os.fspath(f) for f in files]
    if not patterns:
        raise SourceNotFoundError("tfrecord() got an empty list of files")
    paths: List[str] = []
    for pattern in patterns:
        if any(c in pattern for c in "*?["):
            matched = sorted(tf.io.gfile.glob(pattern))
            if not matched:
                raise SourceNotFoundError(f"no TFRecord files match {pattern!r}")
            paths.extend(matched)
        elif os.path.isfile(pattern):
            paths.append(pattern)
        else:
            raise SourceNotFoundError(f"TFRecord file {pattern!r} does not exist")
    compression = (compression_type or "").upper()
    if compression not in ("", "GZIP", "ZLIB"):
        raise ValueError(f"compression_type must be None, 'GZIP' or 'ZLIB', got {compression_type!r}")

    info = SourceInfo(kind="tfrecord", location=",".join(paths))
    counts, offsets, names = [], [], []
    span_file, span_offset, span_length = [], [], []
    for file_number, path in enumerate(paths):
        n, problem, spans = _scan_tfrecord(path, compression)
        span_file.extend([file_number] * len(spans))
        span_offset.extend(offset for offset, _ in spans)
        span_length.extend(length for _, length in spans)
        offsets.append(sum(counts))
        counts.append(n)
        names.extend(f"{path} record {k}" for k in range(n))
        if problem is not None:
            bad = f"{path} record {n}"
            if strict:
                raise CorruptImageError([f"{bad} ({problem})"])
            info.skipped.add(bad, problem)
    total = sum(counts)
    info.num_examples = total + info.skipped.count
    if total == 0:
        raise DataSourceError(f"no complete records in TFRecord file(s) {', '.join(paths)}")

    # Check the keys on the first record, so a wrong key is one clear error rather than
    # every record being skipped.
    example = None
    first_path = paths[0]
    for path in paths:
        records = tf.data.TFRecordDataset(path, compression_type=compression).ignore_errors()
        for record in records.take(16):
            try:
                example = tf.train.Example.FromString(record.numpy())
                first_path = path
                break
            except Exception:
                continue
        if example is not None:
            break
    if example is None:
        raise DataSourceError(f"no readable tf.train.Example records in {', '.join(paths)}")
    feature_map = example.features.feature
    available = sorted(feature_map.keys())
    if image_key not in feature_map or feature_map[image_key].WhichOneof("kind") != "bytes_list":
        raise DataSourceError(
            f"{first_path}: record has no bytes feature {image_key!r}; features: "
            f"{available} (pass image_key=)"
        )
    if label_key is not None and label_key not in feature_map:
        raise MissingLabelError(
            f"{first_path}: record has no label feature {label_key!r}; features: "
            f"{available} (pass label_key=, or label_key=None for unlabelled data)"
        )
    if label_key is not None and feature_map[label_key].WhichOneof("kind") != "int64_list":
        raise DataSourceError(f"{first_path}: feature {label_key!r} is not an int64 label")

    spec = {image_key: tf.io.FixedLenFeature([], tf.string)}
    if label_key is not None:
        spec[label_key] = tf.io.FixedLenFeature([], tf.int64, default_value=-1)

    @_graph_fn
    def parse(index, record):
        parsed = tf.io.parse_single_example(record, spec)
        label = parsed[label_key] if label_key is not None else tf.constant(-1, tf.int64)
        return index, _decode_image(parsed[image_key]), label

    span_file = np.asarray(span_file, np.int32)
    span_offset = np.asarray(span_offset, np.int64)
    span_length = np.asarray(span_length, np.int64)

    def read_payload(index):
        with open(paths[span_file[index]], "rb") as f:
            f.seek(int(span_offset[index]))
            return np.bytes_(f.read(int(span_length[index])))

    @_graph_fn
    def read(index):  # the offsets stay in Python (see fashion_mnist's reader)
        payload = tf.numpy_function(read_payload, [index], tf.string, stateful=False)
        return parse(index, tf.ensure_shape(payload, []))[1:]

    if not compression:
        # Uncompressed files are seekable: a record is read at its offset (the CRCs are not
        # checked there; a damaged payload fails to parse or decode and is skipped instead).
        info.reader = RecordReader(total, read, names.__getitem__, may_fail=True)

    def build(strict_mode):
        per_file = tf.data.Dataset.from_tensor_slices(
            (tf.constant(paths), tf.constant(offsets, tf.int64), tf.constant(counts, tf.int64))
        )
        ds = per_file.flat_map(
            lambda f, off, n: tf.data.TFRecordDataset(f, compression_type=compression)
            .take(n)
            .enumerate(start=off)
        )
        ds = ds.map(parse, num_parallel_calls=AUTOTUNE, deterministic=True)
        return _track_skips(ds, total, names, info.skipped, strict_mode)

    if validate:
        _run_validation(build(False), info, strict)
    return _attach(build(strict), info)


# ------------------------------------------------------------------- seeded record order


_ORDER_SALT = 0x5EED  # keeps the order's random stream apart from the augmentation's
SUBSTITUTE_WINDOW = 16


def record_at(position, num_records: int, seed: int, shuffle: bool = True):
    """The record shown at ``position`` (int64) of an endless stream of epochs: epoch
    ``position // num_records`` visits every record once, in the order of a stateless
    permutation seeded by ``(seed, epoch)`` (``tf.random.experimental.index_shuffle``), so
    any position's record is computed directly, without drawing the ones before it."""
    position = tf.cast(position, tf.int64)  # a scalar or a vector of positions
    within = position % num_records
    if not shuffle or num_records < 2:
        return within
    # One seed per position: (this stream's seed, the position's epoch, a salt). The raw op:
    # the public wrapper cannot take a batch of seeds whose size is unknown when tracing.
    fill = functools.partial(tf.fill, tf.shape(position))
    epoch_seed = tf.stack([fill(tf.constant(seed, tf.int64)), position // num_records,
                           fill(tf.constant(_ORDER_SALT, tf.int64))], axis=-1)
    return tf.raw_ops.RandomIndexShuffle(index=within, seed=epoch_seed,
                                         max_index=fill(tf.constant(num_records - 1, tf.int64)), rounds=4)


def seeded_record_stream(
    source: tf.data.Dataset,
    seed: int,
    start_position: int = 0,
    num_records: Optional[int] = None,
    shuffle: bool = True,
    strict: bool = False,
) -> tf.data.Dataset:
    """Endless ``(image, label, index)`` stream of a source with a :class:`RecordReader`,
    starting at element ``start_position``: each epoch is a permutation seeded by
    ``(seed, epoch)`` (:func:`record_at`), and only the records from ``start_position`` on
    are read and decoded — starting late costs nothing more than starting at 0.
    ``num_records`` uses the first N records only (``data.limit``); ``shuffle=False``
    keeps record order. ``index`` is the record's number (a memory bank's row).

    A record that cannot be read or decoded is replaced by the next readable record of
    the stream (within :data:`SUBSTITUTE_WINDOW` positions) and counted once in
    ``source_info.skipped``; so every position holds an image and a resumed stream sees
    the same batches as an uninterrupted one. ``strict=True`` raises instead.
    """
    info = get_source_info(source)
    reader = info.reader if info is not None else None
    if reader is None:
        kind = info.kind if info is not None else "this"
        raise DataSourceError(f"{kind} source cannot be read at a record index (no RecordReader)")
    n = reader.num_records if num_records is None else min(int(num_records), reader.num_records)
    if start_position < 0:
        raise ValueError(f"start_position must be >= 0, got {start_position}")
    positions = tf.data.Dataset.range(start_position, tf.int64.max)

    @_graph_fn
    def read_at(position):
        index = record_at(position, n, seed, shuffle)
        image, label = reader.read(index)
        return position, image, label, index

    if reader.read_many is not None and not reader.may_fail:
        @_graph_fn
        def read_block(block):
            index = record_at(block, n, seed, shuffle)
            images, labels = reader.read_many(index)
            return images, labels, index

        ds = positions.batch(256).map(read_block, num_parallel_calls=AUTOTUNE, deterministic=True).unbatch()
        return _attach(ds, info)
    if not reader.may_fail:
        ds = positions.map(read_at, num_parallel_calls=AUTOTUNE, deterministic=True)
        ds = ds.map(_graph_fn(lambda position, image, label, index: (image, label, index)))
        return _attach(ds, info)

    def report(position, found, indices):
        names = [reader.record_name(int(i)) for i in indices[: max(int(found - position), 0) or None]]
        if found < 0:
            raise DataSourceError(
                f"{SUBSTITUTE_WINDOW} records in a row cannot be read or decoded from stream position "
                f"{int(position)} on: {', '.join(names[:3])} ...; check the data (data.strict=true names "
                "every bad file up front)"
            )
        if strict:
            raise CorruptImageError(names)
        for name in names:
            info.skipped.add(name)
        return np.int64(0)

    sentinel = tf.data.Dataset.from_tensors(
        (tf.constant(-1, tf.int64), tf.zeros([1, 1, 3], tf.uint8), tf.constant(-1, tf.int64), tf.constant(-1, tf.int64))
    )

    def first_readable(position):
        window = tf.data.Dataset.range(position, position + SUBSTITUTE_WINDOW).map(read_at).ignore_errors()
        return window.concatenate(sentinel).take(1).map(_graph_fn(
            lambda found, image, label, index: (position, found, image, label, index)))

    @_graph_fn
    def check(position, found, image, label, index):
        done = tf.cond(
            tf.not_equal(found, position),
            lambda: tf.numpy_function(
                report, [position, found, tf.stack([record_at(position + k, n, seed, shuffle)
                                                    for k in range(SUBSTITUTE_WINDOW)])], tf.int64),
            lambda: tf.constant(0, tf.int64),
        )
        with tf.control_dependencies([done]):
            return tf.identity(image), label, index

    # Parallel and deterministic: each position yields exactly one element, in order.
    ds = positions.interleave(first_readable, cycle_length=AUTOTUNE, block_length=1,
                              num_parallel_calls=AUTOTUNE, deterministic=True)
    return _attach(ds.map(check), info)


# ------------------------------------------------------------------------------ config


SOURCES: Dict[str, Callable[..., tf.data.Dataset]] = {
    "fashion_mnist": fashion_mnist,
    "tfds": tfds_source,
    "image_folder": image_folder,
    "tfrecord": tfrecord,
}

# How a data config's fields (``burn_tf.config.DataConfig``: ``data.*``) become the arguments
# of each source in SOURCES, given the feature keys to pass (image_key, label_key). With
# SOURCES the one table of the data sources: the config checks ``data.source`` against
# SOURCES and pretraining builds through :func:`source_from_data_config`. ``data.strict``
# also decodes every file once up front (``validate``), so a corrupt or truncated one is named
# before a run directory is touched, not in the middle of an epoch.
_ARGUMENTS_FROM_DATA_CONFIG: Dict[str, Callable[..., dict]] = {
    "fashion_mnist": lambda data, keys: {"split": data.split, "root": data.path},
    "tfds": lambda data, keys: {"name": data.name, "split": data.split, "data_dir": data.data_dir, **keys},
    "image_folder": lambda data, keys: {"path": data.path, "strict": data.strict, "validate": data.strict},
    "tfrecord": lambda data, keys: {"files": data.path, "strict": data.strict, "validate": data.strict, **keys},
}


def source_from_data_config(data, read_labels: bool = True) -> tf.data.Dataset:
    """The source a data config describes (``data``: a ``burn_tf.config.DataConfig``, read
    by its fields). ``data.image_key`` / ``data.label_key`` (None: the source's defaults)
    name the features of a tfds or TFRecord source; ``read_labels=False`` reads no label
    (label -1), so a source without a label feature is fine. ``data.limit`` is the caller's."""
    keys = {}
    if data.image_key is not None:
        keys["image_key"] = data.image_key
    if not read_labels:
        keys["label_key"] = None
    elif data.label_key is not None:
        keys["label_key"] = data.label_key
    if data.source not in _ARGUMENTS_FROM_DATA_CONFIG:
        raise ValueError(f"unknown data source kind {data.source!r}; valid kinds: {', '.join(sorted(SOURCES))}")
    return source_from_config(data.source, **_ARGUMENTS_FROM_DATA_CONFIG[data.source](data, keys))


def source_from_config(kind: str, **kwargs) -> tf.data.Dataset:
    """Build a source by name: ``"fashion_mnist"``, ``"tfds"``, ``"image_folder"`` or
    ``"tfrecord"``; ``kwargs`` go to the matching function."""
    try:
        fn = SOURCES[kind]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown data source kind {kind!r}; valid kinds: {', '.join(sorted(SOURCES))}"
        ) from None
    import inspect

    signature = inspect.signature(fn)
    try:
        signature.bind(**kwargs)
    except TypeError as e:
        raise TypeError(
            f"data source {kind!r}: {e}; accepted arguments: {list(signature.parameters)}"
        ) from None
    return fn(**kwargs)
