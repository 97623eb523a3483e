"""Downstream evaluators: ``burn_tf.evaluate.<task>(backbone, …) -> dict``.

Each task lives in ``burn_tf/evaluate/<task>.py`` and defines a function of the same name
plus ``format_result(result) -> str``; the CLI ``python -m burn_tf.evaluate <task>`` calls
the same function. Every evaluator takes an exported backbone path or a Keras feature
extractor (images in [0, 1] → [B, D]), so every method's output is judged the same way.

``burn_tf.evaluate.<task>`` is always the *function*; reach the module itself with
``importlib.import_module("burn_tf.evaluate.<task>")``.

What the evaluators share lives in modules named for it: ``data`` (labelled data, checks,
subsets), ``metrics``, ``images`` (preprocessing), ``features`` (extraction),
``neighbours`` (cosine top-k), ``probe`` (linear-head training), ``plots``, ``threads``,
``common`` (backbone in, results out). Detection is the package ``detection``
(``train``: the driver, ``model``: the detector, ``data``: its data); ``detect.py`` is its
task entry (``burn_tf.evaluate.detect`` and ``python -m burn_tf.evaluate detect``).
"""

import importlib
import sys
import types

TASKS = (
    "linear",
    "semisup",
    "svm",
    "transfer",
    "knn",
    "layerwise",
    "tsne",
    "cluster",
    "retrieval",
    "detect",
)


def __getattr__(name):
    # Lazy: `burn_tf.evaluate.knn(...)` imports only the kNN module (detection pulls keras-cv).
    if name in TASKS:
        module = importlib.import_module(f"burn_tf.evaluate.{name}")
        fn = getattr(module, name)
        globals()[name] = fn
        return fn
    raise AttributeError(f"module 'burn_tf.evaluate' has no attribute {name!r}")


class _EvaluatePackage(types.ModuleType):
    # Python binds a freshly imported submodule as an attribute of its package, which would
    # shadow the function `burn_tf.evaluate.<task>` by the module `burn_tf.evaluate.<task>`.
    # Bind the module's function of the same name instead, so the API never changes shape.
    def __setattr__(self, name, value):
        if name in TASKS and isinstance(value, types.ModuleType) and hasattr(value, name):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _EvaluatePackage
