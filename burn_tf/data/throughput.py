"""Measure how fast the two-view pipeline delivers images.

    python -m burn_tf.data.throughput --sizes 32 64 --batch-size 256 --seconds 10

prints, per output size, image pairs per second (each pair = the two views of one source
image, i.e. two augmented images) and the process CPU time per pair.  On a shared machine
the wall-clock rate depends on the other load; the CPU time per pair does much less, and
``2 cores / CPU time per pair`` estimates the rate on two idle cores.
"""

from __future__ import annotations

import argparse
import os
import time

import tensorflow as tf

from burn_tf.data.pipeline import two_view_dataset
from burn_tf.data.source_fashion_mnist import fashion_mnist
from burn_tf.data.views import AugmentConfig


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def two_view_throughput(
    image_size: int = 32,
    batch_size: int = 256,
    seconds: float = 10.0,
    source: tf.data.Dataset | None = None,
    cfg: AugmentConfig | None = None,
    warmup_batches: int = 3,
    seed: int = 0,
) -> dict:
    """Iterate ``two_view_dataset`` for about ``seconds`` after a warm-up; returns
    ``{"image_size", "batch_size", "pairs_per_s", "views_per_s", "cpu_us_per_pair",
    "batches"}``.  ``source`` defaults to Fashion-MNIST train, ``cfg`` to BURN's config."""
    source = fashion_mnist("train") if source is None else source
    cfg = cfg or AugmentConfig(image_size=image_size)
    ds = two_view_dataset(source, cfg, batch_size, seed=seed, repeat=True)
    it = iter(ds)
    for _ in range(warmup_batches):
        next(it)
    n = 0
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        next(it)
        n += 1
    wall = time.perf_counter() - t0
    cpu = _cpu_seconds() - cpu0
    pairs = n * batch_size
    return {
        "image_size": cfg.image_size,
        "batch_size": batch_size,
        "batches": n,
        "pairs_per_s": pairs / wall,
        "views_per_s": 2 * pairs / wall,
        "cpu_us_per_pair": 1e6 * cpu / max(pairs, 1),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--root", default=None, help="Fashion-MNIST directory (default: Debian's)")
    args = parser.parse_args(argv)
    source = fashion_mnist("train", root=args.root)
    for size in args.sizes:
        r = two_view_throughput(size, args.batch_size, args.seconds, source=source)
        print(
            f"{size:4d} px  batch {r['batch_size']}: {r['pairs_per_s']:8.0f} pairs/s "
            f"({r['views_per_s']:.0f} augmented images/s), {r['cpu_us_per_pair']:.0f} CPU-us/pair "
            f"(~{2e6 / r['cpu_us_per_pair']:.0f} pairs/s on 2 idle cores)",
            flush=True,
        )


if __name__ == "__main__":
    main()
