"""The network a pretraining method trains and exports, chosen in config (``backbone:``).

Named for what it is — the *trained network* — so that it is not confused with the saved
backbone format on disk (:mod:`burn_tf.saved_backbone`) or with the teachers (frozen,
never trained: :mod:`burn_tf.models.teacher`). ``backbone.kind`` selects it:

- ``reactnet_a``: the binary ReActNet-A of the paper (two stages: binary activations, then
  binary weights too).
- ``resnet18`` / ``resnet50``: torchvision-layout FP ResNets, for training a
  self-supervised FP teacher with burn_tf itself (one stage; ``small_input_stem`` for
  28–64 px images). Their exported backbones load as ``teacher.weights`` of kind
  ``resnet18`` / ``resnet50``.
- ``larq_zoo``: a binary student from larq-zoo named by ``backbone.name`` (QuickNet,
  Bi-Real Net, …: :data:`~burn_tf.models.larq_zoo.ZOO_STUDENTS`), built offline at
  ``input_size`` with its features tapped before the zoo's classifier; two stages as
  ReActNet-A. ReActNet-A's own fields must stay at their defaults (the zoo's architecture
  fixes them), and ``input_size`` must be one the architecture can take.

>>> build_backbone(BackboneConfig(kind="reactnet_a", input_size=32, width_multiplier=0.25), stage=1)
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from burn_tf.models.larq_zoo import ZOO_STUDENTS, ZooStudentConfig, build_zoo_student
from burn_tf.models.reactnet import ReActNetConfig, reactnet_a
from burn_tf.models.resnet import build_resnet
from burn_tf.schema import ConfigError, check_range

BACKBONES = ("reactnet_a", "larq_zoo", "resnet18", "resnet50")
BINARY_BACKBONES = ("reactnet_a", "larq_zoo")
# ReActNet-A's fields that describe its architecture: a larq-zoo student's architecture is
# the zoo's, so these must stay at their defaults (``stage`` and ``input_size`` apply to both).
REACTNET_ONLY_FIELDS = ("width_multiplier", "activation_gradient", "pad_values", "bn_momentum", "bn_epsilon",
                        "blocks")


@dataclasses.dataclass
class BackboneConfig(ReActNetConfig):
    """The YAML section ``backbone``: ``kind``, ReActNet-A's fields (declared once, in
    :class:`~burn_tf.models.reactnet.ReActNetConfig`, and inherited here) and the ResNet's
    ``small_input_stem``. ReActNet-A's fields are checked only when ``kind`` is
    ``reactnet_a``; ``stage`` is set by the stage being run. Give ``reactnet_a`` the plain
    :meth:`reactnet_config`, not this object: an exported backbone records its network's
    config, and that must not carry ``kind``. ``kind: larq_zoo`` needs ``name`` (a larq-zoo
    student) and refuses ReActNet-A's architecture fields set away from their defaults."""

    kind: str = "reactnet_a"
    # larq_zoo only: the zoo model (QuickNet, QuickNetSmall, BiRealNet, …; burn_tf.models.larq_zoo).
    name: str | None = None
    # ResNet only: a 3×3 stride-1 stem without max-pool for small images (CIFAR-style).
    small_input_stem: bool = False

    def __post_init__(self):
        if self.kind not in BACKBONES:
            raise ConfigError(f"backbone.kind={self.kind!r} is not one of {BACKBONES}")
        check_range("backbone", "bn_momentum", self.bn_momentum, 0.0, 1.0)
        check_range("backbone", "bn_epsilon", self.bn_epsilon, 0.0, low_open=True)
        if self.kind == "larq_zoo":
            self._check_zoo()
            return
        if self.name is not None:
            raise ConfigError(f"backbone.name={self.name!r} names a larq-zoo model: it needs backbone.kind=larq_zoo, "
                              f"not {self.kind!r}")
        if self.is_binary:
            try:
                self.reactnet_config()
            except ValueError as err:
                raise ConfigError(str(err)) from None
        elif not 16 <= int(self.input_size) <= 1024:
            raise ConfigError(f"backbone.input_size must be in [16, 1024], got {self.input_size!r}")

    def _check_zoo(self) -> None:
        if self.name is None:
            raise ConfigError(f"backbone.kind=larq_zoo needs backbone.name, one of {tuple(ZOO_STUDENTS)}")
        defaults = ReActNetConfig()
        for key in REACTNET_ONLY_FIELDS:
            if getattr(self, key) != getattr(defaults, key):
                raise ConfigError(
                    f"backbone.{key}={getattr(self, key)!r} is a ReActNet-A setting; larq-zoo {self.name} has its "
                    f"own architecture, so backbone.{key} must stay at its default (over a config that sets it: "
                    f"--set backbone.{key}={getattr(defaults, key)!r})"
                )
        if self.small_input_stem:
            raise ConfigError("backbone.small_input_stem is a ResNet setting; larq-zoo students have their own stems")
        try:
            self.zoo_config()
        except ValueError as err:
            raise ConfigError(f"backbone.name / backbone.input_size: {err}") from None

    @property
    def is_binary(self) -> bool:
        return self.kind in BINARY_BACKBONES

    @property
    def stages(self) -> tuple[int, ...]:
        """The stages this backbone is pretrained in: 1, 2 for the binary net, 1 otherwise."""
        return (1, 2) if self.is_binary else (1,)

    def reactnet_config(self, stage: int | None = None) -> ReActNetConfig:
        """ReActNet-A's fields of this config (``stage`` replaced when given), as a plain
        :class:`ReActNetConfig`."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(ReActNetConfig)}
        if stage is not None:
            values["stage"] = stage
        return ReActNetConfig(**values)

    def zoo_config(self, stage: int | None = None) -> ZooStudentConfig:
        """The larq-zoo student of this config (``kind: larq_zoo``) at ``stage`` (default ``self.stage``)."""
        return ZooStudentConfig(str(self.name), int(self.input_size), self.stage if stage is None else stage)


def build_backbone(cfg: BackboneConfig, stage: int = 1, name: str = "student_backbone") -> tf.keras.Model:
    """The backbone of ``stage``: images in [0, 1] ``[B, S, S, 3]`` → pooled feature ``[B, D]``."""
    if cfg.kind == "larq_zoo":
        zoo = cfg.zoo_config(stage)
        return build_zoo_student(zoo.name, zoo.input_size, zoo.stage, model_name=name)
    if cfg.is_binary:
        return reactnet_a(cfg.reactnet_config(stage), name=name)
    if stage != 1:
        raise ConfigError(f"backbone.kind={cfg.kind!r} is full precision and has one stage, not stage {stage}")
    depth = int(cfg.kind.removeprefix("resnet"))
    return build_resnet(depth, (cfg.input_size, cfg.input_size, 3), small_input_stem=cfg.small_input_stem,
                        name=name)
