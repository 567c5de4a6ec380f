#!/usr/bin/env python3
"""Measure how much of a character set each installed font face really draws, cold and cached.

    python scripts/coverage_report.py --charset nom --cache-dir /tmp/sinonom-cov

Prints the coverage table, how many characters at least one face draws, and both timings. With an
empty --cache-dir the first pass is cold (every face measured) and the second is served from the cache.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from datagen.charsets import load_charset
from datagen.fonts import (
    coverage_table,
    default_cache_dir,
    discover_fonts,
    faces_coverage,
    format_coverage_table,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--charset", default="nom", help="charset spec (default: %(default)s)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="coverage cache (default: $SINONOM_CACHE "
                        "or ~/.cache/sinonom)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: up to 2)")
    parser.add_argument("--font", action="append", default=[], help="extra font file or folder")
    args = parser.parse_args(argv)

    chars = load_charset(args.charset)
    started = time.perf_counter()
    faces = discover_fonts(extra=args.font)
    discovered = time.perf_counter() - started
    timings = []
    for _ in range(2):
        started = time.perf_counter()
        coverage = faces_coverage(faces, chars, args.cache_dir, args.workers)
        timings.append(time.perf_counter() - started)

    print(format_coverage_table(coverage_table(faces, chars, args.cache_dir, args.workers)))  # cached now
    drawn = set().union(*coverage.values())
    print(f"\n{len(faces)} faces in {len({f.path for f in faces})} files (discovered in {discovered:.2f} s); "
          f"charset {args.charset!r}: {len(chars)} chars, {len(drawn)} ({len(drawn) / len(chars):.1%}) drawn "
          f"by at least one face, {sum(ord(c) > 0xFFFF for c in drawn)} of them beyond the BMP")
    print(f"coverage: first pass {timings[0]:.1f} s, second (cached) {timings[1]:.2f} s; "
          f"cache {args.cache_dir or default_cache_dir()}")


if __name__ == "__main__":
    main()
