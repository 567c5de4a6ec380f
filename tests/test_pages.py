"""Synthetic woodblock pages: labels match the drawn glyphs, datasets are complete and reproducible."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_DRAWN
from datagen.errors import DatagenError
from datagen.pages import PageConfig, generate_pages, page_fonts, render_page, tile_boxes, tile_origins, yolo_lines

SMALL = PageConfig(cell_px=(30.0, 40.0), columns=(3, 5), rows=(5, 8), note_prob=0.6)
CLEAN = PageConfig(cell_px=(30.0, 40.0), columns=(3, 5), rows=(5, 8), note_prob=0.6, seal_prob=0.0,
                   margin_note_prob=0.0)


@pytest.fixture(scope="module")
def fonts(tiny_font, tiny_font_alt):
    return page_fonts([tiny_font, tiny_font_alt], charset=TINY_DRAWN)


def _luminance(page) -> np.ndarray:
    return np.asarray(Image.fromarray(page.image).convert("L")).astype(np.int32)


def _cover(shape, rects) -> np.ndarray:
    covered = np.zeros(shape, bool)
    for x1, y1, x2, y2 in rects:
        covered[max(0, y1):y2, max(0, x1):x2] = True
    return covered


def test_clean_page_labels_are_exactly_the_drawn_glyphs(fonts):
    for seed in range(6):
        page = render_page((3, seed), fonts, CLEAN, strength=0.0)
        lum = _luminance(page)
        paper = np.median(lum)
        dark = lum < paper - 50
        assert page.chars, "a page holds characters"
        # Every labelled box holds ink, and is tight along the glyph's longer side.
        for char in page.chars:
            x1, y1, x2, y2 = char.box
            rows, cols = np.nonzero(dark[y1:y2, x1:x2])
            assert rows.size, f"no ink in the box of {char.char!r} at {char.box}"
            spare = min((x2 - x1) - (cols.max() - cols.min() + 1), (y2 - y1) - (rows.max() - rows.min() + 1))
            assert spare <= 6, f"box {char.box} is loose around its glyph {char.char!r}"
        # Ink outside the boxes is printed furniture (frame, rules, fold band) and nothing else.
        stray = dark & ~_cover(dark.shape, [c.box for c in page.chars] + page.furniture)
        assert stray.sum() == 0, f"seed {seed}: {stray.sum()} dark pixels belong to no label or rule"


def test_distractors_are_not_labelled_and_are_the_only_other_ink(fonts):
    config = PageConfig(cell_px=(30.0, 40.0), columns=(3, 5), rows=(5, 8), seal_prob=1.0, margin_note_prob=1.0)
    kinds = set()
    for seed in range(6):
        page = render_page((5, seed), fonts, config, strength=0.0)
        kinds |= {d["kind"] for d in page.distractors}
        lum = _luminance(page)
        dark = lum < np.median(lum) - 50
        known = [c.box for c in page.chars] + page.furniture + [tuple(d["box"]) for d in page.distractors]
        assert (dark & ~_cover(dark.shape, known)).sum() == 0
        for note in (d for d in page.distractors if d["kind"] == "margin_note"):
            x1, y1, x2, y2 = note["box"]
            assert dark[y1:y2, x1:x2].any() or lum[y1:y2, x1:x2].min() < np.median(lum) - 20
            assert not any(c.box[0] < x2 and x1 < c.box[2] and c.box[1] < y2 and y1 < c.box[3] for c in page.chars)
    assert kinds == {"seal", "margin_note"}


def test_degraded_pages_keep_ink_in_every_box_and_text_in_reading_order(fonts):
    page = render_page((9, 1), fonts, SMALL, strength=1.4)
    lum = _luminance(page)
    faint = [c for c in page.chars if lum[c.box[1]:c.box[3], c.box[0]:c.box[2]].min() > np.median(lum) - 40]
    assert len(faint) <= 0.02 * len(page.chars)
    lines = page.text().split("\n")
    assert len(lines) == len(page.columns) and "".join(lines) == "".join(c.char for c in page.chars)
    assert [c.column for c in page.chars] == sorted(c.column for c in page.chars)
    assert {c.kind for c in page.chars} <= {"main", "note"}


def test_pages_are_deterministic_for_a_seed(fonts):
    a, b, c = (render_page(s, fonts, SMALL) for s in ((1, 4), (1, 4), (1, 5)))
    assert np.array_equal(a.image, b.image) and a.chars == b.chars
    assert not (a.image.shape == c.image.shape and np.array_equal(a.image, c.image))


def test_tiles_cover_the_page_with_the_overlap():
    for length, tile, overlap in ((1000, 320, 80), (320, 320, 80), (100, 320, 80), (641, 320, 64)):
        starts = tile_origins(length, tile, overlap)
        assert starts[0] == 0 and starts[-1] + min(tile, length) == length
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))
    boxes = np.array([[10, 10, 30, 30], [300, 10, 340, 30], [330, 10, 350, 30]], np.float32)
    kept = tile_boxes(boxes, 0, 0, 320)  # the second box is 50 % inside: dropped; the third is outside
    assert kept.tolist() == [[10, 10, 30, 30]]
    assert yolo_lines([(10, 20, 30, 60)], 100, 200) == ["0 0.200000 0.200000 0.200000 0.200000"]


def test_generate_pages_writes_a_yolo_dataset_pages_and_patches(tmp_path, tiny_font):
    summary = generate_pages(tmp_path / "set", 3, seed=2, faces=[tiny_font], size=160, overlap=48, val_share=0.34,
                             charset=TINY_DRAWN, config=SMALL)
    root = tmp_path / "set"
    assert "names:\n  0: char" in (root / "data.yaml").read_text()
    assert summary["pages"] == 3 and summary["val_pages"] == 2 and summary["pages_per_s"] > 0
    truths = sorted((root / "pages").rglob("*.json"))
    assert len(truths) == 3 and len(list((root / "pages" / "val").glob("*.jpg"))) == 2
    tiles = sorted((root / "images").rglob("*.jpg"))
    assert len(tiles) == summary["yolo_images"] > 3
    labelled = 0
    for tile in tiles:
        label = root / "labels" / tile.parent.name / f"{tile.stem}.txt"
        rows = [list(map(float, line.split())) for line in label.read_text().split("\n") if line]
        assert Image.open(tile).size[0] <= 160
        assert all(r[0] == 0 and all(0 <= v <= 1 for v in r[1:]) for r in rows)
        labelled += len(rows)
    assert labelled >= summary["characters"]  # every character is labelled whole in at least one tile
    lines = (root / "patches.txt").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in (root / "patches.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(lines) == summary["patches"] == len(records)
    texts = [col["text"] for t in truths for col in json.loads(t.read_text(encoding="utf-8"))["columns"]]
    assert sorted(line.split("\t")[1] for line in lines) == sorted(texts)
    for line, record in zip(lines, records):
        path, text = line.split("\t")
        width, height = Image.open(root / path).size
        assert text == record["text"] and len(record["boxes"]) == len(text)
        assert all(0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height for x1, y1, x2, y2 in record["boxes"])
    again = generate_pages(tmp_path / "again", 3, seed=2, faces=[tiny_font], size=160, overlap=48, val_share=0.34,
                           charset=TINY_DRAWN, config=SMALL)
    assert again["characters"] == summary["characters"]
    first = sorted((root / "labels").rglob("*.txt"))[0]
    assert first.read_text() == (tmp_path / "again" / first.relative_to(root)).read_text()


def test_whole_page_labels_and_bad_arguments(tmp_path, tiny_font):
    generate_pages(tmp_path, 1, seed=0, faces=[tiny_font], size=0, val_share=0, charset=TINY_DRAWN, config=SMALL)
    truth = json.loads((tmp_path / "pages" / "train" / "page_00000.json").read_text(encoding="utf-8"))
    label = (tmp_path / "labels" / "train" / "page_00000.txt").read_text().split("\n")
    assert label[:-1] == yolo_lines([c["box"] for c in truth["chars"]], truth["width"], truth["height"])
    with pytest.raises(DatagenError, match="at least 1"):
        generate_pages(tmp_path, 0, faces=[tiny_font], charset=TINY_DRAWN)
    with pytest.raises(DatagenError, match="overlap"):
        generate_pages(tmp_path, 1, faces=[tiny_font], charset=TINY_DRAWN, size=64, overlap=64)
    with pytest.raises(DatagenError, match="no font face draws"):
        page_fonts([tiny_font], charset="中丰")
