"""Semi-supervised fine-tuning: 1% / 10% class-balanced labels, the whole network trained.

BURN supplement §1 (following PCL / SimCLR v2 / BYOL): a dense softmax head on the backbone,
backbone *and* head fine-tuned with SGD (momentum 0.9, weight decay 5e-4) for 20 epochs, the
learning rates ×0.2 at epochs 12 and 16. The backbone's initial lr is one of {0.1, 0.01,
0.001} and the head's is that times one of {1, 10, 100}: all 9 combinations are run and the
best is kept. Two optimizers, one per part, through ``tfa.optimizers.MultiOptimizer``.

Where the paper picks the best of the 9 (it does not say on what), this evaluator picks it on
a **held-out split carved from the training set** (class-balanced, seeded, disjoint from every
labelled subset) and reports top-1 / top-5 of that configuration on the test split, so the
test split never chooses anything.

Details: weight decay is the coupled (PyTorch) kind — a loss term ``wd/2·Σw²`` over every
trainable variable, backbone and head; BatchNorm runs in training mode while fine-tuning;
images are augmented by a random resized crop + horizontal flip (``augment=False`` turns it
off); the caller's backbone weights are restored afterwards. Accuracies are fractions.
Top-k accuracies follow :func:`burn_tf.evaluate.metrics.topk_accuracy`: ties are broken
towards the lower class index and never counted as hits.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from burn_tf.evaluate import common
from burn_tf.evaluate.data import (
    balanced_fraction,
    check_classification_data,
    first_n_balanced_data,
    load_classification_data,
)
from burn_tf.evaluate.features import resolve_input_size
from burn_tf.evaluate.images import image_dataset
from burn_tf.evaluate.metrics import topk_accuracy
from burn_tf.evaluate.probe import as_strategy, dense_head, fit_or_raise, predict_images
from burn_tf.progress import Progress

TASK = "semisup"
PROTOCOL_SOURCE = ("BURN supplement section 1 (following PCL / SimCLR v2 / BYOL): 1% / 10% class-balanced "
                   "labels, fine-tune all, 20 epochs, SGD m 0.9, wd 5e-4, x0.2 at 12 and 16, best of the "
                   "backbone-lr x head-multiplier grid (chosen here on a held-out train split)")
DEFAULT_DATA = "fashion_mnist"


def _fraction_key(fraction: float) -> str:
    return f"{100.0 * float(fraction):g}%"


class _StepLR(tf.keras.callbacks.Callback):
    """Sets each optimizer's lr to base × gamma^(milestones passed) at every epoch start."""

    def __init__(self, pairs, milestones, gamma):
        super().__init__()
        self.pairs, self.milestones, self.gamma = pairs, [int(m) for m in milestones], float(gamma)

    def on_epoch_begin(self, epoch, logs=None):
        passed = sum(epoch >= m for m in self.milestones)
        for optimizer, base in self.pairs:
            optimizer.learning_rate.assign(base * self.gamma ** passed)


class FineTuner:
    """Backbone + a dense head under ``tfa.optimizers.MultiOptimizer`` (one SGD each).

    ``strategy`` (a ``tf.distribute.Strategy`` or a ``train.strategy`` name, see
    :func:`burn_tf.evaluate.probe.as_strategy`): the fine-tuned network, a copy of ``model``
    (``clone_model`` + its weights) built with the head and both optimizers in the strategy's
    scope — variables made outside it cannot be trained under it — trains on every replica
    (the batch is the global batch). ``model`` itself is never trained.

    Built and compiled once; :meth:`run` resets the backbone, the head and both optimizers'
    state before each configuration, so the whole grid shares one traced train step (tracing
    a ReActNet-A train step costs far more than a small fine-tuning run).
    """

    def __init__(self, model: tf.keras.Model, num_classes: int, size: int, *, momentum: float,
                 weight_decay: float, seed: int, strategy=None):
        import tensorflow_addons as tfa

        self.strategy = as_strategy(strategy)
        with self.strategy.scope():
            self._build(tfa, model, num_classes, size, momentum, weight_decay, seed)
        self.initial_backbone = model.get_weights()
        self.initial_head = self.head.get_weights()

    def _build(self, tfa, source, num_classes, size, momentum, weight_decay, seed):
        self.backbone = model = tf.keras.models.clone_model(source)
        model.set_weights(source.get_weights())
        inputs = tf.keras.Input((size, size, 3), name="image")
        self.head = dense_head(num_classes, 0.0, seed, name="semisup_classifier")
        self.model = tf.keras.Model(inputs, self.head(model(inputs)), name="semisup_finetune")
        if weight_decay:
            wd, full = float(weight_decay), self.model
            # Coupled weight decay (PyTorch SGD): d/dw (wd/2·w²) = wd·w, on every variable.
            full.add_loss(lambda: 0.5 * wd * tf.add_n(
                [tf.reduce_sum(tf.square(w)) for w in full.trainable_weights]))
        # MultiOptimizer routes gradients by variable *name*: a head variable named like a
        # backbone one would be updated twice, an unlisted one never.
        backbone_names = {v.name for v in model.weights}
        head_names = {v.name for v in self.head.weights}
        clash = backbone_names & head_names
        if clash:
            raise ValueError(
                f"backbone {model.name!r} has variables named like the classifier head's "
                f"({sorted(clash)}); rename its layer(s) so the two optimizers stay apart"
            )
        self.backbone_opt = tf.keras.optimizers.SGD(0.0, momentum=momentum)
        self.head_opt = tf.keras.optimizers.SGD(0.0, momentum=momentum)
        self.optimizer = tfa.optimizers.MultiOptimizer(
            [(self.backbone_opt, model), (self.head_opt, self.head)])
        self.model.compile(optimizer=self.optimizer,
                           loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    def reset(self) -> None:
        self.backbone.set_weights(self.initial_backbone)
        self.head.set_weights(self.initial_head)
        for optimizer in (self.backbone_opt, self.head_opt):
            for variable in optimizer.variables:  # iteration count and momentum buffers
                variable.assign(tf.zeros_like(variable))
        self.optimizer.iterations.assign(0)

    def run(self, dataset: tf.data.Dataset, *, epochs: int, backbone_lr: float, head_lr: float,
            milestones, gamma: float) -> list[float]:
        self.reset()
        schedule = _StepLR([(self.backbone_opt, backbone_lr), (self.head_opt, head_lr)],
                           milestones, gamma)
        return fit_or_raise(self.model, dataset, epochs,
                    f"fine-tuning (backbone lr {backbone_lr:g}, head lr {head_lr:g})", [schedule])


def semisup(
    backbone,
    *,
    data: Any = DEFAULT_DATA,
    out_dir=None,
    fractions: Sequence[float] = (0.01, 0.1),
    epochs: int = 20,
    milestones: Sequence[int] = (12, 16),
    gamma: float = 0.2,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    backbone_lrs: Sequence[float] = (0.1, 0.01, 0.001),
    head_multipliers: Sequence[float] = (1, 10, 100),
    batch_size: int = 256,
    augment: bool = True,
    crop_scale: Sequence[float] = (0.08, 1.0),
    holdout_fraction: float = 0.1,
    holdout_seed: int = 1,
    subset_seed: int = 0,
    seed: int = 0,
    train_subset: int | None = None,
    test_subset: int | None = None,
    data_dir: str | None = None,
    image_size: int | None = None,
    eval_batch_size: int = 256,
    strategy: str = "default",
) -> dict:
    """Semi-supervised fine-tuning of ``backbone`` for each labelled ``fraction``.

    ``strategy`` (default | mirrored | multiworker | tpu, as ``train.strategy``) fine-tunes
    on every replica (:class:`FineTuner`); ``batch_size`` is the global batch.

    The held-out split (``holdout_fraction`` of the training set, class-balanced,
    ``holdout_seed``) is removed first; each labelled subset is drawn from the rest with
    :func:`~burn_tf.evaluate.data.balanced_fraction` (``subset_seed``). All
    ``backbone_lrs × head_multipliers`` configurations are fine-tuned from the same initial
    weights; the best held-out top-1 is reported on the test split.
    """
    started = time.time()
    if int(epochs) < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs!r}")
    if isinstance(fractions, (int, float)):
        fractions = [fractions]
    if not fractions or not backbone_lrs or not head_multipliers:
        raise ValueError("fractions, backbone_lrs and head_multipliers must not be empty")
    model, meta = common.resolve_backbone(backbone)
    size = resolve_input_size(model, image_size)
    dataset = load_classification_data(data, image_size=size, data_dir=data_dir)
    dataset = check_classification_data(first_n_balanced_data(dataset, train_subset, test_subset))
    num_classes = dataset.num_classes

    holdout = balanced_fraction(dataset.y_train, holdout_fraction, holdout_seed)
    initial = model.get_weights()
    per_fraction = {}
    # Each fine-tuning prints its own steps (fit_or_raise); this counts them, one line each.
    meter = Progress("semisup", len(fractions) * len(backbone_lrs) * len(head_multipliers), "fine-tunings",
                     every_seconds=0)
    try:
        tuner = FineTuner(model, num_classes, size, momentum=float(momentum),
                          weight_decay=float(weight_decay), seed=int(seed), strategy=strategy)
        for fraction in fractions:
            labelled = balanced_fraction(dataset.y_train, fraction, subset_seed, exclude=holdout)
            x, y = dataset.x_train[labelled], dataset.y_train[labelled]
            grid, best, best_weights = [], None, None
            for backbone_lr in backbone_lrs:
                for mult in head_multipliers:
                    head_lr = float(backbone_lr) * float(mult)
                    entry = {"backbone_lr": float(backbone_lr), "head_multiplier": float(mult),
                             "head_lr": head_lr}
                    # A fresh pipeline per configuration: every one sees the same batches
                    # and augmentations (same seeds), so only the learning rates differ.
                    train_ds = image_dataset(x, y, size, int(batch_size), augment=bool(augment),
                                             seed=int(seed), crop_scale=tuple(crop_scale))
                    try:
                        losses = tuner.run(train_ds, epochs=int(epochs),
                                           backbone_lr=float(backbone_lr), head_lr=head_lr,
                                           milestones=list(milestones), gamma=float(gamma))
                        logits = predict_images(tuner.model, dataset.x_train[holdout], size,
                                          eval_batch_size)
                        if not np.all(np.isfinite(logits)):
                            raise FloatingPointError("non-finite logits on the held-out split")
                        entry.update(holdout_top1=topk_accuracy(logits, dataset.y_train[holdout], 1),
                                     final_loss=losses[-1], diverged=False)
                    except FloatingPointError as err:
                        entry.update(holdout_top1=0.0, final_loss=float("nan"), diverged=True,
                                     error=str(err))
                    grid.append(entry)
                    meter.advance(note=f"{_fraction_key(fraction)} labels, backbone lr {float(backbone_lr):g}, "
                                       f"head lr {head_lr:g}: held-out top-1 {entry['holdout_top1']:.4f}")
                    if not entry["diverged"] and (best is None
                                                  or entry["holdout_top1"] > best["holdout_top1"]):
                        best, best_weights = entry, tuner.model.get_weights()
            if best is None:
                raise FloatingPointError(
                    f"{_fraction_key(fraction)} labels: every configuration diverged: {grid}")
            tuner.model.set_weights(best_weights)
            logits = predict_images(tuner.model, dataset.x_test, size, eval_batch_size)
            k5 = min(5, num_classes)
            per_fraction[_fraction_key(fraction)] = {
                "fraction": float(fraction),
                "num_labelled": int(len(labelled)),
                "per_class": int(len(labelled) // len(np.unique(y))),
                "grid": grid,
                "best": best,
                "top1": topk_accuracy(logits, dataset.y_test, 1),
                "top5": topk_accuracy(logits, dataset.y_test, k5),
                "top5_k": k5,
            }
    finally:
        model.set_weights(initial)

    result = common.evaluator_result(
        TASK,
        data=dataset.name,
        backbone=common.backbone_info(backbone, model, meta, input_size=size),
        protocol={
            "source": PROTOCOL_SOURCE, "epochs": int(epochs), "milestones": [int(m) for m in milestones],
            "gamma": float(gamma), "momentum": float(momentum),
            "weight_decay": float(weight_decay),
            "backbone_lrs": [float(v) for v in backbone_lrs],
            "head_multipliers": [float(v) for v in head_multipliers],
            "batch_size": int(batch_size), "augment": bool(augment),
            "crop_scale": [float(v) for v in crop_scale],
            "holdout_fraction": float(holdout_fraction), "holdout_seed": int(holdout_seed),
            "subset_seed": int(subset_seed), "seed": int(seed), "train_subset": train_subset,
            "test_subset": test_subset, "input_size": size, "selection": "best holdout top-1",
            "strategy": str(strategy),
        },
        seconds=time.time() - started,
        num_classes=num_classes,
        num_train=int(len(dataset.x_train)),
        num_holdout=int(len(holdout)),
        num_test=int(len(dataset.x_test)),
        fractions=per_fraction,
    )
    common.write_results(out_dir, TASK, result)
    return result


def format_result(result: dict) -> str:
    rows = []
    for key, r in result["fractions"].items():
        rows.append({
            "labels": key,
            "images": r["num_labelled"],
            "best backbone lr": r["best"]["backbone_lr"],
            "head ×": r["best"]["head_multiplier"],
            "holdout top1 %": 100.0 * r["best"]["holdout_top1"],
            "test top1 %": 100.0 * r["top1"],
            f"test top{r.get('top5_k', 5)} %": 100.0 * r["top5"],
        })
    p = result["protocol"]
    title = (f"semi-supervised fine-tuning of {result['backbone']['name']} on {result['data']} — "
             f"{p['epochs']} epochs, ×{p['gamma']} at {p['milestones']}, wd {p['weight_decay']}, "
             f"grid {len(p['backbone_lrs'])}×{len(p['head_multipliers'])}, best on "
             f"{result['num_holdout']} held-out images")
    return title + "\n" + common.format_table(rows)
