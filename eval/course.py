"""The course task's file format: labels.csv / predictions CSV, and scoring predictions.

A dataset folder holds `database/<id>.stl`, `queries/<id>.png` and `labels.csv`. Labels and
predictions share one CSV layout: a header `query,label`, then one row per query such as
`0.png,"3.stl,1.stl,0.stl,2.stl,4.stl"` (the list quoted, no spaces). In labels.csv ONLY THE FIRST
item of a row is the true match; the score is the mean over queries of 1/rank of the true match
within the first 5 predictions.
"""
from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

from .metrics import EvalError, mrr_at_k, recall_at_k

HEADER = ["query", "label"]
RECALL_KS = (1, 5, 10)


class CourseFormatError(EvalError):
    """A labels or predictions CSV is missing, empty, malformed, or does not cover the queries."""


def read_labels(path: str | Path) -> dict[str, list[str]]:
    """Query name -> its label list (first = true match), in file order."""
    return _read_rows(Path(path), "labels")


def read_predictions(path: str | Path) -> dict[str, list[str]]:
    """Query name -> its predicted items, best first, in file order."""
    return _read_rows(Path(path), "predictions")


def write_labels(path: str | Path, mapping: Mapping[str, Sequence[str]]) -> Path:
    """Write a labels.csv (each row's first item is the true match)."""
    return _write_rows(Path(path), mapping)


def write_predictions(path: str | Path, predictions: Mapping[str, Sequence[str]]) -> Path:
    """Write predictions as `query,"a.stl,b.stl,c.stl,d.stl,e.stl"` rows under a `query,label` header."""
    return _write_rows(Path(path), predictions)


def score_predictions(predictions: Mapping[str, Sequence[str]], labels: Mapping[str, Sequence[str]],
                      k: int = 5) -> dict[str, float | int]:
    """Course score of predictions against labels: mrr@k, recall@1/5/10, n (number of queries).

    Only the first label of each query is the true match. recall@r is reported where the longest
    prediction list reaches r items. Every labelled query needs a prediction; extra predicted
    queries are ignored.
    """
    if not labels:
        raise CourseFormatError("no labelled queries to score")
    missing = [query for query in labels if query not in predictions]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise CourseFormatError(f"{len(missing)} labelled queries have no prediction: {shown}")
    empty = [query for query, row in labels.items() if not row]
    if empty:
        raise CourseFormatError(f"queries without a true label: {', '.join(empty[:5])}")
    queries = list(labels)
    ranked = [list(predictions[query]) for query in queries]
    truths = [labels[query][0] for query in queries]
    scores: dict[str, float | int] = {f"mrr@{k}": mrr_at_k(ranked, truths, k)}
    longest = max(len(row) for row in ranked)
    for r in RECALL_KS:
        if r <= longest:
            scores[f"recall@{r}"] = recall_at_k(ranked, truths, r)
    scores["n"] = len(queries)
    return scores


def _read_rows(path: Path, what: str) -> dict[str, list[str]]:
    if not path.is_file():
        raise CourseFormatError(f"{what} file {path} does not exist")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise CourseFormatError(f"{what} file {path} is not a readable CSV: {exc}") from exc
    if not rows:
        raise CourseFormatError(f"{what} file {path} is empty")
    header = [cell.strip() for cell in rows[0]]
    if header != HEADER:
        raise CourseFormatError(f"{what} file {path} has header {','.join(rows[0])!r}; expected 'query,label'")
    mapping: dict[str, list[str]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != 2:
            raise CourseFormatError(f"{what} file {path} line {line}: expected 2 fields (query, label list), "
                                    f"got {len(row)}")
        query = row[0].strip()
        items = [item.strip() for item in row[1].split(",") if item.strip()]
        if not query or not items:
            raise CourseFormatError(f"{what} file {path} line {line}: empty query or label list")
        if query in mapping:
            raise CourseFormatError(f"{what} file {path} line {line}: query {query!r} appears twice")
        mapping[query] = items
    if not mapping:
        raise CourseFormatError(f"{what} file {path} has a header but no rows")
    return mapping


def _write_rows(path: Path, mapping: Mapping[str, Sequence[str]]) -> Path:
    for query, items in mapping.items():
        if isinstance(items, str):
            raise CourseFormatError(f"query {query!r}: give a list of items, not the string {items!r}")
        bad = [item for item in items if not item or "," in item or item != item.strip()]
        if bad or not items:
            raise CourseFormatError(f"query {query!r}: items must be non-empty names without commas or "
                                    f"surrounding spaces, got {list(items)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADER)
        for query, items in mapping.items():
            writer.writerow([query, ",".join(items)])
    return path
