"""Thread limits for the numpy / scikit-learn parts of the evaluators."""

from __future__ import annotations

import contextlib


def limit_blas_threads(threads: int | None):
    """Context limiting numpy/scipy BLAS and OpenMP (scikit-learn) to ``threads`` threads.

    ``None`` leaves the libraries' defaults. Measured on the shared 2-core reference machine
    under load: OpenBLAS's two spinning threads made a 10k × 1024 logistic-regression probe
    6× slower (62 s vs 10 s) and spherical k-means 2.6× slower than one thread, so the
    evaluators default to 1. TensorFlow's own thread pool is not affected.
    """
    if threads is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=int(threads))
