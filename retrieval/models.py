"""Embedding models: a timm backbone (random init, grayscale input) with a pooling + projection head.

Variants are registered by name with their default input size, embedding size, normalisation and
pooling, like timm's pretrained configs. A checkpoint carries its resolved config, so loading it
rebuilds the same transforms (resize, mean/std) and architecture without the training code.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import timm
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from torch import nn

from retrieval.config import POOLS, ConfigError, one_of

CHECKPOINT_FORMAT = "sinonom-embedder/1"
DEFAULT_VARIANT = "resnet10t"

_VARIANTS: dict[str, dict[str, Any]] = {}


class CheckpointError(ConfigError):
    """A checkpoint file is missing, unreadable, or not an embedder checkpoint."""


def register_variant(name: str, timm_name: str | None = None, *, input_size: int, embed_dim: int = 128,
                     mean: float = 0.5, std: float = 0.5, pool: str = "gem", **timm_kwargs: Any) -> None:
    """Register (or replace) a named variant: timm architecture plus its default head and transforms."""
    one_of(f"variant {name}: pool", pool, POOLS)
    _VARIANTS[name] = dict(timm_name=timm_name or name, input_size=input_size, embed_dim=embed_dim,
                           mean=mean, std=std, pool=pool, timm_kwargs=timm_kwargs)


def list_variants() -> list[str]:
    """Names of the registered variants, sorted."""
    return sorted(_VARIANTS)


def variant_defaults(name: str) -> dict[str, Any]:
    """The registered defaults of variant `name` (a copy)."""
    if name not in _VARIANTS:
        raise ConfigError(f"unknown model variant {name!r}; registered: {', '.join(list_variants())}")
    return {**_VARIANTS[name], "timm_kwargs": dict(_VARIANTS[name]["timm_kwargs"])}


# Grayscale prints / depth views: one channel centred on mid-grey. resnet10t at 64 px is the CPU
# default: ~130 img/s forward+backward at batch 64 on 2 cores, and it learns fast from scratch
# (MobileNet-style lcnet_050 / mobilenetv3_small_100 were 2-4x faster per image but barely learned
# in the same time, so they are not offered). Larger models get larger inputs, for GPU training.
register_variant("resnet10t", input_size=64)
register_variant("resnet18", input_size=96)
register_variant("efficientnet_b0", input_size=96)
register_variant("caformer_s18", input_size=96, pool="avg")


class GeM(nn.Module):
    """Generalized-mean pooling (learned exponent p): between average (p=1) and max (p->inf)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(p))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # float32 even under autocast: eps ** p underflows in half precision and p-th roots of 0 give NaN
        return x.float().clamp(min=self.eps).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)


class Embedder(nn.Module):
    """Backbone feature map -> GeM or average pooling -> Linear -> BatchNorm1d (-> L2 normalisation).

    forward takes images scaled to [0, 1] of shape (B, in_chans, H, W); resizing to input_size and
    mean/std normalisation happen inside, so every dataset feeds the same [0, 1] tensors.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = dict(config)
        self.backbone = timm.create_model(config["timm_name"], pretrained=False, num_classes=0, global_pool="",
                                          in_chans=config["in_chans"], **config["timm_kwargs"])
        self.pool = GeM() if config["pool"] == "gem" else nn.AdaptiveAvgPool2d(1)
        width = getattr(self.backbone, "head_hidden_size", None) or self.backbone.num_features
        self.proj = nn.Linear(width, config["embed_dim"], bias=False)
        self.bn = nn.BatchNorm1d(config["embed_dim"])
        self.register_buffer("mean", torch.tensor(float(config["mean"])), persistent=False)
        self.register_buffer("std", torch.tensor(float(config["std"])), persistent=False)

    @property
    def embed_dim(self) -> int:
        return int(self.config["embed_dim"])

    @property
    def input_size(self) -> int:
        return int(self.config["input_size"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = self.input_size
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        x = (x - self.mean) / self.std
        # timm's head without pooling or classifier: keeps the head's own layers (MobileNetV3's
        # conv_head, MetaFormer's norm) so that every backbone parameter is trained.
        features = self.backbone.forward_head(self.backbone.forward_features(x), pre_logits=True)
        embedding = self.bn(self.proj(self.pool(features).flatten(1)))
        return F.normalize(embedding, dim=1) if self.config["normalize"] else embedding

    def preprocess(self, images: Sequence[Image.Image | np.ndarray]) -> torch.Tensor:
        """PIL images or uint8 / [0,1]-float arrays -> (B, in_chans, S, S) float tensor in [0, 1]."""
        return preprocess(images, self.input_size, self.config["in_chans"])

    def fingerprint(self) -> str:
        """Short stable hash of the config and every weight, to tie embeddings to the model made them."""
        digest = hashlib.sha256(json.dumps(self.config, sort_keys=True).encode())
        return tensors_digest(sorted(self.state_dict().items()), digest)

    def save(self, path: str | Path, extra: dict[str, Any] | None = None,
             train_state: dict[str, Any] | None = None, half: bool = False) -> Path:
        """Write the checkpoint at `path` and its resolved config as YAML beside it (`path` with .yaml).

        extra: YAML-safe metadata (training config, step, metrics) kept in both files.
        train_state: opaque resume state (optimizer, scheduler, RNG), kept in the checkpoint only.
        half: store float weights as float16 (half the file, for shipping); this model's own weights
        are rounded the same way first, so the saved fingerprint is the one the loaded model has.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        if half:
            with torch.no_grad():
                for tensor in self.state_dict().values():
                    if tensor.is_floating_point():
                        tensor.copy_(tensor.half().float())
            state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        fingerprint = self.fingerprint()
        payload = {"format": CHECKPOINT_FORMAT, "config": self.config, "fingerprint": fingerprint,
                   "state_dict": state,
                   "extra": extra or {}, "train_state": train_state}
        tmp = path.with_name(path.name + ".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)
        summary = {"model": self.config, "fingerprint": fingerprint, "checkpoint": path.name, **(extra or {})}
        path.with_suffix(".yaml").write_text(yaml.safe_dump(summary, sort_keys=False), encoding="utf-8")
        return path


def resolve_config(backbone: str, embed_dim: int | None = None, in_chans: int = 1, input_size: int | None = None,
                   normalize: bool = True, pool: str | None = None, mean: float | None = None,
                   std: float | None = None, **timm_kwargs: Any) -> dict[str, Any]:
    """Variant defaults overridden by the explicit arguments: the dict an Embedder is built from."""
    defaults = variant_defaults(backbone)
    pool = pool or defaults["pool"]
    one_of("pool", pool, POOLS)
    config = {
        "backbone": backbone,
        "timm_name": defaults["timm_name"],
        "embed_dim": int(embed_dim or defaults["embed_dim"]),
        "input_size": int(input_size or defaults["input_size"]),
        "in_chans": int(in_chans),
        "normalize": bool(normalize),
        "pool": pool,
        "mean": float(defaults["mean"] if mean is None else mean),
        "std": float(defaults["std"] if std is None else std),
        "timm_kwargs": {**defaults["timm_kwargs"], **timm_kwargs},
    }
    if config["embed_dim"] < 1 or config["input_size"] < 16:
        raise ConfigError(f"embed_dim must be >= 1 and input_size >= 16; got {config['embed_dim']}, "
                          f"{config['input_size']}")
    return config


def create_embedder(backbone: str = DEFAULT_VARIANT, embed_dim: int | None = None, in_chans: int = 1,
                    pretrained: bool = False, input_size: int | None = None, normalize: bool = True,
                    **kwargs: Any) -> Embedder:
    """Build an Embedder of a registered variant with random weights.

    kwargs: pool, mean, std, and anything timm.create_model accepts (e.g. drop_path_rate).
    """
    if pretrained:
        raise ConfigError(f"pretrained weights for {backbone!r} cannot be downloaded here (no network); "
                          "train from scratch or load a checkpoint with load_embedder")
    return Embedder(resolve_config(backbone, embed_dim=embed_dim, in_chans=in_chans, input_size=input_size,
                                   normalize=normalize, **kwargs))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict (format, config, fingerprint, state_dict, extra, train_state)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types (pickle, zip, runtime) for a damaged file
        raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint")
    return payload


def tensors_digest(named: Iterable[tuple[str, torch.Tensor]], digest: Any = None) -> str:
    """Short hash of named tensors (names and exact bytes, in the order given), added to `digest` (sha256)."""
    digest = digest or hashlib.sha256()
    for name, tensor in named:
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def load_embedder(path: str | Path, map_location: str | torch.device = "cpu") -> Embedder:
    """Rebuild the Embedder saved at `path` (in eval mode), weights included."""
    return embedder_from_checkpoint(load_checkpoint(path, map_location), path, map_location)


def embedder_from_checkpoint(payload: dict[str, Any], path: str | Path,
                             map_location: str | torch.device = "cpu") -> Embedder:
    """The Embedder of a checkpoint already read by load_checkpoint (`path` names it in errors)."""
    try:
        model = Embedder(payload["config"])
        model.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} does not match its config: {exc}".splitlines()[0]) from exc
    return model.to(map_location).eval()


def preprocess(images: Sequence[Image.Image | np.ndarray], input_size: int, in_chans: int = 1) -> torch.Tensor:
    """Convert images to a (B, in_chans, S, S) float tensor in [0, 1], resized to input_size.

    Accepts PIL images (any mode, converted to grayscale), uint8 arrays (H, W) or (H, W, 3), and
    float arrays already in [0, 1].
    """
    batch = np.stack([_to_gray_float(image, input_size) for image in images])
    tensor = torch.from_numpy(batch).unsqueeze(1)
    return tensor.expand(-1, in_chans, -1, -1).contiguous()


def _to_gray_float(image: Image.Image | np.ndarray, size: int) -> np.ndarray:
    if isinstance(image, np.ndarray):
        if image.dtype == np.uint8:
            image = Image.fromarray(image)
        elif np.issubdtype(image.dtype, np.floating) and image.ndim == 2:
            if image.size and (image.min() < 0.0 or image.max() > 1.0):
                raise ConfigError(f"float image must lie in [0, 1]; got range {image.min():.3g}..{image.max():.3g}")
            image = Image.fromarray(image.astype(np.float32))
        else:
            raise ConfigError(f"cannot preprocess an array of dtype {image.dtype} and shape {image.shape}; "
                              "expected uint8 (H, W[, 3]) or float (H, W) in [0, 1]")
    if not isinstance(image, Image.Image):
        raise ConfigError(f"cannot preprocess a {type(image).__name__}; expected a PIL image or numpy array")
    if image.mode != "F":
        image = image.convert("L")
    scale = 255.0 if image.mode == "L" else 1.0
    resized = image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
    return np.asarray(resized, dtype=np.float32) / scale
