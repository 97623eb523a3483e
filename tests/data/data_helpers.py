"""Helpers for the data tests (unique module name, imported by the tests).

Every file a test reads is written by the test itself, except the optional real Debian
Fashion-MNIST."""

import gzip
import io
import os
import struct

import numpy as np
import tensorflow as tf

from burn_tf.data.view_augmentation import augment_views
from burn_tf.data.views import AugmentConfig, per_view_configs

REAL_FASHION_DIR = "/usr/share/datasets/fashion-mnist"


def write_idx(path, array, magic=None, gz=True):
    """Write ``array`` (uint8) as an idx file (gzipped when ``gz``)."""
    array = np.asarray(array, dtype=np.uint8)
    if magic is None:
        magic = 0x00000800 | array.ndim
    header = struct.pack(">I", magic) + struct.pack(">" + "I" * array.ndim, *array.shape)
    data = header + array.tobytes()
    opener = gzip.open if gz else open
    with opener(path, "wb") as f:
        f.write(data)
    return path


def encode_image(array, fmt="PNG"):
    from PIL import Image

    array = np.asarray(array, dtype=np.uint8)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


def write_image(path, array, fmt=None):
    fmt = fmt or ("JPEG" if str(path).lower().endswith((".jpg", ".jpeg")) else "PNG")
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(encode_image(array, fmt))
    return str(path)


def solid(h, w, rgb):
    out = np.zeros((h, w, 3), np.uint8)
    out[...] = rgb
    return out


def real_fashion_available():
    return all(
        os.path.isfile(os.path.join(REAL_FASHION_DIR, f"{p}-{k}-ubyte.gz"))
        for p in ("train", "t10k")
        for k in ("images-idx3", "labels-idx1")
    )


# ------------------------------------------------------------------------------ views

SEED = tf.constant([3, 4], tf.int64)


def synthetic_source(n=64, size=28, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    labels = np.arange(n, dtype=np.int64) % 10
    return tf.data.Dataset.from_tensor_slices((images, labels)), images


def quiet(size, **kw):
    """Only the crop (full image, square) unless re-enabled: to test one op at a time."""
    base = dict(
        image_size=size, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=0.0,
        jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0, solarize_prob=0.0,
    )
    base.update(kw)
    return AugmentConfig(**base)


def one_view(images, cfg, seed, view=0):
    """View ``view`` (0 or 1) of a batch, as the pipeline augments it: :func:`augment_views`
    with that view's config of :func:`per_view_configs` (its blur/solarize probabilities)."""
    return augment_views(images, per_view_configs(cfg, 2)[view:view + 1], seed)[0]


# ---------------------------------------------------------------------------- sources


def collect(ds):
    images, labels = [], []
    for x, y in ds:
        images.append(x.numpy())
        labels.append(int(y.numpy()))
    return images, labels


def check_source_spec(ds):
    image_spec, label_spec = ds.element_spec
    assert image_spec.dtype == tf.uint8 and image_spec.shape.rank == 3 and image_spec.shape[-1] == 3
    assert label_spec.dtype == tf.int64 and label_spec.shape.rank == 0


def example(image_bytes, label=None, image_key="image/encoded", label_key="image/class/label"):
    feature = {image_key: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_bytes]))}
    if label is not None:
        feature[label_key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_records(path, records):
    with tf.io.TFRecordWriter(str(path)) as w:
        for r in records:
            w.write(r)
    return str(path)
