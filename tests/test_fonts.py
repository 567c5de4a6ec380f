"""Font discovery, resolution and real coverage, on tiny fonts the tests build themselves."""
from __future__ import annotations

import os

import numpy as np
import pytest
from fontTools.ttLib import TTCollection, TTFont

from conftest import TINY_ABSENT, TINY_BOXED, TINY_DRAWN, TINY_EMPTY, TINY_SHAPES, make_test_font
from datagen import fonts
from datagen.errors import DatagenError, FontError, GlyphMissingError
from datagen.fonts import (
    FontFace,
    coverage_table,
    choose_faces,
    covering_faces,
    discover_fonts,
    face_coverage,
    faces_coverage,
    format_coverage_table,
    resolve_fonts,
    split_by_name,
)
from datagen.glyphs import render_glyph_mask

ALL_TINY = TINY_DRAWN + TINY_EMPTY + TINY_BOXED + TINY_ABSENT


def test_tiny_font_draws_asymmetric_distinct_glyphs(tiny_font, tiny_font_alt):
    masks = [render_glyph_mask(c, tiny_font, 64) for c in TINY_DRAWN]
    for char, mask in zip(TINY_DRAWN, masks):
        assert mask.sum() > 50, char
        assert np.abs(mask - mask[:, ::-1]).sum() > 20, f"{char} is left-right symmetric"
        assert np.abs(mask - mask[::-1]).sum() > 20, f"{char} is up-down symmetric"
        assert np.abs(mask - render_glyph_mask(char, tiny_font_alt, 64)).sum() > 20, char
    for i in range(len(masks)):
        for j in range(i):
            assert np.abs(masks[i] - masks[j]).sum() > 20, (TINY_DRAWN[i], TINY_DRAWN[j])
    with pytest.raises(GlyphMissingError):
        render_glyph_mask(TINY_EMPTY, tiny_font)


def test_coverage_counts_only_really_drawn_chars(tiny_font, tiny_font_alt):
    assert face_coverage(tiny_font, ALL_TINY, use_cache=False) == frozenset(TINY_DRAWN)
    assert face_coverage(tiny_font_alt, ALL_TINY, use_cache=False) == frozenset(TINY_DRAWN)
    # The shared "missing" box is found from the cmap even when only one boxed char is asked for.
    assert face_coverage(tiny_font, TINY_BOXED[0] + "一", use_cache=False) == {"一"}


def test_coverage_rejects_notdef_and_copies_of_placeholders(tmp_path):
    box = TINY_SHAPES["上"]
    shapes = {"丙": box, "丛": box, "东": box, "丝": TINY_SHAPES["下"], "丞": TINY_SHAPES["下"], "两": TINY_SHAPES["一"]}
    path = make_test_font(tmp_path / "dups.ttf", shapes, as_notdef="严", notdef_copies="丧")
    face = FontFace(path, 0, "dups")
    # Three distinct glyphs drawn alike are a placeholder; a pair (丝 丞) may be a legitimate duplicate.
    assert face_coverage(face, "丙丛东丝丞两严丧", use_cache=False) == {"丝", "丞", "两"}


def test_coverage_is_cached_per_font_file_and_charset(tiny_font, tmp_path, monkeypatch):
    calls = []
    measure = fonts._measure_coverage
    monkeypatch.setattr(fonts, "_measure_coverage", lambda face, chars: calls.append(1) or measure(face, chars))
    first = face_coverage(tiny_font, ALL_TINY, cache_dir=tmp_path)
    assert len(calls) == 1 and len(list((tmp_path / "coverage").glob("*.json"))) == 1
    assert face_coverage(tiny_font, ALL_TINY, cache_dir=tmp_path) == first == frozenset(TINY_DRAWN)
    assert len(calls) == 1, "second call should be served from the cache"
    assert faces_coverage([tiny_font], ALL_TINY, cache_dir=tmp_path, workers=2) == {tiny_font: first}
    assert len(calls) == 1
    face_coverage(tiny_font, TINY_DRAWN, cache_dir=tmp_path)  # another charset: measured again
    assert len(calls) == 2

    copy = make_test_font(tmp_path / "copy.ttf", TINY_SHAPES)
    face = FontFace(copy, 0, "copy")
    face_coverage(face, ALL_TINY, cache_dir=tmp_path)
    stat = copy.stat()
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the font changed: measured again
    face_coverage(face, ALL_TINY, cache_dir=tmp_path)
    assert len(calls) == 4

    monkeypatch.setenv("SINONOM_CACHE", str(tmp_path / "env"))
    face_coverage(tiny_font, ALL_TINY)
    assert list((tmp_path / "env" / "coverage").glob("*.json"))


def test_faces_coverage_in_two_processes_matches_one(tiny_font, tiny_font_alt, tmp_path):
    faces = [tiny_font, tiny_font_alt]
    one = faces_coverage(faces, ALL_TINY, cache_dir=tmp_path / "a", workers=1)
    two = faces_coverage(faces, ALL_TINY, cache_dir=tmp_path / "b", workers=2)
    assert one == two == {tiny_font: frozenset(TINY_DRAWN), tiny_font_alt: frozenset(TINY_DRAWN)}


def test_covering_faces(tiny_font, tiny_font_alt, tmp_path):
    faces = [tiny_font, tiny_font_alt]
    assert covering_faces("一", faces) == faces
    assert covering_faces(TINY_BOXED[0], faces) == []
    assert covering_faces(TINY_EMPTY, faces, within=ALL_TINY, cache_dir=tmp_path) == []
    assert covering_faces("\U00020000", faces, within=ALL_TINY, cache_dir=tmp_path) == faces
    with pytest.raises(DatagenError, match="U\\+4E2D"):
        covering_faces("中", faces, within=TINY_DRAWN, cache_dir=tmp_path)


def test_coverage_table_and_its_text(tiny_font, tmp_path):
    partial = FontFace(make_test_font(tmp_path / "partial.ttf", {"一": TINY_SHAPES["一"]}), 0, "Partial")
    rows = coverage_table([partial, tiny_font], TINY_DRAWN, cache_dir=tmp_path, workers=1)
    assert [(r["face"], r["covered"], r["total"]) for r in rows] == [
        (tiny_font.label, len(TINY_DRAWN), len(TINY_DRAWN)), ("Partial", 1, len(TINY_DRAWN))]
    assert rows[1]["share"] == pytest.approx(1 / len(TINY_DRAWN), abs=1e-4)
    text = format_coverage_table(rows)
    assert "Partial" in text and "100.0%" in text and str(partial.path) in text


def _write_collection(tmp_path):
    regular = make_test_font(tmp_path / "a.ttf", TINY_SHAPES, family="Coll Test", style="Regular")
    bold = make_test_font(tmp_path / "b.ttf", TINY_SHAPES, family="Coll Test", style="Bold")
    collection = TTCollection()
    collection.fonts = [TTFont(str(regular)), TTFont(str(bold))]
    path = tmp_path / "coll" / "both.ttc"
    path.parent.mkdir()
    collection.save(str(path))
    return path


def test_discover_fonts_reads_collections_and_names(tmp_path, tiny_font):
    ttc = _write_collection(tmp_path)
    faces = discover_fonts(extra=[ttc.parent, tiny_font.path], system=False)
    assert {(f.path.name, f.index, f.name) for f in faces} == {
        ("both.ttc", 0, "Coll Test Regular"), ("both.ttc", 1, "Coll Test Bold"),
        (tiny_font.path.name, 0, "SinoNom Tiny Regular")}
    assert faces == sorted(faces, key=lambda f: (f.path, f.index))
    bold = next(f for f in faces if f.index == 1)
    assert face_coverage(bold, ALL_TINY, use_cache=False) == frozenset(TINY_DRAWN)
    assert discover_fonts(extra=[ttc.parent], system=False) == discover_fonts(extra=[ttc], system=False)


def test_discover_skips_broken_system_fonts_but_not_named_ones(tmp_path, monkeypatch, tiny_font):
    system = tmp_path / "system"
    system.mkdir()
    (system / "junk.ttf").write_bytes(b"\x00\x01 this is not a font" * 10)
    make_test_font(system / "ok.ttf", TINY_SHAPES, family="System Ok")
    monkeypatch.setattr(fonts, "SYSTEM_FONT_DIRS", (str(system),))
    with pytest.warns(UserWarning, match="junk.ttf"):
        assert [f.name for f in discover_fonts()] == ["System Ok Regular"]
    with pytest.raises(FontError, match="junk.ttf"):
        discover_fonts(extra=[system / "junk.ttf"], system=False)
    with pytest.raises(FontError, match="nowhere.ttf"):
        discover_fonts(extra=[tmp_path / "nowhere.ttf"], system=False)


def test_resolve_fonts_by_name_stem_and_path(tiny_font, tiny_font_alt, tmp_path):
    available = [tiny_font, tiny_font_alt]
    assert resolve_fonts(["tiny BOLD"], available) == [tiny_font_alt]
    assert resolve_fonts(["tiny_alt"], available) == [tiny_font_alt]  # file stem
    assert resolve_fonts(["sinonom tiny"], available) == available
    assert resolve_fonts([str(tiny_font.path), "bold", "regular"], available) == available
    assert resolve_fonts([tiny_font.path.parent], available) == [tiny_font]
    with pytest.raises(FontError, match="'no such face'"):
        resolve_fonts(["no such face"], available)


def test_corrupt_font_file_raises_font_error(tmp_path):
    junk = tmp_path / "x.ttf"
    junk.write_bytes(os.urandom(2048))
    with pytest.raises(FontError, match="x.ttf"):
        resolve_fonts([str(junk)], available=[])
    with pytest.raises(FontError, match="x.ttf"):
        face_coverage(FontFace(junk), TINY_DRAWN, cache_dir=tmp_path)
    with pytest.raises(FontError, match="gone.ttf"):
        face_coverage(FontFace(tmp_path / "gone.ttf"), TINY_DRAWN, cache_dir=tmp_path)


def test_faces_are_held_out_and_excluded_by_name_parts(tiny_font, tiny_font_alt):
    faces = [tiny_font, tiny_font_alt]
    assert split_by_name(faces, ["bold"]) == ([tiny_font], [tiny_font_alt])  # case ignored
    assert split_by_name(faces, []) == (faces, [])
    assert choose_faces([str(tiny_font.path), str(tiny_font_alt.path)], ["Tiny Bold"]) == [tiny_font]
    with pytest.raises(DatagenError, match="no font faces left after --exclude-fonts"):
        choose_faces([str(tiny_font.path)], ["sinonom"])
