"""The middle layer of the methods with online networks and their EMA targets
(:class:`MomentumMethod`: BYOL, MoCo v2, InfoMin, CLD-on-MoCo): target ← τ·target +
(1 − τ)·online on the weights, not the BatchNorm statistics (the targets compute their own,
synchronised when the online ones are); τ follows a cosine from ``tau_start`` to
``tau_end``; the targets restart from the online networks at stage 2.
"""

from __future__ import annotations

import tensorflow as tf

from burn_tf.callbacks import ScheduledValue
from burn_tf.distribute import assign_on_every_replica
from burn_tf.methods.base import PretrainMethod
from burn_tf.ops.memory import momentum_update
from burn_tf.ops.schedules import cosine_momentum


class MomentumMethod(PretrainMethod):
    """Online networks and their EMA targets: target ← τ·target + (1 − τ)·online.

    A method calls :meth:`add_momentum_pair` for each online network (backbone, projector…);
    the target is a non-trainable copy. The EMA updates *weights* (trainable variables),
    not BatchNorm statistics, which the target computes itself (solo-learn's
    ``MomentumUpdater``). τ follows :func:`cosine_momentum` of ``global_step`` from
    ``config.tau_start`` to ``config.tau_end``, set by
    :class:`burn_tf.callbacks.ScheduledValue` (τ(t) of :func:`burn_tf.ops.schedules.cosine_momentum`).
    That is solo-learn's schedule (``solo/utils/momentum.py`` ``update_tau``: τ = final −
    (final − base)·(cos(πk/K) + 1)/2): the update after batch k (k = 0, 1, …) uses τ(k), the
    first one ``tau_start``. With gradient accumulation the step counts batches, not updates
    (solo-learn counts optimizer steps), so an update uses τ of its last batch.
    """

    def __init__(self, backbone: tf.keras.Model, config=None, accumulation_steps: int = 1, **kwargs):
        super().__init__(backbone, config, accumulation_steps=accumulation_steps, **kwargs)
        # (checkpoint key, online, target); the key is stable across stages.
        self.momentum_pairs: list[tuple[str, tf.keras.Model, tf.keras.Model]] = []
        self.tau = tf.Variable(float(self.config.tau_start), trainable=False, dtype=tf.float32, name="tau")

    def add_momentum_pair(self, online: tf.keras.Model, key: str | None = None) -> tf.keras.Model:
        """A frozen copy of ``online`` (same weights) that follows it by EMA; returns it.
        ``key`` names it in checkpoints (default ``momentum_<online's role>``); it is neither
        trained nor exported."""
        key = key or ("momentum_backbone" if online is self.backbone else f"momentum_{online.name}")
        target = tf.keras.models.clone_model(online)
        target._name = f"momentum_{online.name}"
        target.set_weights(online.get_weights())
        target.trainable = False
        _use_batch_statistics(target, online)
        self.momentum_pairs.append((key, online, target))
        return self.add_head(key, target, trainable=False, exported=False)

    def init_from_previous_stage(self, previous: PretrainMethod) -> None:
        """Stage 2 from stage 1: the base's rules, then every EMA target restarts as a copy
        of its (transferred) online network — a stage-1 target is the EMA of a different
        (stage-1) network, so it is not carried over."""
        super().init_from_previous_stage(previous)
        for _, online, target in self.momentum_pairs:
            target.set_weights(online.get_weights())

    def after_update(self) -> None:
        tau = self.tau
        targets, onlines = [], []
        for _, online, target in self.momentum_pairs:
            for w_online, w_target in zip(online.trainable_weights, _ema_weights(target, online)):
                targets.append(w_target)
                onlines.append((w_online,))
        # Target weights are Keras layer weights (no aggregation): assigned on every device.
        assign_on_every_replica(targets, lambda t, o: momentum_update(t, o, tau), onlines)

    def method_callbacks(self, total_steps: int) -> list:
        start, end = self.config.tau_start, self.config.tau_end
        return [ScheduledValue(self.tau, lambda step: cosine_momentum(step, total_steps, start, end), "tau",
                               total_steps)]

    def extra_logs(self) -> dict:
        return {"tau": self.tau}


def _use_batch_statistics(target: tf.keras.Model, online: tf.keras.Model) -> None:
    """The frozen target's BatchNorms compute with their own batch statistics when called
    with ``training=True`` (and keep their own moving averages), synchronized across
    replicas exactly when the online network's are.

    Two Keras facts make this necessary: a BatchNormalization whose ``trainable`` is False
    always runs in inference mode (its moving statistics would then never move), and
    ``clone_model`` drops ``synchronized``, which is not part of the layer's config. The
    target model stays frozen (no trainable weights)."""
    for layer_online, layer_target in zip(_all_layers(online), _all_layers(target)):
        if isinstance(layer_target, tf.keras.layers.BatchNormalization):
            layer_target.trainable = True
            layer_target.synchronized = layer_online.synchronized
            if layer_online.synchronized:
                layer_target.fused = False  # the fused kernel cannot synchronise


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, tf.keras.Model):
            yield from _all_layers(layer)


def _ema_weights(target: tf.keras.Model, online: tf.keras.Model) -> list[tf.Variable]:
    """The target's counterparts of ``online.trainable_weights`` (same layer and name order;
    the target is frozen, so its own ``trainable_weights`` is empty)."""
    by_name = {}
    for layer_online, layer_target in zip(online.layers, target.layers):
        for w_o, w_t in zip(layer_online.weights, layer_target.weights):
            by_name[id(w_o)] = w_t
    return [by_name[id(w)] for w in online.trainable_weights]
