"""The user-facing jobs: build an index (meshes, images or font templates), query it, benchmark it.

The embedding model travels inside the index folder (`model.pt`), so `sinonom query` needs nothing but
the index; a query with another model is refused by the index's fingerprint check.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np

from datagen.files import IMAGE_SUFFIXES, list_files
from datagen.meshes import MESH_SUFFIXES
from datagen.errors import DatagenError
from index import EmbeddingIndex

from .embed import embed_arrays, embed_images, embed_meshes
from .models import Embedder, load_embedder

MODEL_FILE = "model.pt"
DEFAULT_MODEL_NAME = "default.pt"


def default_model_path() -> Path:
    """The model shipped as package data (trained by the command in the README)."""
    return Path(str(resources.files("retrieval") / "weights" / DEFAULT_MODEL_NAME))


def load_model(path: str | Path | None = None) -> tuple[Embedder, Path]:
    """Load a checkpoint, or the shipped default when `path` is None."""
    path = Path(path) if path else default_model_path()
    if not path.is_file():
        hint = " (the shipped default is missing: reinstall, or pass --model)" if path == default_model_path() else ""
        raise DatagenError(f"{path}: no such model checkpoint{hint}")
    return load_embedder(path), path


def template_items(chars: Sequence[str], faces: Sequence, size: int) -> tuple[list[np.ndarray], list[dict]]:
    """Clean print templates of each character in each face that really draws it, with their items."""
    from datagen.fonts import faces_coverage
    from datagen.prints import render_print

    coverage = faces_coverage(faces, chars)
    images, items = [], []
    for char in chars:
        for face in faces:
            if char not in coverage[face]:
                continue
            images.append(render_print(char, face, size=size, strength=0.0))
            items.append({"id": f"U+{ord(char):04X}@{face.label}", "label": char, "source": str(face.path),
                          "kind": "template", "font_index": face.index})
    if not items:
        raise DatagenError("none of the given fonts draws any of the given characters")
    return images, items


def build_index(out: str | Path, *, model_path: str | Path | None = None, meshes: Path | None = None,
                images: Path | None = None, fonts: Sequence[str] = (), chars: str | None = None,
                views: int = 4, index_type: str = "flat", workers: int = 2, progress: bool = True,
                add: bool = False) -> EmbeddingIndex:
    """Embed meshes, images or font templates and save (or extend, with `add`) an index folder."""
    sources = [s for s in (meshes, images, fonts or None) if s]
    if len(sources) != 1:
        raise DatagenError("give exactly one of --meshes DIR, --images DIR or --fonts ... --chars SET")
    out = Path(out)
    existing = EmbeddingIndex.load(out) if add else None
    if existing is not None and model_path is None:
        model_path = out / MODEL_FILE
    model, model_path = load_model(model_path)
    if existing is not None:
        existing.check_model(model.fingerprint())
    start = time.perf_counter()
    if meshes:
        paths = list_files(meshes, MESH_SUFFIXES, "mesh")
        embeddings = embed_meshes(model, paths, views=views, workers=workers, progress=progress)
        items = [{"id": p.name, "label": "", "source": str(p.resolve()), "kind": "mesh"} for p in paths]
    elif images:
        paths = list_files(images, IMAGE_SUFFIXES, "image")
        embeddings = embed_images(model, paths, workers=workers, progress=progress)
        items = [{"id": p.name, "label": p.parent.name if p.parent != images else "", "source": str(p.resolve()),
                  "kind": "image"} for p in paths]
    else:
        from datagen.charsets import load_charset
        from datagen.fonts import distinct_faces, resolve_fonts

        arrays, items = template_items(load_charset(chars or "nom"), distinct_faces(resolve_fonts(fonts)), size=128)
        embeddings = embed_arrays(model, arrays)
    config = {"model": model.config, "model_source": str(model_path), "views": views,
              "built_from": {"meshes": str(meshes) if meshes else None, "images": str(images) if images else None,
                             "fonts": list(fonts), "chars": chars}}
    if existing is not None:
        existing.add(embeddings, items)
        index = existing
    else:
        index = EmbeddingIndex.build(embeddings, items, model=model.fingerprint(), config=config, metric="l2",
                                     index_type=index_type)
    index.save(out)
    if Path(model_path).resolve() != (out / MODEL_FILE).resolve():
        shutil.copyfile(model_path, out / MODEL_FILE)
    (out / "build.json").write_text(json.dumps({**config, "seconds": round(time.perf_counter() - start, 2),
                                                 "count": len(index)}, indent=2, ensure_ascii=False) + "\n")
    return index


@dataclass
class QueryResult:
    """The top-k answers to one query image."""

    query: str
    ids: list[str]
    labels: list[str]
    distances: list[float]
    sources: list[str]


def open_index(folder: str | Path, model_path: str | Path | None = None) -> tuple[EmbeddingIndex, Embedder]:
    """Load an index and the model to query it with (its own copy unless another is given: then checked)."""
    folder = Path(folder)
    index = EmbeddingIndex.load(folder)
    model, _ = load_model(model_path or folder / MODEL_FILE)
    index.check_model(model.fingerprint())
    return index, model


def query_index(index: EmbeddingIndex, model: Embedder, images: Sequence[str | Path], k: int = 5,
                workers: int = 0) -> list[QueryResult]:
    """Embed query images and return their top-k items, best first."""
    embeddings = embed_images(model, images, workers=workers, progress=len(images) > 256)
    found = index.search(embeddings, k=k, model=model.fingerprint())
    results = []
    for q, path in enumerate(images):
        items = found.items(q)
        dists = found.l2_distances(q)
        results.append(QueryResult(str(path), [it["id"] for it in items], [it.get("label", "") for it in items],
                                   dists, [it.get("source", "") for it in items]))
    return results


def item_thumbnail(item: dict, size: int = 128) -> np.ndarray | str:
    """Something to draw for an index item: a depth view of a mesh, the image, or a glyph template."""
    kind = item.get("kind", "image")
    if kind == "mesh":
        from datagen.depth import mesh_depth_views

        return mesh_depth_views(item["source"], size=size, views=1)[0]
    if kind == "template":
        from datagen.fonts import FontFace
        from datagen.prints import render_print

        face = FontFace(Path(item["source"]), int(item.get("font_index", 0)))
        return render_print(item["label"], face, size=size, strength=0.0)
    return item["source"]


def draw_results(results: Sequence[QueryResult], index: EmbeddingIndex, out_path: str | Path,
                 truths: Sequence[str | None] | None = None, tile: int = 128) -> Path:
    """Save an image grid: each query beside its top-k results with distances (green = true match)."""
    from eval.grid import retrieval_grid

    items = {it["id"]: it for it in index.items}
    rows = []
    for n, result in enumerate(results):
        truth = truths[n] if truths else None
        row = []
        for item_id, dist in zip(result.ids, result.distances):
            item = items[item_id]
            image = item_thumbnail(item, tile)
            caption = f"{item_id}\n{item.get('label', '')} d={dist:.3f}"
            row.append((image, caption, None if truth is None else item_id == truth))
        rows.append(row)
    return retrieval_grid([r.query for r in results], rows, out_path, tile=tile)
