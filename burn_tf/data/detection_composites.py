"""A generated, deterministic detection set: Fashion-MNIST items pasted on larger canvases.

No detection data ships offline (docs/design.md, offline rule), so the Keras-native detection
evaluation trains and tests on composites: each image is a ``canvas_size`` × ``canvas_size``
canvas with 1–4 Fashion-MNIST items, each rescaled to a random side length and pasted at a
random position. Train composites take their items from the Fashion-MNIST *train* split,
test composites from the *test* split, so no item is seen in both.

Two backgrounds (``background=``):

* ``"black"``: items on an exactly-zero canvas. Finding an object is thresholding, so even a
  frozen *random* backbone localises well and the benchmark barely tells backbones apart
  (measured: AP50 0.238 random vs 0.245 fine-tuned).
* ``"clutter"``: a smooth random texture plus pixel noise, 2–6 *fragments* (crops of 30–55 %
  of the side of other items of the split, at object scale — parts, never whole, unlabelled
  items), the objects alpha-blended on top (alpha = pixel / 64, clipped to 1), then
  *occluders* (opaque texture rectangles covering 20–40 % of an object's width or height at
  one of its sides, probability ``occlusion``). Boxes stay the full (amodal) item extent, as
  VOC annotates occluded objects. Telling an item from a fragment or the texture takes
  shape features, which is what a pretrained backbone should add.

Boxes (keras-cv "dense" format, ``bounding_box_format="xyxy"``)
-----------------------------------------------------------------
``boxes`` is ``float32 [N, max_objects, 4]`` in **absolute pixel** ``xyxy`` coordinates
(``x_min, y_min, x_max, y_max``; ``x_max``/``y_max`` exclusive, i.e. a box covering pixel
columns 3..9 is ``[3, ., 10, .]``), ``classes`` is ``float32 [N, max_objects]`` with the
Fashion-MNIST class id 0–9. Unused slots are padded with ``-1`` (boxes and classes), which
is what keras-cv's RetinaNet label encoder expects. Each box is *tight*: the bounding box of
the item's non-zero pixels after rescaling (Fashion-MNIST items sit on an exactly-zero
background with a margin); on the black background every canvas pixel outside all boxes is
0 (items are combined with a pixel-wise maximum). Two items' boxes overlap by at most
``max_iou``.

Deterministic: the same ``(split, num_images, seed, …)`` gives the same arrays, bit for bit
(numpy ``default_rng`` seeded with ``[seed, split]``; resizing by Pillow bilinear).

>>> train = make_detection_composites("train", num_images=512, canvas_size=128, seed=0)
>>> train.images.shape, train.boxes.shape          # (512, 128, 128), (512, 4, 4)
>>> ds = train.to_dataset(batch_size=16)           # {"images", "bounding_boxes"} batches
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np

from burn_tf.data.composites import split_id, tight_box
from burn_tf.data.source_fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist_arrays

BOUNDING_BOX_FORMAT = "xyxy"
NUM_CLASSES = 10
BACKGROUNDS = ("black", "clutter")
_MAX_PLACEMENT_TRIES = 50


@dataclasses.dataclass
class DetectionComposites:
    """A generated detection set (see module docstring for the box format).

    ``images`` uint8 ``[N, S, S]`` (grey; :meth:`to_dataset` makes float RGB in [0, 1]),
    ``boxes`` float32 ``[N, M, 4]`` xyxy pixels, ``classes`` float32 ``[N, M]`` (−1 padded),
    ``num_objects`` int32 ``[N]``, ``item_indices`` int64 ``[N, M]`` (index of each pasted
    item in its Fashion-MNIST split, −1 padded).
    """

    images: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    num_objects: np.ndarray
    item_indices: np.ndarray
    split: str
    canvas_size: int
    class_names: tuple[str, ...]
    bounding_box_format: str = BOUNDING_BOX_FORMAT

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dataset(self, batch_size: int | None = None, shuffle: bool = False, seed: int = 0,
                   flip: bool = False, rel: bool = False):
        """``tf.data`` of ``{"images": float32 [S,S,3] in [0,1], "bounding_boxes": {"boxes",
        "classes"}}`` — the dict keras-cv's ``RetinaNet.fit`` reads directly.

        ``flip=True`` adds a random horizontal flip (boxes flipped with the image);
        ``rel=True`` gives ``rel_xyxy`` boxes (divided by the canvas size) instead of pixels.
        """
        import tensorflow as tf

        size = float(self.canvas_size)
        ds = tf.data.Dataset.from_tensor_slices((self.images, self.boxes, self.classes))
        if shuffle:
            ds = ds.shuffle(len(self), seed=seed, reshuffle_each_iteration=True)
        # Flip decisions come from a seeded stream zipped in, so they repeat run to run.
        coins = tf.data.Dataset.random(seed=seed).map(coin_flip)
        ds = tf.data.Dataset.zip((ds, coins))

        def convert(item, do_flip):
            image, boxes, classes = item
            image = tf.image.grayscale_to_rgb(tf.cast(image[..., None], tf.float32) / 255.0)
            valid = classes[:, None] >= 0
            if flip:
                flipped = tf.stack([size - boxes[:, 2], boxes[:, 1], size - boxes[:, 0], boxes[:, 3]], axis=-1)
                boxes = tf.where(do_flip & valid, flipped, boxes)
                image = tf.cond(do_flip, lambda: tf.image.flip_left_right(image), lambda: image)
            if rel:
                boxes = tf.where(valid, boxes / size, boxes)
            return {"images": image, "bounding_boxes": {"boxes": boxes, "classes": classes}}

        ds = ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if batch_size is not None:
            ds = ds.batch(batch_size)
        return ds.prefetch(tf.data.AUTOTUNE)


def coin_flip(r):
    """A seeded ``tf.data.Dataset.random`` int64 → a fair coin (the flip decision of a
    training image: the composites' and tfds VOC's detection pipelines)."""
    return r % 2 == 1


def box_iou_matrix(a, b) -> np.ndarray:
    """IoU of every xyxy box in ``a`` [N,4] with every box in ``b`` [M,4] → [N,M] (float64;
    0 where the union is empty). The one box IoU of burn_tf: the composites' placement
    check and the detection metrics (:mod:`burn_tf.evaluate.metrics`)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _resize(item: np.ndarray, side: int) -> np.ndarray:
    if side == item.shape[0]:
        return np.array(item, dtype=np.uint8)
    from PIL import Image

    return np.asarray(Image.fromarray(np.asarray(item, np.uint8)).resize((side, side), Image.BILINEAR))


def make_detection_composites(
    split: str = "train",
    num_images: int = 1000,
    canvas_size: int = 128,
    *,
    min_objects: int = 1,
    max_objects: int = 4,
    item_scale: tuple[float, float] = (0.2, 0.45),
    max_iou: float = 0.1,
    background: str = "black",
    occlusion: float = 0.3,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    arrays: tuple[np.ndarray, np.ndarray] | None = None,
    class_names: Sequence[str] | None = None,
) -> DetectionComposites:
    """Generates ``num_images`` composites from Fashion-MNIST ``split`` ("train" | "test").

    Each image gets ``k ~ U{min_objects..max_objects}`` items; each item is a random image
    of the split, rescaled (bilinear) to a square of side ``round(s · canvas_size)`` with
    ``s ~ U(item_scale)`` and pasted where its tight box overlaps every earlier box with IoU
    ≤ ``max_iou`` (after 50 failed positions the item is dropped, so an image may hold fewer
    than k, never fewer than one). ``background`` is ``"black"`` or ``"clutter"`` (module
    docstring; ``occlusion`` is the probability that an object gets an occluder there).
    ``arrays=(images uint8 [N,H,W], labels [N])`` replaces Fashion-MNIST (read from ``root``
    / the Debian package otherwise).
    """
    split_seed = split_id(split)
    if int(num_images) < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images!r}")
    if not 16 <= int(canvas_size) <= 4096:
        raise ValueError(f"canvas_size must be in [16, 4096], got {canvas_size!r}")
    if not 1 <= int(min_objects) <= int(max_objects):
        raise ValueError(f"need 1 <= min_objects <= max_objects, got {min_objects!r}, {max_objects!r}")
    lo, hi = (float(v) for v in item_scale)
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"item_scale must satisfy 0 < low <= high <= 1 (fractions of the canvas), got {item_scale!r}")
    if not 0 <= float(max_iou) <= 1:
        raise ValueError(f"max_iou must be in [0, 1], got {max_iou!r}")
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {BACKGROUNDS}, got {background!r}")
    if not 0 <= float(occlusion) <= 1:
        raise ValueError(f"occlusion must be a probability in [0, 1], got {occlusion!r}")
    if arrays is None:

        items, labels = load_fashion_mnist_arrays(split, root)
        class_names = tuple(class_names or FASHION_MNIST_CLASSES)
    else:
        items, labels = (np.asarray(a) for a in arrays)
        if items.ndim != 3 or items.dtype != np.uint8 or len(items) != len(labels) or len(items) == 0:
            raise ValueError(
                "arrays must be (uint8 images [N, H, W], labels [N]) with N > 0; got "
                f"{items.dtype} {items.shape} and {np.shape(labels)}"
            )
        if class_names is None:
            class_names = tuple(str(i) for i in range(int(np.max(labels)) + 1))
        class_names = tuple(class_names)
    labels = np.asarray(labels, np.int64)
    if labels.min() < 0 or labels.max() >= len(class_names):
        raise ValueError(f"labels must be in [0, {len(class_names)}), got [{labels.min()}, {labels.max()}]")

    n, s, m = int(num_images), int(canvas_size), int(max_objects)
    min_side = max(2, int(round(lo * s)))
    max_side = min(s, max(min_side, int(round(hi * s))))
    rng = np.random.default_rng([int(seed), split_seed])
    images = np.zeros((n, s, s), np.uint8)
    boxes = np.full((n, m, 4), -1.0, np.float32)
    classes = np.full((n, m), -1.0, np.float32)
    indices = np.full((n, m), -1, np.int64)
    counts = np.zeros((n,), np.int32)
    clutter = background == "clutter"
    for i in range(n):
        if clutter:
            images[i] = _clutter(rng, items, s, min_side, max_side)
        want = int(rng.integers(int(min_objects), m + 1))
        placed = []
        for _ in range(want):
            # Draw the item (skipping blank ones), its size, then try positions.
            for _ in range(10):
                index = int(rng.integers(len(items)))
                side = int(rng.integers(min_side, max_side + 1))
                item = _resize(items[index], side)
                box = tight_box(item)
                if box is not None:
                    break
            else:
                continue
            for _ in range(_MAX_PLACEMENT_TRIES):
                x = int(rng.integers(0, s - side + 1))
                y = int(rng.integers(0, s - side + 1))
                candidate = (box[0] + x, box[1] + y, box[2] + x, box[3] + y)
                if not placed or box_iou_matrix([candidate], placed).max() <= max_iou:
                    break
            else:
                if placed:
                    continue
            region = images[i, y : y + side, x : x + side]
            if clutter:
                region[...] = _blend(region, item)
            else:
                np.maximum(region, item, out=region)
            k = len(placed)
            placed.append(candidate)
            boxes[i, k] = candidate
            classes[i, k] = labels[index]
            indices[i, k] = index
        counts[i] = len(placed)
        if clutter:
            for box in placed:
                if rng.random() < float(occlusion):
                    _occlude(rng, images[i], box)
    return DetectionComposites(
        images=images, boxes=boxes, classes=classes, num_objects=counts, item_indices=indices,
        split=split, canvas_size=s, class_names=class_names,
    )


# ------------------------------------------------------------------ cluttered backgrounds


def _blend(under: np.ndarray, item: np.ndarray) -> np.ndarray:
    """``item`` over ``under`` with alpha = item / 64 (clipped to 1): an item's bright pixels
    replace the background, its faint edge blends into it, its zero margin leaves it."""
    alpha = np.clip(item.astype(np.float32) / 64.0, 0.0, 1.0)
    out = alpha * item.astype(np.float32) + (1.0 - alpha) * under.astype(np.float32)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth random field (a coarse uniform grid, bilinearly upsampled) plus pixel noise."""
    from PIL import Image

    grid = int(rng.integers(3, 9))
    coarse = rng.uniform(0.0, 1.0, (grid, grid)).astype(np.float32)
    smooth = np.asarray(Image.fromarray(coarse, mode="F").resize((width, height), Image.BILINEAR))
    level, contrast, noise = rng.uniform(10, 70), rng.uniform(10, 60), rng.uniform(3, 12)
    field = level + contrast * (smooth - 0.5) + rng.normal(0.0, noise, (height, width))
    return np.clip(np.round(field), 0, 255).astype(np.uint8)


def _clutter(rng, items, size: int, min_side: int, max_side: int) -> np.ndarray:
    """A textured canvas with 2–6 item fragments (crops of 30–55 % of an item's side, scaled
    like the objects, alpha-blended)."""
    from PIL import Image

    canvas = _texture(rng, size, size)
    for _ in range(int(rng.integers(2, 7))):
        item = items[int(rng.integers(len(items)))]
        box = tight_box(item)
        if box is None:
            continue
        x0, y0, x1, y1 = box
        ch = max(2, int(round(rng.uniform(0.3, 0.55) * (y1 - y0))))
        cw = max(2, int(round(rng.uniform(0.3, 0.55) * (x1 - x0))))
        top = int(rng.integers(y0, max(y0, y1 - ch) + 1))
        left = int(rng.integers(x0, max(x0, x1 - cw) + 1))
        crop = item[top : top + ch, left : left + cw]
        scale = int(rng.integers(min_side, max_side + 1)) / item.shape[0]
        h = min(size, max(2, int(round(ch * scale))))
        w = min(size, max(2, int(round(cw * scale))))
        crop = np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize((w, h), Image.BILINEAR))
        y = int(rng.integers(0, size - h + 1))
        x = int(rng.integers(0, size - w + 1))
        canvas[y : y + h, x : x + w] = _blend(canvas[y : y + h, x : x + w], crop)
    return canvas


def _occlude(rng, canvas: np.ndarray, box) -> None:
    """An opaque texture rectangle over 20–40 % of ``box``'s width or height, at one side."""
    x0, y0, x1, y1 = (int(v) for v in box)
    w, h = x1 - x0, y1 - y0
    side = int(rng.integers(4))
    frac = rng.uniform(0.2, 0.4)
    if side < 2:  # left / right: a band across the full height
        band = max(1, int(round(frac * w)))
        xa = x0 if side == 0 else x1 - band
        ya, xb, yb = y0, xa + band, y1
    else:  # top / bottom
        band = max(1, int(round(frac * h)))
        ya = y0 if side == 2 else y1 - band
        xa, xb, yb = x0, x1, ya + band
    canvas[ya:yb, xa:xb] = _texture(rng, yb - ya, xb - xa)
