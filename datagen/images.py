"""Reading image files with one clear error, the same for queries, pages and patches."""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from .errors import ImageReadError


def open_image(path: str | Path, mode: str = "RGB") -> Image.Image:
    """The image at `path` converted to `mode` ("RGB", "L", ...); ImageReadError names the file when it
    is missing or cannot be decoded."""
    try:
        with Image.open(path) as image:
            return image.convert(mode)
    except FileNotFoundError as exc:
        raise ImageReadError(f"{path}: no such image") from exc
    except (OSError, ValueError) as exc:  # PIL's UnidentifiedImageError is an OSError
        raise ImageReadError(f"{path}: not a readable image ({exc})") from exc
    except ImportError as exc:  # once ultralytics is imported, PIL asks for its HEIF plugin on unknown formats
        raise ImageReadError(f"{path}: not a readable image (unknown format)") from exc
