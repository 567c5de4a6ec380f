"""Evaluation: retrieval metrics, the course task's CSV format and scoring, result grids."""
from __future__ import annotations

from .course import (
    CourseFormatError,
    read_labels,
    read_predictions,
    score_predictions,
    write_labels,
    write_predictions,
)
from .grid import retrieval_grid
from .metrics import (
    EvalError,
    batched_topk,
    evaluate_embeddings,
    mrr_at_k,
    recall_at_k,
    reciprocal_rank,
)

__all__ = [
    "CourseFormatError",
    "EvalError",
    "batched_topk",
    "evaluate_embeddings",
    "mrr_at_k",
    "read_labels",
    "read_predictions",
    "recall_at_k",
    "reciprocal_rank",
    "retrieval_grid",
    "score_predictions",
    "write_labels",
    "write_predictions",
]
