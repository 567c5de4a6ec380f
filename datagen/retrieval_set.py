"""Retrieval sets in the course format: carved blocks (database/), print crops (queries/), labels.csv.

Layout written under the output folder:
    database/<id>.stl      carved woodblocks (one per character, plus hard distractors)
    queries/<id>.png       512x512 RGB print crops, each printed from one database block
    labels.csv             query,label  -- first label is the true block, then its hard distractors
    blocks.csv, queries.csv  ground truth (character, face, seed) for analysis and training
    config.json            the resolved generation config, to reproduce the set
"""
from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from .charsets import load_charset
from .errors import DatagenError
from .files import open_image
from .fonts import FontFace, default_faces, distinct_faces, faces_coverage, resolve_fonts
from .glyphs import render_glyph_mask
from .parallel import imap_progress
from .meshes import CarveParams, carve_block, save_mesh
from .prints import print_block


@dataclass
class RetrievalSetConfig:
    """Everything that decides a generated set; saved as config.json beside it."""

    chars: int = 200
    charset: str = "nom"
    fonts: list[str] = field(default_factory=list)  # names or paths; empty = every distinct installed design
    seed: int = 0
    strength: float = 1.0  # print degradation strength (0 clean .. 2 very worn)
    distractors: int = 1  # extra blocks of the same character carved from other faces
    resolution: int = 256  # height raster side: 256 -> ~130k triangles, like a real scan
    query_size: int = 512
    mesh_format: str = "stl"
    workers: int = 2
    start_id: int = 0


@dataclass(frozen=True)
class _CharTask:
    """One character's work: carve its blocks, print its query (picklable for worker processes)."""

    query_id: str
    char: str
    faces: tuple[FontFace, ...]  # first = the face of the true block, others = distractors
    block_ids: tuple[str, ...]
    seed: int
    strength: float
    resolution: int
    query_size: int
    mesh_format: str
    out: Path
    neighbour_chars: tuple[str, ...]


def _run_char_task(task: _CharTask) -> list[dict]:
    """Carve every block of one character, print the query from the first; return ground-truth rows."""
    rows: list[dict] = []
    params = CarveParams(resolution=task.resolution)
    query_height = None
    for n, (face, block_id) in enumerate(zip(task.faces, task.block_ids)):
        block_seed = task.seed * 1000 + n
        mask = render_glyph_mask(task.char, face, size=task.resolution)
        mesh, height = carve_block(mask, params, seed=block_seed)
        save_mesh(mesh, task.out / "database" / f"{block_id}.{task.mesh_format}")
        if n == 0:
            query_height = height
        rows.append({"id": f"{block_id}.{task.mesh_format}", "char": task.char, "codepoint": f"U+{ord(task.char):04X}",
                     "face": face.label, "font_path": str(face.path), "font_index": face.index,
                     "seed": block_seed, "role": "target" if n == 0 else "distractor",
                     "query": f"{task.query_id}.png"})
    neighbours = [render_glyph_mask(c, task.faces[0], size=128) for c in task.neighbour_chars]
    image = print_block(query_height, task.query_size, task.seed, task.strength, neighbours=neighbours, rgb=True)
    Image.fromarray(image).save(task.out / "queries" / f"{task.query_id}.png")
    return rows


def _plan(config: RetrievalSetConfig, out: Path, faces: Sequence[FontFace]) -> list[_CharTask]:
    """Pick the characters and faces (deterministic for the seed) and assign ids."""
    charset = load_charset(config.charset)
    coverage = faces_coverage(faces, charset)
    drawable = [c for c in charset if any(c in cov for cov in coverage.values())]
    if len(drawable) < config.chars:
        raise DatagenError(
            f"only {len(drawable)} characters of charset {config.charset!r} are drawn by the "
            f"{len(faces)} selected font face(s); asked for {config.chars}")
    rng = np.random.default_rng(config.seed)
    chosen = [drawable[i] for i in sorted(rng.choice(len(drawable), config.chars, replace=False))]
    per_char_faces = []
    for char in chosen:
        covering = [f for f in faces if char in coverage[f]]
        order = rng.permutation(len(covering))
        per_char_faces.append(tuple(covering[i] for i in order[: 1 + config.distractors]))
    n_blocks = sum(len(f) for f in per_char_faces)
    block_numbers = rng.permutation(n_blocks) + config.start_id  # shuffled: block id says nothing of the query
    drawn_by = {f: [c for c in chosen if c in coverage[f]] for f in faces}  # neighbours come from the same face
    tasks, cursor = [], 0
    for q, (char, char_faces) in enumerate(zip(chosen, per_char_faces)):
        ids = tuple(str(b) for b in block_numbers[cursor : cursor + len(char_faces)])
        cursor += len(char_faces)
        pool = drawn_by[char_faces[0]]
        neighbours = tuple(pool[int(i)] for i in rng.integers(0, len(pool), 2))
        tasks.append(_CharTask(str(q + config.start_id), char, char_faces, ids, config.seed * 100003 + q,
                               config.strength, config.resolution, config.query_size,
                               config.mesh_format, out, neighbours))
    return tasks


def generate_retrieval_set(
    config: RetrievalSetConfig, out: str | Path, faces: Sequence[FontFace] | None = None, progress: bool = True
) -> dict:
    """Write a course-format retrieval set to `out`; returns a summary (counts, seconds).

    The progress bar shows on a terminal only (tqdm's rule), so logs and pipes stay clean.
    """
    out = Path(out)
    if faces is None:
        faces = distinct_faces(resolve_fonts(config.fonts)) if config.fonts else default_faces()
    if not faces:
        raise DatagenError("no font faces found: install the CJK fonts (scripts/setup.sh) or pass --fonts")
    start = time.perf_counter()
    tasks = _plan(config, out, faces)
    (out / "database").mkdir(parents=True, exist_ok=True)
    (out / "queries").mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for result in imap_progress(_run_char_task, tasks, config.workers, "retrieval-set", "char", progress):
        rows.extend(result)
    _write_tables(out, rows, config)
    seconds = time.perf_counter() - start
    return {"queries": len(tasks), "blocks": len(rows), "seconds": round(seconds, 2), "out": str(out)}


def _write_tables(out: Path, rows: list[dict], config: RetrievalSetConfig) -> None:
    """labels.csv in the course format, plus ground truth and the resolved config."""
    by_query: dict[str, list[str]] = {}
    for row in rows:  # rows come per character, target first
        by_query.setdefault(row["query"], []).append(row["id"])
    with open(out / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["query", "label"])
        for query, ids in sorted(by_query.items(), key=lambda kv: int(Path(kv[0]).stem)):
            writer.writerow([query, ",".join(ids)])
    with open(out / "blocks.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: int(Path(r["id"]).stem)))
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2, ensure_ascii=False) + "\n")


def preview_sheet(dataset: str | Path, out_path: str | Path, n: int = 6, tile: int = 160) -> Path:
    """A contact sheet: each query print beside the depth view of its true block (first label)."""
    from .depth import mesh_depth_views  # open3d import only when needed

    dataset = Path(dataset)
    with open(dataset / "labels.csv", newline="") as fh:
        pairs = [(row["query"], row["label"].split(",")[0]) for row in csv.DictReader(fh)][:n]
    if not pairs:
        raise DatagenError(f"{dataset / 'labels.csv'} lists no queries")
    sheet = Image.new("L", (2 * tile, tile * len(pairs)), 255)
    for row, (query, block) in enumerate(pairs):
        q = open_image(dataset / "queries" / query, "L").resize((tile, tile))
        d = Image.fromarray(mesh_depth_views(dataset / "database" / block, size=tile, views=1)[0])
        sheet.paste(q, (0, row * tile))
        sheet.paste(d, (tile, row * tile))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_path)
    return out_path
