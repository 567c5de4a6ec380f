"""Finding and reading input files with one clear error, the same for queries, pages, patches and meshes."""
from __future__ import annotations

from pathlib import Path
from typing import Collection, Sequence

from PIL import Image

from .errors import DatagenError, ImageReadError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def list_files(path: Path, suffixes: Collection[str], what: str) -> list[Path]:
    """A file, or the files with one of `suffixes` in a folder (sorted); a clear error when none."""
    if not path.exists():
        raise DatagenError(f"{path}: no such file or folder")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes)
    if not files:
        raise DatagenError(f"{path}: no {what} files ({', '.join(sorted(suffixes))}) in this folder")
    return files


def list_images(paths: Sequence[str | Path]) -> list[Path]:
    """Image files and the images of folders, in the order given."""
    return [image for path in paths for image in list_files(Path(path), IMAGE_SUFFIXES, "image")]


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
