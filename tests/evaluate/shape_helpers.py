"""The common result shape every evaluator returns and writes (:func:`burn_tf.evaluate.common.evaluator_result`)."""

import importlib
import json

from burn_tf.evaluate import TASKS
from burn_tf.evaluate.common import COMMON_KEYS


def check_result_shape(task, result, out_dir, path):
    for key in COMMON_KEYS:
        assert key in result, f"{task}: no {key!r}"
    assert result["task"] == task
    backbone = result["backbone"]
    assert backbone["path"] == str(path) and backbone["feature_dim"] > 0, backbone
    assert backbone["input_size"] in (32, 64) and backbone["name"], backbone
    assert isinstance(result["protocol"], dict) and result["protocol"]["source"], result["protocol"]
    assert isinstance(result["seconds"], float) and result["seconds"] > 0
    assert isinstance(result["data"], str) and result["data"]
    assert json.loads((out_dir / f"{task}.json").read_text())["protocol"] == json.loads(
        json.dumps(result["protocol"]))
    module = importlib.import_module(TASKS[task])
    assert module.format_result(result)
