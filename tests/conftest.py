"""Shared fixtures: tiny fonts built by fontTools in a temporary folder (no system fonts needed), one torch
thread for model tests, and `run_cli` to run the CLI in-process."""
from __future__ import annotations

import pytest

from _fonts import (  # noqa: F401  (re-exported for tests: `from conftest import TINY_DRAWN` also works)
    TINY_ABSENT,
    TINY_ALT_SHAPES,
    TINY_BOXED,
    TINY_DRAWN,
    TINY_EMPTY,
    TINY_SHAPES,
    make_test_font,
)
from datagen.fonts import FontFace


@pytest.fixture(scope="session")
def tiny_font(tmp_path_factory: pytest.TempPathFactory) -> FontFace:
    """Draws TINY_DRAWN (asymmetric shapes); TINY_EMPTY has an empty glyph, TINY_BOXED a shared '?' box."""
    path = make_test_font(
        tmp_path_factory.mktemp("fonts") / "tiny.ttf", TINY_SHAPES, empty=TINY_EMPTY, boxed=TINY_BOXED
    )
    return FontFace(path, 0, "SinoNom Tiny Regular")


@pytest.fixture(scope="session")
def tiny_font_alt(tmp_path_factory: pytest.TempPathFactory) -> FontFace:
    """A second face of the same drawn characters: bolder, shifted strokes (hard distractors)."""
    path = make_test_font(
        tmp_path_factory.mktemp("fonts") / "tiny_alt.ttf", TINY_ALT_SHAPES, style="Bold"
    )
    return FontFace(path, 0, "SinoNom Tiny Bold")


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep coverage caches of the tests out of the user's ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SINONOM_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture
def one_thread():
    """One intra-op thread: on a shared 2-core machine two spinning threads can run 20x slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def run_cli(capsys: pytest.CaptureFixture, *argv: object) -> tuple[int, str, str]:
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    from retrieval.cli import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse usage errors and --help
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
