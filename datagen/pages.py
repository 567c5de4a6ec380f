"""Synthetic woodblock pages: labelled character boxes for the localiser, column patches for alignment.

A page is laid out like a Han-Nom woodblock print: vertical columns read top to bottom, right to left,
separated by printed rules inside a frame; a full spread has a centre fold band (版心, with its fish-tail
marks) between the right and the left half-leaf. Columns hold main characters and runs of double-line
small annotations (two narrow sub-columns, the right one read first). Seals (red stamps) and
hand-written margin notes are drawn as distractors and are NOT labelled. The printed ink then goes
through page-wide degradations (stroke weight, uneven ink, breaks, bleed-through, paper texture,
stains, blur, noise, JPEG) built from the pieces of `prints`.

Outputs of `generate_pages`: a YOLO dataset (one class `char`; tiles of the pages, or whole pages),
the whole pages with ground-truth JSON (boxes in reading order with their character), and per column
a NomNaOCR-style patch with a `path<TAB>text` line. Every page is deterministic for (seed, index).
"""
from __future__ import annotations

import json
import math
import multiprocessing
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

from .charsets import load_charset
from .errors import DatagenError, GlyphMissingError
from .fonts import FontFace, default_faces, faces_coverage
from .glyphs import render_glyph_mask
from .prints import jpeg_roundtrip, lowfreq_noise, stroke_weight

CLASS_NAMES = {0: "char"}
# A box cut by a tile border is labelled in that tile when at least this share of it is inside.
TILE_KEEP_SHARE = 0.6
# Label boxes: the glyph's ink box grown by this share of the glyph size (at least 1 px), and never
# thinner than MIN_BOX_SHARE of it, so flat characters such as 一 do not become slivers.
BOX_PAD_SHARE = 0.04
MIN_BOX_SHARE = 0.3
# Characters drawn from a rank-ordered list with weight 1 / (rank + ZIPF_OFFSET): close to real text.
ZIPF_OFFSET = 20.0
# A face is used for pages only when it really draws this share of the character list.
MIN_FACE_COVERAGE = 0.5


@dataclass(frozen=True)
class PageConfig:
    """Ranges the layout and degradations of a page are drawn from (px at the page's scale)."""

    cell_px: tuple[float, float] = (32.0, 50.0)  # column pitch; main glyphs are ~0.7-0.85 of it
    columns: tuple[int, int] = (6, 10)  # per half-leaf
    rows: tuple[int, int] = (12, 20)  # main-character cells per full column
    spread_prob: float = 0.5  # two half-leaves and the fold band between them (else one half-leaf)
    note_prob: float = 0.3  # per column: a run of double-line small characters
    short_column_prob: float = 0.2  # the column's text ends early (end of a paragraph)
    indent_prob: float = 0.1  # the column starts one or two cells low
    empty_column_prob: float = 0.04
    seal_prob: float = 0.5
    margin_note_prob: float = 0.5
    strength: tuple[float, float] = (0.3, 1.5)  # degradation strength range (0 = clean)


@dataclass(frozen=True)
class CharBox:
    """One labelled character: its box in pixels (x1, y1, x2, y2; x2, y2 exclusive), column and kind."""

    box: tuple[int, int, int, int]
    char: str
    column: int
    kind: str  # "main" or "note" (double-line small character)


@dataclass
class Page:
    """A rendered page and everything known about it; `chars` are in reading order."""

    image: np.ndarray  # (H, W, 3) uint8
    chars: list[CharBox]
    columns: list[dict]  # reading order: {"box": [x1, y1, x2, y2], "chars": [indices into chars]}
    furniture: list[tuple[int, int, int, int]]  # printed non-character ink: frame, rules, band marks
    distractors: list[dict]  # unlabelled: {"kind": "seal" | "margin_note", "box": [...]}
    face: FontFace
    strength: float
    meta: dict = field(default_factory=dict)

    def text(self) -> str:
        """The page's characters in reading order, one line per column."""
        return "\n".join("".join(self.chars[i].char for i in col["chars"]) for col in self.columns)

    def truth(self) -> dict:
        """The ground truth as JSON-ready data (boxes in pixels, reading order)."""
        height, width = self.image.shape[:2]
        return {
            "width": width, "height": height, "face": self.face.label, "font": str(self.face.path),
            "font_index": self.face.index, "strength": round(self.strength, 3), **self.meta,
            "chars": [{"box": list(c.box), "char": c.char, "column": c.column, "kind": c.kind} for c in self.chars],
            "columns": [{"box": list(col["box"]), "text": "".join(self.chars[i].char for i in col["chars"])}
                        for col in self.columns],
            "furniture": [list(r) for r in self.furniture], "distractors": self.distractors,
        }


@dataclass(frozen=True)
class PageFont:
    """A face with the characters it really draws, most frequent first, and their sampling weights."""

    face: FontFace
    chars: tuple[str, ...]
    cumulative: tuple[float, ...]

    def sample(self, rng: np.random.Generator, n: int) -> list[str]:
        picks = np.searchsorted(np.asarray(self.cumulative), rng.random(n) * self.cumulative[-1], side="right")
        return [self.chars[min(i, len(self.chars) - 1)] for i in picks]


def page_fonts(faces: Sequence[FontFace] | None = None, charset: str = "nomnaocr_freq") -> list[PageFont]:
    """The faces usable for pages (drawing >= MIN_FACE_COVERAGE of `charset`), with Zipf-like weights.

    `charset` is read in its own order as a frequency ranking (nomnaocr_freq is most frequent first).
    """
    chars = load_charset(charset)
    faces = list(faces) if faces is not None else default_faces()
    coverage = faces_coverage(faces, chars)
    fonts = []
    for face in faces:
        ranked = [(rank, c) for rank, c in enumerate(chars) if c in coverage[face]]
        if len(ranked) < MIN_FACE_COVERAGE * len(chars):
            continue
        weights = 1.0 / (np.array([r for r, _ in ranked], np.float64) + ZIPF_OFFSET)
        fonts.append(PageFont(face, tuple(c for _, c in ranked), tuple(np.cumsum(weights).tolist())))
    if not fonts:
        raise DatagenError(f"no font face draws at least {MIN_FACE_COVERAGE:.0%} of character set {charset!r} "
                           f"(checked {len(faces)} faces)")
    return fonts


@lru_cache(maxsize=8192)
def _glyph(char: str, face: FontFace, size: int) -> np.ndarray:
    """The glyph's ink fitted to size x size (longer side touching), as uint8 (cached: text repeats)."""
    return (render_glyph_mask(char, face, size=size, fill=1.0) * 255).astype(np.uint8)


class _Canvas:
    """The page's printed ink (float, 1 = ink) and the geometry drawn into it."""

    def __init__(self, height: int, width: int) -> None:
        self.ink = np.zeros((height, width), np.float32)
        self.furniture: list[tuple[int, int, int, int]] = []

    def rect(self, x1: float, y1: float, x2: float, y2: float) -> None:
        """Ink a rectangle of printed furniture (frame lines, rules, band marks) and record it."""
        h, w = self.ink.shape
        box = (max(0, round(x1)), max(0, round(y1)), min(w, round(x2)), min(h, round(y2)))
        if box[2] <= box[0] or box[3] <= box[1]:
            return
        self.ink[box[1]:box[3], box[0]:box[2]] = 1.0
        self.furniture.append(box)


def _draw_glyph(layer: np.ndarray, char: str, face: FontFace, size: int, cx: float, cy: float
                ) -> tuple[int, int, int, int] | None:
    """Draw a glyph centred at (cx, cy) into `layer`; returns its ink box, or None if not drawn."""
    try:
        mask = _glyph(char, face, max(4, size))
    except GlyphMissingError:
        return None
    gh, gw = mask.shape
    x0, y0 = round(cx - gw / 2), round(cy - gh / 2)
    h, w = layer.shape
    if x0 < 0 or y0 < 0 or x0 + gw > w or y0 + gh > h:
        return None
    region = layer[y0:y0 + gh, x0:x0 + gw]
    np.maximum(region, mask.astype(np.float32) / 255.0, out=region)
    rows, cols = np.nonzero(mask > 64)
    if rows.size == 0:
        return None
    return x0 + int(cols.min()), y0 + int(rows.min()), x0 + int(cols.max()) + 1, y0 + int(rows.max()) + 1


def _label_box(ink_box: tuple[int, int, int, int], glyph_size: int, width: int, height: int
               ) -> tuple[int, int, int, int]:
    """The labelled box of a glyph: its ink box padded, at least MIN_BOX_SHARE of the glyph size each way."""
    pad = max(1, round(BOX_PAD_SHARE * glyph_size))
    x1, y1, x2, y2 = ink_box[0] - pad, ink_box[1] - pad, ink_box[2] + pad, ink_box[3] + pad
    least = MIN_BOX_SHARE * glyph_size
    for lo, hi, limit, axis in ((x1, x2, width, 0), (y1, y2, height, 1)):
        if hi - lo < least:
            grow = (least - (hi - lo)) / 2
            lo, hi = math.floor(lo - grow), math.ceil(hi + grow)
        if axis == 0:
            x1, x2 = max(0, lo), min(limit, hi)
        else:
            y1, y2 = max(0, lo), min(limit, hi)
    return int(x1), int(y1), int(x2), int(y2)


@dataclass
class _Layout:
    """Where things go on a page, drawn once from the generator (all in px)."""

    pitch: float
    cell_h: float
    rows: int
    width: int
    height: int
    frame: tuple[float, float, float, float]  # outer edge of the frame
    frame_w: float  # frame line thickness
    line: float  # rule thickness
    spread: bool  # two half-leaves with the band between them (else one half-leaf)
    top: float  # first cell's top
    bottom: float  # last cell's bottom
    columns: list[tuple[float, float]] = field(default_factory=list)  # (x_left, x_right), reading order
    bands: list[tuple[float, float]] = field(default_factory=list)  # fold band(s) (x_left, x_right)


def _plan_layout(rng: np.random.Generator, cfg: PageConfig) -> _Layout:
    """Columns, frame and fold band of a spread (two half-leaves) or a single half-leaf."""
    pitch = float(rng.uniform(*cfg.cell_px))
    cell_h = pitch * float(rng.uniform(0.92, 1.08))
    rows = int(rng.integers(cfg.rows[0], cfg.rows[1] + 1))
    ncols = int(rng.integers(cfg.columns[0], cfg.columns[1] + 1))
    spread = rng.random() < cfg.spread_prob
    line = max(1.0, pitch * rng.uniform(0.03, 0.05))
    frame_w = max(2.0, pitch * rng.uniform(0.05, 0.1))
    band_w = pitch * rng.uniform(0.8, 1.3)
    margin_top, margin_bottom = pitch * rng.uniform(1.2, 3.0), pitch * rng.uniform(0.5, 1.4)
    margin_side = pitch * rng.uniform(0.4, 1.2)
    inner_pad = pitch * rng.uniform(0.15, 0.35)

    half_w = ncols * pitch
    body_w = 2 * half_w + band_w if spread else half_w + band_w / 2
    width = int(round(2 * margin_side + 2 * frame_w + body_w))
    body_h = rows * cell_h + 2 * inner_pad
    height = int(round(margin_top + margin_bottom + 2 * frame_w + body_h))
    x_left, y_top = margin_side, margin_top
    top = y_top + frame_w + inner_pad
    layout = _Layout(pitch, cell_h, rows, width, height,
                     (x_left, y_top, x_left + 2 * frame_w + body_w, y_top + 2 * frame_w + body_h), frame_w, line,
                     spread, top, top + rows * cell_h)
    # Right to left: right half-leaf, band, left half-leaf (a single half-leaf keeps half a band at its left).
    x = x_left + frame_w + body_w
    halves = 2 if spread else 1
    for half in range(halves):
        for _ in range(ncols):
            layout.columns.append((x - pitch, x))
            x -= pitch
        if half == 0:
            width_here = band_w if spread else band_w / 2
            layout.bands.append((x - width_here, x))
            x -= width_here
    return layout


def _draw_furniture(canvas: _Canvas, layout: _Layout, rng: np.random.Generator) -> None:
    """Frame (sometimes doubled, 文武邊), column rules, fold band with its 象鼻 bars and 魚尾 marks."""
    x1, y1, x2, y2 = layout.frame
    frame_w = layout.frame_w
    double = [(-(frame_w * 0.8 + layout.line), layout.line)] if rng.random() < 0.4 else []  # thin outer line
    for inset, thickness in [(0.0, frame_w)] + double:
        canvas.rect(x1 + inset, y1 + inset, x2 - inset, y1 + inset + thickness)
        canvas.rect(x1 + inset, y2 - inset - thickness, x2 - inset, y2 - inset)
        canvas.rect(x1 + inset, y1 + inset, x1 + inset + thickness, y2 - inset)
        canvas.rect(x2 - inset - thickness, y1 + inset, x2 - inset, y2 - inset)
    edges = sorted({round(x, 1) for pair in layout.columns + layout.bands for x in pair})
    for x in edges[1:-1]:
        canvas.rect(x - layout.line / 2, y1, x + layout.line / 2, y2)
    for bx1, bx2 in layout.bands:
        mid, half = (bx1 + bx2) / 2, (bx2 - bx1) / 2
        if rng.random() < 0.6:  # 象鼻: a black (or thin) bar from the frame to the fish-tail
            bar = half * rng.uniform(0.15, 0.5)
            canvas.rect(mid - bar, y1, mid + bar, y1 + layout.pitch * rng.uniform(0.8, 2.0))
        for y in (y1 + (y2 - y1) * rng.uniform(0.12, 0.3), y1 + (y2 - y1) * rng.uniform(0.7, 0.85)):
            tail_h = layout.pitch * rng.uniform(0.3, 0.5)  # 魚尾: a block with a notch at its foot
            canvas.rect(bx1 + layout.line, y, bx2 - layout.line, y + tail_h)
            notch = max(1.0, half * 0.35)
            canvas.ink[round(y + tail_h * 0.5):round(y + tail_h), round(mid - notch):round(mid + notch)] = 0.0


def _column_items(rng: np.random.Generator, cfg: PageConfig, rows: int) -> list[tuple[str, int]]:
    """What fills one column, top to bottom: ("gap", cells), ("main", 1) or ("note", small rows)."""
    if rng.random() < cfg.empty_column_prob:
        return []
    items: list[tuple[str, int]] = []
    used = 0.0
    if rng.random() < cfg.indent_prob:
        skip = int(rng.integers(1, 3))
        items.append(("gap", skip))
        used += skip
    limit = rows if rng.random() >= cfg.short_column_prob else int(rng.integers(1, rows))
    note_at = int(rng.integers(0, rows)) if rng.random() < cfg.note_prob else -1
    while used < limit:
        if note_at >= 0 and used >= note_at:
            note_rows = int(rng.integers(2, 9))
            items.append(("note", note_rows))
            used += note_rows * 0.5
            note_at = -1
        else:
            items.append(("main", 1))
            used += 1
    return items


def _draw_text(canvas: _Canvas, layout: _Layout, font: PageFont, rng: np.random.Generator, cfg: PageConfig
               ) -> tuple[list[CharBox], list[dict]]:
    """Main characters and double-line notes, column by column; boxes in reading order."""
    height, width = canvas.ink.shape
    glyph_share = rng.uniform(0.7, 0.85)  # main glyph size / pitch, one value per page (one carver)
    note_share = rng.uniform(0.36, 0.42)
    jitter = layout.pitch * 0.03
    chars: list[CharBox] = []
    columns: list[dict] = []
    for number, (cx1, cx2) in enumerate(layout.columns):
        centre, indices = (cx1 + cx2) / 2, []
        y = layout.top
        text = iter(font.sample(rng, 4 * layout.rows + 8))

        def put(cx: float, cy: float, size: int, kind: str, wobble: float = 1.0) -> None:
            for char in text:  # skip the rare character the face cannot draw after all
                ink_box = _draw_glyph(canvas.ink, char, font.face, size, cx + rng.uniform(-1, 1) * jitter * wobble,
                                      cy + rng.uniform(-1, 1) * jitter * wobble)
                if ink_box is not None:
                    indices.append(len(chars))
                    chars.append(CharBox(_label_box(ink_box, size, width, height), char, number, kind))
                    return

        for kind, count in _column_items(rng, cfg, layout.rows):
            if kind == "gap":
                y += count * layout.cell_h
            elif kind == "main":
                if y + layout.cell_h > layout.bottom + 1e-6:  # no room left after a note run
                    break
                size = round(layout.pitch * glyph_share * rng.uniform(0.9, 1.0))
                put(centre, y + layout.cell_h / 2, size, "main")
                y += layout.cell_h
            else:
                small_h = layout.cell_h * 0.5
                count = min(count, int((layout.bottom - y + 1e-6) // small_h))
                n_chars = 2 * count - int(rng.random() < 0.3)  # the left sub-column may end one short
                offset = layout.pitch * 0.23
                for k in range(n_chars):  # right sub-column first, then the left one
                    sub, row = divmod(k, count)
                    size = round(layout.pitch * note_share * rng.uniform(0.9, 1.0))
                    put(centre + (offset if sub == 0 else -offset), y + (row + 0.5) * small_h, size, "note", 0.5)
                y += count * small_h
        columns.append({"box": [round(cx1), round(layout.top - layout.pitch * 0.15), round(cx2),
                                round(layout.bottom + layout.pitch * 0.15)], "chars": indices})
    return chars, columns


def _seal(rng: np.random.Generator, font: PageFont, side: int) -> tuple[np.ndarray, np.ndarray]:
    """A square seal: (coverage in [0, 1], RGB colour) of 2x2 characters, red-on-paper or white-on-red."""
    cover = np.zeros((side, side), np.float32)
    border = max(2, side // 16)
    cover[:border], cover[-border:], cover[:, :border], cover[:, -border:] = 1, 1, 1, 1
    chars = font.sample(rng, 4)
    cell = (side - 2 * border) / 2
    glyphs = np.zeros_like(cover)
    for k, char in enumerate(chars):
        try:
            mask = _glyph(char, font.face, max(4, int(cell * 0.85))).astype(np.float32) / 255
        except GlyphMissingError:
            continue
        col, row = divmod(k, 2)
        x0 = int(border + (1 - col) * cell + (cell - mask.shape[1]) / 2)
        y0 = int(border + row * cell + (cell - mask.shape[0]) / 2)
        glyphs[y0:y0 + mask.shape[0], x0:x0 + mask.shape[1]] = mask
    if rng.random() < 0.5:  # 白文: the characters are cut out of a red square
        cover = np.clip(1.0 - glyphs, 0, 1)
        cover[:border], cover[-border:], cover[:, :border], cover[:, -border:] = 1, 1, 1, 1
    else:
        cover = np.maximum(cover, glyphs)
    cover *= np.clip(0.75 + 0.35 * lowfreq_noise(rng, cover.shape, sigma=side / 6), 0, 1)  # uneven stamping
    colour = np.array([rng.uniform(170, 225), rng.uniform(30, 80), rng.uniform(30, 70)], np.float32)
    return cover, colour


def _distractors(rng: np.random.Generator, layout: _Layout, fonts: Sequence[PageFont], font: PageFont,
                 cfg: PageConfig, height: int, width: int
                 ) -> tuple[list[dict], list[tuple[int, int, np.ndarray, np.ndarray]], np.ndarray]:
    """Seals (placed anywhere, often over text) and margin notes above the frame: unlabelled.

    Returns their records, the seal stamps (x, y, coverage, colour) and the margin-note ink layer.
    """
    records: list[dict] = []
    seals = []
    for _ in range(int(rng.random() < cfg.seal_prob) + int(rng.random() < cfg.seal_prob * 0.3)):
        side = int(layout.pitch * rng.uniform(1.3, 3.0))
        if side >= min(height, width):
            continue
        x, y = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
        cover, colour = _seal(rng, font, side)
        seals.append((x, y, cover, colour))
        records.append({"kind": "seal", "box": [x, y, x + side, y + side]})
    notes = np.zeros((height, width), np.float32)
    if rng.random() < cfg.margin_note_prob:
        hand = fonts[int(rng.integers(len(fonts)))]
        frame_top = layout.frame[1]
        size = int(layout.pitch * rng.uniform(0.3, 0.5))
        per_column = int((frame_top - layout.pitch * 0.3) // (size * 1.1))
        x = layout.frame[2] - layout.pitch * rng.uniform(0.3, 3.0)
        for _ in range(int(rng.integers(1, 5)) if per_column >= 1 else 0):
            n = int(rng.integers(1, per_column + 1))
            y = frame_top - layout.pitch * 0.2 - n * size * 1.1
            drawn = []
            for k, char in enumerate(hand.sample(rng, n)):
                box = _draw_glyph(notes, char, hand.face, size, x, y + (k + 0.5) * size * 1.1)
                if box:
                    drawn.append(box)
            if drawn:
                records.append({"kind": "margin_note", "box": [min(b[0] for b in drawn), min(b[1] for b in drawn),
                                                               max(b[2] for b in drawn), max(b[3] for b in drawn)]})
            x -= size * rng.uniform(1.2, 2.5)
            if x < size:
                break
    return records, seals, notes


def _degrade(ink: np.ndarray, notes: np.ndarray, seals: list, rng: np.random.Generator, strength: float,
             pitch: float) -> np.ndarray:
    """Printed ink -> RGB page: stroke weight, uneven ink and breaks, bleed-through, paper, stains,
    seals and margin notes, blur, noise, JPEG (all amplitudes scale with `strength`; 0 = clean)."""
    s = strength
    px = pitch / 40.0  # amplitudes are set for a 40 px column pitch
    shape = ink.shape
    clean_back = np.fliplr(ink)  # the text printed on the other side of the sheet, seen through it
    ink = stroke_weight(ink, rng.uniform(-0.3, 1.0) * 0.8 * s * px)  # never thinner than 1 px
    if s > 0:
        spread = ndimage.gaussian_filter(ink, sigma=max(0.3, 0.5 * s * px))
        level = 0.45 + 0.12 * s * lowfreq_noise(rng, shape, sigma=pitch * 3)
        ink = 1.0 / (1.0 + np.exp(-(spread - level) / (0.05 + 0.03 * rng.random())))
        breaks = lowfreq_noise(rng, shape, sigma=pitch / 12) > 1.0 - 0.12 * s
        ink = ink * np.where(breaks, rng.uniform(0.0, 0.5), 1.0).astype(np.float32)
    paper_level = rng.choice([rng.uniform(205, 245), rng.uniform(160, 205)], p=[0.75, 0.25])
    ink_level = rng.uniform(10, 60)
    paper = paper_level + 14 * s * lowfreq_noise(rng, shape, sigma=pitch * 2)
    paper += 5 * s * rng.standard_normal(shape).astype(np.float32) * (rng.random(shape) < 0.05)  # fibres
    stain = np.zeros(shape, np.float32)
    for _ in range(int(rng.poisson(1.2 * s))):
        stain += np.clip(lowfreq_noise(rng, shape, sigma=pitch * rng.uniform(2, 6)) - rng.uniform(0.2, 0.6), 0, 1)
    if s > 0 and rng.random() < 0.6:
        back = ndimage.gaussian_filter(np.roll(clean_back, int(rng.integers(-8, 9)), axis=1), sigma=1.5 + s)
        paper -= rng.uniform(0.05, 0.2) * s * (paper_level - ink_level) * back
    ink_tone = ink_level + 25 * s * lowfreq_noise(rng, shape, sigma=pitch)
    grey = paper * (1 - ink) + ink_tone * ink
    tint = np.array([1.0, rng.uniform(0.92, 0.99), rng.uniform(0.78, 0.93)], np.float32)
    img = grey[..., None] * tint
    img -= (stain * rng.uniform(25, 70) * s)[..., None] * np.array([0.8, 1.0, 1.25], np.float32)  # brown
    if notes.any():  # hand-written notes in thinner, lighter or vermilion ink
        colour = (np.array([rng.uniform(80, 140)] * 3, np.float32) if rng.random() < 0.6
                  else np.array([rng.uniform(170, 210), rng.uniform(60, 100), rng.uniform(40, 80)], np.float32))
        alpha = (notes * rng.uniform(0.6, 0.9))[..., None]
        img = img * (1 - alpha) + colour * alpha
    for x, y, cover, colour in seals:
        alpha = (cover * rng.uniform(0.65, 0.95))[..., None]
        region = img[y:y + cover.shape[0], x:x + cover.shape[1]]
        region *= 1 - alpha * (1 - colour / 255.0)  # ink under the seal still shows (multiply)
    blur = rng.uniform(0.0, 1.2) * s * px
    if blur > 0.2:
        img = ndimage.gaussian_filter(img, sigma=(blur, blur, 0))
    if s > 0:
        img += rng.standard_normal(img.shape).astype(np.float32) * 8 * s * rng.uniform(0.3, 1.0)
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    if s > 0:  # scans are stored as JPEG
        out = jpeg_roundtrip(out, int(rng.integers(40, 95)))
    return np.asarray(out)


def render_page(seed: int | Sequence[int], fonts: Sequence[PageFont], config: PageConfig = PageConfig(),
                strength: float | None = None) -> Page:
    """One synthetic page; deterministic for `seed` (an int or a sequence such as (seed, index)).

    `strength` fixes the degradation strength (0 = clean ink on flat paper); by default it is drawn
    from config.strength.
    """
    rng = np.random.default_rng(seed)
    font = fonts[int(rng.integers(len(fonts)))]
    layout = _plan_layout(rng, config)
    canvas = _Canvas(layout.height, layout.width)
    _draw_furniture(canvas, layout, rng)
    chars, columns = _draw_text(canvas, layout, font, rng, config)
    distractors, seals, notes = _distractors(rng, layout, fonts, font, config, layout.height, layout.width)
    s = float(rng.uniform(*config.strength)) if strength is None else float(strength)
    image = _degrade(canvas.ink, notes, seals, rng, s, layout.pitch)
    columns = [c for c in columns if c["chars"]]
    return Page(image, chars, columns, canvas.furniture, distractors, font.face, s,
                meta={"pitch": round(layout.pitch, 2), "spread": layout.spread})


# --- datasets ----------------------------------------------------------------------------------


def yolo_lines(boxes: Sequence[Sequence[float]], width: int, height: int) -> list[str]:
    """YOLO label lines `0 cx cy w h` (normalised) for pixel boxes (x1, y1, x2, y2)."""
    return [f"0 {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} {(x2 - x1) / width:.6f} "
            f"{(y2 - y1) / height:.6f}" for x1, y1, x2, y2 in (b[:4] for b in boxes)]


def tile_origins(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of `tile` px covering `length` px with at least `overlap` px shared."""
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def tile_boxes(boxes: np.ndarray, x0: int, y0: int, tile: int, keep: float = TILE_KEEP_SHARE) -> np.ndarray:
    """Boxes (N, 4) seen in the tile at (x0, y0): clipped, in tile coordinates, kept when >= `keep` inside."""
    if len(boxes) == 0:
        return np.zeros((0, 4), np.float32)
    clipped = np.clip(boxes - [x0, y0, x0, y0], 0, tile)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    inside = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    return clipped[inside >= keep * np.maximum(area, 1)]


def _save_jpeg(array: np.ndarray, path: Path, quality: int = 95) -> None:
    Image.fromarray(array).save(path, format="JPEG", quality=quality)


@dataclass(frozen=True)
class _PageTask:
    index: int
    seed: int
    split: str
    out: str
    config: PageConfig
    tile: int
    overlap: int


_worker_fonts: tuple[PageFont, ...] = ()  # set once per rendering process (fonts are large to send per task)


def _set_worker_fonts(fonts: tuple[PageFont, ...]) -> None:
    global _worker_fonts
    _worker_fonts = fonts


def _make_page(task: _PageTask) -> dict:
    """Render one page and write its image, truth, YOLO images/labels and column patches."""
    out = Path(task.out)
    page = render_page((task.seed, task.index), _worker_fonts, task.config)
    name = f"page_{task.index:05d}"
    page_jpeg = out / "pages" / task.split / f"{name}.jpg"
    _save_jpeg(page.image, page_jpeg)
    truth = page.truth()
    (out / "pages" / task.split / f"{name}.json").write_text(json.dumps(truth, ensure_ascii=False), encoding="utf-8")
    boxes = np.array([c.box for c in page.chars], np.float64).reshape(-1, 4)
    height, width = page.image.shape[:2]
    images, labels = out / "images" / task.split, out / "labels" / task.split
    if task.tile:
        for ty in tile_origins(height, task.tile, task.overlap):
            for tx in tile_origins(width, task.tile, task.overlap):
                crop = page.image[ty:ty + task.tile, tx:tx + task.tile]
                stem = f"{name}_{ty:04d}_{tx:04d}"
                _save_jpeg(crop, images / f"{stem}.jpg")
                kept = tile_boxes(boxes, tx, ty, task.tile)
                (labels / f"{stem}.txt").write_text("\n".join(yolo_lines(kept, crop.shape[1], crop.shape[0])) + "\n")
    else:  # the YOLO image is the page itself
        shutil.copyfile(page_jpeg, images / f"{name}.jpg")
        (labels / f"{name}.txt").write_text("\n".join(yolo_lines(boxes, width, height)) + "\n")
    patch_rows = []
    for number, column in enumerate(page.columns):
        x1, y1, x2, y2 = column["box"]
        x1, y1, x2, y2 = max(0, x1), max(0, y1), min(width, x2), min(height, y2)
        rel = Path("patches") / f"{name}_c{number:02d}.jpg"
        _save_jpeg(page.image[y1:y2, x1:x2], out / rel)
        members = [page.chars[i] for i in column["chars"]]
        patch_rows.append({"path": rel.as_posix(), "text": "".join(c.char for c in members), "split": task.split,
                           "boxes": [[b.box[0] - x1, b.box[1] - y1, b.box[2] - x1, b.box[3] - y1] for b in members]})
    return {"chars": len(page.chars), "patches": patch_rows, "face": page.face.label}


def generate_pages(out: str | Path, n: int, seed: int = 0, faces: Sequence[FontFace] | None = None,
                   size: int = 320, overlap: int = 80, val_share: float = 0.1, charset: str = "nomnaocr_freq",
                   config: PageConfig = PageConfig(), workers: int = 1) -> dict:
    """Write `n` pages as a YOLO dataset under `out`; returns (and saves as summary.json) a summary.

    Layout: data.yaml; images/{train,val} and labels/{train,val} (tiles of `size` px overlapping by
    `overlap` px, or whole pages when size is 0); pages/{train,val}/page_NNNNN.{jpg,json} (whole pages
    and their ground truth); patches/*.jpg with patches.txt (`path<TAB>text`, NomNaOCR style) and
    patches.jsonl (the same with the characters' boxes in patch coordinates). The last
    ceil(n * val_share) pages form the validation split.
    """
    if n < 1:
        raise DatagenError(f"number of pages must be at least 1, got {n}")
    if size and size <= overlap:
        raise DatagenError(f"tile size {size} must be larger than the overlap {overlap}")
    out = Path(out)
    fonts = tuple(page_fonts(faces, charset))
    n_val = min(n, math.ceil(n * val_share)) if val_share > 0 else 0
    for sub in ("images", "labels", "pages"):
        for split in ("train", "val"):
            (out / sub / split).mkdir(parents=True, exist_ok=True)
    (out / "patches").mkdir(exist_ok=True)
    tasks = [_PageTask(i, seed, "val" if i >= n - n_val else "train", str(out), config, size, overlap)
             for i in range(n)]
    start = time.perf_counter()
    if workers <= 1:
        _set_worker_fonts(fonts)
        results = [_make_page(t) for t in tasks]
    else:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_set_worker_fonts, initargs=(fonts,)) as pool:
            results = list(pool.map(_make_page, tasks, chunksize=4))
    seconds = time.perf_counter() - start
    patches = [row for r in results for row in r["patches"]]
    (out / "patches.txt").write_text("".join(f"{p['path']}\t{p['text']}\n" for p in patches), encoding="utf-8")
    (out / "patches.jsonl").write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in patches),
                                       encoding="utf-8")
    data_yaml = out / "data.yaml"
    data_yaml.write_text(f"path: {out.resolve()}\ntrain: images/train\nval: images/{'val' if n_val else 'train'}\n"
                         "names:\n" + "".join(f"  {k}: {v}\n" for k, v in CLASS_NAMES.items()), encoding="utf-8")
    summary = {"pages": n, "val_pages": n_val, "seed": seed, "tile": size, "overlap": overlap,
               "characters": sum(r["chars"] for r in results), "patches": len(patches),
               "yolo_images": sum(1 for _ in (out / "images").rglob("*.jpg")),
               "faces": sorted({f.face.label for f in fonts}), "charset": charset, "config": asdict(config),
               "seconds": round(seconds, 2), "pages_per_s": round(n / seconds, 3), "workers": workers}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return summary

