"""Online weighted-kNN monitor: a Keras callback for any pretraining method.

``KNNMonitor`` embeds a small held-out labelled subset with the *current* backbone every
``every_n_epochs`` epochs and runs :func:`burn_tf.evaluate.knn.weighted_knn` (bank = the
labelled "train" subset, queries = the "test" subset). The top-1 accuracy goes into the
epoch logs as ``knn_top1`` — so it lands in ``History.history`` and in a ``CSVLogger``
placed *after* the monitor in the callback list — and, with ``log_dir``, into a TensorBoard
scalar ``knn_top1`` (step = epoch). Its cost is one inference pass over the two subsets plus
one ``[test, train]`` similarity block: bounded by the subset sizes you pass. Nothing runs
unless the callback is in ``model.fit(callbacks=[...])``.

On epochs it skips, ``knn_top1`` is logged as NaN, so the log keys stay the same every
epoch (``CSVLogger`` fixes its columns on the first epoch). The last epoch is always
evaluated.

    monitor = KNNMonitor(lambda model: model.student_backbone, x_train[:2000], y_train[:2000],
                         x_test[:1000], y_test[:1000], every_n_epochs=5, log_dir="runs/x")
    burn.fit(ds, epochs=100, callbacks=[monitor, tf.keras.callbacks.CSVLogger("log.csv")])

Top-k accuracies follow :func:`burn_tf.evaluate.metrics.topk_accuracy`: ties are broken
towards the lower class index and never counted as hits.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from burn_tf.evaluate.data import check_images, check_labels
from burn_tf.evaluate.features import embed
from burn_tf.evaluate.knn import weighted_knn
from burn_tf.evaluate.metrics import topk_accuracies

LOG_KEY = "knn_top1"


class KNNMonitor(tf.keras.callbacks.Callback):
    """Weighted kNN top-1 on a labelled subset, every ``every_n_epochs`` epochs.

    Args:
      feature_extractor: a Keras model (images in [0, 1] → [B, D] features), or a callable
        ``f(training_model) -> feature extractor`` called at each evaluation with the model
        being fitted (``self.model``, the one ``fit`` was called on); nothing else of it is
        read. E.g. ``lambda m: m.student_backbone`` reaches the student of a
        :class:`~burn_tf.methods.burn.BURN` model.
      train_images, train_labels: the labelled bank (uint8 or float in [0, 1]; [N,H,W] or
        [N,H,W,C]); train_labels int class ids.
      test_images, test_labels: the queries.
      every_n_epochs: evaluate on epochs ``n, 2n, …`` (1-based) and on the last one.
      k, temperature: the weighted kNN's K and τ (defaults InstDisc/InvP: 200, 0.07). A k
        larger than the bank is an error, unless ``cap_k=True`` (then k = bank size).
      log_dir: write a TensorBoard scalar ``knn_top1`` there (step = epoch) when given.
      batch_size: inference batch size.
      image_size: input size, needed only if the extractor has no fixed input shape.
      top5: also log ``knn_top5``.
      cap_k: see k.
    """

    def __init__(
        self,
        feature_extractor: tf.keras.Model | Callable[[tf.keras.Model], tf.keras.Model],
        train_images,
        train_labels,
        test_images,
        test_labels,
        every_n_epochs: int = 1,
        k: int = 200,
        temperature: float = 0.07,
        log_dir: str | None = None,
        batch_size: int = 256,
        image_size: int | None = None,
        top5: bool = False,
        cap_k: bool = False,
    ):
        super().__init__()
        if not (isinstance(feature_extractor, tf.keras.Model) or callable(feature_extractor)):
            raise TypeError("feature_extractor must be a Keras model or a callable "
                            f"model -> feature extractor, got {type(feature_extractor).__name__}")
        if int(every_n_epochs) < 1:
            raise ValueError(f"every_n_epochs must be ≥ 1, got {every_n_epochs}")
        self.train_images = check_images(train_images, "KNNMonitor: train_images")
        self.test_images = check_images(test_images, "KNNMonitor: test_images")
        self.train_labels = np.asarray(train_labels).astype(np.int64)
        self.test_labels = np.asarray(test_labels).astype(np.int64)
        for images, labels, name in ((self.train_images, self.train_labels, "train"),
                                     (self.test_images, self.test_labels, "test")):
            if labels.ndim != 1 or len(labels) != len(images):
                raise ValueError(f"KNNMonitor: {len(images)} {name} images but {name} labels of "
                                 f"shape {labels.shape}")
        check_labels(self.train_labels, "KNNMonitor train_labels", min_classes=2)
        check_labels(self.test_labels, "KNNMonitor test_labels", min_classes=1)
        if cap_k:
            k = min(int(k), len(self.train_labels))
        if int(k) > len(self.train_labels):
            raise ValueError(f"KNNMonitor: k={k} is larger than the labelled bank "
                             f"({len(self.train_labels)} train images); lower k or pass cap_k=True")
        self.feature_extractor = feature_extractor
        self.every_n_epochs = int(every_n_epochs)
        self.k = int(k)
        self.temperature = float(temperature)
        self.log_dir = log_dir
        self.batch_size = int(batch_size)
        self.image_size = image_size
        self.top5 = bool(top5)
        self.num_classes = int(max(self.train_labels.max(), self.test_labels.max())) + 1
        self.history: list[dict] = []  # one entry per evaluation: epoch, knn_top1, seconds
        self._writer = None

    # --------------------------------------------------------------------- internals

    def _extractor(self) -> tf.keras.Model:
        fx = self.feature_extractor
        if not isinstance(fx, tf.keras.Model):
            fx = fx(self.model)
        if not isinstance(fx, tf.keras.Model):
            raise TypeError(f"KNNMonitor: the feature_extractor callable returned "
                            f"{type(fx).__name__}, not a Keras model")
        return fx

    def _input_size(self, model: tf.keras.Model) -> int:
        if self.image_size is not None:
            return int(self.image_size)
        try:
            size = model.inputs[0].shape[1]
        except (AttributeError, IndexError, TypeError):
            size = None
        if size is None:
            raise ValueError(f"KNNMonitor: feature extractor {model.name!r} has no fixed input size; "
                             "pass image_size=")
        return int(size)

    def _features(self, model: tf.keras.Model, images: np.ndarray, size: int) -> np.ndarray:
        try:
            return embed(model, images, size, self.batch_size)
        except ValueError as err:
            raise ValueError(f"KNNMonitor: {err}") from None

    def evaluate(self) -> dict:
        """Runs the kNN now with the current weights → ``{"knn_top1": …, ("knn_top5")}``."""
        model = self._extractor()
        size = self._input_size(model)
        f_train = self._features(model, self.train_images, size)
        f_test = self._features(model, self.test_images, size)
        if not (np.all(np.isfinite(f_train)) and np.all(np.isfinite(f_test))):
            return {LOG_KEY: float("nan"), **({"knn_top5": float("nan")} if self.top5 else {})}
        _, scores = weighted_knn(f_train, self.train_labels, f_test, k=self.k,
                                 temperature=self.temperature, num_classes=self.num_classes)
        acc = topk_accuracies(scores, self.test_labels, (1, 5) if self.top5 else (1,))
        out = {LOG_KEY: acc["top1"]}
        if self.top5:
            out["knn_top5"] = acc.get("top5", float("nan"))
        return out

    def _due(self, epoch: int) -> bool:
        last = self.params.get("epochs") if self.params else None
        return (epoch + 1) % self.every_n_epochs == 0 or (last is not None and epoch + 1 == last)

    # ---------------------------------------------------------------------- callback

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        if not self._due(epoch):
            logs[LOG_KEY] = float("nan")
            if self.top5:
                logs["knn_top5"] = float("nan")
            return
        start = time.perf_counter()
        values = self.evaluate()
        seconds = time.perf_counter() - start
        logs.update(values)
        self.history.append({"epoch": int(epoch), **values, "seconds": round(seconds, 3)})
        if self.log_dir is not None and not math.isnan(values[LOG_KEY]):
            if self._writer is None:
                self._writer = tf.summary.create_file_writer(str(self.log_dir))
            with self._writer.as_default():
                for key, value in values.items():
                    tf.summary.scalar(key, value, step=epoch)
            self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.flush()
