"""The two-view pipeline's throughput measurement."""

from data_helpers import synthetic_source

from burn_tf.data import two_view_throughput


def test_two_view_throughput_reports_pairs_and_views_per_second():
    source, _ = synthetic_source(32, 28)
    r = two_view_throughput(28, batch_size=8, seconds=0.2, source=source, warmup_batches=1)
    assert r["batches"] >= 1 and r["pairs_per_s"] > 0 and r["views_per_s"] == 2 * r["pairs_per_s"]
