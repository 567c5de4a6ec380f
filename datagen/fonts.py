"""Font faces: discovery on the system, loading, and real coverage of character sets."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from fontTools.ttLib import TTCollection, TTFont, TTLibError
from PIL import ImageFont

from .errors import DatagenError, FontError
from .parallel import imap_progress


@dataclass(frozen=True, order=True)
class FontFace:
    """One face of a font file (a .ttc collection holds several, told apart by `index`)."""

    path: Path
    index: int = 0
    name: str = ""

    @property
    def label(self) -> str:
        """Short human name: the face name, or the file stem with its index."""
        return self.name or (self.path.stem if self.index == 0 else f"{self.path.stem}#{self.index}")


@lru_cache(maxsize=256)
def load_pil_font(path: str, index: int, size: int) -> ImageFont.FreeTypeFont:
    """Open a face with FreeType at a pixel size (cached: opening a 20 MB CJK font is slow)."""
    try:
        return ImageFont.truetype(path, size=size, index=index)
    except OSError as exc:
        raise FontError(f"cannot open font {path} (face {index}): {exc}") from exc


# fontTools logs a warning per damaged name table it reads (TW-Sung-Ext-B has one): harmless noise here.
logging.getLogger("fontTools").setLevel(logging.ERROR)

FONT_SUFFIXES = (".ttf", ".otf", ".ttc", ".otc")
# What fontTools and FreeType raise on a damaged or truncated font file.
FONT_READ_ERRORS = (OSError, TTLibError, KeyError, IndexError, ValueError, AssertionError, struct.error)
SYSTEM_FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.fonts", "~/.local/share/fonts")


def _face_name(font: TTFont) -> str:
    """'Family Style' from the name table (typographic names 16/17 first, then 1/2)."""
    names = font["name"]
    family = names.getDebugName(16) or names.getDebugName(1) or ""
    style = names.getDebugName(17) or names.getDebugName(2) or ""
    return " ".join(part for part in (family.strip(), style.strip()) if part)


def faces_in_file(path: str | Path) -> list[FontFace]:
    """Every face of a font file (one per face of a .ttc/.otc collection), named from its name table."""
    path = Path(path).expanduser().resolve()
    try:
        with path.open("rb") as handle:
            is_collection = handle.read(4) == b"ttcf"
        count = len(TTCollection(str(path), lazy=True).fonts) if is_collection else 1
        faces = []
        for index in range(count):
            with TTFont(str(path), fontNumber=index, lazy=True) as font:
                faces.append(FontFace(path, index, _face_name(font)))
        return faces
    except FONT_READ_ERRORS as exc:
        raise FontError(f"cannot read font {path}: {exc}") from exc


def _font_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in FONT_SUFFIXES and p.is_file())


def discover_fonts(extra: Sequence[str | Path] = (), system: bool = True) -> list[FontFace]:
    """Font faces in the system font folders (if `system`) and in `extra` files or folders.

    Unreadable files in the system folders are skipped with a warning; an unreadable `extra` file
    raises FontError. Symlinked duplicates count once. Sorted by (path, index).
    """
    files: dict[Path, bool] = {}  # resolved path -> the user named it (errors are then fatal)
    if system:
        for folder in SYSTEM_FONT_DIRS:
            folder_path = Path(folder).expanduser()
            if folder_path.is_dir():
                files.update((p.resolve(), False) for p in _font_files(folder_path))
    for item in extra:
        item_path = Path(item).expanduser()
        if item_path.is_dir():
            found = _font_files(item_path)
            if not found:
                raise FontError(f"no font files (.ttf .otf .ttc .otc) in folder {item_path}")
            files.update((p.resolve(), True) for p in found)
        elif item_path.is_file():
            files[item_path.resolve()] = True
        else:
            raise FontError(f"font file or folder not found: {item_path}")
    faces: set[FontFace] = set()
    for path, named in files.items():
        try:
            faces.update(faces_in_file(path))
        except FontError as exc:
            if named:
                raise
            warnings.warn(f"skipping {exc}", stacklevel=2)
    return sorted(faces)


def resolve_fonts(specs: Sequence[str | Path], available: Sequence[FontFace] | None = None) -> list[FontFace]:
    """Faces named by specs: a font file or folder path, or a case-insensitive part of a face name or
    file stem (matched against `available`, by default every installed face). Order: by spec, then
    (path, index); a face named twice is kept once. FontError names a spec that matches nothing.
    """
    chosen: dict[FontFace, None] = {}
    for spec in specs:
        path = Path(spec).expanduser()
        if path.exists():
            matches = discover_fonts(extra=[path], system=False)
        else:
            if available is None:
                available = discover_fonts()
            needle = str(spec).strip().casefold()
            if not needle:
                raise FontError("empty font name")
            matches = [f for f in available if needle in f.name.casefold() or needle in f.path.stem.casefold()]
            if not matches:
                raise FontError(f"no font face matches {str(spec)!r} (neither a file nor part of a face name "
                                f"among {len(available)} faces; list them with `sinonom datagen fonts`)")
        chosen.update(dict.fromkeys(matches))
    return list(chosen)


# Region and width variants of one design (Noto CJK JP/KR/SC/TC/HK, AR PL CN/HK/TW, "Mono" twins) draw
# nearly every ideograph identically: as separate faces they would be indistinguishable "distractors".
_VARIANT_TOKENS = ("TC", "HK", "TW", "JP", "KR", "SC", "CN", "MBE", "Mono", "Sharp")


def design_key(face: FontFace) -> str:
    """The face name without region / width variant tokens: faces with one key share glyph designs."""
    return " ".join(w for w in face.label.split() if w not in _VARIANT_TOKENS)


def distinct_faces(faces: Sequence[FontFace]) -> list[FontFace]:
    """One face per design (see `design_key`), preferring traditional-form variants (TC, HK, TW)."""
    def preference(face: FontFace) -> tuple[int, FontFace]:
        words = face.label.split()
        rank = next((i for i, token in enumerate(_VARIANT_TOKENS) if token in words), -1)
        return rank, face

    chosen: dict[str, FontFace] = {}
    for face in sorted(faces, key=preference):
        chosen.setdefault(design_key(face), face)
    return sorted(chosen.values())


def split_by_name(faces: Sequence[FontFace], name_parts: Sequence[str]) -> tuple[list[FontFace], list[FontFace]]:
    """(faces whose label contains none of `name_parts`, faces whose label contains one), ignoring case:
    how faces are held out of training and testing."""
    needles = [part.casefold() for part in name_parts]
    named = [f for f in faces if any(n in f.label.casefold() for n in needles)]
    return [f for f in faces if f not in named], named


def choose_faces(fonts: Sequence[str] = (), exclude: Sequence[str] = ()) -> list[FontFace]:
    """The faces a generator command uses: `fonts` (names or paths; default every installed design)
    less those whose label contains a part of `exclude`; DatagenError when none is left."""
    faces, _ = split_by_name(resolve_fonts(fonts) if fonts else default_faces(), exclude)
    if not faces:
        raise DatagenError("no font faces left after --exclude-fonts")
    return faces


def default_faces() -> list[FontFace]:
    """The faces generators use when none are named: every distinct installed design (the font folders
    are scanned once per process; scanning and reading every name table takes ~0.1 s)."""
    return list(_installed_designs())


@lru_cache(maxsize=1)
def _installed_designs() -> tuple[FontFace, ...]:
    return tuple(distinct_faces(discover_fonts()))


def _read_cmap(face: FontFace) -> tuple[dict[int, str], str]:
    """The face's best cmap (code point -> glyph name) and the name of its glyph 0 (.notdef)."""
    try:
        with TTFont(str(face.path), fontNumber=face.index, lazy=True) as font:
            return font.getBestCmap() or {}, font.getGlyphOrder()[0]
    except FONT_READ_ERRORS as exc:
        raise FontError(f"cannot read font {face.path} (face {face.index}): {exc}") from exc


@lru_cache(maxsize=64)
def face_cmap(face: FontFace) -> frozenset[int]:
    """Code points in the face's best cmap that map to a real glyph (not glyph 0)."""
    cmap, notdef = _read_cmap(face)
    return frozenset(code for code, glyph in cmap.items() if glyph != notdef)


# --- real coverage -----------------------------------------------------------------------------

COVERAGE_VERSION = 1  # bump when the rules below change: cached results are then recomputed
PROBE_PX = 32  # render size of the ink and placeholder checks
PLACEHOLDER_SHARE = 3  # a glyph (or bitmap) standing for this many unified ideographs is a "missing" box


def _is_unified_ideograph(code: int) -> bool:
    """CJK unified ideographs (URO and extensions), which never share a glyph legitimately."""
    return 0x3400 <= code <= 0x4DBF or 0x4E00 <= code <= 0x9FFF or (
        0x20000 <= code <= 0x3FFFF and not 0x2F800 <= code <= 0x2FA1F
    )


def _measure_coverage(face: FontFace, chars: Sequence[str]) -> frozenset[str]:
    """The chars `face` really draws (no cache): in cmap, not glyph 0, with ink, not a placeholder.

    Placeholders: a glyph mapped from PLACEHOLDER_SHARE or more unified ideographs in the whole cmap,
    a bitmap that many requested unified ideographs render to, or the bitmap of .notdef.
    """
    cmap, notdef = _read_cmap(face)
    try:
        pil_font = ImageFont.truetype(str(face.path), PROBE_PX, index=face.index,
                                      layout_engine=ImageFont.Layout.BASIC)
    except FONT_READ_ERRORS as exc:
        raise FontError(f"cannot read font {face.path} (face {face.index}): {exc}") from exc

    ideographs_per_glyph = Counter(g for code, g in cmap.items() if _is_unified_ideograph(code))
    shared_glyphs = {g for g, n in ideographs_per_glyph.items() if n >= PLACEHOLDER_SHARE}

    def bitmap(char: str) -> tuple | None:
        mask = pil_font.getmask(char)
        return (mask.size, bytes(mask)) if mask.getbbox() else None

    bitmaps: dict[str, tuple] = {}
    for char in dict.fromkeys(chars):
        glyph = cmap.get(ord(char))
        if glyph is None or glyph == notdef or glyph in shared_glyphs:
            continue
        drawn = bitmap(char)
        if drawn is not None:
            bitmaps[char] = drawn
    absent = next(chr(c) for c in range(0x10FFFD, 0, -1) if c not in cmap)  # renders glyph 0
    placeholder_bitmaps = {bitmap(absent)} | {
        b for b, n in Counter(b for c, b in bitmaps.items() if _is_unified_ideograph(ord(c))).items()
        if n >= PLACEHOLDER_SHARE
    }
    return frozenset(c for c, b in bitmaps.items() if b not in placeholder_bitmaps)


def default_cache_dir() -> Path:
    """$SINONOM_CACHE, else ~/.cache/sinonom."""
    return Path(os.environ.get("SINONOM_CACHE") or Path.home() / ".cache" / "sinonom")


def _cache_file(face: FontFace, chars: Sequence[str], cache_dir: Path) -> tuple[Path, dict]:
    """Where a face's coverage of `chars` is cached, and the key that must match inside."""
    stat = face.path.stat()
    key = {
        "version": COVERAGE_VERSION,
        "path": str(face.path.resolve()),
        "index": face.index,
        "mtime_ns": stat.st_mtime_ns,
        "size": stat.st_size,
        "charset_sha1": hashlib.sha1("".join(chars).encode("utf-8")).hexdigest(),
    }
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    return cache_dir / "coverage" / f"{face.path.stem}-{face.index}-{digest}.json", key


def _cached_coverage(face: FontFace, chars: list[str], cache_dir: Path) -> frozenset[str] | None:
    """The cached coverage of `chars` by `face`, or None when there is no valid entry."""
    cache_path, key = _cache_file(face, chars, cache_dir)
    try:
        cached = json.loads(cache_path.read_text(encoding="utf-8"))
        return frozenset(cached["covered"]) if cached.get("key") == key else None
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no entry yet, or an unreadable one: measure again


def _measure_and_cache(face: FontFace, chars: list[str], cache_dir: Path) -> frozenset[str]:
    covered = _measure_coverage(face, chars)
    cache_path, key = _cache_file(face, chars, cache_dir)
    try:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "face": face.label, "count": len(covered),
                                   "covered": "".join(c for c in chars if c in covered)},
                                  ensure_ascii=False), encoding="utf-8")
        tmp.replace(cache_path)  # atomic: concurrent writers never leave half a file
    except OSError as exc:
        warnings.warn(f"cannot write font coverage cache {cache_path}: {exc}", stacklevel=2)
    return covered


def _check_file(face: FontFace) -> None:
    if not face.path.is_file():
        raise FontError(f"font file not found: {face.path}")


def face_coverage(face: FontFace, chars: Sequence[str], cache_dir: str | Path | None = None,
                  use_cache: bool = True) -> frozenset[str]:
    """The characters of `chars` that `face` really draws (see _measure_coverage for the rules).

    Results are cached as JSON per face and character list under `cache_dir` (default
    default_cache_dir()), keyed by the font file's path, face index, mtime and size and the list's hash.
    """
    if not use_cache:
        _check_file(face)
        return _measure_coverage(face, list(dict.fromkeys(chars)))
    return faces_coverage([face], chars, cache_dir, workers=1)[face]


def _measure_job(job: tuple[FontFace, list[str], Path]) -> frozenset[str]:
    return _measure_and_cache(*job)


def faces_coverage(faces: Sequence[FontFace], chars: Sequence[str], cache_dir: str | Path | None = None,
                   workers: int | None = None) -> dict[FontFace, frozenset[str]]:
    """face_coverage for many faces; the uncached ones are measured in `workers` processes (default: up to 2)."""
    chars = list(dict.fromkeys(chars))
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    coverage: dict[FontFace, frozenset[str] | None] = {}
    for face in faces:
        _check_file(face)
        coverage[face] = _cached_coverage(face, chars, folder)
    todo = [face for face, covered in coverage.items() if covered is None]
    workers = min(workers or min(2, os.cpu_count() or 1), len(todo))
    jobs = [(face, chars, folder) for face in todo]
    coverage.update(zip(todo, imap_progress(_measure_job, jobs, workers, progress=False, chunksize=1)))
    return coverage


def covering_faces(char: str, faces: Sequence[FontFace], within: Sequence[str] | None = None,
                   cache_dir: str | Path | None = None) -> list[FontFace]:
    """The faces that really draw `char`. Pass the whole character list being generated as `within`
    so each face's coverage is measured once and cached; without it only `char` is checked (uncached).
    """
    if within is None:
        return [face for face in faces if char in face_coverage(face, [char], use_cache=False)]
    if char not in within:
        raise DatagenError(f"{char!r} (U+{ord(char):04X}) is not in the character list given as `within`")
    return [face for face in faces if char in face_coverage(face, within, cache_dir)]


def coverage_table(faces: Sequence[FontFace], chars: Sequence[str], cache_dir: str | Path | None = None,
                   workers: int | None = None) -> list[dict]:
    """One row per face (face, path, index, covered, total, share), most covered first."""
    chars = list(dict.fromkeys(chars))
    coverage = faces_coverage(faces, chars, cache_dir, workers)
    rows = [{"face": face.label, "path": str(face.path), "index": face.index, "covered": len(covered),
             "total": len(chars), "share": round(len(covered) / len(chars), 4) if chars else 0.0}
            for face, covered in coverage.items()]
    return sorted(rows, key=lambda r: (-r["covered"], r["face"], r["path"], r["index"]))


def format_coverage_table(rows: Sequence[dict]) -> str:
    """The coverage rows as an aligned text table."""
    width = max([len("face"), *(len(r["face"]) for r in rows)])
    lines = [f"{'face':<{width}}  {'covered':>7}  {'share':>6}  file"]
    for r in rows:
        file = r["path"] if r["index"] == 0 else f"{r['path']}#{r['index']}"
        lines.append(f"{r['face']:<{width}}  {r['covered']:>7}  {r['share']:>6.1%}  {file}")
    return "\n".join(lines)
