"""Retrieval metrics against hand-computed values, and batched exact top-k against brute force."""
from __future__ import annotations

import numpy as np
import pytest

from eval.metrics import EvalError, batched_topk, evaluate_embeddings, mrr_at_k, recall_at_k, reciprocal_rank


def test_reciprocal_rank_of_the_true_match() -> None:
    ranked = ["3.stl", "1.stl", "0.stl", "2.stl", "4.stl"]
    assert reciprocal_rank(ranked, "3.stl") == 1.0
    assert reciprocal_rank(ranked, "0.stl") == pytest.approx(1 / 3)
    assert reciprocal_rank(ranked, "9.stl") == 0.0
    assert reciprocal_rank(ranked, "4.stl", k=4) == 0.0  # beyond the cut-off
    assert reciprocal_rank(ranked, "4.stl", k=5) == pytest.approx(1 / 5)


def test_several_relevant_items_count_the_first_one() -> None:
    ranked = ["a", "b", "c", "d"]
    assert reciprocal_rank(ranked, {"c", "b"}) == 0.5
    assert reciprocal_rank(ranked, frozenset({"d", "z"})) == 0.25
    assert reciprocal_rank(ranked, {"y", "z"}) == 0.0


def test_a_list_of_labels_is_refused() -> None:
    with pytest.raises(TypeError, match="labels\\[0\\]"):
        reciprocal_rank(["a"], ["a", "b"])


def test_mrr_and_recall_by_hand() -> None:
    ranked = [["a", "b", "c", "d", "e", "f"],  # truth at rank 1
              ["b", "a", "c", "d", "e", "f"],  # rank 2
              ["b", "c", "d", "e", "f", "a"],  # rank 6: outside top 5
              ["x", "y", "z", "b", "c", "d"]]  # absent
    truths = ["a", "a", "a", "a"]
    assert mrr_at_k(ranked, truths, k=5) == pytest.approx((1 + 0.5 + 0 + 0) / 4)
    assert mrr_at_k(ranked, truths, k=6) == pytest.approx((1 + 0.5 + 1 / 6 + 0) / 4)
    assert mrr_at_k(ranked, truths, k=1) == pytest.approx(0.25)
    assert recall_at_k(ranked, truths, 1) == 0.25
    assert recall_at_k(ranked, truths, 5) == 0.5
    assert recall_at_k(ranked, truths, 10) == 0.75
    several = [{"c", "b"}, {"c", "f"}, {"z", "e"}, {"d", "q"}]  # first relevant at 2, 3, 4, 6
    assert mrr_at_k(ranked, several, k=5) == pytest.approx((1 / 2 + 1 / 3 + 1 / 4 + 0) / 4)
    assert recall_at_k(ranked, several, 2) == 0.25


def test_mismatched_or_empty_inputs_are_refused() -> None:
    with pytest.raises(EvalError, match="2 ranked lists but 1"):
        mrr_at_k([["a"], ["b"]], ["a"])
    with pytest.raises(EvalError, match="no queries"):
        recall_at_k([], [], 5)


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize(("batch_size", "gallery_chunk"), [(7, 1000), (1, 13), (64, 5)])
def test_batched_topk_matches_brute_force(metric: str, batch_size: int, gallery_chunk: int) -> None:
    rng = np.random.default_rng(3)
    queries = rng.standard_normal((37, 16)).astype(np.float32)
    gallery = rng.standard_normal((101, 16)).astype(np.float32)
    if metric == "l2":
        scores = ((queries[:, None, :] - gallery[None, :, :]) ** 2).sum(-1)
        order = np.argsort(scores, axis=1)[:, :6]
    else:
        scores = queries @ gallery.T
        order = np.argsort(-scores, axis=1)[:, :6]
    distances, indices = batched_topk(queries, gallery, 6, batch_size=batch_size, metric=metric,
                                      gallery_chunk=gallery_chunk)
    np.testing.assert_array_equal(indices, order)
    np.testing.assert_allclose(distances, np.take_along_axis(scores, order, axis=1), rtol=1e-4, atol=1e-4)


def test_batched_topk_clamps_k_to_the_gallery() -> None:
    gallery = np.eye(3, dtype=np.float32)
    distances, indices = batched_topk(gallery, gallery, 10, batch_size=2, gallery_chunk=2)
    assert indices.shape == (3, 3)
    np.testing.assert_array_equal(indices[:, 0], [0, 1, 2])
    np.testing.assert_allclose(distances[:, 0], 0.0)
    np.testing.assert_allclose(distances[:, 1:], 2.0)


def test_batched_topk_refuses_dimension_mismatch() -> None:
    with pytest.raises(EvalError, match="dimension 3, gallery 4"):
        batched_topk(np.zeros((2, 3)), np.zeros((5, 4)), 1)


def test_evaluate_embeddings_by_hand() -> None:
    # 1-D points: gallery at 0, 1, 2, 3 labelled A, B, A, C
    gallery = np.array([[0.0], [1.0], [2.0], [3.0]], dtype=np.float32)
    gallery_labels = ["A", "B", "A", "C"]
    # query at 0.9 labelled A: ranking B(1) A(0) A(2) C(3): rank 2 for A
    # query at 2.9 labelled B: ranking C(3) A(2) B(1) A(0): rank 3 for B
    # query at 0.1 labelled D: no gallery item is D
    queries = np.array([[0.9], [2.9], [0.1]], dtype=np.float32)
    result = evaluate_embeddings(queries, ["A", "B", "D"], gallery, gallery_labels, ks=(1, 2, 3), batch_size=2)
    assert result["mrr@5"] == pytest.approx((1 / 2 + 1 / 3 + 0) / 3)
    assert result["recall@1"] == 0.0
    assert result["recall@2"] == pytest.approx(1 / 3)
    assert result["recall@3"] == pytest.approx(2 / 3)
    assert (result["n_queries"], result["n_gallery"], result["queries_without_match"]) == (3, 4, 1)
