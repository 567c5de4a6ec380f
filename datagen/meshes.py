"""Carved-woodblock meshes: a glyph mask carved into a worn, noisy relief block, and mesh file I/O.

A woodblock for printing holds the character raised (mirrored on the wood, but the scans this project
matches are stored so that, seen from +Z with +Y up, they read like the print: no mirroring here).
The ground around the strokes is carved away. Real scans are noisy (~130k triangles, extent ~1):
the synthetic blocks imitate that with bevelled rough walls, worn and chipped tops, a concave ground
with chisel marks, and scanner bumps and grooves.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from .errors import MeshError

if TYPE_CHECKING:  # open3d is imported where meshes are built or read: importing this module stays light
    import open3d as o3d

MESH_SUFFIXES = (".stl", ".obj", ".ply")


@dataclass(frozen=True)
class CarveParams:
    """How a block is carved. Lengths are in block units (the block's x/y extent is 1)."""

    resolution: int = 256          # grid side: 256 -> ~133k triangles, like a real scan
    relief: float = 0.06           # stroke top above the carved ground
    base_thickness: float = 0.12   # wood below the ground (the solid block under the relief)
    bevel_width: float = 0.012     # horizontal run of the sloped stroke walls
    wall_roughness: float = 0.003  # jitter of the wall outline (knife not following the ink exactly)
    wear: float = 0.3              # 0..1: rounding of the top edges and uneven, sunken patches of the top
    chips: int = 12                # chips broken out of stroke edges (they print as gaps)
    ground_dip: float = 0.02       # concave ground: how much deeper the middle is than the rim
    chisel_marks: float = 0.004    # depth of the gouge scallops on the carved ground
    scan_noise: float = 0.0012     # scanner noise: fine jitter and broad bumps
    grooves: int = 3               # long shallow scratches across the block
    border_rim: bool = False       # keep a raised frame along the block edge (prints as a border)
    rim_width: float = 0.025


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise scaled to unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return field / (field.std() + 1e-12)


def _grid_coords(resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Block coordinates of the grid: x to the right, y up (row 0 is the top), both in [-0.5, 0.5]."""
    axis = np.linspace(-0.5, 0.5, resolution)
    return np.meshgrid(axis, -axis)


def _stroke_mask(mask: np.ndarray, params: CarveParams) -> np.ndarray:
    """The glyph mask resampled to the carving grid and made binary (ink >= 0.5), rim added."""
    if mask.ndim != 2 or mask.shape[0] != mask.shape[1]:
        raise ValueError(f"expected a square 2-D glyph mask, got shape {mask.shape}")
    res = params.resolution
    resampled = ndimage.zoom(mask.astype(np.float32), res / mask.shape[0], order=1, grid_mode=True,
                             mode="grid-constant")[:res, :res]
    strokes = resampled >= 0.5
    if params.border_rim:
        row, col = np.indices((res, res))
        from_edge = np.minimum(np.minimum(row, res - 1 - row), np.minimum(col, res - 1 - col))
        strokes |= from_edge < params.rim_width * res
    return strokes


def _chisel_scallops(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, params: CarveParams) -> np.ndarray:
    """Gouge scallops: patches of parallel half-round cuts, each patch cut in its own direction."""
    res = x.shape[0]
    seeds = np.zeros((res, res), dtype=bool)
    seeds[rng.integers(0, res, 9), rng.integers(0, res, 9)] = True
    _, (rows, cols) = ndimage.distance_transform_edt(~seeds, return_indices=True)
    _, labels = np.unique(rows * res + cols, return_inverse=True)
    patches = labels.max() + 1
    angle = rng.uniform(0, np.pi, patches)[labels].reshape(res, res)
    period = rng.uniform(0.012, 0.025, patches)[labels].reshape(res, res)
    phase = (x * np.cos(angle) + y * np.sin(angle)) / period
    return -params.chisel_marks * np.abs(np.sin(np.pi * phase))


def _grooves(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, params: CarveParams) -> np.ndarray:
    """Long shallow scratches (scan/handling damage) as Gaussian-profile line segments."""
    if params.grooves <= 0:
        return np.zeros_like(x)
    count = params.grooves
    start = rng.uniform(-0.5, 0.5, (count, 2))
    angle = rng.uniform(0, np.pi, count)
    direction = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    length = rng.uniform(0.2, 0.7, count)
    width = rng.uniform(0.002, 0.005, count)
    depth = rng.uniform(0.3, 1.0, count) * params.relief * 0.12
    rel_x = x[None] - start[:, 0, None, None]
    rel_y = y[None] - start[:, 1, None, None]
    along = rel_x * direction[:, 0, None, None] + rel_y * direction[:, 1, None, None]
    across = rel_x * direction[:, 1, None, None] - rel_y * direction[:, 0, None, None]
    inside = (along >= 0) & (along <= length[:, None, None])
    profile = np.exp(-((across / width[:, None, None]) ** 2)) * inside
    return -(depth[:, None, None] * profile).max(axis=0)


def carve_heightfield(mask: np.ndarray, params: CarveParams, seed: int) -> np.ndarray:
    """Heights (float32, (R, R), block units, row 0 = top of the block) of a block carved from `mask`.

    `mask` is glyph ink coverage (1 = ink, e.g. render_glyph_mask). Strokes stay at the block top,
    the rest is carved down by `relief` with bevelled rough walls; wear, chips, a concave chiselled
    ground and scanner noise make it look like a scanned, used block. Deterministic for a seed.
    """
    rng = np.random.default_rng(seed)
    res = params.resolution
    strokes = _stroke_mask(mask, params)
    x, y = _grid_coords(res)

    # Signed distance to the stroke outline in block units (positive inside strokes).
    inside = ndimage.distance_transform_edt(strokes)
    outside = ndimage.distance_transform_edt(~strokes)
    signed = np.where(strokes, inside - 0.5, 0.5 - outside) / res
    signed = signed + params.wall_roughness * _smooth_noise(rng, (res, res), sigma=res / 100)

    # Wall profile: 0 on the ground, rising smoothly over the bevel to 1 at the stroke edge.
    ramp = np.clip(signed / max(params.bevel_width, 1e-6) + 1.0, 0.0, 1.0)
    ramp = ramp * ramp * (3.0 - 2.0 * ramp)
    # Worn tops: edges rounded off (within ~1.5 bevel widths), sunken patches across the surface.
    edge_rounding = np.exp(-np.clip(signed, 0, None) / (1.5 * max(params.bevel_width, 1e-6)))
    sunken = np.clip(_smooth_noise(rng, (res, res), sigma=res / 12), 0, None)
    top_loss = params.wear * params.relief * (0.35 * edge_rounding + 0.12 * sunken)
    relief = params.relief * ramp - top_loss * ramp

    # Chips: discs broken out of the stroke edges, down to a random depth.
    edge_pixels = np.flatnonzero(strokes & (inside <= 1.5))
    if params.chips > 0 and edge_pixels.size:
        count = min(params.chips, edge_pixels.size)
        chip_of_pixel = np.full(res * res, -1)
        chip_of_pixel[rng.choice(edge_pixels, size=count, replace=False)] = np.arange(count)
        dist, (rows, cols) = ndimage.distance_transform_edt(chip_of_pixel.reshape(res, res) < 0,
                                                            return_indices=True)
        nearest = chip_of_pixel[rows * res + cols]
        chip_radius = rng.uniform(0.004, 0.012, count)[nearest]
        chip_depth = rng.uniform(0.4, 1.0, count)[nearest] * params.relief
        in_chip = np.clip(1.0 - dist / (chip_radius * res), 0.0, 1.0)
        relief = relief - np.minimum(chip_depth * np.sqrt(in_chip), relief)

    # Concave ground with chisel scallops (only where carved: faded out up the walls).
    radius_sq = (x**2 + y**2) / 0.5
    ground = params.base_thickness - params.ground_dip * np.clip(1.0 - radius_sq, 0.0, 1.0)
    ground = ground + (1.0 - ramp) * _chisel_scallops(rng, x, y, params)

    noise = params.scan_noise * (_smooth_noise(rng, (res, res), sigma=res / 30)
                                 + 0.35 * rng.standard_normal((res, res)))
    height = ground + relief + noise + _grooves(rng, x, y, params)
    return np.maximum(height, 0.0).astype(np.float32)


def inked_surface(height: np.ndarray, contact: float = 0.15, softness: float = 0.08) -> np.ndarray:
    """Where the block's top touches the paper (what prints), float32 in [0, 1], same shape as `height`.

    The top level and the relief are estimated from height percentiles; a point prints fully when it
    is within `contact` of the relief below the top, fading out over the next `softness`.
    So worn edges, sunken patches and chips of the block also show in its print.
    """
    top = np.percentile(height, 99.5)
    relief = max(top - np.percentile(height, 5), 1e-9)
    below_top = (top - height) / relief
    return np.clip(1.0 - (below_top - contact) / softness, 0.0, 1.0).astype(np.float32)


def heightfield_to_mesh(height: np.ndarray, extent: float = 1.0, closed: bool = True) -> o3d.geometry.TriangleMesh:
    """Triangulate a heightfield grid: x right, +Y up (row 0 = largest y), z = height, centred at 0.

    Two triangles per grid cell, counter-clockwise seen from +Z. With `closed` the block also gets
    side walls down to z = 0 and a bottom, making a watertight solid like a printed or scanned block.
    """
    import open3d as o3d

    rows, cols = height.shape
    if rows < 2 or cols < 2:
        raise ValueError(f"heightfield needs at least 2x2 samples, got {height.shape}")
    xs = (np.arange(cols) / (cols - 1) - 0.5) * extent
    ys = (0.5 - np.arange(rows) / (rows - 1)) * extent * (rows - 1) / (cols - 1)
    grid_x, grid_y = np.meshgrid(xs, ys)
    top = np.stack([grid_x, grid_y, height * extent], axis=-1).reshape(-1, 3)

    index = np.arange(rows * cols).reshape(rows, cols)
    corner = index[:-1, :-1].ravel()
    below, right, diagonal = corner + cols, corner + 1, corner + cols + 1
    triangles = [np.stack([corner, below, right], 1), np.stack([right, below, diagonal], 1)]
    vertices = [top]
    if closed:
        # Boundary ring, counter-clockwise seen from +Z: bottom edge left->right, right edge upwards,
        # top edge right->left, left edge downwards.
        ring = np.concatenate([index[-1, :-1], index[::-1, -1][:-1], index[0, ::-1][:-1], index[:, 0][:-1]])
        bottom = top[ring].copy()
        bottom[:, 2] = 0.0
        ring_bottom = rows * cols + np.arange(len(ring))
        centre = rows * cols + len(ring)
        vertices += [bottom, np.array([[0.0, 0.0, 0.0]])]
        nxt, nxt_bottom = np.roll(ring, -1), np.roll(ring_bottom, -1)
        triangles += [np.stack([ring, ring_bottom, nxt_bottom], 1), np.stack([ring, nxt_bottom, nxt], 1),
                      np.stack([np.full_like(ring, centre), nxt_bottom, ring_bottom], 1)]
    points = np.concatenate(vertices)
    points[:, 2] -= (points[:, 2].min() + points[:, 2].max()) / 2
    return o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(points),
                                     o3d.utility.Vector3iVector(np.concatenate(triangles).astype(np.int32)))


def carve_block(mask: np.ndarray, params: CarveParams | None = None, seed: int = 0
                ) -> tuple[o3d.geometry.TriangleMesh, np.ndarray]:
    """Carve a solid block mesh from a glyph mask; returns (mesh, heightfield)."""
    height = carve_heightfield(mask, params or CarveParams(), seed)
    return heightfield_to_mesh(height), height


def save_mesh(mesh: o3d.geometry.TriangleMesh, path: str | Path) -> Path:
    """Write a mesh by suffix: .stl (binary), .obj or .ply; parent folders are created."""
    import open3d as o3d

    path = Path(path)
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise MeshError(f"cannot save mesh {path}: unknown suffix {path.suffix!r} "
                        f"(use one of {', '.join(MESH_SUFFIXES)})")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".stl" and not mesh.has_triangle_normals():
        mesh = o3d.geometry.TriangleMesh(mesh).compute_triangle_normals()  # STL stores facet normals
    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        written = o3d.io.write_triangle_mesh(str(path), mesh, write_ascii=False)
    if not written:
        raise MeshError(f"cannot write mesh {path}")
    return path


_STL_FACET = np.dtype([("normal", "<f4", 3), ("corners", "<f4", (3, 3)), ("attribute", "<u2")])


def _starts_with(path: Path, magic: bytes) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(magic)) == magic


def _stl_layout(path: Path) -> str:
    """'binary' (84 + 50 n bytes) or 'ascii' ('solid ... facet'); MeshError for anything else."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(1024)
    if size >= 84 and size == 84 + _STL_FACET.itemsize * int.from_bytes(head[80:84], "little"):
        return "binary"
    if head.lstrip().lower().startswith(b"solid") and b"facet" in head.lower():
        return "ascii"
    raise MeshError(f"{path} is not an STL mesh (neither binary nor ASCII STL layout)")


def _read_binary_stl(path: Path) -> o3d.geometry.TriangleMesh:
    """Binary STL straight into arrays (Open3D's reader is ~100x slower on a 130k-facet scan)."""
    import open3d as o3d

    facets = np.fromfile(path, dtype=_STL_FACET, offset=84)
    corners = facets["corners"].reshape(-1, 3).astype(np.float64)
    triangles = np.arange(len(corners), dtype=np.int32).reshape(-1, 3)
    return o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(corners), o3d.utility.Vector3iVector(triangles))


def load_mesh(path: str | Path, merge_vertices: bool = True) -> o3d.geometry.TriangleMesh:
    """Read a triangle mesh (.stl, .obj, .ply, or anything Open3D reads).

    STL repeats each corner per facet; `merge_vertices` joins them into shared vertices (not needed
    for ray casting, so depth rendering skips it). Raises MeshError naming the file when it is
    missing, unreadable, empty or not a mesh (Open3D only prints warnings for such files).
    """
    import open3d as o3d

    path = Path(path)
    if not path.is_file():
        raise MeshError(f"mesh file not found (or not a file): {path}")
    is_stl = path.suffix.lower() == ".stl"
    if path.suffix.lower() == ".ply" and not _starts_with(path, b"ply"):
        raise MeshError(f"{path} is not a PLY mesh (no 'ply' header)")  # checked here: RPly prints to stderr
    if is_stl and _stl_layout(path) == "binary":
        mesh = _read_binary_stl(path)
    else:
        with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
            mesh = o3d.io.read_triangle_mesh(str(path))
    triangles = np.asarray(mesh.triangles)
    if len(triangles) == 0:
        raise MeshError(f"{path} holds no triangles (unreadable, empty or not a mesh file)")
    vertices = np.asarray(mesh.vertices)
    if not np.isfinite(vertices).all() or triangles.min() < 0 or triangles.max() >= len(vertices):
        raise MeshError(f"{path} is corrupt: non-finite vertices or triangle indices out of range")
    if is_stl and merge_vertices:
        mesh.remove_duplicated_vertices()
    return mesh


def bounding_frame(vertices: np.ndarray, name: str = "mesh") -> tuple[np.ndarray, float]:
    """Centre of the bounding box and the larger of its x/y extents (the scale normalising uses)."""
    if len(vertices) == 0:
        raise MeshError(f"cannot normalise {name}: it has no vertices")
    # Column by column: numpy's min(axis=0) over an (n, 3) array is ~20x slower.
    low = np.array([column.min() for column in vertices.T])
    high = np.array([column.max() for column in vertices.T])
    scale = float(max(high[0] - low[0], high[1] - low[1]))
    if not scale > 0:
        raise MeshError(f"cannot normalise {name}: it has no x/y extent")
    return (low + high) / 2, scale


def normalize_mesh(mesh: o3d.geometry.TriangleMesh) -> o3d.geometry.TriangleMesh:
    """A copy centred (bounding box) at the origin and scaled so its larger x/y extent is 1,
    whatever the scale and offset of the scan."""
    import open3d as o3d

    vertices = np.asarray(mesh.vertices)
    centre, scale = bounding_frame(vertices)
    return o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector((vertices - centre) / scale),
                                     o3d.utility.Vector3iVector(np.asarray(mesh.triangles)))
