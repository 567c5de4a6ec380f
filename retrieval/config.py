"""Training configuration: a nested dataclass loadable from YAML with dotted `key=value` overrides.

Kept free of torch so that the CLI can parse and validate a config before anything heavy is imported.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from datagen.errors import DatagenError


class ConfigError(DatagenError):
    """A configuration value, key, model variant or checkpoint setting is not acceptable."""


LOSSES = ("triplet", "contrastive", "classifier")
MINERS = ("batch_hard", "multi_similarity", "none")
DISTANCES = ("euclidean", "cosine")
AMP_MODES = ("auto", "on", "off")
POOLS = ("avg", "gem")


@dataclass
class ModelConfig:
    """Which registered variant to build; None takes the variant's default."""

    variant: str = "resnet10t"
    embed_dim: int | None = None
    input_size: int | None = None
    normalize: bool = True
    pool: str | None = None
    drop_path_rate: float = 0.0


@dataclass
class LossConfig:
    """Metric-learning objective, composed from pytorch-metric-learning parts by name.

    name: triplet | contrastive | classifier (PML NormalizedSoftmaxLoss; its embeddings are used for
    retrieval, it ignores miner and distance). margin: triplet margin. pos_margin / neg_margin:
    contrastive margins (None: 0 and 1 for euclidean, 1 and 0 for cosine similarity).
    temperature: classifier. ms_epsilon: multi_similarity miner.
    """

    name: str = "triplet"
    margin: float = 0.2
    miner: str = "batch_hard"
    distance: str = "euclidean"
    pos_margin: float | None = None
    neg_margin: float | None = None
    temperature: float = 0.05
    ms_epsilon: float = 0.1


@dataclass
class DataConfig:
    """Batching: batch_size per process, m_per_class samples of each class in a batch.

    train_set / val_set: paths of cached sets the CLI turns into the dataset and val_fn
    (the trainer itself takes those as arguments).
    """

    train_set: str | None = None
    val_set: str | None = None
    batch_size: int = 64
    m_per_class: int = 4
    num_workers: int = 2


@dataclass
class OptimConfig:
    """AdamW with linear warmup then cosine decay; `steps` (if set) overrides `epochs`."""

    lr: float = 1e-3
    weight_decay: float = 0.05
    epochs: int = 10
    steps: int | None = None
    warmup_frac: float = 0.05
    min_lr_frac: float = 0.01


@dataclass
class TrainConfig:
    """Everything `retrieval.train.train` needs besides the dataset and the validation callback.

    val_every / checkpoint_every: in optimizer steps, 0 = once per epoch. val_metric: the key of
    the val_fn result that chooses best.pt (higher is better). amp: auto (on with CUDA), on, off.
    num_threads: torch intra-op threads
    per process (0 = torch's default); 1 is far faster when other processes share the cores.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    seed: int = 0
    amp: str | bool = "auto"
    device: str = "auto"
    num_threads: int = 0
    out_dir: str = "runs/train"
    resume: bool = False
    log_every: int = 20
    checkpoint_every: int = 0
    val_every: int = 0
    val_metric: str = "recall@1"

    def __post_init__(self) -> None:
        if isinstance(self.amp, bool):  # YAML reads `amp: on` / `amp: off` as booleans
            self.amp = "on" if self.amp else "off"
        self.validate()

    def validate(self) -> None:
        """Check enumerations and ranges; raise ConfigError naming the bad key."""
        one_of("loss.name", self.loss.name, LOSSES)
        one_of("loss.miner", self.loss.miner, MINERS)
        one_of("loss.distance", self.loss.distance, DISTANCES)
        one_of("amp", self.amp, AMP_MODES)
        if self.model.pool is not None:
            one_of("model.pool", self.model.pool, POOLS)
        for key, value in (("data.batch_size", self.data.batch_size), ("optim.epochs", self.optim.epochs),
                           ("log_every", self.log_every)):
            if value < 1:
                raise ConfigError(f"{key} must be >= 1, got {value}")
        if self.data.m_per_class < 2:
            raise ConfigError(f"data.m_per_class must be >= 2 (a batch needs positive pairs), got {self.data.m_per_class}")
        if self.data.batch_size % self.data.m_per_class:
            raise ConfigError(f"data.m_per_class ({self.data.m_per_class}) must divide "
                              f"data.batch_size ({self.data.batch_size})")
        if self.data.batch_size // self.data.m_per_class < 2:
            raise ConfigError("a batch needs at least 2 classes: data.batch_size / data.m_per_class >= 2")
        for key, value in (("checkpoint_every", self.checkpoint_every), ("val_every", self.val_every),
                           ("num_threads", self.num_threads)):
            if value < 0:
                raise ConfigError(f"{key} must be >= 0, got {value}")
        if self.optim.steps is not None and self.optim.steps < 1:
            raise ConfigError(f"optim.steps must be >= 1 or null, got {self.optim.steps}")
        if not 0.0 <= self.optim.warmup_frac < 1.0:
            raise ConfigError(f"optim.warmup_frac must be in [0, 1), got {self.optim.warmup_frac}")

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML-safe) of the resolved configuration."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None = None, overrides: list[str] | None = None) -> TrainConfig:
        """Build from a nested dict, then apply dotted `key=value` overrides (values parsed as YAML)."""
        merged = _deep_copy(data or {})
        for item in overrides or []:
            key, sep, raw = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"override {item!r} is not of the form key=value")
            _set_dotted(merged, key.strip(), yaml.safe_load(raw))
        return _build(cls, merged, prefix="")

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
        """Load a YAML file (a mapping of the same shape as `to_dict`) and apply overrides."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config {path} is not valid YAML: {exc}") from exc
        if data is not None and not isinstance(data, dict):
            raise ConfigError(f"config {path} must hold a mapping, got {type(data).__name__}")
        return cls.from_dict(data, overrides)

    def save_yaml(self, path: str | Path) -> None:
        """Write the resolved configuration as YAML."""
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")


def one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    """ConfigError naming `key` unless `value` is one of `allowed`."""
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {', '.join(allowed)}; got {value!r}")


def _deep_copy(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in data.items()}


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for name in parents:
        child = node.setdefault(name, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted!r}: {name!r} is not a section")
        node = child
    node[leaf] = value


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    """Instantiate dataclass `cls` from `data`, coercing leaf values to the annotated types."""
    if not isinstance(data, dict):
        raise ConfigError(f"config section {prefix.rstrip('.') or '<root>'} must be a mapping")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            raise ConfigError(f"unknown config key {prefix}{key}{hint}")
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            kwargs[key] = _build(kind, value or {}, prefix=f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(f"{prefix}{key}", value, kind)
    return cls(**kwargs)


def _coerce(key: str, value: Any, kind: Any) -> Any:
    """Convert a YAML-parsed value to `kind` (bool/int/float/str, optionally `| None`)."""
    allowed = typing.get_args(kind) if isinstance(kind, types.UnionType) else (kind,)
    if value is None:
        if type(None) in allowed:
            return None
        raise ConfigError(f"{key} may not be null")
    for target in (t for t in allowed if t is not type(None)):
        if target is bool:
            if isinstance(value, bool):
                return value
        elif target is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif target is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        elif target is str:
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                return str(value)
    names = " or ".join(getattr(t, "__name__", str(t)) for t in allowed)
    raise ConfigError(f"{key} must be {names}, got {value!r}")
