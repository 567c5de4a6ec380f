"""Synthetic data for the trainer tests, and a tiny training run for the DDP test.

Run under torchrun: `python -m torch.distributed.run --nproc_per_node=2 tests/ddp_worker.py OUT_DIR`.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from retrieval.config import TrainConfig
from retrieval.models import list_variants, register_variant

TINY_VARIANT = "test_resnet"  # timm's 0.37M-parameter test ResNet: seconds per run on CPU


def register_tiny_variant() -> str:
    """Register timm's tiny test ResNet at 32 px for fast training tests."""
    if TINY_VARIANT not in list_variants():
        register_variant(TINY_VARIANT, input_size=32)
    return TINY_VARIANT


class SyntheticPatterns(Dataset):
    """`n_classes` smooth random 32 px patterns; each item is its class pattern plus pixel noise."""

    def __init__(self, n_classes: int = 6, per_class: int = 16, size: int = 32, noise: float = 0.25,
                 seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        patterns = F.interpolate(torch.rand(n_classes, 1, 8, 8, generator=generator), size=size, mode="bilinear")
        self.labels = np.repeat(np.arange(n_classes), per_class)
        noise_field = noise * torch.randn(len(self.labels), 1, size, size, generator=generator)
        self.images = (patterns[self.labels] + noise_field).clamp(0.0, 1.0)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])


def tiny_config(out_dir: str, **sections: dict) -> TrainConfig:
    """A config that trains the tiny variant for a few steps on SyntheticPatterns."""
    base = {"model": {"variant": register_tiny_variant(), "embed_dim": 32},
            "data": {"batch_size": 24, "m_per_class": 4, "num_workers": 0},
            "optim": {"steps": 30, "lr": 3e-3},
            "out_dir": out_dir, "log_every": 5}
    for key, value in sections.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) and key in base else value
    return TrainConfig.from_dict(base)


class RecordingPatterns(SyntheticPatterns):
    """SyntheticPatterns that remembers which items this process loaded, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        self.seen.append(int(index))
        return super().__getitem__(index)


def main(out_dir: str) -> None:
    """Train 4 steps on this rank, then record the items this rank drew (data loaded in-process)."""
    from retrieval.train import train

    torch.set_num_threads(1)
    dataset = RecordingPatterns()
    train(tiny_config(out_dir, optim={"steps": 4}, checkpoint_every=4, log_every=2), dataset)
    rank = os.environ.get("RANK", "0")
    Path(out_dir, f"rank{rank}_items.json").write_text(json.dumps(dataset.seen))


if __name__ == "__main__":
    main(sys.argv[1])
