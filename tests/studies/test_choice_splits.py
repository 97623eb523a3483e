"""The demo budget sweep (benchmarks/demo_budget.py) makes choices the comparison inherits, so
it pretrains without the validation images and scores on them, never on the test split."""

import importlib.util
from pathlib import Path

from burn_tf.config import load_config

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "demo_budget.py"


def _demo_budget():
    spec = importlib.util.spec_from_file_location("demo_budget", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_budget_sweep_scores_on_held_out_training_images(fashion_mnist_available):
    sweep = _demo_budget()
    data = sweep.validation_data()
    assert data.describe() == {"split": "validation", "bank_images": "train[0:50000]",
                               "query_images": "train[50000:60000]"}
    for point, steps in (("baseline", sweep.DEMO_STEPS), ("steps_x0.5", 234), ("res48+lr_x2", sweep.DEMO_STEPS)):
        cfg = load_config(sweep.DEFAULT_CONFIG, sweep.SWEEP_BASE + sweep.HELD_OUT + sweep.point_overrides(point))
        data.check_held_out(cfg, point)  # raises if the run would see its queries
        assert (cfg.data.limit, cfg.train.steps_per_epoch) == (50000, steps), point
    # Rows from before the sweep chose on validation were scored on test and stay apart.
    assert sweep.split_of({"point": "baseline"}) == "test" and sweep.split_of(data.describe()) == "validation"
