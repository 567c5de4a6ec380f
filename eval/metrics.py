"""Retrieval metrics (MRR@k, recall@k) and exact top-k search that never builds a full distance matrix.

Relevance follows the course task: a query has one true match (the first label of its row), and
its reciprocal rank is 1/rank of that match within the first k results, 0 when it is absent. A
query may also have several relevant items, given as a set: then the first relevant item counts.
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import faiss
import numpy as np

from index.store import METRICS



class EvalError(ValueError):
    """Bad input to an evaluation: mismatched lengths, empty data, unreadable files."""


def reciprocal_rank(ranked: Sequence[Any], relevant: Hashable | set | frozenset, k: int | None = None) -> float:
    """1/rank of the first relevant item among the first k of `ranked` (all when k is None), else 0.

    `relevant` is the one true match, or a set (or frozenset) of relevant items. A list is refused:
    in the course format only the first label of a row is the true match, so pass `labels[0]`.
    """
    if isinstance(relevant, list):
        raise TypeError("relevant must be the true match or a set of relevant items, not a list "
                        "(course labels: pass labels[0], the true match)")
    targets = relevant if isinstance(relevant, (set, frozenset)) else {relevant}
    for rank, item in enumerate(ranked[:k] if k is not None else ranked, start=1):
        if item in targets:
            return 1.0 / rank
    return 0.0


def mrr_at_k(ranked_lists: Sequence[Sequence[Any]], relevants: Sequence[Any], k: int = 5) -> float:
    """Mean over queries of the reciprocal rank of the first relevant item within the first k."""
    _check_pairs(ranked_lists, relevants, k)
    return float(np.mean([reciprocal_rank(ranked, rel, k) for ranked, rel in zip(ranked_lists, relevants)]))


def recall_at_k(ranked_lists: Sequence[Sequence[Any]], relevants: Sequence[Any], k: int) -> float:
    """Share of queries with a relevant item within the first k results."""
    _check_pairs(ranked_lists, relevants, k)
    return float(np.mean([reciprocal_rank(ranked, rel, k) > 0 for ranked, rel in zip(ranked_lists, relevants)]))


def _check_pairs(ranked_lists: Sequence[Any], relevants: Sequence[Any], k: int) -> None:
    if len(ranked_lists) != len(relevants):
        raise EvalError(f"{len(ranked_lists)} ranked lists but {len(relevants)} relevance entries")
    if not ranked_lists:
        raise EvalError("no queries to evaluate")
    if k < 1:
        raise EvalError(f"k must be at least 1, got {k}")


def batched_topk(
    queries: np.ndarray,
    gallery: np.ndarray,
    k: int,
    batch_size: int = 1024,
    metric: str = "l2",
    gallery_chunk: int = 262_144,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k gallery rows for each query: (distances, indices), both (Q, min(k, N)).

    Distances are squared L2 (ascending) or inner products (descending), as FAISS gives them.
    Queries go `batch_size` at a time through a flat index over `gallery_chunk` gallery rows at a
    time, and each chunk's answers are merged into a running top-k, so memory stays at
    O(batch_size * chunk-block + Q * k) and a Q x N matrix is never built.
    """
    if metric not in METRICS:
        raise EvalError(f"unknown metric {metric!r}; choose one of {sorted(METRICS)}")
    query_rows = _as_matrix(queries, "queries")
    gallery_rows = _as_matrix(gallery, "gallery")
    if query_rows.shape[1] != gallery_rows.shape[1]:
        raise EvalError(f"queries have dimension {query_rows.shape[1]}, gallery {gallery_rows.shape[1]}")
    if gallery_rows.shape[0] == 0:
        raise EvalError("the gallery is empty")
    if k < 1 or batch_size < 1 or gallery_chunk < 1:
        raise EvalError(f"k, batch_size and gallery_chunk must be at least 1, got {k}, {batch_size}, {gallery_chunk}")
    k = min(k, gallery_rows.shape[0])
    descending = metric == "ip"
    best_distances = np.full((query_rows.shape[0], k), -np.inf if descending else np.inf, dtype=np.float32)
    best_indices = np.full((query_rows.shape[0], k), -1, dtype=np.int64)
    for offset in range(0, gallery_rows.shape[0], gallery_chunk):
        chunk = gallery_rows[offset:offset + gallery_chunk]
        flat = faiss.IndexFlat(chunk.shape[1], METRICS[metric])
        flat.add(chunk)
        chunk_k = min(k, chunk.shape[0])
        for start in range(0, query_rows.shape[0], batch_size):
            stop = start + batch_size
            distances, indices = flat.search(query_rows[start:stop], chunk_k)
            best_distances[start:stop], best_indices[start:stop] = _merge_topk(
                best_distances[start:stop], best_indices[start:stop], distances, indices + offset, k, descending)
    return best_distances, best_indices


def _merge_topk(dist_a: np.ndarray, idx_a: np.ndarray, dist_b: np.ndarray, idx_b: np.ndarray,
                k: int, descending: bool) -> tuple[np.ndarray, np.ndarray]:
    """The k best of two candidate sets per row (ties keep the earlier gallery chunk first)."""
    distances = np.concatenate([dist_a, dist_b], axis=1)
    indices = np.concatenate([idx_a, idx_b], axis=1)
    order = np.argsort(-distances if descending else distances, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(distances, order, axis=1), np.take_along_axis(indices, order, axis=1)


def evaluate_embeddings(
    query_emb: np.ndarray,
    query_labels: Sequence[Any],
    gallery_emb: np.ndarray,
    gallery_labels: Sequence[Any],
    ks: Sequence[int] = (1, 5, 10),
    metric: str = "l2",
    batch_size: int = 1024,
) -> dict[str, float | int]:
    """MRR@5 and recall@k of retrieving gallery rows whose label equals the query's label.

    Returns {"mrr@5", "recall@<k>" for each k, "n_queries", "n_gallery", "queries_without_match"}
    (the last counts queries whose label no gallery item has: they score 0).
    """
    if len(query_labels) != len(query_emb) or len(gallery_labels) != len(gallery_emb):
        raise EvalError(f"labels and embeddings differ in number: {len(query_labels)} query labels for "
                        f"{len(query_emb)} queries, {len(gallery_labels)} gallery labels for {len(gallery_emb)} items")
    if len(query_labels) == 0:
        raise EvalError("no queries to evaluate")
    depth = max([5, *ks])
    _, indices = batched_topk(query_emb, gallery_emb, depth, batch_size=batch_size, metric=metric)
    gallery_label_array = np.asarray(gallery_labels, dtype=object)
    ranked_labels = [list(gallery_label_array[row]) for row in indices]
    relevants = [{label} for label in query_labels]
    results: dict[str, float | int] = {"mrr@5": mrr_at_k(ranked_labels, relevants, k=5)}
    for k in ks:
        results[f"recall@{k}"] = recall_at_k(ranked_labels, relevants, k)
    gallery_label_set = set(gallery_labels)
    results["n_queries"] = len(query_labels)
    results["n_gallery"] = len(gallery_labels)
    results["queries_without_match"] = sum(label not in gallery_label_set for label in query_labels)
    return results


def _as_matrix(array: np.ndarray, what: str) -> np.ndarray:
    matrix = np.ascontiguousarray(array, dtype=np.float32)
    if matrix.ndim != 2:
        raise EvalError(f"{what} must be a 2-D (N, D) array, got shape {matrix.shape}")
    return matrix
