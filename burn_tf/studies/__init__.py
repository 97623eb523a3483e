"""The studies built on the library: research reporting, not library core.

Each is a command that pretrains and evaluates many runs through the library's public code
(:func:`burn_tf.pretrain.pretrain_stage`, the evaluators, the export's model card) and writes
tables and figures: the demo (``python -m burn_tf.studies.demo``: BURN, its controls and the
evaluation on Fashion-MNIST), the ablation (``python -m burn_tf.studies.ablate``: Tables 5–7)
and the method comparison (``python -m burn_tf.studies.compare``; its rows and config in
:mod:`~burn_tf.studies.compare_config`, its tables, paired intervals and figures in
:mod:`~burn_tf.studies.compare_report`). What the ablation and the comparison share — budget,
run configs, pretraining and evaluating a run, the ``runs.jsonl`` log, mean ± std over seeds,
the command line — is :mod:`~burn_tf.studies.harness`; the figures of training over time
(λ(t), the EMA simulation, per-step metrics over seeds) are
:mod:`~burn_tf.studies.training_figures`. Nothing below this floor imports it.
"""
