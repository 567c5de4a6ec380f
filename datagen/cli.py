"""`sinonom datagen ...` sub-commands: character sets, fonts, prints, blocks, depth views, retrieval sets."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .errors import DatagenError
from .files import list_files
from .meshes import MESH_SUFFIXES



def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `datagen` and its sub-commands to the top-level parser."""
    parser = subparsers.add_parser(
        "datagen", help="make training and benchmark data offline (fonts -> prints, blocks, depth views)",
        description="Make data offline from installed fonts and character lists: no network, no hand-made files.")
    sub = parser.add_subparsers(dest="datagen_command", required=True, metavar="COMMAND")

    p = sub.add_parser("charset", help="list or count a shipped character set",
                       description="List the characters of a set (shipped name, text file, or literal chars).",
                       epilog="examples:\n  sinonom datagen charset --sets\n  sinonom datagen charset nom --count\n"
                              "  sinonom datagen charset nom:20",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", nargs="?", default="nom", help="set name (see --sets), NAME:N for the first N, or a file")
    p.add_argument("--count", action="store_true", help="print only the number of characters")
    p.add_argument("--sets", action="store_true", help="list the shipped sets with their source and Unicode version")
    p.set_defaults(func=_cmd_charset)

    p = sub.add_parser("fonts", help="installed font faces and how much of a charset each really draws",
                       description="Discover font faces and count the characters each REALLY draws "
                                   "(empty glyphs, .notdef and 'missing' boxes do not count). Cached.",
                       epilog="example:\n  sinonom datagen fonts --charset nom",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--charset", default="nom", help="character set to measure coverage of (default: nom)")
    p.add_argument("--font", action="append", default=[], metavar="PATH", help="extra font file or folder (repeatable)")
    p.add_argument("--no-system", action="store_true", help="only the fonts given with --font")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_fonts)

    p = sub.add_parser("print", help="render print-like crops of one character",
                       description="Render a character as woodblock-print crops (deterministic for a seed).",
                       epilog="example:\n  sinonom datagen print 𡨸 --font hanazono --count 4 --out prints/",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("char", help="one character")
    p.add_argument("--font", required=True, help="font face name (substring) or path")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--strength", type=float, default=1.0, help="degradation strength, 0 clean .. 2 very worn")
    p.set_defaults(func=_cmd_print)

    p = sub.add_parser("block", help="carve one character into a woodblock mesh (STL/OBJ/PLY)",
                       description="Carve a character into a 3D woodblock mesh, centred, extent ~1, "
                                   "readable from +Z with +Y up.",
                       epilog="example:\n  sinonom datagen block 𡨸 --font hanazono --out block.stl",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("char")
    p.add_argument("--font", required=True)
    p.add_argument("--out", required=True, type=Path, help="mesh path: .stl, .obj or .ply")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resolution", type=int, default=256, help="height raster side (256 -> ~130k triangles)")
    p.set_defaults(func=_cmd_block)

    p = sub.add_parser("depth", help="depth-buffer views of meshes (the 2D form a 3D block is embedded in)",
                       description="Render meshes (any scale/offset; normalised) to 8-bit depth images with "
                                   "Open3D raycasting, headless. Strokes dark, ground light, like the print.",
                       epilog="example:\n  sinonom datagen depth data/database --out views/ --size 128 --views 4",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mesh", type=Path, help="a mesh file or a folder of .stl/.obj/.ply")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--views", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_depth)

    p = sub.add_parser("retrieval-set", help="a course-format set: database/*.stl, queries/*.png, labels.csv",
                       description="Generate a retrieval set in the course format: one carved block per "
                                   "character (plus hard distractors: the same character carved from other "
                                   "faces) and a 512x512 RGB print crop of each true block.",
                       epilog="examples:\n  sinonom datagen retrieval-set --chars 200 --out data/val\n"
                              "  sinonom datagen retrieval-set --chars 500 --fonts kai --fonts ming --seed 7 --out data/test",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chars", type=int, default=200, help="number of characters / queries (default 200)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--charset", default="nom")
    p.add_argument("--fonts", action="append", default=[], metavar="NAME_OR_PATH",
                   help="faces to use (repeatable; default: every installed face)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--strength", type=float, default=1.0, help="print degradation strength")
    p.add_argument("--distractors", type=int, default=1, help="extra blocks per character from other faces")
    p.add_argument("--resolution", type=int, default=256, help="height raster side (256 -> ~130k triangles)")
    p.add_argument("--format", dest="mesh_format", choices=["stl", "obj", "ply"], default="stl")
    p.add_argument("--workers", type=int, default=2, help="processes (default 2: both cores)")
    p.add_argument("--preview", type=Path, help="also write a sheet of queries beside depth views of their blocks")
    p.set_defaults(func=_cmd_retrieval_set)

    p = sub.add_parser("training-set", help="a cached training set: prints and depth views of carved blocks",
                       description="Render a training set for cross-domain metric learning: each class is a "
                                   "block (a character carved from one face) with print crops and depth views "
                                   "of it. Saved as one .npz that `sinonom train` reads.",
                       epilog="example:\n  sinonom datagen training-set --chars 1500 --out data/train.npz "
                              "--exclude-fonts kai",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="output .npz")
    p.add_argument("--charset", default="nom")
    p.add_argument("--chars", type=int, default=1000, help="characters (default 1000)")
    p.add_argument("--skip-chars", type=int, default=0, help="leave out the first N of the shuffled charset")
    p.add_argument("--fonts", action="append", default=[], metavar="NAME_OR_PATH",
                   help="faces to use (repeatable; default: every distinct installed design)")
    p.add_argument("--exclude-fonts", action="append", default=[], metavar="NAME",
                   help="leave out faces whose name contains NAME (keep them unseen for testing)")
    p.add_argument("--faces-per-char", type=int, default=2)
    p.add_argument("--prints", type=int, default=6, help="print crops per block")
    p.add_argument("--views", type=int, default=4, help="depth views per block")
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--resolution", type=int, default=192, help="carving grid side")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=_cmd_training_set)


def _cmd_charset(args: argparse.Namespace) -> None:
    from .charsets import available_charsets, charset_info, load_charset

    if args.sets:
        for name in available_charsets():
            info = charset_info(name)
            print(f"{name:16s} {info.get('count', '?'):>6}  {info.get('source', '')}  "
                  f"(Unicode {info.get('unicode_version', '?')})")
        return
    chars = load_charset(args.name)
    print(len(chars) if args.count else "\n".join(chars))


def _cmd_fonts(args: argparse.Namespace) -> None:
    from .charsets import load_charset
    from .fonts import coverage_table, discover_fonts, format_coverage_table

    faces = discover_fonts(extra=args.font, system=not args.no_system)
    if not faces:
        raise DatagenError("no font faces found (install them with scripts/setup.sh, or pass --font)")
    rows = coverage_table(faces, load_charset(args.charset))
    print(json.dumps(rows, indent=2, ensure_ascii=False) if args.json else format_coverage_table(rows))


def _cmd_print(args: argparse.Namespace) -> None:
    from PIL import Image

    from .fonts import resolve_fonts
    from .prints import render_print

    face = resolve_fonts([args.font])[0]
    args.out.mkdir(parents=True, exist_ok=True)
    for n in range(args.count):
        image = render_print(args.char, face, size=args.size, seed=args.seed + n, strength=args.strength)
        path = args.out / f"U+{ord(args.char):04X}_{args.seed + n}.png"
        Image.fromarray(image).save(path)
        print(path)


def _cmd_block(args: argparse.Namespace) -> None:
    from .fonts import resolve_fonts
    from .glyphs import render_glyph_mask
    from .meshes import CarveParams, carve_block, save_mesh

    face = resolve_fonts([args.font])[0]
    mask = render_glyph_mask(args.char, face, size=args.resolution)
    mesh, _ = carve_block(mask, CarveParams(resolution=args.resolution), seed=args.seed)
    save_mesh(mesh, args.out)
    print(f"{args.out}: {len(mesh.triangles)} triangles")


def _cmd_depth(args: argparse.Namespace) -> None:
    import time

    from PIL import Image
    from tqdm import tqdm

    from .depth import mesh_depth_views

    meshes = list_files(args.mesh, MESH_SUFFIXES, "mesh")
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for path in tqdm(meshes, desc="depth", unit="mesh", disable=True if len(meshes) < 2 else None):
        views = mesh_depth_views(path, size=args.size, views=args.views, seed=args.seed)
        for v, view in enumerate(views):
            Image.fromarray(view).save(args.out / f"{path.stem}_v{v}.png")
    seconds = time.perf_counter() - start
    n = len(meshes) * args.views
    print(f"{n} views of {len(meshes)} mesh(es) in {seconds:.2f} s ({n / seconds:.1f} views/s) -> {args.out}")


def _cmd_retrieval_set(args: argparse.Namespace) -> None:
    from .retrieval_set import RetrievalSetConfig, generate_retrieval_set, preview_sheet

    config = RetrievalSetConfig(chars=args.chars, charset=args.charset, fonts=args.fonts, seed=args.seed,
                                strength=args.strength, distractors=args.distractors,
                                resolution=args.resolution, mesh_format=args.mesh_format, workers=args.workers)
    summary = generate_retrieval_set(config, args.out)
    print(f"{summary['queries']} queries, {summary['blocks']} blocks in {summary['seconds']} s -> {summary['out']}")
    if args.preview:
        print(f"preview: {preview_sheet(args.out, args.preview)}")


def _cmd_training_set(args: argparse.Namespace) -> None:
    from .fonts import choose_faces
    from .training_set import TrainingSetConfig, generate_training_set

    faces = choose_faces(args.fonts, args.exclude_fonts)
    config = TrainingSetConfig(charset=args.charset, chars=args.chars, skip_chars=args.skip_chars,
                               fonts=[f.label for f in faces], faces_per_char=args.faces_per_char,
                               prints_per_class=args.prints, depth_per_class=args.views, size=args.size,
                               resolution=args.resolution, seed=args.seed, workers=args.workers)
    summary = generate_training_set(config, args.out, faces=faces)
    print(f"{summary['classes']} classes, {summary['images']} images in {summary['seconds']} s -> {summary['out']}")
