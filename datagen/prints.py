"""Woodblock-print styles: turn an ink mask into a print-like crop (ink, paper, scan artefacts).

A print is made from an ink-coverage mask (a glyph mask, or the inked top surface of a carved block)
by a random but seeded chain of degradations whose amplitudes scale with `strength` (0 = clean,
1 = typical old print, up to ~2 = very worn). Every step uses only the generator it is given, so a
seed reproduces a print exactly.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

from .fonts import FontFace
from .glyphs import render_glyph_mask
from .meshes import inked_surface


@dataclass(frozen=True)
class PrintStyle:
    """Amplitudes of each degradation at strength 1; a seed draws the actual values."""

    stroke_weight_px: float = 1.5  # +- dilation / erosion radius, at 128 px
    ink_spread: float = 0.6  # blur-and-threshold wobble of stroke edges
    ink_breaks: float = 0.15  # share of ink that may drop out in worn places
    rotation_deg: float = 4.0
    shift: float = 0.05  # share of the image size
    scale: float = 0.08
    blur_px: float = 1.0
    noise: float = 10.0  # grey levels of sensor noise
    stains: float = 0.5
    neighbour_prob: float = 0.5  # chance of neighbouring characters showing at each border
    jpeg_quality_min: int = 35


def lowfreq_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Smooth noise in roughly [-1, 1] with features ~`sigma` px: uneven ink, paper texture, stains.

    Drawn on a coarse grid and upsampled: the same look as a wide Gaussian blur at a fraction of the cost.
    """
    coarse = max(4, int(round(max(shape) / max(sigma, 0.5) * 1.5)))
    field = ndimage.gaussian_filter(rng.standard_normal((coarse, coarse)).astype(np.float32), 0.8, mode="wrap")
    field = np.asarray(Image.fromarray(field, mode="F").resize(shape[::-1], Image.Resampling.BICUBIC))
    return field / (np.abs(field).max() + 1e-6)


def stroke_weight(ink: np.ndarray, radius_px: float) -> np.ndarray:
    """Thicken (radius > 0) or thin (radius < 0) strokes by a grey dilation / erosion."""
    r = int(round(abs(radius_px)))
    if r == 0:
        return ink
    footprint = np.hypot(*np.mgrid[-r : r + 1, -r : r + 1]) <= r + 0.3
    op = ndimage.grey_dilation if radius_px > 0 else ndimage.grey_erosion
    return op(ink, footprint=footprint)


def _affine(ink: np.ndarray, rng: np.random.Generator, style: PrintStyle, strength: float) -> np.ndarray:
    """Small rotation, shift and scale of the ink (bilinear, zero ink outside)."""
    size = ink.shape[0]
    angle = rng.uniform(-1, 1) * style.rotation_deg * strength
    scale = 1.0 + rng.uniform(-1, 1) * style.scale * strength
    dx, dy = rng.uniform(-1, 1, 2) * style.shift * strength * size
    img = Image.fromarray((ink * 255).astype(np.uint8))
    img = img.rotate(angle, resample=Image.Resampling.BILINEAR, translate=(dx, dy))
    if abs(scale - 1.0) > 1e-3:
        scaled = img.resize((max(1, round(size * scale)),) * 2, Image.Resampling.BILINEAR)
        canvas = Image.new("L", (size, size), 0)
        canvas.paste(scaled, ((size - scaled.width) // 2, (size - scaled.height) // 2))
        img = canvas
    return np.asarray(img, dtype=np.float32) / 255.0


def _add_neighbours(
    ink: np.ndarray, rng: np.random.Generator, neighbours: Sequence[np.ndarray], prob: float
) -> np.ndarray:
    """Bits of the characters above/below/left/right peeking in at the borders, as in a tight crop."""
    size = ink.shape[0]
    out = ink.copy()
    for side in ("top", "bottom", "left", "right"):
        if not neighbours or rng.random() >= prob:
            continue
        other = neighbours[int(rng.integers(len(neighbours)))]
        other = np.asarray(Image.fromarray((other * 255).astype(np.uint8)).resize((size, size)), np.float32) / 255
        visible = int(size * rng.uniform(0.04, 0.14))  # how much of the neighbour shows
        strip = np.zeros_like(ink)
        if side == "top":
            strip[:visible] = other[-visible:]
        elif side == "bottom":
            strip[-visible:] = other[:visible]
        elif side == "left":
            strip[:, :visible] = other[:, -visible:]
        else:
            strip[:, -visible:] = other[:, :visible]
        out = np.maximum(out, strip)
    return out


def degrade_print(
    ink: np.ndarray,
    seed: int | np.random.Generator,
    strength: float = 1.0,
    out_size: int | None = None,
    neighbours: Sequence[np.ndarray] = (),
    rgb: bool = False,
    style: PrintStyle = PrintStyle(),
) -> np.ndarray:
    """Print-like uint8 image of an ink mask (dark ink on paper): (S, S) grey or (S, S, 3) RGB.

    `ink` is a square float mask in [0, 1] (1 = ink). `neighbours` are masks of other characters used
    for the bits that show at the borders. Deterministic for an integer seed.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    s = max(0.0, float(strength))
    size = ink.shape[0]
    px = size / 128.0  # amplitudes are given at 128 px

    ink = np.clip(ink.astype(np.float32), 0, 1)
    ink = _add_neighbours(ink, rng, neighbours, style.neighbour_prob * min(1.0, s + 0.2))
    ink = _affine(ink, rng, style, s)
    ink = stroke_weight(ink, rng.uniform(-0.35, 1.0) * style.stroke_weight_px * s * px)
    # Ink spread: blur then re-threshold at a level that wanders across the block (uneven inking).
    spread = ndimage.gaussian_filter(ink, sigma=max(0.3, style.ink_spread * s * 1.5 * px))
    level = 0.45 + 0.12 * s * lowfreq_noise(rng, ink.shape, sigma=6 * px)
    edge = 0.04 + 0.03 * rng.random()
    ink = 1.0 / (1.0 + np.exp(-(spread - level) / edge))
    # Breaks: worn wood and dry ink leave gaps in the strokes.
    breaks = lowfreq_noise(rng, ink.shape, sigma=2.5 * px) > 1.0 - style.ink_breaks * s * 2
    ink = ink * np.where(breaks, rng.uniform(0.0, 0.5), 1.0)

    paper_level = rng.choice([rng.uniform(215, 250), rng.uniform(150, 215)], p=[0.7, 0.3])
    ink_level = rng.uniform(10, 70)
    paper = paper_level + 12 * s * lowfreq_noise(rng, ink.shape, sigma=10 * px)
    paper += 4 * s * rng.standard_normal(ink.shape) * (rng.random(ink.shape) < 0.05)  # fibres
    if rng.random() < style.stains * s:
        stain = np.clip(lowfreq_noise(rng, ink.shape, sigma=18 * px), 0, 1)
        paper -= rng.uniform(20, 60) * stain
    ink_tone = ink_level + 25 * s * lowfreq_noise(rng, ink.shape, sigma=4 * px)
    img = paper * (1 - ink) + ink_tone * ink
    img = ndimage.gaussian_filter(img, sigma=max(0.0, rng.uniform(0.2, 1.0) * style.blur_px * s * px))
    img = img + rng.standard_normal(img.shape) * style.noise * s * rng.uniform(0.3, 1.0)

    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    if out_size is not None and out_size != size:
        out = out.resize((out_size, out_size), Image.Resampling.BILINEAR)
    if rgb:  # old paper is yellowish-brown, ink slightly warm
        tint = np.array([1.0, rng.uniform(0.93, 0.99), rng.uniform(0.80, 0.95)], np.float32)
        out = Image.fromarray(np.clip(np.asarray(out, np.float32)[..., None] * tint, 0, 255).astype(np.uint8))
    if s > 0:  # scans are stored as JPEG
        out = jpeg_roundtrip(out, int(rng.integers(style.jpeg_quality_min, 95)))
    return np.asarray(out)


def jpeg_roundtrip(image: Image.Image, quality: int) -> Image.Image:
    """The image as it comes back from a JPEG file of `quality` (scans are stored as JPEG)."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    out = Image.open(io.BytesIO(buffer.getvalue()))
    out.load()
    return out


def render_print(
    char: str,
    face: FontFace,
    size: int = 128,
    seed: int = 0,
    strength: float = 1.0,
    neighbours: Sequence[np.ndarray] = (),
    rgb: bool = False,
) -> np.ndarray:
    """A print-like crop of `char` in `face`: the glyph mask through `degrade_print`."""
    work = max(size, 128)
    mask = render_glyph_mask(char, face, size=work)
    return degrade_print(mask, seed, strength, out_size=size, neighbours=neighbours, rgb=rgb)


def print_block(
    height: np.ndarray,
    work_size: int,
    seed: int | np.random.Generator,
    strength: float = 1.0,
    out_size: int | None = None,
    neighbours: Sequence[np.ndarray] = (),
    rgb: bool = False,
) -> np.ndarray:
    """A print pulled from a carved block: its inked surface at `work_size` px through `degrade_print`.

    Wear, chips and scratches of the block show in its print, as they do on paper.
    """
    ink = Image.fromarray((inked_surface(height) * 255).astype(np.uint8))
    ink = np.asarray(ink.resize((work_size, work_size), Image.Resampling.BILINEAR), np.float32) / 255.0
    return degrade_print(ink, seed, strength, out_size=out_size, neighbours=neighbours, rgb=rgb)
