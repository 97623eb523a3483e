import io
import math

import tensorflow as tf

from burn_tf.callbacks import CollapseWatcher, StepRecorder


class _Model:
    def __init__(self):
        self.global_step = tf.Variable(0, dtype=tf.int64)


def _feed(callback, values):
    model = _Model()
    callback.model = model
    for i, (h, kl) in enumerate(values):
        model.global_step.assign_add(1)
        callback.on_train_batch_end(i, {"target_entropy_step": h, "kl_step": kl, "lambda": 0.8, "lr": 1e-3,
                                        "kl": 99.0})


def test_watcher_names_the_first_step_of_a_sustained_collapse_only():
    stream = io.StringIO()
    watcher = CollapseWatcher(num_classes=16, entropy_fraction=0.5, kl_floor=1e-3, patience=3, stream=stream)
    half = 0.5 * math.log(16)
    # one bad step (4), recovery, then a sustained collapse from step 7
    values = [(2.5, 0.5)] * 3 + [(0.1, 0.5)] + [(2.5, 0.5)] * 2 + [(half - 0.01, 0.5), (2.0, 1e-4), (0.0, 0.0), (0.0, 0.0)]
    _feed(watcher, values)
    assert watcher.collapse_step == 7
    text = stream.getvalue()
    assert text.count("WARNING") == 1 and "step 7" in text
    logs = {}
    watcher.on_epoch_end(0, logs)
    assert logs["target_collapsed"] == 1.0 and logs["collapse_step"] == 7.0
    assert logs["kl_min"] == 0.0 and logs["target_entropy_fraction_min"] == 0.0


def test_watcher_quiet_on_a_live_target():
    stream = io.StringIO()
    watcher = CollapseWatcher(num_classes=16, patience=2, stream=stream)
    _feed(watcher, [(2.0, 0.1)] * 5)
    logs = {}
    watcher.on_epoch_end(0, logs)
    assert stream.getvalue() == "" and logs["target_collapsed"] == 0.0 and logs["collapse_step"] == -1.0
    assert logs["target_entropy_min"] == 2.0 and logs["kl_min"] == 0.1


def test_step_recorder_keeps_instant_values_not_running_means():
    recorder = StepRecorder()
    _feed(recorder, [(1.0, 0.2), (0.5, 0.1)])
    assert recorder.records == [
        {"step": 1, "target_entropy": 1.0, "kl": 0.2, "lambda": 0.8, "lr": 1e-3},
        {"step": 2, "target_entropy": 0.5, "kl": 0.1, "lambda": 0.8, "lr": 1e-3},
    ]
