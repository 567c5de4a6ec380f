"""Make the character localiser end to end and measure it: the recipe behind datagen/data/localizer.pt.

1. synthetic woodblock pages from the training faces (YOLO tiles of --imgsz px),
2. YOLOv8n trained from scratch, offline, on the CPU,
3. held-out pages from faces and seeds never seen in training: precision, recall (IoU 0.5), mAP50 and
   reading order of whole pages, tiled as `sinonom locate` does,
4. their column patches aligned to the transcripts (share aligned, crops checked against the truth),
5. --ship copies the weights to datagen/data/localizer.pt (the default of `sinonom locate` / `read`).

Everything lands in OUT (report.json holds every figure). The shipped weights (about 32 minutes on 2 CPU cores):
    python scripts/train_localizer.py --out runs/localizer --pages 150 --epochs 15 --hours 0.5 --ship
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datagen.align import MIN_SCORE_GAP, align_patches, verify_crops  # noqa: E402
from datagen.fonts import default_faces, split_by_name  # noqa: E402
from datagen.localize import (default_weights_path, detect, evaluate_localizer, load_localizer,  # noqa: E402
                              train_localizer)
from datagen.pages import generate_pages, page_fonts  # noqa: E402

# Held out from training by default: one face of each main style (Ming/Song, Kai, Hei, brush).
HELD_OUT_FONTS = ("TW-Sung", "AR PL UKai", "Noto Sans CJK TC Medium", "KouzanBrushFont Regular", "IPAmj")


def split_faces(held_out: list[str]) -> tuple[list, list]:
    """(training faces, held-out faces) among the installed faces that pages can use."""
    train, test = split_by_name([font.face for font in page_fonts(default_faces())], held_out)
    if not train or not test:
        raise SystemExit(f"need faces on both sides of the split; held out {[f.label for f in test]}")
    return train, test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/localizer"))
    parser.add_argument("--pages", type=int, default=120, help="training pages (cut into tiles)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--hours", type=float, help="cap the training time (ultralytics fits the epochs into it)")
    parser.add_argument("--imgsz", type=int, default=320, help="training tile side = YOLO image size")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="page-rendering and data-loading processes")
    parser.add_argument("--test-pages", type=int, default=30, help="held-out pages to evaluate on")
    parser.add_argument("--held-out-fonts", action="append", metavar="NAME",
                        help=f"face name parts kept out of training (default: {', '.join(HELD_OUT_FONTS)})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights", type=Path, help="skip data and training: evaluate these weights")
    parser.add_argument("--conf", type=float, default=0.25)
    parser.add_argument("--min-gap", type=float, default=MIN_SCORE_GAP, help="alignment score gap (align_boxes)")
    parser.add_argument("--ship", action="store_true", help=f"copy the weights to {default_weights_path()}")
    args = parser.parse_args()

    train_faces, test_faces = split_faces(args.held_out_fonts or list(HELD_OUT_FONTS))
    report: dict = {"args": {k: str(v) for k, v in vars(args).items()},
                    "train_faces": [f.label for f in train_faces], "test_faces": [f.label for f in test_faces]}
    weights = args.weights
    if weights is None:
        data = generate_pages(args.out / "data", args.pages, seed=args.seed, faces=train_faces, size=args.imgsz,
                              overlap=80, workers=args.workers)
        report["train_data"] = {k: data[k] for k in ("pages", "characters", "yolo_images", "seconds", "pages_per_s")}
        print(f"[1/4] {data['pages']} pages -> {data['yolo_images']} tiles in {data['seconds']} s", flush=True)
        start = time.perf_counter()
        weights = train_localizer(args.out / "data" / "data.yaml", args.out / "run", epochs=args.epochs,
                                  imgsz=args.imgsz, batch=args.batch, workers=args.workers, seed=args.seed,
                                  cache="ram", **({"time": args.hours} if args.hours else {}))
        report["train_seconds"] = round(time.perf_counter() - start, 1)
        print(f"[2/4] trained in {report['train_seconds']} s -> {weights}", flush=True)
    report["weights"] = str(weights)

    held_out = generate_pages(args.out / "heldout", args.test_pages, seed=args.seed + 7919, faces=test_faces, size=0,
                              val_share=1.0, workers=args.workers)
    model = load_localizer(weights)
    metrics = evaluate_localizer(model, args.out / "heldout" / "pages" / "val", conf=args.conf)
    report["heldout"] = metrics
    print(f"[3/4] held-out pages: precision {metrics['precision']:.4f} recall {metrics['recall']:.4f} "
          f"mAP50 {metrics['map50']:.4f} reading order {metrics['reading_order_pages']:.2%} "
          f"({metrics['pages_per_s']} pages/s)", flush=True)

    def detector(image):
        return detect([image], model, conf=args.conf)[0]

    alignment = align_patches(args.out / "heldout" / "patches.txt", args.out / "crops", detector,
                              min_gap=args.min_gap)
    alignment["verified"] = verify_crops(args.out / "crops" / "crops.csv", args.out / "heldout" / "patches.jsonl")
    report["alignment"] = alignment
    report["heldout_pages_generated_per_s"] = held_out["pages_per_s"]
    print(f"[4/4] patches aligned {alignment['share_aligned']:.2%} ({alignment['aligned']}/{alignment['patches']}), "
          f"crops right {alignment['verified']['accuracy']:.2%}", flush=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.ship:
        shutil.copyfile(weights, default_weights_path())
        print(f"shipped: {default_weights_path()}")


if __name__ == "__main__":
    main()
