"""MRR@5 benchmark on a course-format folder (database/, queries/, labels.csv), with baselines.

Stages are timed separately: rendering depth views of the database meshes (both cores), embedding
them, embedding the queries, and the batched top-k search (never a full query x gallery matrix).
Every method sees the same depth views and query images, so the table compares methods only.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
from PIL import Image

from datagen.files import list_files
from datagen.meshes import MESH_SUFFIXES
from datagen.errors import DatagenError
from datagen.files import open_image
from datagen.parallel import imap_progress
from eval.course import read_labels, score_predictions, write_predictions
from eval.grid import retrieval_grid
from eval.metrics import batched_topk

from .embed import embed_arrays
from .models import Embedder


class Featurizer(Protocol):
    """Anything that turns grey uint8 images into feature vectors (compared with Euclidean distance)."""

    name: str

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray: ...


@dataclass
class ModelFeaturizer:
    """A trained Embedder."""

    model: Embedder
    name: str = "model"

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return embed_arrays(self.model, list(images))


@dataclass
class PixelFeaturizer:
    """Raw-pixel baseline: the image at `size` px, centred and scaled to unit norm."""

    size: int = 32
    name: str = "raw pixels"

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        vectors = np.stack([np.asarray(Image.fromarray(i).resize((self.size, self.size), Image.Resampling.BILINEAR),
                                       np.float32).ravel() for i in images])
        vectors -= vectors.mean(1, keepdims=True)
        return vectors / (np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-6)


@dataclass
class HOGFeaturizer:
    """HOG baseline (scikit-image): histograms of stroke gradients, robust to ink tone."""

    size: int = 64
    name: str = "HOG"

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        from skimage.feature import hog

        vectors = np.stack([hog(np.asarray(Image.fromarray(i).resize((self.size, self.size), Image.Resampling.BILINEAR)),
                                orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2))
                            for i in images]).astype(np.float32)
        return vectors / (np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-6)


@dataclass
class CourseSet:
    """A course-format folder loaded for benchmarking: query images and database depth views."""

    root: Path
    labels: dict[str, list[str]]
    query_names: list[str]
    query_images: list[np.ndarray]
    mesh_paths: list[Path]
    mesh_views: np.ndarray  # (meshes, views, size, size) uint8
    timings: dict[str, float] = field(default_factory=dict)


def _views_of(path: Path, size: int, views: int) -> np.ndarray:
    from datagen.depth import mesh_depth_views

    return mesh_depth_views(path, size=size, views=views)


def load_course_set(root: str | Path, size: int = 128, views: int = 4, workers: int = 2,
                    limit: int | None = None) -> CourseSet:
    """Read labels and queries, render every database mesh's depth views (in `workers` processes)."""
    root = Path(root)
    if not root.is_dir():
        raise DatagenError(f"{root}: no such dataset folder")
    labels = read_labels(root / "labels.csv")
    query_names = list(labels)[:limit]
    meshes = list_files(root / "database", MESH_SUFFIXES, "mesh")
    timings = {}
    start = time.perf_counter()
    render = partial(_views_of, size=size, views=views)
    mesh_views = list(imap_progress(render, meshes, workers, "depth views", "mesh", chunksize=4))
    timings["render_views_s"] = time.perf_counter() - start
    start = time.perf_counter()
    queries = [np.asarray(open_image(root / "queries" / q, "L").resize((2 * size, 2 * size), Image.Resampling.BILINEAR))
               for q in query_names]
    timings["read_queries_s"] = time.perf_counter() - start
    return CourseSet(root, labels, query_names, queries, meshes, np.stack(mesh_views), timings)


def run_benchmark(data: CourseSet, featurizer: Featurizer, out_dir: str | Path | None = None, k: int = 5,
                  worst: int = 8) -> dict:
    """Score one method: predictions CSV (course format), metrics, timings and a grid of the worst queries."""
    n_meshes, n_views = data.mesh_views.shape[:2]
    start = time.perf_counter()
    view_features = featurizer(list(data.mesh_views.reshape(-1, *data.mesh_views.shape[2:])))
    gallery = view_features.reshape(n_meshes, n_views, -1).mean(1)
    if _is_normalized(view_features):  # the mean of unit vectors is shorter: project it back
        gallery /= np.linalg.norm(gallery, axis=1, keepdims=True) + 1e-12
    embed_db = time.perf_counter() - start
    start = time.perf_counter()
    queries = featurizer(data.query_images)
    embed_q = time.perf_counter() - start
    start = time.perf_counter()
    distances, indices = batched_topk(queries, gallery, k=max(k, 10))
    search = time.perf_counter() - start
    names = [p.name for p in data.mesh_paths]
    predictions = {q: [names[i] for i in row[:k]] for q, row in zip(data.query_names, indices)}
    ranked10 = {q: [names[i] for i in row] for q, row in zip(data.query_names, indices)}
    labels = {q: data.labels[q] for q in data.query_names}
    scores = score_predictions(ranked10, labels, k=k)
    result = {"method": featurizer.name, **{m: round(v, 4) for m, v in scores.items() if m != "n"},
              "n_queries": len(queries), "n_database": n_meshes,
              "timings_s": {**{t: round(v, 2) for t, v in data.timings.items()}, "embed_database_s": round(embed_db, 2),
                            "embed_queries_s": round(embed_q, 2), "search_s": round(search, 3)},
              "queries_per_s": round(len(queries) / max(embed_q + search, 1e-9), 1)}
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_predictions(out_dir / "predictions.csv", predictions)
        (out_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
        result["grid"] = str(_worst_grid(data, predictions, distances, out_dir / "worst.png", worst))
    return result


def _is_normalized(features: np.ndarray) -> bool:
    return bool(np.allclose(np.linalg.norm(features[:16], axis=1), 1.0, atol=1e-3))


def _worst_grid(data: CourseSet, predictions: dict[str, list[str]], distances: np.ndarray, out: Path,
                rows: int) -> Path:
    """The queries whose true block ranks lowest, each beside its top-k (depth views), true match green."""
    def rank(q: str) -> int:
        truth = data.labels[q][0]
        return predictions[q].index(truth) if truth in predictions[q] else len(predictions[q])

    order = sorted(range(len(data.query_names)), key=lambda i: -rank(data.query_names[i]))[:rows]
    position = {p.name: n for n, p in enumerate(data.mesh_paths)}
    grid_rows = []
    for i in order:
        q = data.query_names[i]
        truth = data.labels[q][0]
        grid_rows.append([(data.mesh_views[position[name], 0], f"{name}\nd={np.sqrt(max(d, 0)):.3f}", name == truth)
                          for name, d in zip(predictions[q], distances[i])])
    return retrieval_grid([data.query_images[i] for i in order], grid_rows, out, tile=128)


def format_table(results: Sequence[dict]) -> str:
    """The side-by-side table of methods, as the study's tables."""
    lines = [f"{'method':28s} {'MRR@5':>7s} {'R@1':>7s} {'R@5':>7s} {'R@10':>7s} {'q/s':>8s}"]
    for r in results:
        lines.append(f"{r['method'][:28]:28s} {r['mrr@5']:7.4f} {r.get('recall@1', float('nan')):7.4f} "
                     f"{r.get('recall@5', float('nan')):7.4f} {r.get('recall@10', float('nan')):7.4f} "
                     f"{r['queries_per_s']:8.1f}")
    return "\n".join(lines)
