"""Shipped character sets, charset specs, and the script that rebuilds the sets from Unihan."""
from __future__ import annotations

import bz2
import importlib.util
import json
import unicodedata
from pathlib import Path

import pytest

from datagen.charsets import DATA_DIR, available_charsets, charset_info, load_charset
from datagen.errors import DatagenError

REPO = Path(__file__).resolve().parent.parent
SYSTEM_UNIHAN = Path("/usr/share/unicode/Unihan_Readings.txt.bz2")


def _build_script():
    spec = importlib.util.spec_from_file_location("build_charsets", REPO / "scripts" / "build_charsets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_sets_match_their_records():
    assert {"nom", "han_common", "nomnaocr_freq"} <= set(available_charsets())
    assert available_charsets() == sorted(available_charsets())
    for name in available_charsets():
        chars, info = load_charset(name), charset_info(name)
        assert len(chars) == info["count"] == len(set(chars)), name
        # Han letters; ideographs newer than Python's Unicode data are unassigned (Cn) to it, planes 2-3 only
        assert all(unicodedata.category(c) == "Lo" or 0x20000 <= ord(c) <= 0x3FFFF for c in chars), name
        assert info["unicode_version"] and info["source"] and info["licence"] and info["regenerate"], name


def test_nom_set_is_unihan_kvietnamese_by_code_point():
    nom, info = load_charset("nom"), charset_info("nom")
    assert 8000 < len(nom) < 9000 and info["field"] == "kVietnamese"
    assert [ord(c) for c in nom] == sorted(ord(c) for c in nom)
    assert 0.4 < sum(ord(c) > 0xFFFF for c in nom) / len(nom) < 0.6  # about half in Ext B and beyond
    assert {"𡨸", "喃", "𠊛"} <= set(nom)  # chữ, Nôm, người


def test_common_and_frequency_sets():
    common = load_charset("han_common")
    assert len(common) == 5401 and {"一", "國", "學"} <= set(common) and "国" not in common  # traditional
    freq = load_charset("nomnaocr_freq")
    assert freq[:3] == ["之", "以", "人"]
    assert not any(unicodedata.category(c) == "Co" for c in freq)


def test_specs_prefix_file_and_plain_string(tmp_path):
    assert load_charset("nom:5") == load_charset("nom")[:5]
    assert load_charset(" han_common:1 ") == ["一"]
    listed = tmp_path / "mine.txt"
    listed.write_text("丁\n\n一\n  丁 \n𠀀\n", encoding="utf-8")
    assert load_charset(str(listed)) == ["丁", "一", "𠀀"]  # file order, repeats dropped
    assert load_charset(f"{listed}:2") == ["丁", "一"]
    assert load_charset("七一 七𠀀") == ["七", "一", "𠀀"]
    assert load_charset("七一:1") == ["七"]
    long_literal = "".join(load_charset("nom")[:300])  # longer than a file name may be
    assert load_charset(long_literal) == list(long_literal) and load_charset(long_literal + ":3") == list(long_literal[:3])


@pytest.mark.parametrize("spec, message", [
    ("nomm", "'nomm' is neither a shipped set"),
    ("nom:0", "at least 1"),
    ("", "empty"),
    ("missing/list.txt", "neither a shipped set"),
])
def test_bad_specs_raise(spec, message):
    with pytest.raises(DatagenError, match=message):
        load_charset(spec)


def test_bad_list_files_raise(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("一\n一丁\n", encoding="utf-8")
    with pytest.raises(DatagenError, match=r"bad.txt:2: expected one character"):
        load_charset(str(bad))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(DatagenError, match="empty.txt is empty"):
        load_charset(str(empty))
    with pytest.raises(DatagenError, match="unknown character set 'nope'"):
        charset_info("nope")


def test_build_script_on_a_tiny_unihan(tmp_path):
    unihan = tmp_path / "unihan"
    unihan.mkdir()
    header = "# Unicode version: 99.1.0\n#\n"
    readings = "U+20000\tkVietnamese\tx\nU+4E01\tkMandarin\tdīng\nU+4E00\tkVietnamese\tnhất\nU+3400\tkVietnamese\tkhâu\n"
    mappings = "U+4E00\tkBigFive\tA440\nU+4E08\tkBigFive\tA455\nU+3400\tkBigFive\tC940\n"
    with bz2.open(unihan / "Unihan_Readings.txt.bz2", "wt", encoding="utf-8") as handle:
        handle.write(header + readings)
    (unihan / "Unihan_OtherMappings.txt").write_text(header + mappings, encoding="utf-8")
    transcripts = tmp_path / "t.csv"
    transcripts.write_text("img_paths,labels\na.jpg,之人之\U000F0029\nb.jpg,人之\n", encoding="utf-8")
    out = tmp_path / "out"
    _build_script().main(["--unihan", str(unihan), "--nomnaocr", str(transcripts), "--out", str(out)])
    assert (out / "nom.txt").read_text(encoding="utf-8").split() == ["㐀", "一", "\U00020000"]
    assert (out / "han_common.txt").read_text(encoding="utf-8").split() == ["一", "丈"]  # C940 is level 2
    assert (out / "nomnaocr_freq.txt").read_text(encoding="utf-8").split() == ["之", "人"]
    info = json.loads((out / "charsets.json").read_text(encoding="utf-8"))
    assert info["nom"]["unicode_version"] == "99.1.0" and info["nom"]["count"] == 3
    assert info["nom"]["source"].endswith("Unihan_Readings.txt") and info["han_common"]["field"] == "kBigFive"
    assert info["nomnaocr_freq"]["licence"].startswith("MIT")


@pytest.mark.skipif(not SYSTEM_UNIHAN.exists(), reason="Debian's unicode-data (Unihan) not installed")
def test_build_script_reproduces_the_shipped_unihan_sets(tmp_path):
    _build_script().main(["--only", "nom", "han_common", "--out", str(tmp_path)])
    rebuilt = json.loads((tmp_path / "charsets.json").read_text(encoding="utf-8"))
    shipped = json.loads((DATA_DIR / "charsets.json").read_text(encoding="utf-8"))
    for name in ("nom", "han_common"):
        assert (tmp_path / f"{name}.txt").read_bytes() == (DATA_DIR / f"{name}.txt").read_bytes(), name
        assert rebuilt[name] == shipped[name], name
