"""Character localiser: YOLOv8 trained on synthetic pages, fully offline; tiled detection; reading order.

Ultralytics reaches for the network in several places (online check, update and pip checks, usage
events, plot fonts it downloads, integrations). `offline_ultralytics()` closes every one of them through
ultralytics' own switches before anything else touches the library: YOLO_OFFLINE=1 (no online check,
so no update checks or events), YOLO_AUTOINSTALL=False (never pip-installs a missing package such as
the HEIF plugin it asks for on every unreadable image), a private config dir with `sync` and every integration
off in its settings, and a local font copied to the names its plots look for (Arial.ttf,
Arial.Unicode.ttf). AMP stays off: its check downloads a model.

Pages of any size are detected tile by tile at their own scale (bounded memory); boxes cut by an inner
tile border are dropped (the overlap shows them whole in the next tile) and duplicates merged by NMS.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from collections import Counter
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Iterable, Sequence

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

from .errors import DatagenError
from .files import open_image
from .fonts import default_cache_dir
from .pages import tile_origins

DEFAULT_WEIGHTS_NAME = "localizer.pt"
ULTRALYTICS_LOGGER = "ultralytics"  # ultralytics.utils.LOGGING_NAME
ULTRALYTICS_SETTINGS = {"sync": False, "clearml": False, "comet": False, "dvc": False, "mlflow": False,
                        "raytune": False, "tensorboard": False, "wandb": False, "vscode_msg": False,
                        "openvino_msg": False}
PLOT_FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")
# Two boxes belong to one column when they overlap horizontally by this share of the narrower one.
COLUMN_LINK_SHARE = 0.3
# In a column, a box narrower than NOTE_WIDTH_SHARE of the column and off its centre line by more than
# NOTE_OFFSET_SHARE of the column width is a double-line small character (right sub-column read first).
NOTE_WIDTH_SHARE = 0.7
NOTE_OFFSET_SHARE = 0.12
# Character boxes do not overlap each other: a box covering this share of two or more other boxes is a
# seal or a merged group taken for a character, and links no columns (it would join two of them).
COVERING_SHARE = 0.3
PAIR_BLOCK = 256  # boxes compared with their neighbours at once (bounds memory)
SPLIT_IOU = 0.1  # a false box overlapping a character this much is a piece of it or a merge of two


def offline_ultralytics() -> ModuleType:
    """Import ultralytics with every network path closed (see the module doc); returns the module."""
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "False"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(default_cache_dir() / "ultralytics"))
    import ultralytics
    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR

    if any(SETTINGS.get(key) != value for key, value in ULTRALYTICS_SETTINGS.items()):
        SETTINGS.update(ULTRALYTICS_SETTINGS)
    missing = [name for name in PLOT_FONT_NAMES if not (USER_CONFIG_DIR / name).is_file()]
    if missing:
        import matplotlib  # an ultralytics dependency that ships DejaVu Sans

        local_font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        for name in missing:
            shutil.copyfile(local_font, USER_CONFIG_DIR / name)
    return ultralytics


def default_weights_path() -> Path:
    """The localiser shipped as package data (made by scripts/train_localizer.py, see the README)."""
    return Path(str(resources.files("datagen") / "data" / DEFAULT_WEIGHTS_NAME))


def train_localizer(data_yaml: str | Path, out: str | Path, epochs: int = 30, imgsz: int = 416, batch: int = 16,
                    workers: int = 2, device: str = "cpu", seed: int = 0, plots: bool = False,
                    **overrides: object) -> Path:
    """Train YOLOv8n from scratch (`yolov8n.yaml`, no weights) on a YOLO dataset; returns the best weights.

    Ultralytics writes its run into `out` (weights/best.pt, results.csv, args.yaml); the best weights
    are also copied to OUT/localizer.pt. Horizontal flips are off (mirrored glyphs look like
    bleed-through, which must not be found), scale jitter is +-30 % (pages are detected at their own
    scale), and for short CPU runs the optimizer steps every batch (nominal batch = batch, where
    ultralytics accumulates to 64) and warm-up and the mosaic-free tail are short; `overrides` go to
    ultralytics' train() as they are (e.g. cache="ram").
    """
    data_yaml, out = Path(data_yaml), Path(out).resolve()
    if not data_yaml.is_file():
        raise DatagenError(f"{data_yaml}: no such dataset file (make one with `sinonom localizer pages`)")
    yolo = offline_ultralytics()
    model = yolo.YOLO("yolov8n.yaml", task="detect")
    args = {"data": str(data_yaml.resolve()), "epochs": epochs, "imgsz": imgsz, "batch": batch, "nbs": batch,
            "workers": workers,
            "device": device, "seed": seed, "project": str(out.parent), "name": out.name, "exist_ok": True,
            "pretrained": False, "amp": False, "plots": plots, "fliplr": 0.0, "degrees": 0.0, "scale": 0.3,
            "warmup_epochs": min(3.0, max(0.5, epochs / 10)), "close_mosaic": max(1, min(10, epochs // 4)),
            "verbose": False}
    model.train(**{**args, **overrides})
    trainer = model.trainer
    best = Path(trainer.best) if Path(trainer.best).is_file() else Path(trainer.last)
    target = out / DEFAULT_WEIGHTS_NAME
    shutil.copyfile(best, target)
    return target


def load_localizer(path: str | Path | None = None):  # -> ultralytics.YOLO (imported lazily)
    """Load localiser weights (default: the shipped datagen/data/localizer.pt)."""
    path = Path(path) if path else default_weights_path()
    if not path.is_file():
        hint = (" (the shipped localiser is missing from this install: reinstall, train one with "
                "scripts/train_localizer.py --ship, or pass --localizer)"
                if path == default_weights_path() else "")
        raise DatagenError(f"{path}: no such localiser weights file{hint}")
    yolo = offline_ultralytics()
    # Detection needs none of ultralytics' notes; its warnings (e.g. the missing HEIF plugin on an
    # unreadable page) would come before our own one-line error.
    logging.getLogger(ULTRALYTICS_LOGGER).setLevel(logging.ERROR)
    try:
        model = yolo.YOLO(str(path), task="detect")
    except Exception as exc:  # torch / ultralytics raise many types for a file that is not a checkpoint
        raise DatagenError(f"{path}: not a readable YOLO checkpoint ({type(exc).__name__}: {exc})".splitlines()[0]
                           ) from exc
    if model.task != "detect":
        raise DatagenError(f"{path}: a YOLO {model.task} model, not a detector")
    return model


# --- detection -----------------------------------------------------------------------------------


def _as_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        return image[..., :3]
    raise DatagenError(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")


def _nms(boxes: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by class-agnostic NMS of (N, 5) boxes, best score first."""
    import torch
    from torchvision.ops import nms

    keep = nms(torch.from_numpy(boxes[:, :4]).float(), torch.from_numpy(boxes[:, 4]).float(), iou)
    return keep.numpy()


TILE_STRIDE = 32  # YOLOv8's largest stride: tile sides are multiples of it
TILE_EDGE_PX = 2.0  # a box this close to an inner tile border is cut by it


def _tile_shape(height: int, width: int, tile: int) -> tuple[int, int]:
    """Tile (height, width): `tile`, shrunk to the image rounded up to TILE_STRIDE when the image is
    smaller (a narrow column patch then costs a narrow tile, not a square one)."""
    def side(length: int) -> int:
        return min(tile, -(-length // TILE_STRIDE) * TILE_STRIDE)

    return side(height), side(width)


def _tiles(image: np.ndarray, tile_h: int, tile_w: int, overlap: int) -> Iterable[tuple[int, int, np.ndarray]]:
    """(x0, y0, tile_h x tile_w RGB crop) covering the image; crops at the border padded with paper colour."""
    height, width = image.shape[:2]
    paper = np.median(image[:: max(1, height // 64), :: max(1, width // 64)].reshape(-1, 3), axis=0)
    for y0 in tile_origins(height, tile_h, overlap):
        for x0 in tile_origins(width, tile_w, overlap):
            crop = image[y0:y0 + tile_h, x0:x0 + tile_w]
            if crop.shape[:2] != (tile_h, tile_w):
                padded = np.empty((tile_h, tile_w, 3), np.uint8)
                padded[:] = paper.astype(np.uint8)
                padded[:crop.shape[0], :crop.shape[1]] = crop
                crop = padded
            yield x0, y0, crop


def _detect_page(rgb: np.ndarray, model, conf: float, iou: float, tile: int, overlap: int, batch: int,
                 device: str | None, max_det: int) -> np.ndarray:
    """Boxes (N, 5) of one RGB page at its own scale: tiles in batches, inner-border cuts dropped, NMS."""
    height, width = rgb.shape[:2]
    tile_h, tile_w = _tile_shape(height, width, tile)
    found: list[np.ndarray] = []

    def run(pending: list[tuple[int, int, np.ndarray]]) -> None:
        # ultralytics takes numpy images as BGR (OpenCV order)
        predictions = model.predict([np.ascontiguousarray(t[..., ::-1]) for _, _, t in pending],
                                    imgsz=(tile_h, tile_w), conf=conf, iou=iou, max_det=max_det, verbose=False,
                                    device=device)
        for (x0, y0, _), prediction in zip(pending, predictions):
            xyxy = prediction.boxes.xyxy.cpu().numpy()
            score = prediction.boxes.conf.cpu().numpy()
            inner = np.ones(len(xyxy), bool)  # drop boxes cut by an inner tile border
            if x0 > 0:
                inner &= xyxy[:, 0] > TILE_EDGE_PX
            if y0 > 0:
                inner &= xyxy[:, 1] > TILE_EDGE_PX
            if x0 + tile_w < width:
                inner &= xyxy[:, 2] < tile_w - TILE_EDGE_PX
            if y0 + tile_h < height:
                inner &= xyxy[:, 3] < tile_h - TILE_EDGE_PX
            found.append(np.column_stack([xyxy + [x0, y0, x0, y0], score])[inner])

    pending: list[tuple[int, int, np.ndarray]] = []
    for item in _tiles(rgb, tile_h, tile_w, overlap):
        pending.append(item)
        if len(pending) == batch:
            run(pending)
            pending = []
    if pending:
        run(pending)
    boxes = np.concatenate(found).astype(np.float32) if found else np.zeros((0, 5), np.float32)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    boxes = boxes[(boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)]  # not only padding
    return boxes[_nms(boxes, iou)] if len(boxes) else boxes


def detect(images: Sequence[np.ndarray], model, conf: float = 0.25, iou: float = 0.5, tile: int = 416,
           overlap: int = 96, batch: int = 8, scale: float = 1.0, device: str | None = None,
           max_det: int = 1000) -> list[np.ndarray]:
    """Character boxes of each page: float32 (N, 5) rows [x1, y1, x2, y2, score] in page pixels.

    Pages (uint8 RGB or grey arrays) are cut into `tile` px tiles overlapping by `overlap` px (which
    must exceed the largest character), `batch` tiles at a time, so memory stays bounded for any page
    size. `scale` resizes pages first (e.g. 0.5 for a scan at twice the training resolution).
    Rows are sorted by descending score; see `reading_order` for the reading sequence.
    """
    from PIL import Image

    if tile % TILE_STRIDE or overlap >= tile:
        raise DatagenError(f"tile size {tile} must be a multiple of {TILE_STRIDE} larger than the overlap {overlap}")
    results = []
    for image in images:
        rgb = _as_rgb(np.asarray(image))
        if scale != 1.0:
            size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
            rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
        boxes = _detect_page(rgb, model, conf, iou, tile, overlap, batch, device, max_det)
        if scale != 1.0:
            boxes[:, :4] /= scale
        results.append(boxes[np.argsort(-boxes[:, 4], kind="stable")])
    return results


# --- reading order -------------------------------------------------------------------------------


def _x_overlapping_pairs(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i, j), i != j, of horizontally overlapping boxes with their x overlap and 2-D overlap area.

    Boxes sorted by left edge are compared PAIR_BLOCK at a time with the window of boxes that can reach
    them: time and memory grow with the number of boxes, not its square.
    """
    x1, y1, x2, y2 = (boxes[:, k] for k in range(4))
    order = np.argsort(x1, kind="stable")
    sorted_x1 = x1[order]
    widest = float((x2 - x1).max())
    found: list[tuple[np.ndarray, ...]] = []
    for start in range(0, len(boxes), PAIR_BLOCK):
        rows = order[start:start + PAIR_BLOCK]
        lo = np.searchsorted(sorted_x1, x1[rows].min() - widest, side="right")
        hi = np.searchsorted(sorted_x1, x2[rows].max(), side="left")
        window = order[lo:hi]
        block = np.minimum(x2[rows, None], x2[None, window]) - np.maximum(x1[rows, None], x1[None, window])
        r, c = np.nonzero(block > 0)
        i, j, x_overlap = rows[r], window[c], block[r, c]
        height = np.clip(np.minimum(y2[i], y2[j]) - np.maximum(y1[i], y1[j]), 0, None)
        other = i != j
        found.append((i[other], j[other], x_overlap[other], (x_overlap * height)[other]))
    return tuple(np.concatenate(parts) for parts in zip(*found))  # type: ignore[return-value]


def _columns(boxes: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Indices of the boxes of each column, columns right to left (unordered inside), and which boxes
    cover two or more others (see COVERING_SHARE): those link no columns and join the one they overlap most."""
    n = len(boxes)
    x1, y1, x2, y2 = (boxes[:, k] for k in range(4))
    widths = x2 - x1
    i, j, x_overlap, area = _x_overlapping_pairs(boxes)
    covers = area >= COVERING_SHARE * np.maximum(widths[j] * (y2[j] - y1[j]), 1e-9)
    covering = np.bincount(i[covers], minlength=n) >= 2
    link = (x_overlap >= COLUMN_LINK_SHARE * np.minimum(widths[i], widths[j])) & ~covering[i] & ~covering[j]
    graph = sparse.coo_matrix((np.ones(int(link.sum())), (i[link], j[link])), shape=(n, n))
    _, labels = csgraph.connected_components(graph, directed=False)
    for box in np.flatnonzero(covering):  # join the column overlapped most, or stand alone
        near = (i == box) & ~covering[j]
        if near.any():
            labels[box] = labels[j[near][np.argmax(x_overlap[near])]]
    columns = [np.flatnonzero(labels == label) for label in np.unique(labels)]
    spans = [c[_regular(covering[c])] for c in columns]  # a seal must not move its column
    centres = [(x1[c].min() + x2[c].max()) / 2 for c in spans]
    return [columns[k] for k in np.argsort(centres, kind="stable")[::-1]], covering


def _regular(covering: np.ndarray) -> np.ndarray:
    """Mask of a column's boxes that cover no others (all of them when every box does): its real characters."""
    return ~covering if (~covering).any() else np.ones(len(covering), bool)


def _column_sequence(boxes: np.ndarray, members: np.ndarray, covering: np.ndarray) -> list[int]:
    """One column's boxes top to bottom; runs of double-line small characters right sub-column first."""
    x1, y1, x2, y2 = (boxes[members, k] for k in range(4))
    regular = _regular(covering[members])
    span_left, span_right = x1[regular].min(), x2[regular].max()
    span, centre = span_right - span_left, (span_left + span_right) / 2
    box_centres = (x1 + x2) / 2
    side = ((x2 - x1) < NOTE_WIDTH_SHARE * span) & (np.abs(box_centres - centre) > NOTE_OFFSET_SHARE * span)
    order: list[int] = []
    run: list[int] = []

    def close_run() -> None:
        run.sort(key=lambda k: (box_centres[k] <= centre, (y1[k] + y2[k]) / 2))
        order.extend(run)
        run.clear()

    for k in np.argsort((y1 + y2) / 2, kind="stable"):
        if side[k]:
            run.append(int(k))
        else:
            close_run()
            order.append(int(k))
    close_run()
    return [int(members[k]) for k in order]


def column_order(boxes: Sequence[Sequence[float]] | np.ndarray) -> list[list[int]]:
    """Reading order as columns of box indices: columns right to left, each top to bottom, with runs of
    double-line small characters read right sub-column first. Boxes: rows [x1, y1, x2, y2, ...]."""
    if len(boxes) == 0:
        return []
    boxes = np.asarray(boxes, np.float64)
    columns, covering = _columns(boxes)
    return [_column_sequence(boxes, members, covering) for members in columns]


def reading_order(boxes: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """The boxes (rows [x1, y1, x2, y2, ...]) reordered into reading order (see `column_order`)."""
    boxes = np.asarray(boxes)
    if len(boxes) == 0:
        return boxes
    return boxes[[i for column in column_order(boxes) for i in column]]


# --- evaluation ----------------------------------------------------------------------------------


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of boxes a (N, 4+) and b (M, 4+)."""
    a, b = np.asarray(a, np.float64)[:, :4], np.asarray(b, np.float64)[:, :4]
    width = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    height = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = width * height
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-9)


def match_boxes(pred: np.ndarray, truth: np.ndarray, iou: float = 0.5) -> np.ndarray:
    """For each prediction (in descending score order), the index of the ground-truth box it matches
    greedily at IoU >= `iou`, or -1."""
    matched = np.full(len(pred), -1)
    if len(pred) == 0 or len(truth) == 0:
        return matched
    ious = box_iou(pred, truth)
    taken = np.zeros(len(truth), bool)
    for p in np.argsort(-pred[:, 4], kind="stable"):
        candidates = np.where(taken, -1.0, ious[p])
        best = int(candidates.argmax())
        if candidates[best] >= iou:
            matched[p], taken[best] = best, True
    return matched


def detection_metrics(predictions: Sequence[np.ndarray], truths: Sequence[np.ndarray], conf: float = 0.25,
                      iou: float = 0.5) -> dict:
    """Precision and recall at score >= `conf`, and AP at IoU `iou` (mAP50 for one class), over pages.

    predictions: per page (N, 5) [x1, y1, x2, y2, score] (detect with a low conf for a full PR curve);
    truths: per page (M, 4). AP is the area under the all-point interpolated precision-recall curve.
    """
    scores, hits = [], []
    total = sum(len(t) for t in truths)
    for pred, truth in zip(predictions, truths):
        matched = match_boxes(pred, np.asarray(truth).reshape(-1, 4), iou)
        scores.append(pred[:, 4])
        hits.append(matched >= 0)
    scores = np.concatenate(scores) if scores else np.zeros(0)
    hits = np.concatenate(hits) if hits else np.zeros(0, bool)
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(hits[order])
    precision_curve = tp / np.arange(1, len(tp) + 1)
    recall_curve = tp / max(total, 1)
    envelope = np.maximum.accumulate(np.concatenate([precision_curve, [0.0]])[::-1])[::-1]
    ap = float(np.sum(np.diff(np.concatenate([[0.0], recall_curve])) * envelope[:-1])) if len(tp) else 0.0
    kept = scores >= conf
    true_pos = int(hits[kept].sum())
    return {"precision": true_pos / max(int(kept.sum()), 1), "recall": true_pos / max(total, 1),
            f"map{int(iou * 100)}": ap, "true_positives": true_pos, "detections": int(kept.sum()),
            "ground_truth": total, "conf": conf, "iou": iou}


def false_box_kind(box: np.ndarray, truth: dict, gt: np.ndarray) -> str:
    """What a detection matching no character lies on: a distractor's kind ("seal", "margin_note") when
    its centre is inside one, "split_or_merged" when it overlaps a character, else "other" (stains, rules)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    for distractor in truth.get("distractors", []):
        x1, y1, x2, y2 = distractor["box"]
        if x1 <= cx <= x2 and y1 <= cy <= y2:
            return distractor["kind"]
    if len(gt) and box_iou(np.asarray(box[None, :4], np.float64), gt).max() > SPLIT_IOU:
        return "split_or_merged"
    return "other"


def evaluate_localizer(model, pages_dir: str | Path, conf: float = 0.25, iou: float = 0.5, tile: int = 416,
                       overlap: int = 96, limit: int | None = None) -> dict:
    """Precision, recall (at `conf`), mAP50 and reading-order accuracy on generated pages with truth JSON.

    pages_dir holds page_*.jpg with page_*.json beside them (`generate_pages` writes pages/{train,val});
    reading order counts a page right when its matched detections come in the truth's order;
    false_boxes counts the unmatched confident detections by `false_box_kind`.
    """
    import json

    pages = sorted(Path(pages_dir).glob("*.json"))[:limit]
    if not pages:
        raise DatagenError(f"{pages_dir}: no page truth files (*.json beside the page images)")
    predictions, truths, ordered_right, false_boxes = [], [], 0, Counter()
    start = time.perf_counter()
    for truth_path in pages:
        truth = json.loads(truth_path.read_text(encoding="utf-8"))
        image = np.asarray(open_image(truth_path.with_suffix(".jpg")))
        boxes = detect([image], model, conf=min(conf, 0.01), iou=iou, tile=tile, overlap=overlap)[0]
        gt = np.array([c["box"] for c in truth["chars"]], np.float64).reshape(-1, 4)
        predictions.append(boxes)
        truths.append(gt)
        confident = boxes[boxes[:, 4] >= conf]
        ordered = reading_order(confident)  # the same rows, reordered
        matched = match_boxes(ordered, gt, iou)
        sequence = matched[matched >= 0]
        ordered_right += bool(np.all(np.diff(sequence) > 0))
        false_boxes.update(false_box_kind(box, truth, gt) for box in ordered[matched < 0])
    seconds = time.perf_counter() - start
    metrics = detection_metrics(predictions, truths, conf=conf, iou=iou)
    metrics.update({"pages": len(pages), "reading_order_pages": ordered_right / len(pages),
                    "false_boxes": dict(false_boxes.most_common()),
                    "seconds": round(seconds, 2), "pages_per_s": round(len(pages) / seconds, 3)})
    return metrics
