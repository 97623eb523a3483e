"""Downstream evaluators: one module per task, each with a function of the task's name.

``from burn_tf.evaluate.knn import knn``; ``knn(backbone, …) -> dict``. Each task module
(:data:`TASKS` maps the task name to it) defines that function plus
``format_result(result) -> str``; the CLI ``python -m burn_tf.evaluate <task>`` calls the
same function. Detection is the package :mod:`burn_tf.evaluate.detection` (``train``: the
driver, ``model``: the detector, ``data``: its data), whose function is ``detect``:
``from burn_tf.evaluate.detection import detect``. Every evaluator takes an exported
backbone path or a Keras feature extractor (images in [0, 1] → [B, D]), so every method's
output is judged the same way.

What the evaluators share lives in modules named for it: ``data`` (labelled data, checks,
subsets), ``metrics``, ``images`` (preprocessing), ``features`` (extraction),
``neighbours`` (cosine top-k), ``probe`` (linear-head training), ``plots``, ``threads``,
``common`` (backbone in, results out). Importing this package imports none of them.
"""

# Task name (the CLI's and the function's) → the module that defines the function.
TASKS = {
    "linear": "burn_tf.evaluate.linear",
    "semisup": "burn_tf.evaluate.semisup",
    "svm": "burn_tf.evaluate.svm",
    "transfer": "burn_tf.evaluate.transfer",
    "knn": "burn_tf.evaluate.knn",
    "layerwise": "burn_tf.evaluate.layerwise",
    "tsne": "burn_tf.evaluate.tsne",
    "cluster": "burn_tf.evaluate.cluster",
    "retrieval": "burn_tf.evaluate.retrieval",
    "detect": "burn_tf.evaluate.detection",
}
