"""Depth views of carved blocks: orientation against the glyph, print-like contrast, robustness, errors."""
from __future__ import annotations

import numpy as np
import open3d as o3d
import pytest

from datagen.depth import mesh_depth_views, render_depth_views, view_rotations
from datagen.errors import MeshError
from datagen.fonts import FontFace
from datagen.glyphs import render_glyph_mask
from datagen.meshes import CarveParams, carve_block, heightfield_to_mesh, save_mesh

PARAMS = CarveParams(resolution=128)
ASYMMETRIC = "七万丈\U00020000"  # tiny_font glyphs that are far from left-right and up-down symmetric


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.fixture(scope="module")
def glyph_blocks(tiny_font: FontFace) -> dict[str, tuple[np.ndarray, o3d.geometry.TriangleMesh]]:
    """Glyph mask (64 px) and carved block for each asymmetric test character."""
    blocks = {}
    for seed, char in enumerate(ASYMMETRIC):
        mask = render_glyph_mask(char, tiny_font, size=64)
        blocks[char] = (mask, carve_block(mask, PARAMS, seed=seed)[0])
    return blocks


@pytest.mark.parametrize("char", ASYMMETRIC)
def test_view0_reads_like_the_print_without_mirroring(glyph_blocks, char: str) -> None:
    mask, mesh = glyph_blocks[char]
    ink = mask >= 0.5
    strokes = render_depth_views(mesh, size=64, views=1)[0] < 128  # strokes come out dark
    overlap = iou(strokes, ink)
    assert overlap >= 0.8
    assert iou(strokes, ink[:, ::-1]) < overlap - 0.2  # left-right mirrored
    assert iou(strokes, ink[::-1]) < overlap - 0.2  # upside down


def test_strokes_dark_ground_and_background_light(glyph_blocks) -> None:
    mask, mesh = glyph_blocks["万"]
    views = render_depth_views(mesh, size=64, views=4, seed=1)
    assert views.dtype == np.uint8 and views.shape == (4, 64, 64)
    for view in views:
        assert np.median(view[mask > 0.9]) < 60
        assert np.median(view[mask < 0.1]) > 190


def test_tilted_views_still_show_the_glyph(glyph_blocks) -> None:
    mask, mesh = glyph_blocks["丈"]
    views = render_depth_views(mesh, size=64, views=4, max_tilt_deg=6.0, seed=2)
    for view in views[1:]:
        assert iou(view < 128, mask >= 0.5) >= 0.7
        assert np.abs(view.astype(int) - views[0]).mean() > 1.0  # really seen from another angle


def test_views_deterministic_per_seed(glyph_blocks) -> None:
    mesh = glyph_blocks["七"][1]
    first = render_depth_views(mesh, size=48, views=3, seed=4)
    np.testing.assert_array_equal(first, render_depth_views(mesh, size=48, views=3, seed=4))
    other = render_depth_views(mesh, size=48, views=3, seed=5)
    np.testing.assert_array_equal(first[0], other[0])  # view 0 is always straight down
    assert not np.array_equal(first[1:], other[1:])


def test_view_rotations_tilt_within_limit() -> None:
    rotations = view_rotations(6, max_tilt_deg=6.0, seed=0)
    np.testing.assert_allclose(rotations[0], np.eye(3))
    tilts = np.degrees(np.arccos(np.clip(rotations[:, 2, 2], -1, 1)))
    assert (tilts[1:] > 1.0).all() and (tilts <= 6.0 + 1e-9).all()
    np.testing.assert_allclose(rotations @ rotations.transpose(0, 2, 1), np.tile(np.eye(3), (6, 1, 1)), atol=1e-12)


def test_any_scale_and_offset_give_the_same_views(glyph_blocks) -> None:
    mesh = glyph_blocks["万"][1]
    moved = o3d.geometry.TriangleMesh(mesh).scale(37.0, center=(0, 0, 0)).translate((5.0, -3.0, 2.0))
    before, after = render_depth_views(mesh, size=64, views=3), render_depth_views(moved, size=64, views=3)
    assert np.abs(before.astype(int) - after).max() <= 1
    assert (before != after).mean() < 0.01


def test_robust_to_a_warped_tilted_noisy_scan(glyph_blocks) -> None:
    mask, mesh = glyph_blocks["\U00020000"]
    points = np.asarray(mesh.vertices).copy()
    x, y = points[:, 0], points[:, 1]
    points[:, 2] += 0.25 * x**2 - 0.15 * y**2 + 0.2 * y + 0.1 * x * y  # warp and tilt, larger than the relief
    points += np.random.default_rng(0).normal(0.0, 0.002, points.shape)  # scanner jitter
    warped = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(points), mesh.triangles)
    view = render_depth_views(warped, size=64, views=1)[0]
    assert iou(view < 128, mask >= 0.5) >= 0.8


def test_rays_that_miss_are_background() -> None:
    height = np.zeros((16, 32), dtype=np.float32)  # a block twice as wide as high
    height[4:12, 8:24] = 0.05
    view = render_depth_views(heightfield_to_mesh(height), size=64, views=1)[0]
    assert (view[:14] == 255).all() and (view[-14:] == 255).all()  # above and below the block
    assert view[32, 32] < 60  # the raised middle is dark


def test_mesh_depth_views_from_file(tmp_path, glyph_blocks) -> None:
    mesh = glyph_blocks["七"][1]
    path = save_mesh(mesh, tmp_path / "block.stl")
    np.testing.assert_array_equal(mesh_depth_views(path, size=48, views=2),
                                  render_depth_views(mesh, size=48, views=2))


def test_mesh_depth_views_errors_name_the_file(tmp_path) -> None:
    with pytest.raises(MeshError, match="gone.ply"):
        mesh_depth_views(tmp_path / "gone.ply")
    flat = tmp_path / "line.obj"
    flat.write_text("v 0 0 0\nv 0 0 1\nv 0 0 2\nf 1 2 3\n")  # a triangle with no x/y extent
    with pytest.raises(MeshError, match="line.obj"):
        mesh_depth_views(flat)


def test_strip_one_pixel_high_renders() -> None:
    height = np.full((5, 200), 0.02, dtype=np.float32)  # hits one image row only: a singular plane fit
    height[:, 80:120] = 0.06
    view = render_depth_views(heightfield_to_mesh(height), size=63, views=1)[0]
    assert (np.flatnonzero((view < 255).any(axis=1)) == [31]).all()
    assert view[31, 50] > 190 and view[31, 5] > 190  # ground and background light
    assert view[31, 31] < 60  # the raised part dark


def test_flat_plate_prints_nothing() -> None:
    plate = heightfield_to_mesh(np.full((20, 20), 0.05, dtype=np.float32))
    assert (render_depth_views(plate, size=32, views=2) == 255).all()
