"""The course CSV format (exact text), scoring predictions, and the retrieval grid picture."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from eval.course import (
    CourseFormatError,
    read_labels,
    read_predictions,
    score_predictions,
    write_labels,
    write_predictions,
)
from eval.grid import FRAMES, QUERY_FRAME, retrieval_grid


def test_predictions_are_written_in_the_exact_course_text(tmp_path) -> None:
    predictions = {"0.png": ["3.stl", "1.stl", "0.stl", "2.stl", "4.stl"],
                   "1.png": ["1.stl", "0.stl", "2.stl", "3.stl", "4.stl"]}
    path = write_predictions(tmp_path / "out" / "predictions.csv", predictions)
    assert path.read_text(encoding="utf-8") == (
        "query,label\n"
        '0.png,"3.stl,1.stl,0.stl,2.stl,4.stl"\n'
        '1.png,"1.stl,0.stl,2.stl,3.stl,4.stl"\n'
    )
    assert read_predictions(path) == predictions


def test_labels_round_trip_and_read_course_style_files(tmp_path) -> None:
    labels = {"0.png": ["0.stl", "17.stl", "5.stl"], "1.png": ["2.stl"]}
    assert read_labels(write_labels(tmp_path / "labels.csv", labels)) == labels
    written = tmp_path / "course.csv"  # as a course hands it out: CRLF, BOM, a trailing blank line
    written.write_bytes('\ufeffquery,label\r\n0.png,"0.stl, 17.stl"\r\n\r\n'.encode("utf-8"))
    assert read_labels(written) == {"0.png": ["0.stl", "17.stl"]}


def test_scoring_uses_only_the_first_label() -> None:
    labels = {"0.png": ["0.stl", "3.stl"], "1.png": ["1.stl"], "2.png": ["2.stl"], "3.png": ["9.stl"]}
    predictions = {
        "0.png": ["3.stl", "1.stl", "0.stl", "2.stl", "4.stl"],  # true match 0.stl at rank 3 (3.stl is no match)
        "1.png": ["1.stl", "0.stl", "2.stl", "3.stl", "4.stl"],  # rank 1
        "2.png": ["0.stl", "2.stl", "1.stl", "3.stl", "4.stl"],  # rank 2
        "3.png": ["0.stl", "1.stl", "2.stl", "3.stl", "4.stl"],  # absent
        "extra.png": ["0.stl"],  # not labelled: ignored
    }
    scores = score_predictions(predictions, labels)
    assert scores["mrr@5"] == pytest.approx((1 / 3 + 1 + 1 / 2 + 0) / 4)
    assert scores["recall@1"] == 0.25
    assert scores["recall@5"] == 0.75
    assert "recall@10" not in scores  # five predictions per query cannot say
    assert scores["n"] == 4


def test_missing_prediction_is_an_error() -> None:
    with pytest.raises(CourseFormatError, match="1 labelled queries have no prediction: 1.png"):
        score_predictions({"0.png": ["0.stl"]}, {"0.png": ["0.stl"], "1.png": ["1.stl"]})


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        (None, "does not exist"),
        ("", "is empty"),
        ("image,target\n0.png,0.stl\n", "expected 'query,label'"),
        ("query,label\n", "no rows"),
        ("query,label\n0.png,0.stl,1.stl\n", "line 2: expected 2 fields"),
        ('query,label\n0.png,"0.stl"\n0.png,"1.stl"\n', "line 3: query '0.png' appears twice"),
    ],
)
def test_bad_files_are_refused(tmp_path, content: str | None, complaint: str) -> None:
    path = tmp_path / "labels.csv"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(CourseFormatError, match=complaint) as caught:
        read_labels(path)
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_item_names_with_commas_are_refused(tmp_path) -> None:
    with pytest.raises(CourseFormatError, match="without commas"):
        write_predictions(tmp_path / "p.csv", {"0.png": ["a,b.stl"]})


def test_retrieval_grid_size_and_frames(tmp_path) -> None:
    query_path = tmp_path / "q.png"
    Image.new("L", (40, 20), 255).save(query_path)
    black = Image.new("RGB", (64, 64), (0, 0, 0))
    mask = np.zeros((32, 32), np.float32)
    results = [
        [(black, "3.stl\n0.12", True), (black, "1.stl 0.50", False), (mask, "7.stl 0.93", None)],
        [(black, "a very long caption that cannot fit in one tile at all", False)],
    ]
    out = retrieval_grid([query_path, black], results, tmp_path / "grid" / "g.png", tile=64)
    assert out == tmp_path / "grid" / "g.png"
    picture = Image.open(out).convert("RGB")
    assert picture.width == 4 * 64  # query + 3 results
    cell_height = picture.height // 2
    assert picture.height == 2 * cell_height and cell_height > 64  # room for captions under tiles
    assert picture.getpixel((0, 0)) == QUERY_FRAME
    assert picture.getpixel((64, 0)) == FRAMES[True]
    assert picture.getpixel((128, 0)) == FRAMES[False]
    assert picture.getpixel((192, 0)) == FRAMES[None]
    assert picture.getpixel((64 + 32, 32)) == (0, 0, 0)  # the result image inside its frame
    assert picture.getpixel((128, cell_height)) == (255, 255, 255)  # second row has one result only
    caption_strip = np.asarray(picture.crop((64, 64, 128, cell_height)))
    assert (caption_strip < 128).any()  # some caption text was drawn


def test_retrieval_grid_unreadable_image(tmp_path) -> None:
    with pytest.raises(ValueError, match="cannot read image .*missing.png"):
        retrieval_grid([tmp_path / "missing.png"], [[]], tmp_path / "g.png")
