"""Linear heads on a backbone: the training shared by linear, transfer, semi-supervised
fine-tuning and the BURN demo.

A dense softmax head initialised N(0, 0.01) with zero bias (MoCo's ``main_lincls``), SGD with
momentum under a step schedule, coupled (PyTorch) weight decay ``wd · w``. :func:`sgd_linear_probe`
is the linear protocol on one train → test split (frozen backbone; cached features, or
augmented images through the backbone); :func:`train_head_on_features` trains the head on
cached features alone; :func:`fit_or_raise` is ``model.fit`` that stops at a non-finite
loss and says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from burn_tf.callbacks import FitProgress
from burn_tf.distribute import make_strategy
from burn_tf.evaluate.data import ClassificationData
from burn_tf.evaluate.features import extract_features
from burn_tf.evaluate.images import image_dataset
from burn_tf.evaluate.metrics import topk_accuracy


def step_schedule(epochs: int, lr: float, milestones: Sequence[int], gamma: float,
                  steps_per_epoch: int):
    """lr × gamma^(number of milestones passed), switching at epoch boundaries."""
    milestones = sorted(int(m) for m in milestones if 0 < int(m) < int(epochs))
    if not milestones:
        return float(lr)
    boundaries = [m * steps_per_epoch for m in milestones]
    values = [float(lr) * float(gamma) ** i for i in range(len(milestones) + 1)]
    return tf.keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def dense_head(num_classes: int, weight_decay: float, seed: int, name: str = "classifier"):
    """Dense(num_classes), N(0, 0.01) kernel, zero bias, L2 ``weight_decay / 2`` (coupled)."""
    reg = tf.keras.regularizers.l2(weight_decay / 2.0) if weight_decay else None
    return tf.keras.layers.Dense(
        num_classes,
        kernel_initializer=tf.keras.initializers.RandomNormal(0.0, 0.01, seed=seed),
        bias_initializer="zeros",
        kernel_regularizer=reg,
        bias_regularizer=reg,
        name=name,
    )


class _NaNGuard(tf.keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            self.model.stop_training = True
            self.bad_loss = loss


def _create_variables(optimizer, variables) -> None:
    if hasattr(optimizer, "_create_all_weights"):  # legacy (OptimizerV2): slots, iterations
        optimizer._create_all_weights(variables)
    else:  # tf.keras.optimizers.* (the optimizer of Keras 2.11+); build is idempotent
        optimizer.build(variables)


def create_optimizer_variables(model: tf.keras.Model) -> None:
    """Creates ``model.optimizer``'s variables (slots, iteration count; those of each optimizer
    of a ``tfa.optimizers.MultiOptimizer``) before ``fit``, in the model's strategy scope.

    Created inside the first traced train step they make TensorFlow trace that step twice (a
    ``tf.function`` may create variables only on its first trace, which it then repeats):
    semisup's fine-tuning of ReActNet-A traced its train step twice, 15 s and 17 s."""
    optimizer = model.optimizer
    with model.distribute_strategy.scope():
        for spec in getattr(optimizer, "optimizer_specs", ()):  # tfa's MultiOptimizer: by name, as it routes
            names = set(spec["weights"])
            _create_variables(spec["optimizer"], [v for v in model.trainable_variables if v.name in names])
        _create_variables(optimizer, model.trainable_variables)


def fit_or_raise(model, dataset, epochs: int, what: str, callbacks=()) -> list[float]:
    """``model.fit`` → per-epoch losses; FloatingPointError naming ``what`` as soon as a batch
    loss is not finite. Instead of Keras' bar, progress lines named ``what`` with the time
    left (:class:`~burn_tf.callbacks.FitProgress`). The optimizer's variables are created
    first (:func:`create_optimizer_variables`: one trace of the train step, not two)."""
    create_optimizer_variables(model)
    guard = _NaNGuard()
    history = model.fit(dataset, epochs=epochs, verbose=0, callbacks=[*callbacks, guard, FitProgress(what)])
    if getattr(guard, "bad_loss", None) is not None:
        raise FloatingPointError(
            f"{what}: the training loss became {guard.bad_loss}; lower the learning rate"
        )
    return [float(v) for v in history.history.get("loss", [])]


def as_strategy(strategy) -> tf.distribute.Strategy:
    """``strategy`` itself (a ``tf.distribute.Strategy``) or the one a ``train.strategy`` name
    (default, mirrored, multiworker, tpu; None: default) makes. An evaluator that enters the
    scope more than once resolves the name once: every ``mirrored`` is a new strategy, and
    variables of one cannot be trained under another."""
    if strategy is None or isinstance(strategy, str):
        return make_strategy(strategy or "default")
    return strategy


def strategy_scope(strategy):
    """The scope of ``strategy`` (see :func:`as_strategy`). Under it Keras splits each
    (global) batch over the replicas and scales the compiled loss by the global batch size
    itself."""
    return as_strategy(strategy).scope()


def _sgd(epochs, lr, milestones, gamma, momentum, steps):
    return tf.keras.optimizers.SGD(step_schedule(epochs, lr, milestones, gamma, steps), momentum=momentum)


def train_head_on_features(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    epochs: int,
    lr: float,
    milestones: Sequence[int],
    gamma: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    batch_size: int = 256,
    seed: int = 0,
    strategy=None,
) -> tuple[tf.keras.Model, list[float]]:
    """Trains a dense softmax head on cached features; returns (head model, per-epoch loss).
    ``strategy``: see :func:`strategy_scope` (``batch_size`` is the global batch)."""
    features = np.asarray(features, np.float32)
    n, dim = features.shape
    steps = math.ceil(n / batch_size)
    with strategy_scope(strategy):
        inputs = tf.keras.Input((dim,), name="features")
        head = tf.keras.Model(inputs, dense_head(num_classes, weight_decay, seed)(inputs), name="linear_head")
        head.compile(
            optimizer=_sgd(epochs, lr, milestones, gamma, momentum, steps),
            loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    ds = (
        tf.data.Dataset.from_tensor_slices((features, np.asarray(labels, np.int64)))
        .shuffle(n, seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    losses = fit_or_raise(head, ds, epochs, "linear head")
    return head, losses


def predict_images(model: tf.keras.Model, x: np.ndarray, size: int, batch_size: int) -> np.ndarray:
    """``model``'s outputs on images ``x`` (inference mode, no augmentation, in order)."""
    ds = image_dataset(x, np.zeros(len(x), np.int64), size, batch_size, augment=False, seed=0,
                       shuffle=False)
    return model.predict(ds.map(lambda a, b: a), verbose=0)


def sgd_linear_probe(
    model: tf.keras.Model,
    data: ClassificationData,
    *,
    size: int,
    epochs: int,
    lr: float,
    milestones: Sequence[int],
    gamma: float,
    momentum: float,
    weight_decay: float,
    batch_size: int,
    augment: bool,
    seed: int,
    feature_batch_size: int = 256,
    crop_scale=(0.08, 1.0),
    strategy=None,
    progress: str = "linear",
) -> dict:
    """The linear protocol on one train → test split; returns accuracies and the loss curve.
    ``strategy`` (see :func:`strategy_scope`) trains the head (with ``augment``: head and
    frozen backbone) on every replica; ``batch_size`` is the global batch. ``progress``
    names the phases in progress lines (``<progress> features``)."""
    num_classes = data.num_classes
    if augment:
        was_trainable = model.trainable
        model.trainable = False
        try:
            with strategy_scope(strategy):
                inputs = tf.keras.Input((size, size, 3), name="image")
                logits = dense_head(num_classes, weight_decay, seed)(model(inputs, training=False))
                full = tf.keras.Model(inputs, logits, name="linear_eval")
                steps = math.ceil(len(data.x_train) / batch_size)
                full.compile(
                    optimizer=_sgd(epochs, lr, milestones, gamma, momentum, steps),
                    loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                )
            train_ds = image_dataset(data.x_train, data.y_train, size, batch_size,
                                     augment=True, seed=seed, crop_scale=crop_scale)
            losses = fit_or_raise(full, train_ds, epochs, "linear evaluation")
            logits = predict_images(full, data.x_test, size, feature_batch_size)
        finally:
            model.trainable = was_trainable
    else:
        # One call (one trace of the backbone): train and test images share their geometry.
        feats = extract_features(
            model, np.concatenate([data.x_train, data.x_test]), feature_batch_size, size, f"{progress} features")
        train_feats, test_feats = feats[: len(data.x_train)], feats[len(data.x_train):]
        head, losses = train_head_on_features(
            train_feats, data.y_train, num_classes, epochs=epochs, lr=lr, milestones=milestones,
            gamma=gamma, momentum=momentum, weight_decay=weight_decay, batch_size=batch_size,
            seed=seed, strategy=strategy,
        )
        logits = head.predict(test_feats, batch_size=4096, verbose=0)
    if not np.all(np.isfinite(logits)):
        raise FloatingPointError("the linear head produced non-finite logits; lower the learning rate")
    k5 = min(5, num_classes)
    return {
        "top1": topk_accuracy(logits, data.y_test, 1),
        "top5": topk_accuracy(logits, data.y_test, k5),
        "top5_k": k5,
        "num_classes": num_classes,
        "num_train": int(len(data.x_train)),
        "num_test": int(len(data.x_test)),
        "train_loss": losses,
    }
