"""A FAISS store of embeddings with per-item metadata, saved as one folder.

A folder holds `index.faiss` (the FAISS index, always written from a CPU copy), `items.jsonl`
(one item dict per line, in index position order) and `index.json` (model fingerprint, dimension,
metric, index type, count, creation time, FAISS version and the model/embedding config used to
build it, so that a query with another model can be refused and the build can be reproduced).

Distances follow FAISS: squared Euclidean for metric "l2" (smaller is closer), inner product for
metric "ip" (larger is closer).
"""
from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import faiss
import numpy as np

INDEX_FILE = "index.faiss"
ITEMS_FILE = "items.jsonl"
META_FILE = "index.json"
FORMAT_VERSION = 1

METRICS = {"l2": faiss.METRIC_L2, "ip": faiss.METRIC_INNER_PRODUCT}
INDEX_TYPES = ("flat", "ivf", "hnsw")
# FAISS's k-means wants at least 39 training points per IVF list; below two lists IVF is just flat.
IVF_POINTS_PER_LIST = 39
# Largest k FAISS's GPU indexes answer; bigger searches stay on the CPU.
GPU_MAX_K = 2048


class IndexStoreError(ValueError):
    """An index folder is missing, incomplete or corrupt, or the store was given bad input."""


class ModelMismatchError(IndexStoreError):
    """Queries come from another model (or dimension) than the one that built the index."""


@dataclass(frozen=True)
class SearchResult:
    """Top-k answers for a batch of queries.

    distances and positions are (Q, k); position -1 marks a slot the index could not fill
    (IVF/HNSW misses), and `items(i)` / `ids(i)` leave such slots out.
    """

    distances: np.ndarray
    positions: np.ndarray
    stored_items: Sequence[dict[str, Any]]

    def __len__(self) -> int:
        return self.positions.shape[0]

    def items(self, query: int) -> list[dict[str, Any]]:
        """The items found for one query, best first (copies: editing them leaves the store alone)."""
        return [dict(self.stored_items[p]) for p in self.positions[query] if p >= 0]

    def ids(self, query: int) -> list[str]:
        """The ids found for one query, best first."""
        return [self.stored_items[p]["id"] for p in self.positions[query] if p >= 0]

    def l2_distances(self, query: int) -> list[float]:
        """Euclidean distances of the items found for one query, best first (an L2 index holds squares)."""
        return [float(np.sqrt(max(d, 0.0))) for d, p in zip(self.distances[query], self.positions[query]) if p >= 0]


class EmbeddingIndex:
    """Embeddings of items (meshes, characters) in a FAISS index, searchable and saveable.

    Build with `EmbeddingIndex.build`, reopen with `EmbeddingIndex.load`. The FAISS index kept
    here is a CPU one; where FAISS sees a GPU, flat and IVF indexes are copied to it for search.
    """

    def __init__(self, cpu_index: faiss.Index, items: list[dict[str, Any]], meta: dict[str, Any],
                 folder: Path | None = None) -> None:
        self._index = cpu_index
        self._items = items
        self._ids = {item["id"] for item in items}
        self._meta = meta
        self._folder = folder
        self._gpu_index: faiss.Index | None = None
        self._gpu_resources: Any = None

    # ----------------------------------------------------------------- building
    @classmethod
    def build(
        cls,
        embeddings: np.ndarray,
        items: Sequence[Mapping[str, Any]],
        *,
        model: str,
        config: Mapping[str, Any] | None = None,
        metric: str = "l2",
        index_type: str = "flat",
        nlist: int | None = None,
        nprobe: int = 16,
        hnsw_m: int = 32,
        ef_search: int = 64,
    ) -> EmbeddingIndex:
        """Index (N, D) embeddings of N items (dicts with at least `id`; `label`, `source` default "").

        `model` is the fingerprint of the embedding model, `config` its resolved settings (JSON).
        IVF picks nlist from N when not given and falls back to flat, with a warning, when N is
        too small to train it; nprobe is how many lists a search visits. HNSW links each node
        to `hnsw_m` neighbours and searches with `ef_search` candidates.
        """
        if not isinstance(model, str) or not model:
            raise IndexStoreError("model fingerprint must be a non-empty string")
        if metric not in METRICS:
            raise IndexStoreError(f"unknown metric {metric!r}; choose one of {sorted(METRICS)}")
        if index_type not in INDEX_TYPES:
            raise IndexStoreError(f"unknown index type {index_type!r}; choose one of {list(INDEX_TYPES)}")
        config = dict(config or {})
        try:
            json.dumps(config)
        except (TypeError, ValueError) as exc:
            raise IndexStoreError(f"config must be JSON-serialisable: {exc}") from exc
        vectors = _as_matrix(embeddings, "embeddings")
        count, dim = vectors.shape
        if count == 0:
            raise IndexStoreError("cannot build an index from zero embeddings")
        clean_items = _check_items(items, count, existing=set())

        params: dict[str, Any] = {}
        if index_type == "ivf":
            nlist = nlist if nlist is not None else min(int(4 * math.sqrt(count)), count // IVF_POINTS_PER_LIST)
            if nlist < 2 or count < nlist * IVF_POINTS_PER_LIST:
                warnings.warn(
                    f"{count} embeddings are too few to train an IVF index with {max(nlist, 2)} lists "
                    f"(needs {max(nlist, 2) * IVF_POINTS_PER_LIST}); using an exact flat index instead",
                    stacklevel=2,
                )
                index_type = "flat"
            else:
                params = {"nlist": nlist, "nprobe": max(1, min(nprobe, nlist))}
        elif index_type == "hnsw":
            params = {"hnsw_m": hnsw_m, "ef_search": ef_search}

        cpu_index = _new_faiss_index(index_type, dim, METRICS[metric], params)
        if not cpu_index.is_trained:
            cpu_index.train(vectors)
        cpu_index.add(vectors)
        _apply_search_params(cpu_index, index_type, params)
        meta = {
            "format_version": FORMAT_VERSION,
            "model": model,
            "dim": dim,
            "metric": metric,
            "index_type": index_type,
            "params": params,
            "count": count,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "faiss_version": faiss.__version__,
            "config": config,
        }
        return cls(cpu_index, clean_items, meta)

    def add(self, embeddings: np.ndarray, items: Sequence[Mapping[str, Any]]) -> None:
        """Append embeddings and their items; an id already in the index is an error."""
        vectors = _as_matrix(embeddings, "embeddings")
        self._check_dim(vectors.shape[1], "added embeddings")
        new_items = _check_items(items, vectors.shape[0], existing=self._ids)
        self._index.add(vectors)
        self._items.extend(new_items)
        self._ids.update(item["id"] for item in new_items)
        self._meta["count"] = len(self._items)
        self._gpu_index = None  # the GPU copy is stale now

    # ----------------------------------------------------------------- properties
    def __len__(self) -> int:
        return len(self._items)

    @property
    def model(self) -> str:
        return self._meta["model"]

    @property
    def dim(self) -> int:
        return self._meta["dim"]

    @property
    def metric(self) -> str:
        return self._meta["metric"]

    @property
    def index_type(self) -> str:
        return self._meta["index_type"]

    @property
    def config(self) -> dict[str, Any]:
        return dict(self._meta["config"])

    @property
    def meta(self) -> dict[str, Any]:
        """What index.json holds (a copy)."""
        return json.loads(json.dumps(self._meta))

    @property
    def items(self) -> list[dict[str, Any]]:
        """All items in position order (copies)."""
        return [dict(item) for item in self._items]

    # ----------------------------------------------------------------- querying
    def check_model(self, fingerprint: str) -> None:
        """Refuse queries embedded by another model than the one that built this index."""
        if fingerprint != self.model:
            raise ModelMismatchError(
                f"index {self._where()} was built with model {self.model!r} but the queries come from "
                f"model {fingerprint!r}; rebuild the index with `sinonom build-index` using this model, "
                f"or query with the model that built it"
            )

    def search(self, queries: np.ndarray, k: int = 5, batch_size: int = 1024,
               model: str | None = None) -> SearchResult:
        """Top-k items for each query row, searched `batch_size` queries at a time.

        k larger than the index is clamped to its size. Pass `model` (the querying model's
        fingerprint) to have it checked against the one that built the index.
        """
        if model is not None:
            self.check_model(model)
        vectors = _as_matrix(np.atleast_2d(queries), "queries")
        self._check_dim(vectors.shape[1], "queries")
        if k < 1:
            raise IndexStoreError(f"k must be at least 1, got {k}")
        if batch_size < 1:
            raise IndexStoreError(f"batch_size must be at least 1, got {batch_size}")
        k = min(k, len(self._items))
        searcher = self._searcher(k)
        distances = np.empty((vectors.shape[0], k), dtype=np.float32)
        positions = np.empty((vectors.shape[0], k), dtype=np.int64)
        for start in range(0, vectors.shape[0], batch_size):
            stop = start + batch_size
            distances[start:stop], positions[start:stop] = searcher.search(vectors[start:stop], k)
        return SearchResult(distances, positions, self._items)

    def _searcher(self, k: int) -> faiss.Index:
        """The GPU copy of the index where FAISS has a GPU and supports this index, else the CPU one."""
        if self.index_type == "hnsw" or k > GPU_MAX_K or faiss.get_num_gpus() == 0:
            return self._index
        if self._gpu_index is None:
            if self._gpu_resources is None:
                self._gpu_resources = faiss.StandardGpuResources()
            self._gpu_index = faiss.index_cpu_to_gpu(self._gpu_resources, 0, self._index)
        return self._gpu_index

    def _check_dim(self, dim: int, what: str) -> None:
        if dim != self.dim:
            raise ModelMismatchError(
                f"{what} have dimension {dim} but index {self._where()} holds {self.dim}-dimensional "
                f"embeddings from model {self.model!r}; embed with that model or rebuild the index "
                f"with `sinonom build-index`"
            )

    def _where(self) -> str:
        return str(self._folder) if self._folder is not None else "(not saved)"

    # ----------------------------------------------------------------- saving
    def save(self, folder: str | Path) -> Path:
        """Write index.faiss, items.jsonl and index.json into `folder` (created if needed)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._meta["count"] = len(self._items)
        _write_atomic(folder / INDEX_FILE, lambda tmp: faiss.write_index(self._index, str(tmp)))
        _write_atomic(folder / ITEMS_FILE, lambda tmp: tmp.write_text(
            "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in self._items), encoding="utf-8"))
        _write_atomic(folder / META_FILE, lambda tmp: tmp.write_text(
            json.dumps(self._meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"))
        self._folder = folder
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> EmbeddingIndex:
        """Open an index folder written by `save`, checking that its three files agree."""
        folder = Path(folder)
        if not folder.is_dir():
            raise IndexStoreError(f"index folder {folder} does not exist; build it with `sinonom build-index`")
        missing = [name for name in (INDEX_FILE, ITEMS_FILE, META_FILE) if not (folder / name).is_file()]
        if missing:
            raise IndexStoreError(f"index folder {folder} is incomplete: missing {', '.join(missing)}")
        meta = _read_meta(folder)
        try:
            cpu_index = faiss.read_index(str(folder / INDEX_FILE))
        except RuntimeError as exc:
            raise IndexStoreError(f"index folder {folder}: {INDEX_FILE} is corrupt ({_first_line(exc)})") from exc
        items = _read_items(folder)
        problems = []
        if cpu_index.d != meta["dim"]:
            problems.append(f"{INDEX_FILE} has dimension {cpu_index.d}, {META_FILE} says {meta['dim']}")
        if cpu_index.metric_type != METRICS[meta["metric"]]:
            problems.append(f"{INDEX_FILE} metric differs from {META_FILE}'s {meta['metric']!r}")
        if not cpu_index.ntotal == len(items) == meta["count"]:
            problems.append(f"counts differ: {INDEX_FILE} {cpu_index.ntotal}, {ITEMS_FILE} {len(items)}, "
                            f"{META_FILE} {meta['count']}")
        if problems:
            raise IndexStoreError(f"index folder {folder} is inconsistent: {'; '.join(problems)}")
        return cls(cpu_index, items, meta, folder)


# --------------------------------------------------------------------- helpers
def _as_matrix(array: np.ndarray, what: str) -> np.ndarray:
    """A C-contiguous float32 (N, D) copy-if-needed of `array`, rejecting other shapes and NaN/inf."""
    matrix = np.ascontiguousarray(array, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[1] == 0:
        raise IndexStoreError(f"{what} must be a 2-D (N, D) array with D > 0, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise IndexStoreError(f"{what} contain NaN or infinite values")
    return matrix


def _check_items(items: Iterable[Mapping[str, Any]], count: int, existing: set[str]) -> list[dict[str, Any]]:
    """Copies of the item dicts with string ids and default label/source, checking ids are new."""
    clean: list[dict[str, Any]] = []
    seen = set(existing)
    for position, item in enumerate(items):
        if not isinstance(item, Mapping) or "id" not in item:
            raise IndexStoreError(f"item {position} must be a dict with an 'id', got {item!r}")
        record = {"label": "", "source": "", **item, "id": str(item["id"])}
        if record["id"] in seen:
            raise IndexStoreError(f"duplicate item id {record['id']!r} (item {position})")
        seen.add(record["id"])
        clean.append(record)
    if len(clean) != count:
        raise IndexStoreError(f"{count} embeddings but {len(clean)} items; give one item per embedding row")
    return clean


def _new_faiss_index(index_type: str, dim: int, metric: int, params: Mapping[str, Any]) -> faiss.Index:
    if index_type == "ivf":
        return faiss.index_factory(dim, f"IVF{params['nlist']},Flat", metric)
    if index_type == "hnsw":
        return faiss.index_factory(dim, f"HNSW{params['hnsw_m']},Flat", metric)
    return faiss.index_factory(dim, "Flat", metric)


def _apply_search_params(cpu_index: faiss.Index, index_type: str, params: Mapping[str, Any]) -> None:
    """Set nprobe / efSearch (index.faiss keeps them, index.json records them)."""
    if index_type == "ivf":
        faiss.extract_index_ivf(cpu_index).nprobe = params["nprobe"]
    elif index_type == "hnsw":
        faiss.downcast_index(cpu_index).hnsw.efSearch = params["ef_search"]


def _write_atomic(path: Path, write: Any) -> None:
    """Write through a temporary file and rename, so a crash never leaves a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _read_meta(folder: Path) -> dict[str, Any]:
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IndexStoreError(f"index folder {folder}: {META_FILE} is corrupt ({exc})") from exc
    required = ("model", "dim", "metric", "index_type", "params", "count", "config")
    absent = [key for key in required if not isinstance(meta, dict) or key not in meta]
    if absent:
        raise IndexStoreError(f"index folder {folder}: {META_FILE} lacks {', '.join(absent)}")
    if meta["metric"] not in METRICS or meta["index_type"] not in INDEX_TYPES:
        raise IndexStoreError(f"index folder {folder}: {META_FILE} has unknown metric {meta['metric']!r} "
                              f"or index type {meta['index_type']!r}")
    return meta


def _read_items(folder: Path) -> list[dict[str, Any]]:
    """The items of items.jsonl, checked to be dicts with unique ids."""
    try:
        lines = (folder / ITEMS_FILE).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise IndexStoreError(f"index folder {folder}: {ITEMS_FILE} is corrupt ({exc})") from exc
    items = []
    for number, line in enumerate(lines, start=1):
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise IndexStoreError(f"index folder {folder}: {ITEMS_FILE} line {number} is corrupt ({exc})") from exc
    try:
        return _check_items(items, len(items), existing=set())
    except IndexStoreError as exc:
        raise IndexStoreError(f"index folder {folder}: {ITEMS_FILE}: {exc}") from exc


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
