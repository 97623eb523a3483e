"""Feature extraction: a backbone's pooled features of evaluation images, in inference mode.

Every evaluator that does not fine-tune calls :func:`extract_features` (or :func:`embed`,
which adds the pooled-output check), naming its phase for the progress lines;
:func:`resolve_input_size` is the one check of a backbone's input against the images it
will be fed. :func:`final_feature_map`, :func:`pooling_grid_for` and
:class:`GridAveragePooling` pool a map to a fixed grid (the SVM's 4,096-d features, the
layer-wise probes' ~9,000-d ones).
"""

from __future__ import annotations

import math
import time

import numpy as np
import tensorflow as tf

from burn_tf.data.eval_images import prepare_images
from burn_tf.progress import Progress


def resolve_input_size(model: tf.keras.Model, image_size: int | None = None) -> int:
    """The square input size of an RGB feature extractor (clear error otherwise).

    The backbone's fixed input size; ``image_size`` must agree with it when given, and is
    needed when the backbone has no fixed size.
    """
    channels = model.inputs[0].shape[-1]
    if channels not in (None, 3):
        raise ValueError(f"backbone {model.name!r} takes {channels}-channel images; evaluators feed "
                         "RGB images in [0, 1] (grey images are repeated to 3 channels)")
    fixed = model.inputs[0].shape[1]
    if fixed is None:
        if image_size is None:
            raise ValueError(f"backbone {model.name!r} has no fixed input size; pass image_size=")
        return int(image_size)
    if image_size is not None and int(image_size) != int(fixed):
        raise ValueError(
            f"image_size={image_size} does not match the backbone {model.name!r}, which takes "
            f"{fixed}×{fixed} inputs (images are resized to the backbone's size; leave "
            "image_size unset)"
        )
    return int(fixed)


def _traced_forward(model: tf.keras.Model, size: int):
    """One traced inference function per model and size, for any batch size: tracing a
    binary net costs seconds, so it must not happen per call or per last short batch."""
    cache = model.__dict__.setdefault("_burn_tf_forward", {})
    if size not in cache:
        spec = tf.TensorSpec([None, size, size, 3], tf.float32)
        cache[size] = tf.function(lambda batch: model(batch, training=False), input_signature=[spec])
    return cache[size]


def extract_features(
    model: tf.keras.Model,
    images: np.ndarray | tf.data.Dataset,
    batch_size: int = 256,
    image_size: int | None = None,
    progress: str | None = None,
) -> np.ndarray:
    """Features of ``images`` (numpy array or a dataset of image batches / (image, label)).

    Runs the model in inference mode (BatchNorm uses its moving statistics) batch by batch,
    so a 60k-image set never sits in memory as float images. ``progress`` names the phase
    in progress lines (:class:`~burn_tf.progress.Progress`: batches done, time left);
    None: silent.
    """
    size = resolve_input_size(model, image_size)
    forward = _traced_forward(model, size)
    outputs = []
    if isinstance(images, tf.data.Dataset):
        batches = int(images.cardinality())
        meter = Progress(progress, batches if batches >= 0 else None, "batches") if progress else None
        for batch in images:
            if isinstance(batch, (tuple, list)):
                batch = batch[0]
            outputs.append(forward(prepare_images(batch, size)).numpy())
            if meter:
                meter.advance()
    else:
        images = np.asarray(images)
        if len(images) == 0:
            raise ValueError("no images to extract features from")
        meter = Progress(progress, math.ceil(len(images) / batch_size), "batches") if progress else None
        for start in range(0, len(images), batch_size):
            outputs.append(forward(prepare_images(images[start : start + batch_size], size)).numpy())
            if meter:
                meter.advance()
    if meter:
        meter.finish()
    return np.concatenate(outputs, axis=0).astype(np.float32)


def embed(model: tf.keras.Model, images, image_size: int, batch_size: int = 256,
          progress: str | None = None) -> np.ndarray:
    """Features of ``images`` in inference mode, batch by batch (float32 [N, D]).

    :func:`extract_features` traces the model once per input size and reuses it, so
    embedding a bank and then the queries (or once per epoch in the monitor) does not pay a
    new trace each time; this adds the pooled-output check. ``progress``: see
    :func:`extract_features`.
    """
    out = extract_features(model, np.asarray(images), batch_size=int(batch_size), image_size=int(image_size),
                           progress=progress)
    if out.ndim != 2:
        raise ValueError(f"model {model.name!r} does not return pooled features [B, D]")
    return out


def embed_timed(model: tf.keras.Model, image_sets, image_size: int, batch_size: int = 256,
                progress: str | None = None) -> tuple[list[np.ndarray], float]:
    """:func:`embed` of each array of ``image_sets`` in turn → (their features, seconds taken).
    ``progress``: the phase's name in progress lines (numbered per set when there are
    several); None: silent."""
    start = time.perf_counter()
    image_sets = list(image_sets)
    count = len(image_sets)
    names = ([None] * count if progress is None else [progress] if count == 1
             else [f"{progress} {i + 1}/{count}" for i in range(count)])
    features = [embed(model, images, image_size, batch_size, name)
                for images, name in zip(image_sets, names, strict=True)]
    return features, time.perf_counter() - start


def check_features(x, what: str = "features") -> np.ndarray:
    """``x`` as float32 [N, D], or a clear error (not 2-d, empty, NaN / Inf)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"{what} must be a 2-d array [N, D], got shape {x.shape}")
    if len(x) == 0:
        raise ValueError(f"{what} is empty")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} contains NaN or Inf")
    return x


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


# ------------------------------------------------------------ pooled feature maps


def final_feature_map(model: tf.keras.Model):
    """The 4-D map [B, H, W, C] the backbone's final global *average* pooling reads (or its
    output when that is 4-D); None otherwise (``Flatten``, global max pooling, …: a grid of
    averages would not be a finer version of that backbone's feature)."""
    output = model.outputs[0]
    if output.shape.rank == 4:
        return output
    layer = output._keras_history.layer
    if isinstance(layer, tf.keras.layers.GlobalAveragePooling2D) and layer.input.shape.rank == 4:
        return layer.input
    return None


def pooling_grid_for(channels: int, feature_dim: int) -> int:
    """The side g of the average-pooling grid that makes ``channels · g²`` closest to
    ``feature_dim`` (ReActNet-A: 1024 channels, 4,096 → 2; width 0.25: 256 → 4)."""
    return max(1, int(round(math.sqrt(float(feature_dim) / int(channels)))))


class GridAveragePooling(tf.keras.layers.Layer):
    """Adaptive average pooling [B, H, W, C] → [B, g·g·C] (row-major bins, channels last).

    Bin i of an axis of length n covers ``[floor(i·n/g), ceil((i+1)·n/g))`` — PyTorch's
    ``AdaptiveAvgPool2d`` — so g = n averages single pixels and g = 1 is global pooling.
    ``grid`` larger than the map is an error (nothing to average; upsample the input).
    """

    def __init__(self, grid: int, **kwargs):
        super().__init__(**kwargs)
        self.grid = int(grid)

    def build(self, input_shape):
        height, width = int(input_shape[1]), int(input_shape[2])
        if self.grid < 1 or self.grid > min(height, width):
            raise ValueError(f"pooling grid {self.grid}×{self.grid} does not fit a {height}×{width} "
                             "feature map (grid must be 1 … the map's side; feed larger images)")
        self.bins = [
            [(math.floor(i * n / self.grid), math.ceil((i + 1) * n / self.grid)) for i in range(self.grid)]
            for n in (height, width)
        ]
        super().build(input_shape)

    def call(self, x):
        cells = [tf.reduce_mean(x[:, r0:r1, c0:c1, :], axis=[1, 2])
                 for r0, r1 in self.bins[0] for c0, c1 in self.bins[1]]
        return tf.concat(cells, axis=-1) if len(cells) > 1 else cells[0]

    def get_config(self):
        return {**super().get_config(), "grid": self.grid}
