#!/usr/bin/env python3
"""Speed and accuracy of `sinonom read` on generated pages with their truth (page_*.jpg + page_*.json).

    sinonom build-index --fonts HanaMinA --fonts BabelStone --chars nomnaocr_freq --out runs/chars
    python scripts/bench_read.py runs/localizer/heldout/pages/val --index runs/chars [--big 4]

For every page, `read_page` (localise, crop, embed, search) runs as `sinonom read` runs it, and the
boxes are matched to the truth at IoU 0.5. Reported: pages/s and characters/s (image decoding
included), box recall, top-1 and top-5 accuracy of the matched boxes' candidates, the share of truth
characters read right, and the peak resident memory. --big N also reads the largest page enlarged N
times (a high-resolution scan) with --scale 1/N, to show that a large page is read tile by tile in
bounded memory and gives the same characters.
"""
from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
from PIL import Image

from datagen.files import open_image
from datagen.localize import load_localizer, match_boxes
from retrieval.pipeline import open_index
from retrieval.read import DetectOptions, read_page


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def score_page(result: dict, truth: dict) -> dict:
    """Counts of truth characters, matched boxes, right top-1 and top-5 labels; the same for the main-size
    characters alone (the double-line small ones are ~half their size)."""
    chars = result["chars"]
    pred = np.array([c["box"] + [c["score"]] for c in chars], np.float64).reshape(-1, 5)
    gt = np.array([c["box"] for c in truth["chars"]], np.float64).reshape(-1, 4)
    matched = match_boxes(pred, gt)
    counts = {"truth": len(gt), "matched": int((matched >= 0).sum()), "top1": 0, "top5": 0,
              "detections": len(chars), "main_matched": 0, "main_top1": 0}
    for char, m in zip(chars, matched):
        if m < 0:
            continue
        labels, true = [c["label"] for c in char["candidates"]], truth["chars"][m]
        counts["top1"] += bool(labels) and labels[0] == true["char"]
        counts["top5"] += true["char"] in labels
        if true["kind"] == "main":
            counts["main_matched"] += 1
            counts["main_top1"] += bool(labels) and labels[0] == true["char"]
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pages", type=Path, help="folder of page_*.jpg with page_*.json truth beside them")
    parser.add_argument("--index", type=Path, required=True, help="character index (build-index --fonts)")
    parser.add_argument("--localizer", type=Path, help="YOLO weights (default: the shipped localiser)")
    parser.add_argument("--limit", type=int, help="first N pages only")
    parser.add_argument("--big", type=int, default=0, metavar="N", help="also read the largest page enlarged N times")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()

    truths = sorted(args.pages.glob("*.json"))[: args.limit]
    if not truths:
        raise SystemExit(f"{args.pages}: no page_*.json truth files")
    localizer = load_localizer(args.localizer)
    index, embedder = open_index(args.index)
    options = DetectOptions()
    read_page(np.asarray(open_image(truths[0].with_suffix(".jpg"))), localizer, index, embedder, options=options)  # warm-up

    totals: dict[str, int] = {}
    start = time.perf_counter()
    pixels = {}
    for path in truths:
        result = read_page(np.asarray(open_image(path.with_suffix(".jpg"))), localizer, index, embedder, options=options)
        pixels[path] = result["width"] * result["height"]
        for key, value in score_page(result, json.loads(path.read_text(encoding="utf-8"))).items():
            totals[key] = totals.get(key, 0) + value
    seconds = time.perf_counter() - start
    report = {
        "pages": len(truths), "index_items": len(index), "seconds": round(seconds, 2),
        "pages_per_s": round(len(truths) / seconds, 3), "chars_per_s": round(totals["detections"] / seconds, 1),
        "box_recall": round(totals["matched"] / totals["truth"], 4),
        "top1_of_matched": round(totals["top1"] / max(totals["matched"], 1), 4),
        "top5_of_matched": round(totals["top5"] / max(totals["matched"], 1), 4),
        "top1_of_matched_main": round(totals["main_top1"] / max(totals["main_matched"], 1), 4),
        "chars_read_right": round(totals["top1"] / totals["truth"], 4),
        "peak_rss_mib": round(peak_rss_mib()), **totals,
    }
    print(f"{report['pages']} pages in {report['seconds']} s: {report['pages_per_s']} pages/s, "
          f"{report['chars_per_s']} characters/s; box recall {report['box_recall']:.4f}, top-1 "
          f"{report['top1_of_matched']:.4f} / top-5 {report['top5_of_matched']:.4f} of matched boxes "
          f"(top-1 {report['top1_of_matched_main']:.4f} of the main-size ones), "
          f"{report['chars_read_right']:.2%} of all characters read right; peak memory {report['peak_rss_mib']} MiB")

    if args.big:
        largest = max(truths, key=lambda path: pixels[path])
        page = open_image(largest.with_suffix(".jpg"))
        big = np.asarray(page.resize((page.width * args.big, page.height * args.big), Image.BICUBIC))
        truth = json.loads(largest.read_text(encoding="utf-8"))
        truth["chars"] = [{**c, "box": [v * args.big for v in c["box"]]} for c in truth["chars"]]
        before = peak_rss_mib()
        start = time.perf_counter()
        result = read_page(big, localizer, index, embedder, options=DetectOptions(scale=1 / args.big))
        scored = score_page(result, truth)
        report["big_page"] = {"width": big.shape[1], "height": big.shape[0], "megapixels": round(big.size / 3e6, 1),
                              "seconds": round(time.perf_counter() - start, 2), "peak_rss_mib": round(peak_rss_mib()),
                              "peak_rss_before_mib": round(before), **scored}
        print(f"big page {big.shape[1]}x{big.shape[0]} ({report['big_page']['megapixels']} MP, --scale 1/{args.big}): "
              f"{report['big_page']['seconds']} s, {scored['matched']}/{scored['truth']} boxes matched, "
              f"{scored['top1']} read right; peak memory {before:.0f} -> {report['big_page']['peak_rss_mib']} MiB")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
