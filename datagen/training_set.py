"""Training sets for cross-domain metric learning, cached as one .npz.

A class is one carved block (a character carved from one face). Its samples come from two domains:
print crops of the block (domain 0: its inked surface through `degrade_print`, a fresh seed and
strength each) and depth-buffer views of its mesh (domain 1: small tilts), so that training pulls a
print next to the depth views of the block it was printed from. Generating is the slow part (carving,
raycasting), so it is done once, on both cores, and the arrays are cached; training then only reads
memory and applies cheap tensor augmentations.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .charsets import load_charset
from .errors import DatagenError
from .fonts import FontFace, default_faces, distinct_faces, faces_coverage, resolve_fonts
from .glyphs import render_glyph_mask
from .parallel import imap_progress
from .meshes import CarveParams, carve_block
from .prints import print_block

PRINT, DEPTH = 0, 1  # domain codes


@dataclass
class TrainingSetConfig:
    """What decides a cached training set; saved inside the .npz."""

    charset: str = "nom"
    chars: int = 1000  # characters drawn from the charset (after `skip_chars`)
    skip_chars: int = 0  # characters to leave out at the start of the (shuffled) charset
    fonts: list[str] = field(default_factory=list)  # names or paths; empty = every distinct installed design
    faces_per_char: int = 2  # classes per character: the same character carved from different faces
    prints_per_class: int = 6
    depth_per_class: int = 4
    size: int = 96  # side of the stored images
    resolution: int = 192  # carving grid side
    strength_range: tuple[float, float] = (0.2, 1.6)
    max_tilt_deg: float = 6.0
    seed: int = 1
    workers: int = 2


@dataclass(frozen=True)
class _ClassTask:
    char: str
    face: FontFace
    seed: int
    neighbours: tuple[str, ...]
    config: TrainingSetConfig


def _make_class(task: _ClassTask) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, size, size) uint8 and their domains for one block."""
    from .depth import render_depth_views  # open3d only in the workers that need it

    cfg = task.config
    rng = np.random.default_rng(task.seed)
    mask = render_glyph_mask(task.char, task.face, size=cfg.resolution)
    mesh, height = carve_block(mask, CarveParams(resolution=cfg.resolution), seed=task.seed)
    depth = render_depth_views(mesh, size=cfg.size, views=cfg.depth_per_class, max_tilt_deg=cfg.max_tilt_deg,
                               seed=task.seed)
    neighbours = [render_glyph_mask(c, task.face, size=128) for c in task.neighbours]
    prints = [print_block(height, 128, rng, rng.uniform(*cfg.strength_range), out_size=cfg.size,
                          neighbours=neighbours) for _ in range(cfg.prints_per_class)]
    images = np.concatenate([np.stack(prints), depth])
    domains = np.array([PRINT] * len(prints) + [DEPTH] * len(depth), np.uint8)
    return images, domains


def plan_classes(config: TrainingSetConfig, faces: Sequence[FontFace]) -> list[_ClassTask]:
    """Choose characters and faces deterministically; every class gets its own seed."""
    charset = load_charset(config.charset)
    coverage = faces_coverage(faces, charset)
    rng = np.random.default_rng(config.seed)
    drawable = [c for c in charset if any(c in cov for cov in coverage.values())]
    order = rng.permutation(len(drawable))
    chosen = [drawable[i] for i in order[config.skip_chars : config.skip_chars + config.chars]]
    if len(chosen) < config.chars:
        raise DatagenError(f"charset {config.charset!r} has only {len(drawable) - config.skip_chars} drawable "
                           f"characters after skipping {config.skip_chars}; asked for {config.chars}")
    drawn_by = {f: [c for c in chosen if c in coverage[f]] for f in faces}  # neighbours come from the same face
    tasks = []
    for char in chosen:
        covering = [f for f in faces if char in coverage[f]]
        for i in rng.permutation(len(covering))[: config.faces_per_char]:
            pool = drawn_by[covering[i]]
            neighbours = tuple(pool[int(j)] for j in rng.integers(0, len(pool), 2))
            tasks.append(_ClassTask(char, covering[i], int(rng.integers(2**31)), neighbours, config))
    return tasks


def generate_training_set(config: TrainingSetConfig, out: str | Path, faces: Sequence[FontFace] | None = None,
                          progress: bool = True) -> dict:
    """Render every class and save images, labels, domains and the class table to `out` (.npz)."""
    out = Path(out)
    if faces is None:
        faces = distinct_faces(resolve_fonts(config.fonts)) if config.fonts else default_faces()
    if not faces:
        raise DatagenError("no font faces found: install the CJK fonts (scripts/setup.sh) or pass --fonts")
    start = time.perf_counter()
    tasks = plan_classes(config, faces)
    images, labels, domains = [], [], []
    results = imap_progress(_make_class, tasks, config.workers, "training-set", "class", progress, chunksize=4)
    for label, (class_images, class_domains) in enumerate(results):
        images.append(class_images)
        domains.append(class_domains)
        labels.append(np.full(len(class_images), label, np.int32))
    classes = [{"char": t.char, "face": t.face.label, "seed": t.seed} for t in tasks]
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, images=np.concatenate(images), labels=np.concatenate(labels), domains=np.concatenate(domains),
             classes=json.dumps(classes, ensure_ascii=False), config=json.dumps(asdict(config), ensure_ascii=False))
    seconds = time.perf_counter() - start
    return {"classes": len(tasks), "images": int(sum(len(i) for i in images)), "seconds": round(seconds, 1),
            "out": str(out)}


def load_training_set(path: str | Path) -> dict:
    """Read a cached training set: images, labels, domains, classes (list of dicts), config (dict)."""
    path = Path(path)
    if not path.is_file():
        raise DatagenError(f"{path}: no such training set (make one with `sinonom datagen training-set`)")
    try:
        with np.load(path) as data:
            return {"images": data["images"], "labels": data["labels"], "domains": data["domains"],
                    "classes": json.loads(str(data["classes"])), "config": json.loads(str(data["config"]))}
    except (OSError, KeyError, ValueError) as exc:
        raise DatagenError(f"{path}: not a training set ({exc})") from exc
