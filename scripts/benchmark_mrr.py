#!/usr/bin/env python3
"""MRR@5 benchmark on a course-format folder (DATASET/database/*.stl, queries/*.png, labels.csv).

    python scripts/benchmark_mrr.py DATASET --model CKPT [--model CKPT2 ...] [--baselines] [--out DIR]

Writes, per method, predictions.csv in the course format, metrics.json and worst.png (the worst
queries beside their top-5), then prints MRR@5 and recall@1/5/10 side by side with stage timings.
Same as `sinonom benchmark`.
"""
from __future__ import annotations

import argparse
import sys

from retrieval.cli import main


def _parser() -> argparse.ArgumentParser:
    from retrieval.commands import add_benchmark_arguments

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_benchmark_arguments(parser)
    return parser


if __name__ == "__main__":
    _parser().parse_args()  # --help and argument errors speak for this script
    sys.exit(main(["benchmark", *sys.argv[1:]]))
