"""The detection task of ``burn_tf.evaluate`` (``burn_tf.evaluate.detect(...)``, ``python -m
burn_tf.evaluate detect``): every evaluator task is a module ``<task>.py`` with a function of
the same name and ``format_result``. The evaluator itself is the package
:mod:`burn_tf.evaluate.detection` (driver, detector, data)."""

from burn_tf.evaluate.detection.train import detect, format_result, summarize_runs  # noqa: F401

__all__ = ["detect", "format_result", "summarize_runs"]
