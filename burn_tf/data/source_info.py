"""What every source shares: its errors, the :class:`SourceInfo` it carries, and skip tracking.

Every source yields ``image`` as ``uint8 [H, W, 3]`` (grey inputs are repeated to three
channels, alpha is dropped) and ``label`` as an ``int64`` scalar (``-1`` when unlabelled).
Sources never download anything.  Each dataset a source returns carries a
:class:`SourceInfo` as its ``source_info`` attribute (read it with :func:`get_source_info`):
where the data came from, how many examples were listed, the class names, a
:class:`SkippedFiles` record of every image that could not be read or decoded, and a
:class:`RecordReader` when record ``i`` can be read directly.

Skipping unreadable images (``image_folder``, ``tfrecord``)
---------------------------------------------------------
Decoding happens inside ``tf.data`` (graph mode, in parallel).  A corrupt or truncated
image makes the decode op fail; ``Dataset.ignore_errors`` drops that element, and a
sequential ``scan`` over the surviving elements' indices (plus an end sentinel) finds the
gaps and records exactly which files/records were dropped (:func:`track_skips`):
``info.skipped`` is filled while the data is iterated, once per file (a second epoch does
not count it again), and each skip is logged once at WARNING level.  With ``strict=True``
the first gap raises instead, naming the file.  ``validate=True`` runs that pass once at
construction (:func:`run_validation`), so the count (and, in strict mode, a clean
:class:`CorruptImageError`) is there before training starts; it costs one decoding pass
over the data.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

logger = logging.getLogger(__name__)

_graph_fn = tf.autograph.experimental.do_not_convert  # no AutoGraph needed in map fns


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
        self._names: list[str] = []
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
    def names(self) -> list[str]:
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
    num_examples: int | None = None  # listed before skipping; None when unknown
    class_names: tuple[str, ...] = ()
    skipped: SkippedFiles = dataclasses.field(default_factory=SkippedFiles)
    # Direct access to record i (None: the source can only be read in order).
    reader: RecordReader | None = None

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
    read: Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]]
    record_name: Callable[[int], str]
    may_fail: bool = False
    # Optional: int64 [n] indices → (uint8 [n, H, W, 3], int64 [n]) in one call (in-memory data).
    read_many: Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]] | None = None


def get_source_info(ds: tf.data.Dataset) -> SourceInfo | None:
    """The :class:`SourceInfo` attached to a source (or a pipeline built on it), else None."""
    return getattr(ds, "source_info", None)


def with_source_info(ds: tf.data.Dataset, info: SourceInfo | None) -> tf.data.Dataset:
    """``ds`` carrying ``info`` (e.g. a ``take`` of a source, which drops the attribute)."""
    if info is not None:
        try:
            ds.source_info = info
        except AttributeError:  # pragma: no cover - defensive, datasets accept attributes
            pass
    return ds


# -------------------------------------------------------------------- decoding and skips


def decode_image(data: tf.Tensor) -> tf.Tensor:
    """Encoded image bytes (JPEG, PNG, GIF, BMP) → uint8 [H, W, 3] (grey repeated, alpha dropped)."""
    image = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
    image.set_shape([None, None, 3])
    return image


def track_skips(
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


def run_validation(ds: tf.data.Dataset, info: SourceInfo, strict: bool) -> None:
    """Iterate once (non-strict) so ``info.skipped`` is complete; raise cleanly if strict."""
    for _ in ds:
        pass
    if strict and info.skipped.count:
        raise CorruptImageError(info.skipped.names)
