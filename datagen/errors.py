"""Errors datagen raises for bad input: each names the file or character at fault."""
from __future__ import annotations


class DatagenError(ValueError):
    """Base of datagen's input errors; the CLI prints it as one line."""


class FontError(DatagenError):
    """A font file is missing, unreadable, or not found by the name given."""


class GlyphMissingError(DatagenError):
    """A face does not really draw a character (absent, empty, .notdef or a 'missing' box)."""


class MeshError(DatagenError):
    """A mesh file is missing, unreadable, empty or not a triangle mesh."""


class ImageReadError(DatagenError):
    """An image file is missing or cannot be decoded."""
