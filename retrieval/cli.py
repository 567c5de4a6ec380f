"""`sinonom`: one entry point with sub-commands, ultralytics-style.

Every sub-command imports its heavy libraries lazily so `sinonom --help` is instant. Bad input ends in
one line on stderr and exit status 2 (set SINONOM_DEBUG=1 for the traceback).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from datagen import cli as datagen_cli

from . import commands

EPILOG = """\
typical session:
  sinonom datagen retrieval-set --chars 200 --out data/val        # blocks + prints + labels.csv
  sinonom datagen depth data/val/database --out views/             # look at depth views
  sinonom datagen fonts --charset nom                              # which fonts draw which characters
  sinonom build-index --meshes data/val/database --out indexes/val # embed blocks with the shipped model
  sinonom query data/val/queries/0.png --index indexes/val -k 5    # which block printed this?
  sinonom benchmark data/val --baselines                           # MRR@5 / recall@k, side by side
  sinonom demo                                                     # all of the above on 200 characters

run `sinonom COMMAND --help` for the options and examples of each command.
"""


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for tests and for documentation)."""
    parser = argparse.ArgumentParser(
        prog="sinonom",
        description="Sino-Nom character retrieval: query a print image, get the matching carved woodblock "
                    "(STL/OBJ/PLY) or Unicode character.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    datagen_cli.register(sub)
    commands.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run, and turn expected failures into one clear line."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("sinonom: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError) as exc:
        if os.environ.get("SINONOM_DEBUG"):
            raise
        print(f"sinonom {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
