"""Datasets that feed training and validation from a cached training set (datagen.training_set)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from datagen.training_set import DEPTH, PRINT, load_training_set


def image_transform(input_size: int, train: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 (1,H,W) -> float (1,S,S) in [0, 1] (the model normalises); with `train`, cheap jitter.

    Prints and depth views are already varied when generated; these jitters add what is cheap to add at
    load time (framing, contrast) so that no two epochs see identical tensors.
    """
    steps: list[torch.nn.Module] = []
    if train:
        steps += [v2.RandomAffine(degrees=4, translate=(0.04, 0.04), scale=(0.92, 1.08), fill=255),
                  v2.ColorJitter(brightness=0.25, contrast=0.35)]
    steps += [v2.Resize((input_size, input_size), antialias=True), v2.ToDtype(torch.float32, scale=True)]
    return v2.Compose(steps)


class BlockImageDataset(Dataset):
    """(image, class) samples of a cached training set; `labels` is exposed for M-per-class sampling."""

    def __init__(self, source: str | Path | dict, input_size: int, train: bool = True) -> None:
        data = load_training_set(source) if not isinstance(source, dict) else source
        self.images: np.ndarray = data["images"]
        self.labels: np.ndarray = data["labels"]
        self.domains: np.ndarray = data["domains"]
        self.classes: list[dict] = data["classes"]
        self.transform = image_transform(input_size, train)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = torch.from_numpy(self.images[i]).unsqueeze(0)
        return self.transform(image), int(self.labels[i])


def cross_domain_validator(source: str | Path | dict, batch_size: int = 256) -> Callable[[torch.nn.Module], dict]:
    """A val_fn for training: prints are queries, each block (its depth views, averaged) is one gallery item.

    Scores what the product does (print in, block out) with the batched metrics of `eval`.
    """
    from eval.metrics import evaluate_embeddings

    data = load_training_set(source) if not isinstance(source, dict) else source
    prints = np.flatnonzero(data["domains"] == PRINT)
    depth = np.flatnonzero(data["domains"] == DEPTH)
    blocks = np.unique(data["labels"][depth])

    @torch.no_grad()
    def validate(model: torch.nn.Module) -> dict:
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device

        def embed(indices: np.ndarray) -> np.ndarray:
            chunks = []
            for i in range(0, len(indices), batch_size):
                batch = torch.from_numpy(data["images"][indices[i : i + batch_size]]).unsqueeze(1)
                chunks.append(model(batch.to(device).float() / 255.0).float().cpu().numpy())
            return np.concatenate(chunks)

        view_emb, view_labels = embed(depth), data["labels"][depth]
        gallery = np.stack([view_emb[view_labels == b].mean(0) for b in blocks])
        if getattr(model, "config", {}).get("normalize"):
            gallery /= np.linalg.norm(gallery, axis=1, keepdims=True) + 1e-12
        metrics = evaluate_embeddings(embed(prints), data["labels"][prints], gallery, blocks, ks=(1, 5, 10))
        model.train(was_training)
        return metrics

    return validate
