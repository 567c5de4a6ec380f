"""Character sets: the shipped lists in datagen/data/ (see charsets.json) and user-given ones.

A spec is a shipped name ("nom"), a text file with one character per line, a plain string of
characters ("一丁七"), or any of these followed by ":N" for its first N characters ("nom:500").
Order is always deterministic: the file's order, first occurrence kept when a character repeats.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

from .errors import DatagenError

DATA_DIR = Path(__file__).resolve().parent / "data"
_FIRST_N = re.compile(r"(.+):(\d+)")


@lru_cache(maxsize=1)
def _shipped() -> dict[str, dict]:
    return json.loads((DATA_DIR / "charsets.json").read_text(encoding="utf-8"))


def available_charsets() -> list[str]:
    """Names of the shipped character sets, sorted."""
    return sorted(_shipped())


def charset_info(name: str) -> dict:
    """What charsets.json records for a shipped set: count, source, field, Unicode version, licence..."""
    if name not in _shipped():
        raise DatagenError(f"unknown character set {name!r}; shipped sets: {', '.join(available_charsets())}")
    return {"name": name, **_shipped()[name]}


def _unique(chars: list[str]) -> list[str]:
    return list(dict.fromkeys(chars))


def _read_list(path: Path) -> tuple[str, ...]:
    """Characters of a one-character-per-line file (blank lines skipped)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatagenError(f"cannot read character list {path}: {exc}") from exc
    chars = []
    for number, line in enumerate(lines, start=1):
        char = line.strip()
        if len(char) > 1:
            raise DatagenError(f"{path}:{number}: expected one character per line, got {char!r}")
        if char:
            chars.append(char)
    if not chars:
        raise DatagenError(f"character list {path} is empty")
    return tuple(_unique(chars))


@lru_cache(maxsize=None)
def _shipped_list(name: str) -> tuple[str, ...]:
    return _read_list(DATA_DIR / _shipped()[name]["file"])


def _is_file(spec: str) -> bool:
    try:
        return Path(spec).expanduser().is_file()
    except OSError:  # a literal string of characters too long to be a file name
        return False


def load_charset(spec: str) -> list[str]:
    """The characters a spec names (shipped name, list file, plain string, each with optional ':N')."""
    spec = spec.strip()
    if not spec:
        raise DatagenError("empty character set spec")
    match = _FIRST_N.fullmatch(spec)
    if match and not _is_file(spec):
        count = int(match.group(2))
        if count < 1:
            raise DatagenError(f"character set spec {spec!r}: N must be at least 1")
        return load_charset(match.group(1))[:count]
    if spec in _shipped():
        return list(_shipped_list(spec))
    if _is_file(spec):
        return list(_read_list(Path(spec).expanduser()))
    if spec.isascii():
        raise DatagenError(
            f"character set {spec!r} is neither a shipped set ({', '.join(available_charsets())}) "
            "nor a file; a plain string of characters is taken only when it holds non-ASCII characters"
        )
    return _unique([c for c in spec if not c.isspace()])
