"""Optimizers and learning-rate schedules of the BURN recipes.

- Adam with a linear warm-up then cosine decay (the released code).
- LARS (the paper's supplement: lr 0.3, batch 2048). None of the pinned libraries ships
  LARS for Keras 2.15 (tensorflow-addons has LAMB, not LARS), so it is written here, small
  and tested: SGD with momentum on g' = g + wd·w, each layer's step scaled by the trust
  ratio η·‖w‖/‖g'‖ (1 where either norm is 0); biases and BatchNorm parameters are
  excluded from the trust ratio and from weight decay, as in SimCLR/BYOL.
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf

from burn_tf.schema import ConfigError, check_range


@dataclasses.dataclass
class OptimizerConfig:
    # adam: released code (lr 3e-4, wd 0, linear warm-up then cosine);
    # lars: the paper's supplement (lr 0.3, batch 2048).
    name: str = "adam"
    learning_rate: float = 3e-4
    weight_decay: float = 0.0
    warmup_epochs: float = 10.0
    momentum: float = 0.9  # LARS
    lars_eta: float = 0.001
    # Apply the mean gradient of this many batches at once (a larger effective batch).
    accumulation_steps: int = 1

    def __post_init__(self):
        if self.name not in ("adam", "lars"):
            raise ConfigError(f"optimizer.name={self.name!r} is not one of ('adam', 'lars')")
        if self.learning_rate <= 0:
            raise ConfigError(f"optimizer.learning_rate must be > 0, got {self.learning_rate}")
        if self.accumulation_steps < 1:
            raise ConfigError(f"optimizer.accumulation_steps must be >= 1, got {self.accumulation_steps}")
        if self.warmup_epochs < 0:
            raise ConfigError(f"optimizer.warmup_epochs must be >= 0, got {self.warmup_epochs}")
        check_range("optimizer", "weight_decay", self.weight_decay, 0.0)
        check_range("optimizer", "momentum", self.momentum, 0.0, 1.0)
        check_range("optimizer", "lars_eta", self.lars_eta, 0.0, low_open=True)


@tf.keras.utils.register_keras_serializable(package="burn_tf")
class WarmupCosine(tf.keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to ``base`` over ``warmup_steps``, then cosine to 0 at ``total_steps``."""

    def __init__(self, base: float, warmup_steps: int, total_steps: int):
        self.base = float(base)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = max(int(total_steps), 1)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = tf.cast(max(self.warmup_steps, 1), tf.float32)
        decay_steps = tf.cast(max(self.total_steps - self.warmup_steps, 1), tf.float32)
        progress = tf.clip_by_value((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        cosine = 0.5 * self.base * (1.0 + tf.cos(math.pi * progress))
        if self.warmup_steps == 0:
            return cosine
        return tf.where(step < self.warmup_steps, self.base * (step + 1.0) / warm, cosine)

    def get_config(self):
        return {"base": self.base, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps}


def _excluded_from_lars(var) -> bool:
    name = var.name.lower()
    return "bias" in name or "batch_norm" in name or "/bn" in name or "_bn" in name or len(var.shape) <= 1


@tf.keras.utils.register_keras_serializable(package="burn_tf")
class LARS(tf.keras.optimizers.Optimizer):
    """Layer-wise Adaptive Rate Scaling (You et al. 2017) for Keras 2.15 optimizers."""

    def __init__(
        self,
        learning_rate=0.3,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.001,
        name: str = "LARS",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self._learning_rate = self._build_learning_rate(learning_rate)
        self.momentum = momentum
        self.lars_weight_decay = weight_decay
        self.eta = eta

    def build(self, var_list):
        super().build(var_list)
        if hasattr(self, "_built") and self._built:
            return
        self._built = True
        self.velocities = [self.add_variable_from_reference(v, "velocity") for v in var_list]

    def update_step(self, gradient, variable):
        lr = tf.cast(self.learning_rate, variable.dtype)
        velocity = self.velocities[self._index_dict[self._var_key(variable)]]
        if not _excluded_from_lars(variable):
            w_norm = tf.norm(variable)
            gradient = gradient + self.lars_weight_decay * variable
            g_norm = tf.norm(gradient)
            trust = tf.where(
                tf.logical_and(w_norm > 0, g_norm > 0), self.eta * w_norm / g_norm, 1.0
            )
            gradient = gradient * trust
        velocity.assign(self.momentum * velocity + gradient)
        variable.assign_sub(lr * velocity)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "learning_rate": self._serialize_hyperparameter(self._learning_rate),
                "momentum": self.momentum,
                "weight_decay": self.lars_weight_decay,
                "eta": self.eta,
            }
        )
        return config


def build_optimizer(cfg: OptimizerConfig, steps_per_epoch: int, epochs: int) -> tf.keras.optimizers.Optimizer:
    """The optimizer a config asks for, with its warm-up + cosine schedule in optimizer steps."""
    apply_steps_per_epoch = max(steps_per_epoch // cfg.accumulation_steps, 1)
    schedule = WarmupCosine(
        cfg.learning_rate,
        warmup_steps=int(round(cfg.warmup_epochs * apply_steps_per_epoch)),
        total_steps=epochs * apply_steps_per_epoch,
    )
    if cfg.name == "adam":
        if cfg.weight_decay:
            return tf.keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay)
        return tf.keras.optimizers.Adam(schedule)
    return LARS(schedule, momentum=cfg.momentum, weight_decay=cfg.weight_decay, eta=cfg.lars_eta)


def current_learning_rate(optimizer) -> tf.Tensor:
    lr = optimizer._learning_rate  # the schedule object itself (public .learning_rate evaluates lazily)
    if isinstance(lr, tf.keras.optimizers.schedules.LearningRateSchedule):
        return tf.cast(lr(optimizer.iterations), tf.float32)
    return tf.cast(lr, tf.float32)
