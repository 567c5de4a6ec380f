#!/usr/bin/env python3
"""Regenerate the shipped character sets in datagen/data/ from Unihan (and NomNaOCR transcripts).

    python scripts/build_charsets.py                       # all sets
    python scripts/build_charsets.py --only nom han_common # Unihan sets only, no shared/ needed

Sets, one character per line:
  nom.txt             every code point with a Unihan kVietnamese reading, by code point;
  han_common.txt      Big5 level-1 ("frequently used") Han characters, Unihan kBigFive in A440..C67E,
                      by code point: a traditional-form list, as Han-Nom texts are written;
  nomnaocr_freq.txt   Han characters of the NomNaOCR validation transcripts, most frequent first
                      (needs ../shared/data/nomnaocr/; without it the shipped list is kept as it is).
charsets.json records each set's count, source, field, Unicode version, licence and this command.

Unihan comes from Debian's unicode-data package: /usr/share/unicode/Unihan_*.txt.bz2 (or a Unihan.zip
from unicode.org, or a folder of Unihan_*.txt files; see --unihan).
"""
from __future__ import annotations

import argparse
import bz2
import csv
import json
import re
import sys
import unicodedata
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / "datagen" / "data"
DEFAULT_UNIHAN = Path("/usr/share/unicode")
DEFAULT_NOMNAOCR = REPO.parent / "shared" / "data" / "nomnaocr" / "validate_transcripts.csv"
BIG5_LEVEL1 = (0xA440, 0xC67E)  # Big5 "frequently used" Han block; A440..C67E in Big5 code order
UNIHAN_LICENCE = "Unicode License v3 (Unicode, Inc. terms of use: https://www.unicode.org/terms_of_use.html)"
REGENERATE = "python scripts/build_charsets.py"


class UnihanField:
    """One Unihan field's values by character, with the file and Unicode version it came from."""

    def __init__(self, name: str):
        self.name = name
        self.values: dict[str, str] = {}
        self.file = ""
        self.unicode_version = ""


def _unihan_texts(source: Path) -> Iterator[tuple[str, Iterator[str]]]:
    """(file name, lines) of every Unihan_*.txt in a Unihan.zip or a folder (plain or .bz2)."""
    if source.is_file():
        with zipfile.ZipFile(source) as archive:
            for member in sorted(archive.namelist()):
                if re.fullmatch(r"Unihan_\w+\.txt", member):
                    yield member, iter(archive.read(member).decode("utf-8").splitlines())
        return
    files = sorted(source.glob("Unihan_*.txt")) + sorted(source.glob("Unihan_*.txt.bz2"))
    if not files:
        sys.exit(f"no Unihan_*.txt(.bz2) in {source}: install Debian's unicode-data or pass --unihan")
    for path in files:
        opener = bz2.open if path.suffix == ".bz2" else open
        with opener(path, "rt", encoding="utf-8") as handle:
            yield path.name.removesuffix(".bz2"), iter(handle.read().splitlines())


def read_unihan(source: Path, wanted: set[str]) -> dict[str, UnihanField]:
    """The `wanted` fields of Unihan at `source`, each with its values, file and Unicode version."""
    fields = {name: UnihanField(name) for name in wanted}
    for file_name, lines in _unihan_texts(source):
        version = ""
        for line in lines:
            if line.startswith("#"):
                match = re.match(r"#\s*Unicode version:\s*(\S+)", line)
                version = match.group(1) if match else version
                continue
            if not line.startswith("U+"):
                continue
            code, name, value = line.split("\t", 2)
            if name in fields:
                field = fields[name]
                field.values[chr(int(code[2:], 16))] = value
                field.file, field.unicode_version = f"Unihan database, {file_name}", version
    empty = sorted(name for name, field in fields.items() if not field.values)
    if empty:
        sys.exit(f"Unihan at {source} has no values for {', '.join(empty)}")
    return fields


def write_list(out_dir: Path, name: str, chars: list[str]) -> None:
    path = out_dir / f"{name}.txt"
    path.write_text("".join(f"{c}\n" for c in chars), encoding="utf-8")
    print(f"{path}: {len(chars)} characters")


def build_nom(fields: dict[str, UnihanField], out_dir: Path) -> dict:
    field = fields["kVietnamese"]
    chars = sorted(field.values, key=ord)
    write_list(out_dir, "nom", chars)
    return {
        "file": "nom.txt",
        "count": len(chars),
        "description": "Han-Nom characters: every code point with a Vietnamese reading in Unihan",
        "order": "code point",
        "source": field.file,
        "field": "kVietnamese",
        "selection": "every code point with a kVietnamese value",
        "unicode_version": field.unicode_version,
        "beyond_bmp": sum(ord(c) > 0xFFFF for c in chars),
        "licence": UNIHAN_LICENCE,
        "regenerate": f"{REGENERATE} --only nom",
    }


def build_han_common(fields: dict[str, UnihanField], out_dir: Path) -> dict:
    field = fields["kBigFive"]
    low, high = BIG5_LEVEL1
    chars = sorted((c for c, code in field.values.items() if low <= int(code, 16) <= high), key=ord)
    write_list(out_dir, "han_common", chars)
    return {
        "file": "han_common.txt",
        "count": len(chars),
        "description": "common traditional Han characters: Big5 level 1 (frequently used)",
        "order": "code point",
        "source": field.file,
        "field": "kBigFive",
        "selection": f"kBigFive in {low:04X}..{high:04X}",
        "why": "Han-Nom texts use traditional forms; Big5 level 1 covers 87% of the NomNaOCR "
        "validation characters by occurrence, the simplified-form kTGH level 1 only 66%",
        "unicode_version": field.unicode_version,
        "licence": UNIHAN_LICENCE,
        "regenerate": f"{REGENERATE} --only han_common",
    }


def build_nomnaocr_freq(transcripts: Path, unicode_version: str, out_dir: Path) -> dict:
    counts: Counter[str] = Counter()
    with transcripts.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            counts.update(row["labels"])
    # Only encoded Han ideographs: NomNaOCR writes not-yet-encoded Nom characters in the private use area.
    han = {c: n for c, n in counts.items() if unicodedata.category(c) == "Lo"}
    private = sum(unicodedata.category(c) == "Co" for c in counts)
    chars = sorted(han, key=lambda c: (-han[c], ord(c)))
    write_list(out_dir, "nomnaocr_freq", chars)
    return {
        "file": "nomnaocr_freq.txt",
        "count": len(chars),
        "description": "Han-Nom characters of real texts, most frequent first (NomNaOCR validation set)",
        "order": "occurrences in the transcripts, descending; ties by code point",
        "source": "NomNaOCR validate_transcripts.csv (https://github.com/ds4v/NomNaOCR)",
        "field": "labels",
        "selection": f"every character of category Lo (Python unicodedata {unicode_version}); "
        f"{private} private-use characters left out",
        "occurrences": sum(han.values()),
        "unicode_version": unicode_version,
        "licence": "MIT (Copyright (c) 2022 Quan Dang), NomNaOCR",
        "regenerate": f"{REGENERATE} --only nomnaocr_freq (needs ../shared/data/nomnaocr/)",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unihan", type=Path, default=DEFAULT_UNIHAN,
                        help="Unihan.zip or a folder of Unihan_*.txt[.bz2] (default: %(default)s)")
    parser.add_argument("--nomnaocr", type=Path, default=DEFAULT_NOMNAOCR,
                        help="NomNaOCR transcripts CSV with a 'labels' column (default: %(default)s)")
    parser.add_argument("--only", nargs="+", choices=["nom", "han_common", "nomnaocr_freq"],
                        help="rebuild only these sets; the others keep their shipped files")
    parser.add_argument("--out", type=Path, default=DATA_DIR, help="output folder (default: %(default)s)")
    args = parser.parse_args(argv)
    wanted = set(args.only or ["nom", "han_common", "nomnaocr_freq"])

    info_path = args.out / "charsets.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else {}
    args.out.mkdir(parents=True, exist_ok=True)
    fields = read_unihan(args.unihan, {"kVietnamese", "kBigFive"}) if wanted & {"nom", "han_common"} else {}
    if "nom" in wanted:
        info["nom"] = build_nom(fields, args.out)
    if "han_common" in wanted:
        info["han_common"] = build_han_common(fields, args.out)
    if "nomnaocr_freq" in wanted:
        if args.nomnaocr.is_file():
            info["nomnaocr_freq"] = build_nomnaocr_freq(args.nomnaocr, unicodedata.unidata_version, args.out)
        elif args.only:
            sys.exit(f"no NomNaOCR transcripts at {args.nomnaocr}")
        else:
            print(f"no NomNaOCR transcripts at {args.nomnaocr}: nomnaocr_freq.txt kept as shipped")
    info_path.write_text(json.dumps(dict(sorted(info.items())), ensure_ascii=False, indent=2) + "\n",
                         encoding="utf-8")
    print(f"{info_path}: {', '.join(sorted(info))}")


if __name__ == "__main__":
    main()
