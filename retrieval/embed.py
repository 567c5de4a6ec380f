"""Batched embedding of images and meshes with a trained Embedder.

Decoding images and raycasting meshes run in DataLoader worker processes, so both cores are busy
while the model runs. A mesh is embedded as the mean of the embeddings of its depth views.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from datagen.errors import DatagenError
from datagen.files import open_image

from .models import Embedder, preprocess


class _ImageFiles(Dataset):
    def __init__(self, paths: Sequence[Path], size: int) -> None:
        self.paths, self.size = list(paths), size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return preprocess([open_image(self.paths[i], "L")], self.size)[0]


class _MeshFiles(Dataset):
    def __init__(self, paths: Sequence[Path], size: int, views: int) -> None:
        self.paths, self.size, self.views = list(paths), size, views

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        from datagen.depth import mesh_depth_views

        return preprocess(list(mesh_depth_views(self.paths[i], size=self.size, views=self.views)), self.size)


def _device(model: Embedder) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def embed_tensors(model: Embedder, batch: torch.Tensor) -> np.ndarray:
    """Embed a ready (B, C, S, S) float batch in [0, 1]; float32 (B, D)."""
    model.eval()
    return model(batch.to(_device(model))).float().cpu().numpy()


def embed_arrays(model: Embedder, images: Sequence[np.ndarray | Image.Image], batch_size: int = 128) -> np.ndarray:
    """Embed in-memory images (uint8 arrays or PIL images) in batches; float32 (N, D)."""
    out = [embed_tensors(model, preprocess(images[i : i + batch_size], model.input_size))
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, model.embed_dim), np.float32)


def _run(model: Embedder, dataset: Dataset, batch_size: int, workers: int, desc: str, progress: bool) -> np.ndarray:
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, persistent_workers=False,
                        multiprocessing_context="spawn" if workers else None)
    chunks = []
    try:
        for batch in tqdm(loader, desc=desc, unit="batch", disable=None if progress else True):
            if batch.ndim == 5:  # meshes: (B, V, C, S, S) -> mean of the V view embeddings
                b, v = batch.shape[:2]
                emb = torch.from_numpy(embed_tensors(model, batch.flatten(0, 1))).view(b, v, -1).mean(1)
                chunks.append((F.normalize(emb, dim=1) if model.config["normalize"] else emb).numpy())
            else:
                chunks.append(embed_tensors(model, batch))
    except DatagenError as exc:  # a worker's error arrives wrapped in its traceback text: keep its message
        last_line = str(exc).strip().splitlines()[-1]
        # The re-raised worker error and its traceback form a reference cycle through the loader's
        # iterator; cut it so the workers shut down now, not at interpreter exit (which kills them and
        # prints a DataLoader traceback after our one-line error).
        exc.__traceback__ = None
        raise type(exc)(last_line.split(": ", 1)[-1] if "Error: " in last_line else last_line) from None
    return np.concatenate(chunks) if chunks else np.zeros((0, model.embed_dim), np.float32)


def embed_images(model: Embedder, paths: Sequence[str | Path], batch_size: int = 128, workers: int = 2,
                 progress: bool = True) -> np.ndarray:
    """Embed image files (any format PIL reads; colour is converted to grey); float32 (N, D)."""
    paths = [Path(p) for p in paths]
    if workers == 0:  # read in this process: errors surface with the file name, no pool start-up
        return embed_arrays(model, [open_image(p, "L") for p in paths], batch_size)
    return _run(model, _ImageFiles(paths, model.input_size), batch_size, workers, "embed images", progress)


def embed_meshes(model: Embedder, paths: Sequence[str | Path], views: int = 4, batch_size: int = 32,
                 workers: int = 2, progress: bool = True) -> np.ndarray:
    """Embed mesh files (STL/OBJ/PLY) as the mean embedding of their depth views; float32 (N, D)."""
    dataset = _MeshFiles([Path(p) for p in paths], model.input_size, views)
    return _run(model, dataset, batch_size, workers, "embed meshes", progress)
