"""Whole pages in: `sinonom locate` (character boxes in reading order) and `sinonom read` (localise, crop,
retrieve each character from a character index, transcribe, draw), plus `sinonom localizer ...` to make
the localiser's data, train it offline, evaluate it and cut labelled crops out of transcribed patches.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from datagen.align import MIN_SCORE_GAP, crops_of
from datagen.files import list_images, open_image
from datagen.fonts import FontFace, default_faces, face_cmap, load_pil_font
from datagen.localize import column_order, detect


RAW = argparse.RawDescriptionHelpFormatter
# Faces tried first for drawing labels on overlays (broad Han-Nom coverage), by part of their name.
LABEL_FACE_PREFERENCE = ("BabelStone Han", "HanaMinA", "Noto Serif CJK", "Noto Sans CJK", "TW-Sung", "HanaMinB")


@dataclass(frozen=True)
class DetectOptions:
    """How pages are localised (see datagen.localize.detect)."""

    conf: float = 0.25
    iou: float = 0.5
    tile: int = 416
    overlap: int = 96
    scale: float = 1.0


def locate_page(image: np.ndarray, localizer, options: DetectOptions = DetectOptions()
                ) -> tuple[np.ndarray, list[list[int]]]:
    """Boxes (N, 5) [x1, y1, x2, y2, score] in reading order, and the columns as index lists into them."""
    boxes = detect([image], localizer, conf=options.conf, iou=options.iou, tile=options.tile,
                   overlap=options.overlap, scale=options.scale)[0]
    columns = column_order(boxes)
    ordered = boxes[[i for column in columns for i in column]] if len(boxes) else boxes
    renumbered, start = [], 0
    for column in columns:
        renumbered.append(list(range(start, start + len(column))))
        start += len(column)
    return ordered, renumbered


def read_boxes(image: np.ndarray, boxes: np.ndarray, index, embedder, k: int = 5) -> list[dict]:
    """Top-k index items of each box's crop: [{"box", "score", "candidates": [{"label", "id", "distance"}]}]."""
    from .embed import embed_arrays  # torch: imported when a page is read, not when the CLI starts

    if len(boxes) == 0:
        return []
    embeddings = embed_arrays(embedder, crops_of(image, boxes))
    found = index.search(embeddings, k=k, model=embedder.fingerprint())
    chars = []
    for n, box in enumerate(boxes):
        candidates = [{"label": item.get("label", ""), "id": item["id"], "distance": round(dist, 4)}
                      for item, dist in zip(found.items(n), found.l2_distances(n))]
        chars.append({"box": [round(float(v), 1) for v in box[:4]], "score": round(float(box[4]), 4),
                      "candidates": candidates})
    return chars


def read_page(image: np.ndarray, localizer, index, embedder, k: int = 5,
              options: DetectOptions = DetectOptions()) -> dict:
    """Localise, crop and retrieve every character of a page: chars in reading order and the text
    (top-1 labels, one line per column; '?' where the best item has no label)."""
    boxes, columns = locate_page(image, localizer, options)
    chars = read_boxes(image, boxes, index, embedder, k)
    for number, column in enumerate(columns):
        for i in column:
            chars[i]["column"] = number
    text = "\n".join("".join((chars[i]["candidates"][0]["label"] or "?") if chars[i]["candidates"] else "?"
                             for i in column) for column in columns)
    return {"width": image.shape[1], "height": image.shape[0], "text": text, "chars": chars}


def label_face(labels: Sequence[str]) -> FontFace | None:
    """An installed face that draws every label character (the one drawing most of them otherwise)."""
    wanted = {ord(c) for label in labels for c in label}
    faces = default_faces()

    def preference(face: FontFace) -> int:
        ranks = (i for i, name in enumerate(LABEL_FACE_PREFERENCE) if name in face.label)
        return next(ranks, len(LABEL_FACE_PREFERENCE))

    best, best_count = None, -1
    for face in sorted(faces, key=preference):
        count = len(wanted & face_cmap(face))
        if count == len(wanted):
            return face
        if count > best_count:
            best, best_count = face, count
    return best


def draw_overlay(image: np.ndarray, chars: Sequence[dict], out_path: str | Path) -> Path:
    """Save the page with its boxes beside a panel with each box's top-1 character drawn in its place."""
    page = Image.fromarray(image).convert("RGB")
    panel = Image.new("RGB", page.size, (250, 247, 238))
    draw_page, draw_panel = ImageDraw.Draw(page), ImageDraw.Draw(panel)
    labels = [c["candidates"][0]["label"] if c["candidates"] else "" for c in chars]
    face = label_face([label for label in labels if label]) if any(labels) else None
    for char, label in zip(chars, labels):
        x1, y1, x2, y2 = char["box"]
        draw_page.rectangle([x1, y1, x2, y2], outline=(220, 30, 30), width=2)
        draw_panel.rectangle([x1, y1, x2, y2], outline=(200, 200, 200), width=1)
        if label and face is not None:
            size = max(6, round(max(x2 - x1, y2 - y1) * 0.9))
            font = load_pil_font(str(face.path), face.index, size)
            draw_panel.text(((x1 + x2) / 2, (y1 + y2) / 2), label, fill=(0, 0, 0), font=font, anchor="mm")
    sheet = Image.new("RGB", (page.width * 2 + 8, page.height), (255, 255, 255))
    sheet.paste(page, (0, 0))
    sheet.paste(panel, (page.width + 8, 0))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_path)
    return out_path


# --- CLI ------------------------------------------------------------------------------------------


def _add_detect_arguments(p: argparse.ArgumentParser, scale: bool = True) -> None:
    p.add_argument("--localizer", type=Path, help="YOLO weights (default: the shipped datagen/data/localizer.pt)")
    p.add_argument("--conf", type=float, default=0.25, help="box score threshold (default 0.25)")
    p.add_argument("--tile", type=int, default=416, help="tile side in px, pages are cut into (default 416)")
    p.add_argument("--overlap", type=int, default=96, help="tile overlap in px, > the largest character (default 96)")
    if scale:
        p.add_argument("--scale", type=float, default=1.0,
                       help="resize pages first so characters are ~25-45 px (e.g. 0.5 for a 600 dpi scan)")


def _detect_options(args: argparse.Namespace) -> DetectOptions:
    return DetectOptions(conf=args.conf, tile=args.tile, overlap=args.overlap, scale=args.scale)


def _per_page_path(base: Path, page: Path, many: bool) -> Path:
    """`base` itself for one page; base_<page stem><suffix> for several."""
    return base.with_name(f"{base.stem}_{page.stem}{base.suffix}") if many else base


def _write_json(data: object, target: str) -> None:
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if target == "-":
        sys.stdout.write(text)
    else:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text(text, encoding="utf-8")


def register_read(sub: argparse._SubParsersAction) -> None:
    """Add `locate`, `read` and `localizer` to the top-level parser."""
    p = sub.add_parser("locate", formatter_class=RAW, help="find the character boxes of pages, in reading order",
                       description="Localise every character of page images with the YOLO localiser. Boxes are "
                                   "[x1, y1, x2, y2, score] in page pixels, in reading order (columns right to "
                                   "left, top to bottom; double-line notes right sub-column first).",
                       epilog="examples:\n  sinonom locate page.jpg --json boxes.json\n"
                              "  sinonom locate scans/ --json - --crops crops/ --scale 0.5")
    p.add_argument("pages", nargs="+", type=Path, metavar="PAGE", help="page images or folders of them")
    p.add_argument("--json", dest="json_out", metavar="OUT", help="write the boxes as JSON to OUT ('-': stdout)")
    p.add_argument("--crops", type=Path, metavar="DIR", help="save each character crop as DIR/<page>/<n>.png")
    _add_detect_arguments(p)
    p.set_defaults(func=_cmd_locate)

    p = sub.add_parser("read", formatter_class=RAW, help="transcribe pages: localise, crop, retrieve each character",
                       description="Localise the characters of each page, embed their crops with the index's "
                                   "model and print the top-1 characters in reading order (one line per column). "
                                   "--json adds every box with its top-k candidates and distances.",
                       epilog="examples:\n"
                              "  sinonom build-index --fonts hanazono --chars nomnaocr_freq --out indexes/chars\n"
                              "  sinonom read page.jpg --index indexes/chars -k 5 --json page.json --overlay page.png")
    p.add_argument("pages", nargs="+", type=Path, metavar="PAGE", help="page images or folders of them")
    p.add_argument("--index", type=Path, required=True, help="character index folder (sinonom build-index --fonts)")
    p.add_argument("-k", type=int, default=5, help="candidates per character (default 5)")
    p.add_argument("--json", dest="json_out", metavar="OUT",
                   help="write boxes, candidates and text as JSON ('-': stdout)")
    p.add_argument("--overlay", type=Path, metavar="PNG",
                   help="draw boxes and top-1 characters (several pages: PNG stem + _<page>)")
    p.add_argument("--model", type=Path, help="embed with this checkpoint (refused unless it built the index)")
    _add_detect_arguments(p)
    p.set_defaults(func=_cmd_read)

    p = sub.add_parser("localizer", formatter_class=RAW, help="synthetic pages, offline YOLO training, evaluation, "
                                                                  "patch alignment",
                       description="Make and check the character localiser used by locate and read.",
                       epilog="example (the whole recipe, see also scripts/train_localizer.py):\n"
                              "  sinonom localizer pages --out data/pages -n 150\n"
                              "  sinonom localizer train --data data/pages/data.yaml --out runs/localizer\n"
                              "  sinonom localizer pages --out data/pages_test -n 20 --seed 99 --fonts sung --size 0\n"
                              "  sinonom localizer eval --localizer runs/localizer/localizer.pt --pages "
                              "data/pages_test/pages/val\n"
                              "  sinonom localizer align data/pages_test/patches.txt --out data/crops")
    lsub = p.add_subparsers(dest="localizer_command", required=True, metavar="COMMAND")
    q = lsub.add_parser("pages", help="synthetic woodblock pages as a YOLO dataset, with patches")
    q.add_argument("--out", type=Path, required=True)
    q.add_argument("-n", type=int, default=100, help="pages (default 100)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--fonts", action="append", default=[], metavar="NAME_OR_PATH",
                   help="faces (repeatable; default: every installed face drawing half the charset)")
    q.add_argument("--exclude-fonts", action="append", default=[], metavar="NAME",
                   help="leave out faces whose name contains NAME (keep them unseen for testing)")
    q.add_argument("--charset", default="nomnaocr_freq", help="characters, most frequent first")
    q.add_argument("--size", type=int, default=320, help="YOLO tile side in px; 0 = whole pages (default 320)")
    q.add_argument("--overlap", type=int, default=80)
    q.add_argument("--val-share", type=float, default=0.1)
    q.add_argument("--workers", type=int, default=1, help="rendering processes")
    q.set_defaults(func=_cmd_pages)
    q = lsub.add_parser("train", help="train YOLOv8n from scratch, offline")
    q.add_argument("--data", type=Path, required=True, help="data.yaml of `localizer pages`")
    q.add_argument("--out", type=Path, required=True, help="run folder (weights end in OUT/localizer.pt)")
    q.add_argument("--epochs", type=int, default=10)
    q.add_argument("--imgsz", type=int, default=320)
    q.add_argument("--batch", type=int, default=16)
    q.add_argument("--workers", type=int, default=2, help="data-loading processes")
    q.add_argument("--hours", type=float, help="cap the training time (ultralytics fits the epochs into it)")
    q.add_argument("--device", default="cpu")
    q.set_defaults(func=_cmd_train)
    q = lsub.add_parser("eval", help="precision, recall, mAP50 and reading order on pages with truth JSON")
    q.add_argument("--pages", type=Path, required=True, help="folder of page_*.jpg + page_*.json")
    q.add_argument("--limit", type=int)
    _add_detect_arguments(q, scale=False)
    q.set_defaults(func=_cmd_eval)
    q = lsub.add_parser("align", help="labelled crops from NomNaOCR-style patches (path<TAB>text)",
                        description="Detect the characters of each patch, put them in reading order and pair them "
                                    "with the transcript. Writes OUT/crops/<char>/*.png, OUT/crops.csv, "
                                    "OUT/skipped.tsv (patches that could not be paired for certain, with the reason) "
                                    "and OUT/report.json (share aligned).")
    q.add_argument("patches", type=Path, help="patch list: one `path<TAB>transcript` line per column image")
    q.add_argument("--out", type=Path, required=True, help="folder for the crop dataset")
    q.add_argument("--truth", type=Path, help="patches.jsonl of `localizer pages`: check each crop's box")
    q.add_argument("--limit", type=int, help="first N patches only")
    q.add_argument("--min-gap", type=float, default=MIN_SCORE_GAP,
                   help="with more boxes than characters, keep the strongest only when they outscore the rest "
                        f"by this much (default {MIN_SCORE_GAP}; a large value accepts exact counts only)")
    _add_detect_arguments(q)
    q.set_defaults(func=_cmd_align)


def _cmd_locate(args: argparse.Namespace) -> None:
    from datagen.localize import load_localizer

    pages = list_images(args.pages)
    localizer = load_localizer(args.localizer)
    results, start = [], time.perf_counter()
    for page in pages:
        image = np.asarray(open_image(page, "RGB"))
        boxes, columns = locate_page(image, localizer, _detect_options(args))
        results.append({"page": str(page), "width": image.shape[1], "height": image.shape[0],
                        "boxes": [[round(float(v), 1) for v in b[:4]] + [round(float(b[4]), 4)] for b in boxes],
                        "columns": columns})
        if args.crops:
            folder = args.crops / page.stem
            folder.mkdir(parents=True, exist_ok=True)
            for n, crop in enumerate(crops_of(image, boxes)):
                Image.fromarray(crop).save(folder / f"{n:04d}.png")
        if args.json_out != "-":
            print(f"{page}: {len(boxes)} characters in {len(columns)} columns")
    seconds = time.perf_counter() - start
    if args.json_out:
        _write_json(results, args.json_out)
    print(f"{len(pages)} page(s) in {seconds:.2f} s ({len(pages) / seconds:.2f} pages/s)", file=sys.stderr)


def _cmd_read(args: argparse.Namespace) -> None:
    from datagen.localize import load_localizer

    from .pipeline import open_index

    pages = list_images(args.pages)
    localizer = load_localizer(args.localizer)
    index, embedder = open_index(args.index, args.model)
    results, start = [], time.perf_counter()
    for page in pages:
        image = np.asarray(open_image(page, "RGB"))
        result = {"page": str(page), **read_page(image, localizer, index, embedder, k=args.k,
                                                 options=_detect_options(args))}
        results.append(result)
        if args.json_out != "-":
            if len(pages) > 1:
                print(f"# {page}")
            print(result["text"])
        if args.overlay:
            target = draw_overlay(image, result["chars"], _per_page_path(args.overlay, page, len(pages) > 1))
            print(f"overlay: {target}", file=sys.stderr)
    seconds = time.perf_counter() - start
    if args.json_out:
        _write_json(results, args.json_out)
    print(f"{len(pages)} page(s), {sum(len(r['chars']) for r in results)} characters in {seconds:.2f} s "
          f"({len(pages) / seconds:.2f} pages/s)", file=sys.stderr)


def _cmd_pages(args: argparse.Namespace) -> None:
    from datagen.fonts import choose_faces
    from datagen.pages import generate_pages

    faces = choose_faces(args.fonts, args.exclude_fonts)
    summary = generate_pages(args.out, args.n, seed=args.seed, faces=faces, size=args.size, overlap=args.overlap,
                             val_share=args.val_share, charset=args.charset, workers=args.workers)
    print(f"{summary['pages']} pages ({summary['characters']} characters, {summary['yolo_images']} YOLO images, "
          f"{summary['patches']} patches) in {summary['seconds']} s ({summary['pages_per_s']} pages/s) -> {args.out}")


def _cmd_train(args: argparse.Namespace) -> None:
    from datagen.localize import train_localizer

    weights = train_localizer(args.data, args.out, epochs=args.epochs, imgsz=args.imgsz, batch=args.batch,
                              workers=args.workers, device=args.device, **({"time": args.hours} if args.hours else {}))
    print(f"localiser weights: {weights}")


def _cmd_eval(args: argparse.Namespace) -> None:
    from datagen.localize import evaluate_localizer, load_localizer

    metrics = evaluate_localizer(load_localizer(args.localizer), args.pages, conf=args.conf, tile=args.tile,
                                 overlap=args.overlap, limit=args.limit)
    print(json.dumps(metrics, indent=2))


def _cmd_align(args: argparse.Namespace) -> None:
    from datagen.align import align_patches, verify_crops
    from datagen.localize import load_localizer

    model = load_localizer(args.localizer)

    def detector(image: np.ndarray) -> np.ndarray:
        return detect([image], model, conf=args.conf, tile=args.tile, overlap=args.overlap, scale=args.scale)[0]

    report = align_patches(args.patches, args.out, detector, limit=args.limit, min_gap=args.min_gap)
    if args.truth:
        report["verified"] = verify_crops(args.out / "crops.csv", args.truth)
    print(json.dumps(report, indent=2, ensure_ascii=False))
