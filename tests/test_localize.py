"""Localiser: reading order on hand-made layouts, metrics, patch alignment, and offline YOLO training."""
from __future__ import annotations

import csv
import json
import socket
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_DRAWN
from datagen.align import align_boxes, align_patches, read_patch_list, square_crop, verify_crops
from datagen.errors import DatagenError
from datagen.localize import column_order, detection_metrics, false_box_kind, match_boxes, reading_order
from datagen.pages import PageConfig, generate_pages, page_fonts, render_page


def column(x: float, ys: list[float], width: float = 30, height: float = 30) -> list[list[float]]:
    """Main-size boxes centred at x, one per top y."""
    return [[x - width / 2, y, x + width / 2, y + height] for y in ys]


def notes(x: float, y0: float, right: int, left: int, size: float = 14) -> tuple[list, list]:
    """Double-line small characters of a column centred at x: (right sub-column, left sub-column)."""
    right_boxes = [[x + 1, y0 + k * 16, x + 1 + size, y0 + k * 16 + size] for k in range(right)]
    left_boxes = [[x - 1 - size, y0 + k * 16, x - 1, y0 + k * 16 + size] for k in range(left)]
    return right_boxes, left_boxes


def test_columns_are_read_right_to_left_top_to_bottom():
    right, left = column(100, [10, 50, 90]), column(60, [10, 50])
    boxes = np.array(left + right)  # given in another order
    assert reading_order(boxes).tolist() == right + left
    assert column_order(boxes) == [[2, 3, 4], [0, 1]]


def test_double_line_notes_are_read_right_sub_column_first():
    top, bottom = column(100, [10]), column(100, [110])
    note_right, note_left = notes(100, 45, right=3, left=2)
    expected = top + note_right + note_left + bottom
    shuffled = [expected[i] for i in (5, 0, 3, 1, 6, 2, 4)]
    assert reading_order(np.array(shuffled)).tolist() == expected
    # a column of notes only, and notes at the foot of one column continuing at the head of the next
    only_right, only_left = notes(40, 10, right=2, left=2)
    assert reading_order(np.array(only_left + only_right)).tolist() == only_right + only_left
    foot_right, foot_left = notes(100, 150, right=2, left=1)
    head_right, head_left = notes(60, 10, right=1, left=1)
    after = column(60, [30])
    layout = column(100, [110]) + foot_right + foot_left + head_right + head_left + after
    assert reading_order(np.array(layout[::-1])).tolist() == layout


def test_reading_order_is_robust_to_jitter_touching_columns_and_a_wide_false_box():
    rng = np.random.default_rng(0)
    right = [[b[0] + rng.uniform(-3, 3), b[1], b[2] + rng.uniform(-3, 3), b[3]] for b in column(100, [10, 45, 80])]
    left = column(68, [10, 45, 80])  # 2 px gap: touches the right column once jittered
    seal = [[50, 40, 118, 70]]  # a seal found as one box across both columns
    order = reading_order(np.array(left + seal + right)).tolist()
    assert [b for b in order if b != seal[0]] == right + left
    assert reading_order(np.zeros((0, 5))).shape == (0, 5) and column_order([]) == []
    # a false box reaching far past the column it joins (the one it overlaps most) must not move that column
    wide_left, narrow_right = column(60, [10, 45, 80], width=40), column(150, [10, 45, 80])
    giant = [[40, 5, 400, 60]]
    order = reading_order(np.array(wide_left + giant + narrow_right)).tolist()
    assert [b for b in order if b != giant[0]] == narrow_right + wide_left


def test_reading_order_recovers_generated_pages(tiny_font, tiny_font_alt):
    fonts = page_fonts([tiny_font, tiny_font_alt], charset=TINY_DRAWN)
    config = PageConfig(cell_px=(30.0, 40.0), columns=(3, 6), rows=(5, 9), note_prob=0.7)
    rng = np.random.default_rng(1)
    for seed in range(8):
        page = render_page((4, seed), fonts, config, strength=0.0)
        boxes = np.array([c.box for c in page.chars], np.float64)
        shuffle = rng.permutation(len(boxes))
        found = [int(shuffle[i]) for col in column_order(boxes[shuffle]) for i in col]
        assert found == list(range(len(boxes))), f"page seed {seed}"


def test_detection_metrics_count_hits_misses_and_false_boxes():
    truth = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], np.float64)
    perfect = np.column_stack([truth, [0.9, 0.8, 0.7]])
    m = detection_metrics([perfect], [truth])
    assert (m["precision"], m["recall"], m["map50"]) == (1.0, 1.0, 1.0)
    # one box shifted off its character (IoU < 0.5), one duplicate, one low-score extra
    pred = np.array([[0, 0, 10, 10, 0.9], [1, 0, 11, 10, 0.85], [26, 0, 36, 10, 0.8], [40, 0, 50, 10, 0.7],
                     [60, 0, 70, 10, 0.1]])
    assert match_boxes(pred, truth).tolist() == [0, -1, -1, 2, -1]
    m = detection_metrics([pred], [truth], conf=0.25)
    assert m["true_positives"] == 2 and m["detections"] == 4 and m["ground_truth"] == 3
    assert m["precision"] == pytest.approx(0.5) and m["recall"] == pytest.approx(2 / 3)
    assert m["map50"] == pytest.approx(1 / 3 + 1 / 3 * 0.5)  # recall 1/3 at precision 1, 2/3 at 1/2


def test_false_boxes_are_told_apart_by_what_they_lie_on():
    truth = {"distractors": [{"kind": "seal", "box": [100, 100, 160, 160]},
                             {"kind": "margin_note", "box": [0, 0, 20, 80]}]}
    gt = np.array([[40, 40, 70, 70]], np.float64)
    kinds = [false_box_kind(np.array(box), truth, gt) for box in
             ([110, 120, 140, 150, 0.5], [2, 10, 18, 26, 0.4], [40, 40, 70, 52, 0.3], [200, 10, 230, 40, 0.3])]
    assert kinds == ["seal", "margin_note", "split_or_merged", "other"]


def test_alignment_pairs_boxes_with_text_only_when_the_pairing_is_certain():
    boxes = np.array(column(60, [10, 50]) + column(100, [10]), np.float64)
    boxes = np.column_stack([boxes, [0.9, 0.8, 0.85]])
    aligned, status = align_boxes(boxes, "之以人")
    assert status == "aligned" and aligned[:, 0].tolist() == [85, 45, 45]  # right column first
    assert align_boxes(boxes, "之以人不") == (None, "too_few_boxes")
    assert align_boxes(boxes[:0], "") == (None, "empty_text")
    # one extra box: dropped when it scores clearly below every character, refused when it does not
    stain = np.array([[45, 90, 75, 120, 0.3]])
    aligned, status = align_boxes(np.vstack([boxes, stain]), "之以人")
    assert status == "aligned" and aligned.tolist() == reading_order(boxes).tolist()
    assert align_boxes(np.vstack([boxes, stain]), "之以人", min_gap=0.6) == (None, "ambiguous_boxes")
    assert align_boxes(boxes, "之以") == (None, "ambiguous_boxes")  # 0.85 vs 0.8: no clear weakest box
    aligned, _ = align_boxes(boxes, "之以", min_gap=0.04)
    assert sorted(aligned[:, 4].tolist()) == [0.85, 0.9]
    gray = np.full((50, 50), 200, np.uint8)
    gray[10:20, 10:40] = 0
    crop = square_crop(gray, [10, 10, 40, 20])
    assert crop.shape == (36, 36) and crop.min() == 0 and crop[0, 0] == 200


def test_align_patches_skips_and_counts_mismatches_and_never_mislabels(tmp_path, tiny_font):
    generate_pages(tmp_path / "set", 2, seed=3, faces=[tiny_font], size=0, charset=TINY_DRAWN,
                   config=PageConfig(cell_px=(30.0, 40.0), columns=(3, 5), rows=(4, 7), note_prob=0.6))
    root = tmp_path / "set"
    records = [json.loads(line) for line in (root / "patches.jsonl").read_text(encoding="utf-8").splitlines()]
    truth_by_pixels = {}
    for n, record in enumerate(records):
        pixels = np.asarray(Image.open(root / record["path"]).convert("RGB")).tobytes()
        boxes = np.column_stack([np.array(record["boxes"], np.float64), np.ones(len(record["boxes"]))])
        if n % 3 == 0:  # every third patch misses a box
            truth_by_pixels[pixels] = boxes[1:]
        elif n % 3 == 1:  # a weak false box (a stain): dropped, the rest aligned right
            truth_by_pixels[pixels] = np.vstack([boxes[::-1], [[0, 0, 5, 5, 0.5]]])
        else:  # a false box scoring like a character: too ambiguous to align
            truth_by_pixels[pixels] = np.vstack([boxes, [[0, 0, 5, 5, 0.95]]])

    def detector(image: np.ndarray) -> np.ndarray:
        return truth_by_pixels[image.tobytes()]

    list_file = root / "patches.txt"
    with list_file.open("a", encoding="utf-8") as handle:
        handle.write("patches/missing.jpg\t之以\n")
    report = align_patches(list_file, tmp_path / "crops", detector)
    too_few = sum(1 for n in range(len(records)) if n % 3 == 0)
    ambiguous = sum(1 for n in range(len(records)) if n % 3 == 2)
    assert too_few and ambiguous
    assert report["patches"] == len(records) + 1 and report["skipped"]["unreadable"] == 1
    assert report["skipped"]["too_few_boxes"] == too_few and report["skipped"]["ambiguous_boxes"] == ambiguous
    assert report["aligned"] == len(records) - too_few - ambiguous
    assert report["share_aligned"] == pytest.approx(report["aligned"] / report["patches"])
    with (tmp_path / "crops" / "crops.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == report["crops"] > 0
    assert all((tmp_path / "crops" / r["path"]).is_file() and r["path"].split("/")[1] == r["char"] for r in rows)
    assert verify_crops(tmp_path / "crops" / "crops.csv", root / "patches.jsonl") == {
        "checked": len(rows), "right": len(rows), "accuracy": 1.0}
    skipped = (tmp_path / "crops" / "skipped.tsv").read_text(encoding="utf-8").splitlines()
    assert len(skipped) == too_few + ambiguous + 1


def test_patch_list_errors_name_the_file_and_line(tmp_path):
    bad = tmp_path / "list.txt"
    bad.write_text("a.jpg\t之\nno tab here\n", encoding="utf-8")
    with pytest.raises(DatagenError, match=r"list.txt:2"):
        read_patch_list(bad)
    with pytest.raises(DatagenError, match="cannot read patch list"):
        read_patch_list(tmp_path / "absent.txt")


@pytest.fixture
def blocked_network(monkeypatch):
    """Every attempt to resolve a name or open a connection in this process is recorded and refused.

    Ultralytics is imported afresh under the block (its online check runs at import time), without
    any offline switch left in the environment by earlier tests: the code under test must set them.
    """
    attempts: list[tuple] = []
    for name in [m for m in sys.modules if m == "ultralytics" or m.startswith("ultralytics.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delenv("YOLO_OFFLINE", raising=False)
    monkeypatch.delenv("YOLO_CONFIG_DIR", raising=False)

    def refuse(*args, **kwargs):
        attempts.append(args[:2])
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", lambda self, *a: refuse(*a))
    monkeypatch.setattr(socket.socket, "connect_ex", lambda self, *a: refuse(*a))
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def test_tiny_training_and_detection_run_offline(tmp_path, tiny_font, blocked_network):
    from datagen.localize import detect, evaluate_localizer, load_localizer, offline_ultralytics, train_localizer

    config = PageConfig(cell_px=(26.0, 32.0), columns=(3, 4), rows=(4, 6))
    generate_pages(tmp_path / "set", 4, seed=1, faces=[tiny_font], size=160, overlap=48, val_share=0.25,
                   charset=TINY_DRAWN, config=config)
    weights = train_localizer(tmp_path / "set" / "data.yaml", tmp_path / "run", epochs=1, imgsz=160, batch=8,
                              workers=0)
    assert weights.is_file() and weights.stat().st_size > 1_000_000
    model = load_localizer(weights)
    page = np.asarray(Image.open(next((tmp_path / "set" / "pages" / "val").glob("*.jpg"))))
    boxes = detect([page, page[:100, :90]], model, conf=0.0, tile=160, overlap=48, batch=4)
    assert [b.shape[1] for b in boxes] == [5, 5]
    assert all((b[:, 2] <= page.shape[1]).all() and (b[:, 3] <= page.shape[0]).all() for b in boxes)
    metrics = evaluate_localizer(model, tmp_path / "set" / "pages" / "val", tile=160, overlap=48)
    assert metrics["pages"] == 1 and 0.0 <= metrics["recall"] <= 1.0
    assert sum(metrics["false_boxes"].values()) == metrics["detections"] - metrics["true_positives"]
    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR

    assert offline_ultralytics().__name__ == "ultralytics" and SETTINGS["sync"] is False
    assert (USER_CONFIG_DIR / "Arial.ttf").is_file() and (USER_CONFIG_DIR / "Arial.Unicode.ttf").is_file()
    assert blocked_network == [], f"ultralytics tried to reach the network: {blocked_network}"


def test_localizer_weights_errors_are_one_clear_line(tmp_path):
    from datagen.localize import load_localizer, train_localizer

    with pytest.raises(DatagenError, match="no such localiser weights"):
        load_localizer(tmp_path / "absent.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(DatagenError, match="not a readable YOLO checkpoint"):
        load_localizer(junk)
    with pytest.raises(DatagenError, match="no such dataset"):
        train_localizer(tmp_path / "absent.yaml", tmp_path / "run")
