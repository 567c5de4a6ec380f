"""Carved-block meshes: heightfields, triangulation, file round trips, normalisation and bad files."""
from __future__ import annotations

import dataclasses

import numpy as np
import open3d as o3d
import pytest
from PIL import Image
from scipy.spatial import cKDTree

from datagen.depth import render_depth_views
from datagen.errors import MeshError
from datagen.fonts import FontFace
from datagen.glyphs import render_glyph_mask
from datagen.meshes import (
    CarveParams,
    carve_block,
    carve_heightfield,
    heightfield_to_mesh,
    inked_surface,
    load_mesh,
    normalize_mesh,
    save_mesh,
)

SMALL = CarveParams(resolution=96)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def signed_volume(mesh: o3d.geometry.TriangleMesh) -> float:
    """Volume enclosed by a closed mesh, positive when its faces point outwards."""
    corners = np.asarray(mesh.vertices)[np.asarray(mesh.triangles)]
    return float(np.einsum("ij,ij->i", corners[:, 0], np.cross(corners[:, 1], corners[:, 2])).sum() / 6)


@pytest.fixture(scope="module")
def glyph_mask(tiny_font: FontFace) -> np.ndarray:
    return render_glyph_mask("万", tiny_font, size=64)


@pytest.fixture(scope="module")
def small_block(glyph_mask: np.ndarray) -> tuple[o3d.geometry.TriangleMesh, np.ndarray]:
    return carve_block(glyph_mask, SMALL, seed=3)


def test_default_block_is_a_scan_sized_watertight_solid(glyph_mask: np.ndarray) -> None:
    mesh, height = carve_block(glyph_mask)
    assert height.shape == (256, 256) and height.dtype == np.float32
    assert 100_000 <= len(mesh.triangles) <= 150_000
    assert mesh.is_edge_manifold(allow_boundary_edges=False)  # closed (is_watertight is O(n^2) here)
    assert signed_volume(mesh) > 0  # oriented outwards
    low, high = mesh.get_min_bound(), mesh.get_max_bound()
    np.testing.assert_allclose((low + high) / 2, 0, atol=1e-9)
    np.testing.assert_allclose(high[:2] - low[:2], 1.0)


def test_tiny_block_is_watertight(glyph_mask: np.ndarray) -> None:
    mesh, height = carve_block(glyph_mask, dataclasses.replace(SMALL, resolution=24), seed=0)
    assert mesh.is_watertight()
    volume = signed_volume(mesh)
    assert volume == pytest.approx(mesh.get_volume())
    assert 0.8 * height.mean() < volume < 1.2 * height.mean()  # block of unit area under the heightfield


def test_strokes_are_raised_and_ground_carved(glyph_mask: np.ndarray) -> None:
    params = dataclasses.replace(SMALL, resolution=64)  # grid the same size as the mask
    height = carve_heightfield(glyph_mask, params, seed=0)
    ink, ground = glyph_mask > 0.9, glyph_mask < 0.1
    carved = np.median(height[ink]) - np.median(height[ground])
    assert 0.5 * params.relief < carved < 1.5 * params.relief


def test_mesh_axes_x_right_y_up() -> None:
    height = np.zeros((5, 4), dtype=np.float32)
    height[0, -1] = 1.0  # top-right corner of the image raised
    mesh = heightfield_to_mesh(height, closed=False)
    vertices = np.asarray(mesh.vertices)
    peak = vertices[np.argmax(vertices[:, 2])]
    assert peak[0] > 0.4 and peak[1] > 0.4  # top-right in the image = +x, +y
    normals = np.asarray(mesh.compute_triangle_normals().triangle_normals)
    assert (normals[:, 2] > 0).all()  # top faces face the +Z camera


def test_carving_is_deterministic_per_seed(glyph_mask: np.ndarray) -> None:
    first = carve_heightfield(glyph_mask, SMALL, seed=5)
    np.testing.assert_array_equal(first, carve_heightfield(glyph_mask, SMALL, seed=5))
    assert np.abs(first - carve_heightfield(glyph_mask, SMALL, seed=6)).mean() > 1e-4


def test_inked_surface_prints_the_strokes_and_wear_shows(glyph_mask: np.ndarray) -> None:
    params = dataclasses.replace(SMALL, resolution=64)
    clean = dataclasses.replace(params, wear=0.0, chips=0, grooves=0, scan_noise=0.0)
    strokes = glyph_mask >= 0.5
    clean_ink = inked_surface(carve_heightfield(glyph_mask, clean, seed=0))
    assert clean_ink.dtype == np.float32 and 0 <= clean_ink.min() and clean_ink.max() <= 1
    assert iou(clean_ink >= 0.5, strokes) >= 0.85
    worn = dataclasses.replace(params, wear=1.0, chips=40)
    worn_ink = inked_surface(carve_heightfield(glyph_mask, worn, seed=0))
    assert worn_ink.sum() < 0.95 * clean_ink.sum()
    assert iou(worn_ink >= 0.5, strokes) >= 0.5


def test_border_rim_is_raised(glyph_mask: np.ndarray) -> None:
    rimmed = carve_heightfield(glyph_mask, dataclasses.replace(SMALL, border_rim=True), seed=0)
    plain = carve_heightfield(glyph_mask, SMALL, seed=0)
    assert rimmed[:, 0].mean() > plain[:, 0].mean() + 0.5 * SMALL.relief


@pytest.mark.parametrize("suffix", [".stl", ".obj", ".ply"])
def test_round_trip_keeps_the_mesh(tmp_path, small_block, suffix: str) -> None:
    mesh, _ = small_block
    path = save_mesh(mesh, tmp_path / "sub" / f"block{suffix}")
    loaded = load_mesh(path)
    assert len(loaded.triangles) == len(mesh.triangles)
    assert len(loaded.vertices) == len(mesh.vertices)
    distance, _ = cKDTree(np.asarray(mesh.vertices)).query(np.asarray(loaded.vertices))
    assert distance.max() < 1e-5
    before, after = render_depth_views(mesh, size=64, views=2), render_depth_views(loaded, size=64, views=2)
    assert np.abs(before.astype(int) - after).max() <= 1
    assert (before != after).mean() < 0.01


def test_stl_is_binary(tmp_path, small_block) -> None:
    mesh, _ = small_block
    path = save_mesh(mesh, tmp_path / "block.stl")
    assert path.stat().st_size == 84 + 50 * len(mesh.triangles)
    assert not mesh.has_triangle_normals()  # saving did not modify the caller's mesh


def test_save_rejects_unknown_suffix(tmp_path, small_block) -> None:
    with pytest.raises(MeshError, match="block.xyz"):
        save_mesh(small_block[0], tmp_path / "block.xyz")


def test_normalize_any_scale_and_offset(small_block) -> None:
    mesh, _ = small_block
    moved = o3d.geometry.TriangleMesh(mesh).scale(37.0, center=(0, 0, 0)).translate((5.0, -3.0, 2.0))
    normalized = normalize_mesh(moved)
    low, high = normalized.get_min_bound(), normalized.get_max_bound()
    np.testing.assert_allclose((low + high) / 2, 0, atol=1e-9)
    assert max(high[:2] - low[:2]) == pytest.approx(1.0)
    np.testing.assert_allclose(np.asarray(normalized.vertices), np.asarray(normalize_mesh(mesh).vertices), atol=1e-9)
    assert np.abs(np.asarray(moved.vertices)).max() > 10  # the input was not modified


def _png_bytes(tmp_path) -> bytes:
    Image.new("L", (16, 16), 128).save(tmp_path / "image.png")
    return (tmp_path / "image.png").read_bytes()


@pytest.mark.parametrize(
    "name, content",
    [
        ("empty.stl", b""),
        ("empty.ply", b""),
        ("junk.stl", bytes(range(256)) * 5),
        ("junk.ply", bytes(range(256)) * 5),
        ("junk.obj", b"this is not\na mesh at all\n"),
        ("no_facets.stl", bytes(80) + (0).to_bytes(4, "little")),
        ("points_only.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\n"),
        ("image.stl", None),
        ("image.obj", None),
        ("image.ply", None),
    ],
)
def test_bad_files_raise_mesh_error_naming_the_file(tmp_path, name: str, content: bytes | None) -> None:
    path = tmp_path / name
    path.write_bytes(_png_bytes(tmp_path) if content is None else content)
    with pytest.raises(MeshError, match=name):
        load_mesh(path)


def test_missing_file_raises_mesh_error(tmp_path) -> None:
    with pytest.raises(MeshError, match="absent.stl"):
        load_mesh(tmp_path / "absent.stl")
