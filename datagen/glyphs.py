"""Glyph masks: a character drawn by a face, centred and fitted in a square raster."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .errors import GlyphMissingError
from .fonts import FontFace, face_cmap, load_pil_font

GLYPH_FILL = 0.84  # a glyph's longer ink side spans this share of its square (templates, prints, crops)


def render_glyph_mask(char: str, face: FontFace, size: int = 128, fill: float = GLYPH_FILL) -> np.ndarray:
    """Ink coverage of `char` in `face` as float32 in [0, 1], shape (size, size).

    The glyph's ink box is scaled (aspect kept) so its longer side spans `fill * size`, and centred:
    prints, meshes and depth views built from it are then aligned by construction.
    Raises GlyphMissingError when the face has no glyph or draws nothing for the character (the cheap
    checks; `fonts.face_coverage` also rejects "missing" boxes and is what generators filter with).
    """
    if len(char) != 1:
        raise ValueError(f"expected one character, got {char!r}")
    if ord(char) not in face_cmap(face):
        raise GlyphMissingError(f"font {face.label} has no glyph for {char!r} (U+{ord(char):04X})")
    render_px = max(64, int(size * fill * 1.5))
    font = load_pil_font(str(face.path), face.index, render_px)
    canvas = Image.new("L", (render_px * 3, render_px * 3), 0)
    ImageDraw.Draw(canvas).text((render_px, render_px), char, fill=255, font=font)
    box = canvas.getbbox()
    if box is None:
        raise GlyphMissingError(f"font {face.label} draws nothing for {char!r} (U+{ord(char):04X})")
    ink = canvas.crop(box)
    scale = fill * size / max(ink.size)
    new_w, new_h = max(1, round(ink.width * scale)), max(1, round(ink.height * scale))
    ink = ink.resize((new_w, new_h), Image.Resampling.LANCZOS)
    out = Image.new("L", (size, size), 0)
    out.paste(ink, ((size - new_w) // 2, (size - new_h) // 2))
    return np.asarray(out, dtype=np.float32) / 255.0
