"""Labelled character crops from NomNaOCR-style patches: detect, order, align boxes to the transcript.

A patch list has one line per patch, `path<TAB>text` (paths relative to the list file). Each patch's
characters are detected, put in reading order and paired one to one with the transcript. When there
are more boxes than characters, the transcript's length picks the strongest boxes only if their scores
stand clear of the rest (a seal, a stain or a split stroke usually scores far below a character); a
patch with too few boxes, or with extras that score like characters, is skipped and counted, never
guessed at. Crops are written as square images (the box centred on its paper colour, like the font
templates the index is built from) into one folder per character, with a CSV of every crop.
"""
from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from .errors import DatagenError, ImageReadError
from .files import open_image
from .glyphs import GLYPH_FILL
from .localize import box_iou, reading_order

CSV_FIELDS = ["path", "char", "patch", "position", "x1", "y1", "x2", "y2", "score"]
# Extra boxes are dropped only when the weakest kept box outscores the strongest dropped one by this
# much. Chosen on validation patches of the localiser's training faces (30 new pages, README): 0.2
# aligned 97.9 % of them (0.3: 96.7 %, 0.4: 95.0 %, exact counts only: 93.2 %) at the same crop
# accuracy, 99.8 %.
MIN_SCORE_GAP = 0.2


def read_patch_list(list_file: str | Path) -> list[tuple[Path, str]]:
    """(image path, transcript) of each line `path<TAB>text`; relative paths are taken from the list's folder."""
    list_file = Path(list_file)
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatagenError(f"cannot read patch list {list_file}: {exc}") from exc
    patches = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        path, sep, text = line.partition("\t")
        if not sep or not path.strip():
            raise DatagenError(f"{list_file}:{number}: expected `path<TAB>text`, got {line[:60]!r}")
        patches.append((list_file.parent / path.strip(), text.strip()))
    if not patches:
        raise DatagenError(f"patch list {list_file} is empty")
    return patches


def square_crop(gray: np.ndarray, box: Sequence[float], fill: float = GLYPH_FILL) -> np.ndarray:
    """The box's pixels centred on a square of the paper colour, the longer side spanning `fill` of it."""
    height, width = gray.shape
    x1, y1 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x2, y2 = min(width, int(np.ceil(box[2]))), min(height, int(np.ceil(box[3])))
    if x2 <= x1 or y2 <= y1:
        raise DatagenError(f"box {list(box[:4])} lies outside the {width}x{height} image")
    crop = gray[y1:y2, x1:x2]
    margin = max(crop.shape) // 4 + 1  # paper colour: the brightest tenth of the box and a ring around it
    around = gray[max(0, y1 - margin):y2 + margin, max(0, x1 - margin):x2 + margin]
    side = max(1, round(max(crop.shape) / fill))
    canvas = np.full((side, side), np.percentile(around, 90), np.uint8)
    top, left = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
    canvas[top:top + crop.shape[0], left:left + crop.shape[1]] = crop
    return canvas


def crops_of(image: np.ndarray, boxes: np.ndarray) -> list[np.ndarray]:
    """Square grey crops of the boxes of an RGB image, framed like the font templates of a character index."""
    gray = np.asarray(Image.fromarray(image).convert("L"))
    return [square_crop(gray, box) for box in boxes]


@dataclass
class PatchResult:
    """One patch: its transcript and, when aligned, one box per character (reading order)."""

    path: Path
    text: str
    status: str  # "aligned", "too_few_boxes", "ambiguous_boxes", "unreadable", "empty_text"
    boxes: np.ndarray | None = None
    found: int = 0


def align_boxes(boxes: np.ndarray, text: str, min_gap: float = MIN_SCORE_GAP) -> tuple[np.ndarray | None, str]:
    """(one box per character of `text` in reading order, "aligned"), or (None, why the pairing is not certain).

    Exactly len(text) boxes pair as they are. With more, the len(text) highest-scoring boxes (column 4)
    are kept when the weakest of them outscores the strongest of the rest by `min_gap` or more, else
    "ambiguous_boxes"; with fewer, "too_few_boxes"; an empty transcript is "empty_text".
    """
    if not text:
        return None, "empty_text"
    if len(boxes) < len(text):
        return None, "too_few_boxes"
    order = np.argsort(-boxes[:, 4], kind="stable")
    if len(boxes) > len(text) and boxes[order[len(text) - 1], 4] - boxes[order[len(text)], 4] < min_gap:
        return None, "ambiguous_boxes"
    return reading_order(boxes[order[:len(text)]]), "aligned"


def _load_rgb(path: Path) -> np.ndarray | None:
    try:
        return np.asarray(open_image(path, "RGB"))
    except ImageReadError:
        return None


Detector = Callable[[np.ndarray], np.ndarray]  # RGB image -> (N, 5) boxes [x1, y1, x2, y2, score]


def align_patches(list_file: str | Path, out: str | Path, detector: Detector, limit: int | None = None,
                  min_gap: float = MIN_SCORE_GAP) -> dict:
    """Detect (with `detector`, e.g. datagen.localize.detect with a model), order and align every patch
    of a list (see `align_boxes` for `min_gap`); write the crop dataset under `out`.

    Writes OUT/crops/<char>/<patch>_<position>.png, OUT/crops.csv (one row per crop, box in patch
    pixels), OUT/skipped.tsv (patch, reason, characters, boxes found) and OUT/report.json; returns
    the report (patches, aligned, share_aligned, skipped by reason, crops, seconds).
    """
    out = Path(out)
    patches = read_patch_list(list_file)[:limit]
    (out / "crops").mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results: list[PatchResult] = []
    with (out / "crops.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_FIELDS)
        for path, text in patches:
            result = PatchResult(path, text, "empty_text" if not text else "unreadable")
            image = _load_rgb(path) if text else None
            if image is not None:
                boxes = detector(image)
                result.found = len(boxes)
                result.boxes, result.status = align_boxes(boxes, text, min_gap)
            if result.status == "aligned":
                crops = crops_of(image, result.boxes)
                for position, (char, box, crop) in enumerate(zip(text, result.boxes, crops)):
                    rel = Path("crops") / char / f"{path.stem}_{position:03d}.png"
                    (out / rel).parent.mkdir(exist_ok=True)
                    Image.fromarray(crop).save(out / rel)
                    writer.writerow([rel.as_posix(), char, str(path), position,
                                     *(round(float(v), 1) for v in box[:4]), round(float(box[4]), 4)])
            results.append(result)
    skipped = [r for r in results if r.status != "aligned"]
    (out / "skipped.tsv").write_text("".join(f"{r.path}\t{r.status}\t{len(r.text)}\t{r.found}\n" for r in skipped),
                                     encoding="utf-8")
    aligned = len(results) - len(skipped)
    reasons = sorted({r.status for r in skipped})
    report = {"patches": len(results), "aligned": aligned, "share_aligned": aligned / len(results),
              "skipped": {reason: sum(r.status == reason for r in skipped) for reason in reasons},
              "crops": sum(len(r.text) for r in results if r.status == "aligned"),
              "seconds": round(time.perf_counter() - start, 2)}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def verify_crops(crops_csv: str | Path, truth_jsonl: str | Path, iou: float = 0.5) -> dict:
    """Check written crops against the generator's truth (patches.jsonl of `generate_pages`).

    A crop is right when its box overlaps the true box of the same character position at IoU >= `iou`
    and the character agrees; returns checked, right and accuracy.
    """
    truth = {}
    truth_jsonl = Path(truth_jsonl)
    for line in truth_jsonl.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        truth[(truth_jsonl.parent / row["path"]).resolve()] = row
    checked = right = 0
    with Path(crops_csv).open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            record = truth.get(Path(row["patch"]).resolve())
            if record is None:
                continue
            position = int(row["position"])
            box = np.array([[float(row[k]) for k in ("x1", "y1", "x2", "y2")]])
            true_box = np.array([record["boxes"][position]], np.float64)
            checked += 1
            right += bool(record["text"][position] == row["char"] and box_iou(box, true_box)[0, 0] >= iou)
    return {"checked": checked, "right": right, "accuracy": right / checked if checked else 0.0}
