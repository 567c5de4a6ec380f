"""Course-format retrieval sets and cached training sets, from the tiny test fonts."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_DRAWN
from datagen.errors import DatagenError
from datagen.retrieval_set import RetrievalSetConfig, generate_retrieval_set, preview_sheet
from datagen.training_set import DEPTH, PRINT, TrainingSetConfig, generate_training_set, load_training_set

CHARS = TINY_DRAWN[:5]


def _make_set(tmp_path, tiny_font, tiny_font_alt, name="set", seed=0, workers=1):
    config = RetrievalSetConfig(chars=4, charset=CHARS, seed=seed, distractors=1, resolution=40, query_size=96,
                                workers=workers)
    out = tmp_path / name
    return generate_retrieval_set(config, out, faces=[tiny_font, tiny_font_alt], progress=False), out


def test_retrieval_set_layout_and_labels(tmp_path, tiny_font, tiny_font_alt):
    summary, out = _make_set(tmp_path, tiny_font, tiny_font_alt)
    assert summary["queries"] == 4 and summary["blocks"] == 8
    assert len(list((out / "database").glob("*.stl"))) == 8
    labels_text = (out / "labels.csv").read_text()
    assert labels_text.startswith("query,label\n") and "\r" not in labels_text
    with open(out / "labels.csv", newline="") as fh:
        labels = {row["query"]: row["label"].split(",") for row in csv.DictReader(fh)}
    with open(out / "blocks.csv", newline="") as fh:
        blocks = {row["id"]: row for row in csv.DictReader(fh)}
    for query, ids in labels.items():
        image = Image.open(out / "queries" / query)
        assert image.size == (96, 96) and image.mode == "RGB"
        target, distractor = blocks[ids[0]], blocks[ids[1]]
        assert target["role"] == "target" and target["query"] == query
        assert distractor["char"] == target["char"] and distractor["face"] != target["face"]
    assert (out / "config.json").is_file()


def test_retrieval_set_is_deterministic_and_parallel_safe(tmp_path, tiny_font, tiny_font_alt):
    _, a = _make_set(tmp_path, tiny_font, tiny_font_alt, "a", workers=1)
    _, b = _make_set(tmp_path, tiny_font, tiny_font_alt, "b", workers=2)
    _, c = _make_set(tmp_path, tiny_font, tiny_font_alt, "c", seed=1)
    assert (a / "labels.csv").read_text() == (b / "labels.csv").read_text()
    assert np.array_equal(np.asarray(Image.open(a / "queries/0.png")), np.asarray(Image.open(b / "queries/0.png")))
    assert (a / "database/0.stl").read_bytes() == (b / "database/0.stl").read_bytes()
    assert not np.array_equal(np.asarray(Image.open(a / "queries/0.png")), np.asarray(Image.open(c / "queries/0.png")))


def test_query_print_matches_its_block_view(tmp_path, tiny_font, tiny_font_alt):
    """The print of a block and the depth view of the same block overlap; those of other blocks less."""
    from datagen.depth import mesh_depth_views

    _, out = _make_set(tmp_path, tiny_font, tiny_font_alt)
    with open(out / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    def dark(image):
        return np.asarray(image) < np.median(np.asarray(image)) - 30
    views = {row["query"]: dark(Image.fromarray(mesh_depth_views(out / "database" / row["label"].split(",")[0],
                                                                  size=96, views=1)[0])) for row in rows}
    for row in rows:
        ink = dark(Image.open(out / "queries" / row["query"]).convert("L"))
        ious = {q: (ink & v).sum() / max((ink | v).sum(), 1) for q, v in views.items()}
        assert max(ious, key=ious.get) == row["query"]


def test_preview_sheet(tmp_path, tiny_font, tiny_font_alt):
    _, out = _make_set(tmp_path, tiny_font, tiny_font_alt)
    sheet = Image.open(preview_sheet(out, tmp_path / "p.png", n=3, tile=32))
    assert sheet.size == (64, 96)


def test_too_many_chars_is_a_clear_error(tmp_path, tiny_font):
    config = RetrievalSetConfig(chars=50, charset=CHARS, workers=1)
    with pytest.raises(DatagenError, match="only 5 characters"):
        generate_retrieval_set(config, tmp_path / "x", faces=[tiny_font], progress=False)


def test_training_set_round_trip(tmp_path, tiny_font, tiny_font_alt):
    config = TrainingSetConfig(charset=CHARS, chars=3, faces_per_char=2, prints_per_class=3, depth_per_class=2,
                               size=32, resolution=40, workers=1)
    summary = generate_training_set(config, tmp_path / "train.npz", faces=[tiny_font, tiny_font_alt], progress=False)
    assert summary["classes"] == 6 and summary["images"] == 30
    data = load_training_set(tmp_path / "train.npz")
    assert data["images"].shape == (30, 32, 32) and data["images"].dtype == np.uint8
    assert sorted(set(data["labels"].tolist())) == list(range(6))
    for label in range(6):
        domains = data["domains"][data["labels"] == label]
        assert (domains == PRINT).sum() == 3 and (domains == DEPTH).sum() == 2
    assert len({(c["char"], c["face"]) for c in data["classes"]}) == 6
    assert data["config"]["chars"] == 3


def test_missing_training_set_is_a_clear_error(tmp_path):
    with pytest.raises(DatagenError, match="no such training set"):
        load_training_set(tmp_path / "none.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(DatagenError, match="not a training set"):
        load_training_set(tmp_path / "junk.npz")
