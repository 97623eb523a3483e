"""Helpers for the data tests (unique module name, imported by the tests).

Every file a test reads is written by the test itself, except the optional real Debian
Fashion-MNIST."""

import gzip
import io
import os
import struct

import numpy as np

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
