"""A picture of retrieval results: one row per query, its top-k answers framed by correctness."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from datagen.errors import ImageReadError
from datagen.files import open_image

from .metrics import EvalError

ImageLike = Image.Image | str | Path | np.ndarray

BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)
QUERY_FRAME = (40, 90, 200)
FRAMES = {True: (0, 170, 0), False: (210, 0, 0), None: (150, 150, 150)}
CAPTION_LINES = 2


def retrieval_grid(
    queries: Sequence[ImageLike],
    results: Sequence[Sequence[tuple[ImageLike, str, bool | None]]],
    out_path: str | Path,
    tile: int = 128,
) -> Path:
    """Draw each query (blue frame) followed by its results, save to `out_path` and return it.

    Each result is (image, caption, is_correct): the caption (say id and distance; up to two
    lines, cut to the tile width) goes under the tile, and the frame is green when correct,
    red when wrong and grey when unknown (None). Images may be PIL images, paths, or arrays
    (uint8, or floats in [0, 1]). The picture is (1 + longest row) tiles wide and one
    tile-plus-caption cell per query tall.
    """
    if len(queries) != len(results):
        raise EvalError(f"{len(queries)} queries but {len(results)} result rows")
    if not queries:
        raise EvalError("no queries to draw")
    if tile < 16:
        raise EvalError(f"tile must be at least 16 pixels, got {tile}")
    font = ImageFont.load_default(size=max(10, tile // 10))
    line_height = _line_height(font)
    cell_height = tile + CAPTION_LINES * line_height + 4
    columns = 1 + max(len(row) for row in results)
    canvas = Image.new("RGB", (columns * tile, len(queries) * cell_height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    border = max(2, tile // 32)
    for row_number, (query, row) in enumerate(zip(queries, results)):
        top = row_number * cell_height
        cells = [(query, _query_caption(query), QUERY_FRAME)]
        cells += [(image, caption, FRAMES[correct]) for image, caption, correct in row]
        for column, (image, caption, frame) in enumerate(cells):
            left = column * tile
            canvas.paste(_tile_image(image, tile), (left, top))
            draw.rectangle([left, top, left + tile - 1, top + tile - 1], outline=frame, width=border)
            for line_number, line in enumerate(caption.splitlines()[:CAPTION_LINES]):
                draw.text((left + 2, top + tile + 2 + line_number * line_height),
                          _fit(line, font, tile - 4), fill=TEXT, font=font)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out_path)
    return out_path


def _tile_image(image: ImageLike, tile: int) -> Image.Image:
    """The image as RGB, scaled to fit a tile x tile square and centred on white."""
    picture = _open(image).convert("RGB")
    return ImageOps.pad(picture, (tile, tile), color=BACKGROUND)


def _open(image: ImageLike) -> Image.Image:
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, np.ndarray):
        pixels = image if image.dtype == np.uint8 else (np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
        return Image.fromarray(pixels)
    try:
        return open_image(image, "RGB")
    except ImageReadError as exc:
        raise EvalError(f"cannot read image {image}: {exc}") from exc


def _query_caption(query: ImageLike) -> str:
    return f"query {Path(query).name}" if isinstance(query, (str, Path)) else "query"


def _line_height(font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> int:
    _, top, _, bottom = font.getbbox("Ag|")
    return bottom - min(top, 0) + 2


def _fit(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int) -> str:
    """The text, cut with '..' at the end so that it fits `width` pixels."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "..") > width:
        text = text[:-1]
    return text + ".."
