#!/usr/bin/env python3
"""Split characters and font faces for an honest experiment: what training sees, what tests keep unseen.

Writes to OUT: train.txt, val.txt, test_seen.txt (characters also in training), zeroshot.txt (characters
never in training), and faces.json (training faces vs held-out test faces). Test characters are drawn
only from those that at least two held-out faces really draw, so every query gets a hard distractor.

    python scripts/make_splits.py --out data/splits
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from datagen.charsets import load_charset
from datagen.fonts import default_faces, faces_coverage, split_by_name

TEST_FACES = ["UMing", "UKai", "IPAmj", "WenKai", "Serif CJK TC SemiBold"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/splits"))
    parser.add_argument("--charset", default="nom")
    parser.add_argument("--train-chars", type=int, default=2500)
    parser.add_argument("--val-chars", type=int, default=200)
    parser.add_argument("--test-chars", type=int, default=500)
    parser.add_argument("--zeroshot-chars", type=int, default=500)
    parser.add_argument("--test-faces", nargs="+", default=TEST_FACES, help="name parts of held-out faces")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    faces = default_faces()
    train_faces, held_out = split_by_name(faces, args.test_faces)
    chars = load_charset(args.charset)
    coverage = faces_coverage(faces, chars)
    test_drawable = {c for c in chars if sum(c in coverage[f] for f in held_out) >= 2}
    train_drawable = [c for c in chars if any(c in coverage[f] for f in train_faces)]

    rng = np.random.default_rng(args.seed)
    both = [c for c in train_drawable if c in test_drawable]
    order = rng.permutation(len(both))
    zeroshot = [both[i] for i in order[: args.zeroshot_chars]]
    rest = [c for c in train_drawable if c not in set(zeroshot)]
    train = [rest[i] for i in sorted(rng.choice(len(rest), min(args.train_chars, len(rest)), replace=False))]
    left = [c for c in rest if c not in set(train)]
    val = [left[i] for i in sorted(rng.choice(len(left), min(args.val_chars, len(left)), replace=False))]
    seen_testable = [c for c in train if c in test_drawable]
    test_seen = [seen_testable[i] for i in sorted(rng.choice(len(seen_testable), args.test_chars, replace=False))]

    args.out.mkdir(parents=True, exist_ok=True)
    for name, items in (("train", train), ("val", val), ("test_seen", test_seen), ("zeroshot", zeroshot)):
        (args.out / f"{name}.txt").write_text("\n".join(items) + "\n", encoding="utf-8")
        print(f"{name:10s} {len(items):5d} characters -> {args.out / (name + '.txt')}")
    (args.out / "faces.json").write_text(json.dumps({"train": [f.label for f in train_faces],
                                                     "test": [f.label for f in held_out]}, indent=2) + "\n")
    print(f"faces: {len(train_faces)} for training, {len(held_out)} held out: {[f.label for f in held_out]}")


if __name__ == "__main__":
    main()
