"""The studies' figures of training over time (burn_tf.studies.training_figures): the ablation
and the analysis notebook draw with them; bands are mean ± the sample std over seeds."""

import json

import numpy as np
import pytest
from matplotlib.figure import Figure

from burn_tf.ops.schedules import LAMBDA_SCHEDULES
from burn_tf.studies import training_figures


def _write_steps(steps_dir, variant, seed, values):
    steps_dir.mkdir(parents=True, exist_ok=True)
    (steps_dir / f"{variant}_seed{seed}.json").write_text(json.dumps([{"kl": v} for v in values]))


def test_step_metric_is_the_mean_and_sample_std_over_seeds(tmp_path):
    _write_steps(tmp_path, "burn", 0, [1.0, 2.0, 4.0, 9.0])
    _write_steps(tmp_path, "burn", 1, [3.0, 2.0, 0.0])  # shorter: both cut to 3 steps
    mean, std = training_figures.step_metric_over_seeds(tmp_path, "burn", "kl")
    np.testing.assert_allclose(mean, [2.0, 2.0, 2.0])
    np.testing.assert_allclose(std, [np.sqrt(2.0), 0.0, np.sqrt(8.0)])  # ddof 1
    assert training_figures.step_metric_over_seeds(tmp_path, "burn", "missing") is None
    ax = Figure().add_subplot(111)
    training_figures.plot_step_metric(ax, tmp_path, ["burn", "absent"], "kl", scale=10.0)
    (line,) = ax.get_lines()
    np.testing.assert_allclose(line.get_ydata(), [20.0, 20.0, 20.0])
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.max() == np.float64(20.0 + 10 * np.sqrt(8.0))


def test_lambda_schedules_and_ema_simulation_draw_every_curve():
    ax = Figure().add_subplot(111)
    training_figures.plot_lambda_schedules(ax, total_steps=10)
    assert [line.get_label() for line in ax.get_lines()] == list(LAMBDA_SCHEDULES)
    ax = Figure().add_subplot(111)
    sim = training_figures.plot_ema_simulation(ax, runs=3, iterations=5)
    assert sim["fp"].shape == sim["binary"].shape == (3, 5) and len(ax.get_lines()) == 2


def test_the_ablation_figures_draw_through_these_helpers(tmp_path):
    from burn_tf.studies import ablate

    for seed in (0, 1):
        records = [{"grad_norm_student_classifier": 1.0 + s + seed, "grad_norm_student_backbone": 2.0,
                    "target_entropy": 1.5, "kl": 0.1, "target_mutual_information": 0.2, "head_agreement": 0.5}
                   for s in range(4)]
        (tmp_path / "steps").mkdir(exist_ok=True)
        (tmp_path / "steps" / f"burn_seed{seed}.json").write_text(json.dumps(records))
    rows = [{"variant": "burn", "stage": 1, "target_alive": 2, "train_seconds": 60.0, "knn_top1": 0.5,
             "knn_top1_std": 0.01}]
    written = ablate.write_figures(tmp_path, rows, head_width=8)
    assert written == ["fig_grad_norms.png", "fig_lambda.png", "fig_collapse.png", "fig_ema.png",
                       "fig_knn_vs_minutes.png"]
    assert all((tmp_path / name).stat().st_size > 0 for name in written)


def test_ema_simulation_of_eq5():
    sim = training_figures.ema_distance_simulation(runs=10, dim=100, iterations=100, lr=4.8, tau=0.99, seed=0)
    assert sim["fp"].shape == sim["binary"].shape == (10, 100)
    # after one step the target moved (1 − τ) of the way: distance τ·η·‖Δn‖ ≈ 0.99·4.8·√100
    assert sim["fp"][:, 0].mean() == pytest.approx(0.99 * 4.8 * 10, rel=0.1)
    # sign vectors differ by ±2 per flipped coordinate: squared distances are multiples of 4
    squared = sim["binary"] ** 2
    np.testing.assert_allclose(squared / 4, np.round(squared / 4), atol=1e-6)
    again = training_figures.ema_distance_simulation(runs=10, seed=0)
    np.testing.assert_array_equal(again["fp"], sim["fp"])
