"""Glyph masks and print degradations."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import TINY_ABSENT, TINY_DRAWN, TINY_EMPTY
from datagen.errors import GlyphMissingError
from datagen.glyphs import render_glyph_mask
from datagen.prints import degrade_print, render_print


def test_mask_is_centred_and_fitted(tiny_font):
    mask = render_glyph_mask(TINY_DRAWN[0], tiny_font, size=64, fill=0.8)
    assert mask.shape == (64, 64) and mask.dtype == np.float32
    rows, cols = np.nonzero(mask > 0.5)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) == pytest.approx(0.8 * 64, abs=3)
    centre = np.array([(rows.min() + rows.max()) / 2, (cols.min() + cols.max()) / 2])
    assert np.allclose(centre, 31.5, atol=2)


@pytest.mark.parametrize("char", [TINY_EMPTY, TINY_ABSENT[0]])
def test_missing_glyphs_raise(tiny_font, char):
    with pytest.raises(GlyphMissingError, match=f"U\\+{ord(char):04X}"):
        render_glyph_mask(char, tiny_font)


def test_print_is_deterministic_for_a_seed(tiny_font):
    a = render_print(TINY_DRAWN[1], tiny_font, size=64, seed=3)
    b = render_print(TINY_DRAWN[1], tiny_font, size=64, seed=3)
    c = render_print(TINY_DRAWN[1], tiny_font, size=64, seed=4)
    assert a.shape == (64, 64) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_clean_print_is_dark_ink_on_light_paper_where_the_glyph_is(tiny_font):
    mask = render_glyph_mask(TINY_DRAWN[2], tiny_font, size=96)
    clean = degrade_print(mask, 0, strength=0.0)
    ink, paper = clean[mask > 0.9], clean[mask < 0.05]
    assert ink.mean() < 90 and paper.mean() > 140


def test_strength_degrades_more(tiny_font):
    mask = render_glyph_mask(TINY_DRAWN[3], tiny_font, size=96)
    ideal = np.where(mask > 0.5, 0, 255).astype(np.float32)
    errors = [np.mean([np.abs(degrade_print(mask, s, strength=st).astype(np.float32) - ideal).mean()
                       for s in range(6)]) for st in (0.0, 1.0, 2.0)]
    assert errors[0] < errors[1] < errors[2]


def test_rgb_and_output_size(tiny_font):
    mask = render_glyph_mask(TINY_DRAWN[0], tiny_font, size=128)
    out = degrade_print(mask, 1, strength=1.0, out_size=200, rgb=True, neighbours=[mask])
    assert out.shape == (200, 200, 3) and out.dtype == np.uint8
