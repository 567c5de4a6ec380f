"""EmbeddingIndex: build, search, save/load round trips, add, and the errors it must raise."""
from __future__ import annotations

import json

import numpy as np
import pytest

from index import EmbeddingIndex, IndexStoreError, ModelMismatchError

DIM = 8


def _data(count: int, seed: int = 0, start: int = 0) -> tuple[np.ndarray, list[dict]]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((count, DIM)).astype(np.float32)
    items = [{"id": f"{i}.stl", "label": chr(0x4E00 + i % 7), "source": f"db/{i}.stl"}
             for i in range(start, start + count)]
    return vectors, items


def _brute_force(gallery: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    squared = ((queries[:, None, :] - gallery[None, :, :]) ** 2).sum(-1)
    return np.argsort(squared, axis=1)[:, :k]


def test_flat_search_is_exact_and_results_carry_items() -> None:
    vectors, items = _data(60)
    store = EmbeddingIndex.build(vectors, items, model="effnet-b0:abc", config={"size": 128})
    queries = vectors[:9] + 0.01
    result = store.search(queries, k=4, batch_size=2)  # batch_size < Q: several batches
    np.testing.assert_array_equal(result.positions, _brute_force(vectors, queries, 4))
    assert result.distances.shape == (9, 4)
    assert np.all(np.diff(result.distances, axis=1) >= 0)  # L2: closest first
    assert result.ids(3)[0] == "3.stl"
    assert result.items(3)[0] == {"id": "3.stl", "label": chr(0x4E00 + 3), "source": "db/3.stl"}
    assert len(result) == 9
    true = np.linalg.norm(vectors[result.positions[3]] - queries[3], axis=1)
    np.testing.assert_allclose(result.l2_distances(3), true, rtol=1e-4, atol=1e-5)


def test_inner_product_orders_by_largest_product() -> None:
    vectors, items = _data(30)
    store = EmbeddingIndex.build(vectors, items, model="m", metric="ip")
    result = store.search(vectors[:5], k=3)
    expected = np.argsort(-(vectors[:5] @ vectors.T), axis=1)[:, :3]
    np.testing.assert_array_equal(result.positions, expected)


def test_k_larger_than_index_is_clamped_and_single_vector_query_works() -> None:
    vectors, items = _data(3)
    store = EmbeddingIndex.build(vectors, items, model="m")
    result = store.search(vectors[1], k=10)
    assert result.positions.shape == (1, 3)
    assert sorted(result.ids(0)) == ["0.stl", "1.stl", "2.stl"]


@pytest.mark.parametrize("index_type", ["flat", "ivf", "hnsw"])
def test_save_load_round_trip(tmp_path, index_type: str) -> None:
    vectors, items = _data(400)
    store = EmbeddingIndex.build(vectors, items, model="m1", config={"backbone": "x"}, index_type=index_type)
    assert store.index_type == index_type
    before = store.search(vectors[:20], k=5)
    folder = store.save(tmp_path / "idx")
    assert {p.name for p in folder.iterdir()} == {"index.faiss", "items.jsonl", "index.json"}
    meta = json.loads((folder / "index.json").read_text())
    assert (meta["model"], meta["dim"], meta["metric"], meta["index_type"], meta["count"]) == ("m1", DIM, "l2", index_type, 400)
    assert meta["config"] == {"backbone": "x"} and meta["faiss_version"] and meta["created"]

    loaded = EmbeddingIndex.load(folder)
    after = loaded.search(vectors[:20], k=5)
    assert loaded.meta == store.meta
    assert loaded.items == store.items
    np.testing.assert_array_equal(after.positions, before.positions)
    np.testing.assert_allclose(after.distances, before.distances, rtol=1e-6)
    # every index type finds an item itself (approximate ones included, at this size)
    assert all(after.ids(i)[0] == f"{i}.stl" for i in range(20))


def test_ivf_keeps_nprobe_after_load(tmp_path) -> None:
    vectors, items = _data(400)
    store = EmbeddingIndex.build(vectors, items, model="m", index_type="ivf", nlist=8, nprobe=3)
    assert store.meta["params"] == {"nlist": 8, "nprobe": 3}
    loaded = EmbeddingIndex.load(store.save(tmp_path / "ivf"))
    np.testing.assert_array_equal(loaded.search(vectors[:30], k=5).positions,
                                  store.search(vectors[:30], k=5).positions)


def test_ivf_falls_back_to_flat_when_too_small() -> None:
    vectors, items = _data(40)
    with pytest.warns(UserWarning, match="too few to train an IVF"):
        store = EmbeddingIndex.build(vectors, items, model="m", index_type="ivf")
    assert store.index_type == "flat"
    np.testing.assert_array_equal(store.search(vectors, k=2).positions, _brute_force(vectors, vectors, 2))


def test_misses_are_left_out_of_items() -> None:
    vectors, items = _data(400)
    store = EmbeddingIndex.build(vectors, items, model="m", index_type="ivf", nlist=10, nprobe=1)
    result = store.search(vectors[:50], k=200)  # one list of ~40 cannot fill 200 slots
    missing = result.positions == -1
    assert missing.any()
    assert all(len(result.items(i)) == int((~missing[i]).sum()) for i in range(50))


@pytest.mark.parametrize("index_type", ["flat", "hnsw"])
def test_add_after_load(tmp_path, index_type: str) -> None:
    vectors, items = _data(50)
    more, more_items = _data(10, seed=1, start=50)
    EmbeddingIndex.build(vectors, items, model="m", index_type=index_type).save(tmp_path / "idx")
    loaded = EmbeddingIndex.load(tmp_path / "idx")
    loaded.add(more, more_items)
    assert len(loaded) == 60
    assert loaded.search(more[4], k=1).ids(0) == ["54.stl"]
    reloaded = EmbeddingIndex.load(loaded.save(tmp_path / "idx"))
    assert len(reloaded) == 60 and reloaded.meta["count"] == 60
    assert reloaded.search(more[9], k=1).ids(0) == ["59.stl"]


def test_duplicate_ids_are_refused() -> None:
    vectors, items = _data(5)
    with pytest.raises(IndexStoreError, match="duplicate item id '1.stl'"):
        EmbeddingIndex.build(vectors, items[:2] + [items[1]] + items[3:], model="m")
    store = EmbeddingIndex.build(vectors, items, model="m")
    with pytest.raises(IndexStoreError, match="duplicate item id '2.stl'"):
        store.add(vectors[:1], [{"id": "2.stl"}])
    assert len(store) == 5  # nothing was added


def test_items_and_embeddings_must_agree() -> None:
    vectors, items = _data(5)
    with pytest.raises(IndexStoreError, match="5 embeddings but 4 items"):
        EmbeddingIndex.build(vectors, items[:4], model="m")
    with pytest.raises(IndexStoreError, match="must be a dict with an 'id'"):
        EmbeddingIndex.build(vectors[:1], [{"label": "x"}], model="m")
    with pytest.raises(IndexStoreError, match="NaN"):
        EmbeddingIndex.build(np.full((1, DIM), np.nan), items[:1], model="m")


def test_model_mismatch_is_refused(tmp_path) -> None:
    vectors, items = _data(5)
    EmbeddingIndex.build(vectors, items, model="effnet:aaa").save(tmp_path / "idx")
    store = EmbeddingIndex.load(tmp_path / "idx")
    store.check_model("effnet:aaa")
    with pytest.raises(ModelMismatchError) as caught:
        store.search(vectors[:1], model="caformer:bbb")
    message = str(caught.value)
    assert "effnet:aaa" in message and "caformer:bbb" in message and "build-index" in message
    assert str(tmp_path / "idx") in message


def test_query_dimension_mismatch_is_refused() -> None:
    vectors, items = _data(5)
    store = EmbeddingIndex.build(vectors, items, model="m")
    with pytest.raises(ModelMismatchError, match="dimension 4 but .* holds 8-dimensional"):
        store.search(np.zeros((2, 4), np.float32))
    with pytest.raises(ModelMismatchError):
        store.add(np.zeros((1, 4), np.float32), [{"id": "new"}])


def test_missing_folder_and_files(tmp_path) -> None:
    with pytest.raises(IndexStoreError, match="nowhere.*does not exist"):
        EmbeddingIndex.load(tmp_path / "nowhere")
    vectors, items = _data(5)
    folder = EmbeddingIndex.build(vectors, items, model="m").save(tmp_path / "idx")
    (folder / "items.jsonl").unlink()
    with pytest.raises(IndexStoreError, match="incomplete: missing items.jsonl"):
        EmbeddingIndex.load(folder)


@pytest.mark.parametrize(
    ("name", "content", "complaint"),
    [
        ("index.faiss", b"not a faiss index", "index.faiss is corrupt"),
        ("index.json", b"{broken", "index.json is corrupt"),
        ("index.json", b'{"model": "m"}', "index.json lacks dim"),
        ("items.jsonl", b'{"id": "0.stl"}\n{oops\n', "items.jsonl line 2 is corrupt"),
        ("items.jsonl", b'{"id": "0.stl"}\n', "counts differ"),
    ],
)
def test_corrupt_files(tmp_path, name: str, content: bytes, complaint: str) -> None:
    vectors, items = _data(5)
    folder = EmbeddingIndex.build(vectors, items, model="m").save(tmp_path / "idx")
    (folder / name).write_bytes(content)
    with pytest.raises(IndexStoreError, match=complaint) as caught:
        EmbeddingIndex.load(folder)
    assert str(folder) in str(caught.value)


def test_bad_options_are_refused() -> None:
    vectors, items = _data(5)
    with pytest.raises(IndexStoreError, match="unknown metric"):
        EmbeddingIndex.build(vectors, items, model="m", metric="cosine")
    with pytest.raises(IndexStoreError, match="unknown index type"):
        EmbeddingIndex.build(vectors, items, model="m", index_type="pq")
    with pytest.raises(IndexStoreError, match="JSON"):
        EmbeddingIndex.build(vectors, items, model="m", config={"bad": object()})


def test_gpu_copy_is_used_for_search_and_refreshed_after_add(monkeypatch) -> None:
    """With a GPU visible, flat/IVF searches run on a copy made once and remade after `add`."""
    import faiss

    copies: list[int] = []

    def fake_cpu_to_gpu(resources, device, cpu_index):
        copies.append(cpu_index.ntotal)
        return faiss.clone_index(cpu_index)

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    monkeypatch.setattr(faiss, "StandardGpuResources", object, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", fake_cpu_to_gpu, raising=False)
    vectors, items = _data(20)
    store = EmbeddingIndex.build(vectors[:10], items[:10], model="m")
    store.search(vectors[:2], k=2)
    store.search(vectors[:2], k=2)
    assert copies == [10]
    store.add(vectors[10:], items[10:])
    assert store.search(vectors[15], k=1).ids(0) == ["15.stl"]
    assert copies == [10, 20]
    EmbeddingIndex.build(vectors, items, model="m", index_type="hnsw").search(vectors[:2], k=2)
    assert copies == [10, 20]  # HNSW has no GPU version: searched on the CPU
