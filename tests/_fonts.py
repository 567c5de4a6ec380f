"""Tiny TrueType fonts built in the tests, so no test depends on the system's fonts.

Each drawn character is a union of axis-aligned rectangles (font units, 1000 per em). The shapes are
left-right and up-down asymmetric, so a mirrored or flipped render is told apart from the original.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from fontTools.fontBuilder import FontBuilder
from fontTools.pens.ttGlyphPen import TTGlyphPen

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 in font units

UNITS_PER_EM = 1000
ASCENT, DESCENT = 880, -120

# Drawn, empty (glyph without contours) and boxed (one shared "missing" glyph) characters of tiny_font.
TINY_DRAWN = "一丁七万丈三上下\U00020000"
TINY_EMPTY = "不"
TINY_BOXED = "与丐丑专"
TINY_ABSENT = "中丰"  # in no cmap of the tiny fonts

TINY_SHAPES: dict[str, list[Rect]] = {
    "一": [(100, 420, 900, 520), (800, 300, 900, 420)],
    "丁": [(100, 700, 900, 800), (450, 50, 550, 700), (330, 50, 450, 150)],
    "七": [(100, 450, 900, 550), (300, 50, 400, 800), (400, 50, 850, 150)],
    "万": [(100, 700, 900, 800), (250, 50, 350, 700), (350, 400, 800, 500), (700, 50, 800, 400)],
    "丈": [(150, 50, 250, 800), (250, 700, 850, 800), (250, 400, 650, 500)],
    "三": [(200, 700, 700, 780), (250, 420, 650, 500), (100, 100, 900, 200)],
    "上": [(450, 130, 550, 850), (550, 450, 800, 530), (100, 50, 900, 130)],
    "下": [(100, 750, 900, 850), (450, 100, 550, 750), (550, 450, 700, 550)],
    "\U00020000": [(150, 50, 250, 850), (250, 750, 700, 850), (600, 450, 700, 750), (250, 450, 600, 550)],
}


def _bolder_shifted(rects: Sequence[Rect], grow: int = 35, dx: int = 40, dy: int = -30) -> list[Rect]:
    """The same strokes, thicker and moved: a second 'face' of each character."""
    return [(x0 - grow + dx, y0 - grow + dy, x1 + grow + dx, y1 + grow + dy) for x0, y0, x1, y1 in rects]


TINY_ALT_SHAPES: dict[str, list[Rect]] = {c: _bolder_shifted(r) for c, r in TINY_SHAPES.items()}

# .notdef: a hollow box. The shared "missing" glyph: a hollow box with a "?" in it (as BabelStone Han).
_NOTDEF_OUTER: Rect = (100, 0, 900, 800)
_NOTDEF_INNER: Rect = (160, 60, 840, 740)
_QUESTION_MARK: list[Rect] = [
    (380, 560, 620, 620), (560, 420, 620, 560), (470, 380, 560, 440), (470, 260, 530, 380), (470, 140, 530, 200),
]


def _draw_rect(pen: TTGlyphPen, rect: Rect, clockwise: bool = True) -> None:
    """One rectangle contour; TrueType fills clockwise contours and cuts counter-clockwise ones."""
    x0, y0, x1, y1 = rect
    corners = [(x0, y0), (x0, y1), (x1, y1), (x1, y0)]
    if not clockwise:
        corners.reverse()
    pen.moveTo(corners[0])
    for point in corners[1:]:
        pen.lineTo(point)
    pen.closePath()


def _glyph(filled: Iterable[Rect] = (), holes: Iterable[Rect] = ()):
    pen = TTGlyphPen(None)
    for rect in filled:
        _draw_rect(pen, rect)
    for rect in holes:
        _draw_rect(pen, rect, clockwise=False)
    return pen.glyph()


def make_test_font(
    path: str | Path,
    shapes: Mapping[str, Sequence[Rect]],
    empty: Iterable[str] = (),
    boxed: Iterable[str] = (),
    as_notdef: Iterable[str] = (),
    notdef_copies: Iterable[str] = (),
    family: str = "SinoNom Tiny",
    style: str = "Regular",
) -> Path:
    """Write a TrueType font to `path` drawing each char of `shapes` as its union of rectangles.

    `empty` chars map to a glyph without contours; `boxed` chars all map to one shared glyph (a box
    with a "?"); .notdef is a hollow box; `as_notdef` chars map to .notdef itself, `notdef_copies` each
    to a glyph of its own drawn exactly like .notdef; every other character is absent from the cmap.
    """
    path = Path(path)
    glyphs = {".notdef": _glyph([_NOTDEF_OUTER], [_NOTDEF_INNER])}
    cmap: dict[int, str] = {}
    for char, rects in shapes.items():
        name = f"u{ord(char):04X}"
        glyphs[name] = _glyph(rects)
        cmap[ord(char)] = name
    cmap.update({ord(c): ".notdef" for c in as_notdef})
    for char in notdef_copies:
        glyphs[f"notdef.u{ord(char):04X}"] = _glyph([_NOTDEF_OUTER], [_NOTDEF_INNER])
        cmap[ord(char)] = f"notdef.u{ord(char):04X}"
    empty, boxed = list(empty), list(boxed)
    if empty:
        glyphs["empty"] = _glyph()
        cmap.update({ord(c): "empty" for c in empty})
    if boxed:
        glyphs["missing"] = _glyph([_NOTDEF_OUTER, *_QUESTION_MARK], [_NOTDEF_INNER])
        cmap.update({ord(c): "missing" for c in boxed})

    builder = FontBuilder(UNITS_PER_EM, isTTF=True)
    builder.setupGlyphOrder(list(glyphs))
    builder.setupCharacterMap(cmap)
    builder.setupGlyf(glyphs)
    glyf = builder.font["glyf"]
    builder.setupHorizontalMetrics(
        {name: (UNITS_PER_EM, getattr(glyf[name], "xMin", 0)) for name in glyphs}
    )
    builder.setupHorizontalHeader(ascent=ASCENT, descent=DESCENT)
    builder.setupNameTable({
        "familyName": family, "styleName": style, "fullName": f"{family} {style}",
        "psName": f"{family}-{style}".replace(" ", ""),
    })
    builder.setupOS2(sTypoAscender=ASCENT, sTypoDescender=DESCENT, usWinAscent=ASCENT, usWinDescent=-DESCENT)
    builder.setupPost()
    path.parent.mkdir(parents=True, exist_ok=True)
    builder.save(str(path))
    return path
