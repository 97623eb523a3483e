"""A generated, deterministic multi-label set: Fashion-MNIST items pasted on larger canvases.

No VOC07 ships offline (docs/design.md, offline rule), so the SVM evaluator's embedded default
is a VOC07-like multi-label classification task made from Fashion-MNIST: each image is a
black ``canvas`` × ``canvas`` grey canvas holding ``min_items``–``max_items`` Fashion-MNIST
items (28 × 28, pasted at random positions, combined by a pixel-wise maximum), and its label
is the multi-hot vector of the items' classes over the 10 Fashion-MNIST classes.

Train composites take their items from the Fashion-MNIST *train* split, test composites from
the *test* split, so no item is seen in both. Deterministic: the same ``(n, canvas,
max_items, seed, split, min_items)`` gives the same arrays, bit for bit (numpy
``default_rng`` seeded with ``[seed, split]``).

>>> images, labels = multilabel_composites(512, canvas=64, max_items=3, seed=0, split="train")
>>> images.shape, labels.shape        # (512, 64, 64) uint8, (512, 10) int32 multi-hot
"""

from __future__ import annotations

import os

import numpy as np

from burn_tf.data.source_fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist_arrays

NUM_CLASSES = 10
ITEM_SIZE = 28
CLASS_NAMES = tuple(FASHION_MNIST_CLASSES)
# The seed of a split's stream is [seed, SPLIT_IDS[split]] (here and in detection_composites):
# train and test composites of one seed never share a draw.
SPLIT_IDS = {"train": 0, "test": 1}
# Placements are re-drawn until two items' tight boxes overlap by at most this fraction of
# the smaller box (then the least-overlapping of the tries is taken).
_MAX_OVERLAP = 0.25
_PLACEMENT_TRIES = 20


def split_id(split: str) -> int:
    """The id of a Fashion-MNIST split ("train" | "test") in a composite generator's seed."""
    if split not in SPLIT_IDS:
        raise ValueError(f"split must be one of {sorted(SPLIT_IDS)}, got {split!r}")
    return SPLIT_IDS[split]


def tight_box(item: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(x0, y0, x1, y1)`` (exclusive ends) of the non-zero pixels of a 2-D item; None if blank."""
    rows = np.flatnonzero(item.any(axis=1))
    cols = np.flatnonzero(item.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _overlap_fraction(a, b) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return (w * h) / max(smaller, 1)


def multilabel_composites(
    n: int,
    canvas: int = 64,
    max_items: int = 3,
    seed: int = 0,
    split: str = "train",
    *,
    min_items: int = 1,
    root: str | os.PathLike | None = None,
    return_boxes: bool = False,
):
    """``n`` composites → ``(images uint8 [n, canvas, canvas], labels int32 [n, 10])``.

    ``labels[i, c] == 1`` iff at least one item of class ``c`` is on image ``i`` (two items
    may share a class). ``return_boxes=True`` adds a list of ``int32 [m_i, 5]`` arrays, one
    row ``(x0, y0, x1, y1, class)`` per item (tight pixel box, x1/y1 exclusive).
    ``root`` is passed to :func:`burn_tf.data.source_fashion_mnist.load_fashion_mnist_arrays`.
    """
    split_seed = split_id(split)
    if int(n) < 1:
        raise ValueError(f"n must be >= 1, got {n!r}")
    if int(canvas) < ITEM_SIZE:
        raise ValueError(f"canvas must be >= {ITEM_SIZE} (the item size), got {canvas!r}")
    if not 1 <= int(min_items) <= int(max_items):
        raise ValueError(f"need 1 <= min_items <= max_items, got min_items={min_items!r}, "
                         f"max_items={max_items!r}")
    n, canvas, min_items, max_items = int(n), int(canvas), int(min_items), int(max_items)
    items, item_labels = load_fashion_mnist_arrays(split, root)
    rng = np.random.default_rng([int(seed), split_seed])
    images = np.zeros((n, canvas, canvas), np.uint8)
    labels = np.zeros((n, NUM_CLASSES), np.int32)
    boxes = []
    span = canvas - ITEM_SIZE + 1
    for i in range(n):
        count = int(rng.integers(min_items, max_items + 1))
        placed = []
        for _ in range(count):
            idx = int(rng.integers(len(items)))
            item = items[idx]
            x0, y0, x1, y1 = tight_box(item) or (0, 0, item.shape[1], item.shape[0])  # blank: whole item
            best, best_overlap = None, None
            for _try in range(_PLACEMENT_TRIES):
                top, left = (int(v) for v in rng.integers(0, span, size=2))
                box = (left + x0, top + y0, left + x1, top + y1)
                overlap = max((_overlap_fraction(box, b[:4]) for b in placed), default=0.0)
                if best is None or overlap < best_overlap:
                    best, best_overlap = (top, left, box), overlap
                if overlap <= _MAX_OVERLAP:
                    break
            top, left, box = best
            region = images[i, top : top + ITEM_SIZE, left : left + ITEM_SIZE]
            np.maximum(region, item, out=region)
            cls = int(item_labels[idx])
            labels[i, cls] = 1
            placed.append((*box, cls))
        boxes.append(np.asarray(placed, np.int32).reshape(-1, 5))
    if return_boxes:
        return images, labels, boxes
    return images, labels
