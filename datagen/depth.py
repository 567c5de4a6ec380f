"""Depth views of a block mesh, rendered headless by ray casting, processed to read like its print.

Each view is an orthographic depth image over the normalised block (x/y extent 1) looking down -Z
with +Y up, slightly tilted for views after the first. The block's overall shape (tilt, warp, concave
ground) is removed by a robust quadratic fit to the carved ground, so the raised strokes stand out:
strokes (closest to the camera) come out dark, the carved ground and the background light.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import open3d as o3d
from scipy import ndimage

from .errors import MeshError
from .meshes import bounding_frame, load_mesh

GROUND_PERCENTILE = 40.0  # residuals farther than this are taken as carved ground when refitting
BACKGROUND = 255
MIN_RELIEF = 1e-3  # block units (0.1 mm on a 10 cm block): less depth contrast is a flat plate


def view_rotations(views: int, max_tilt_deg: float, seed: int) -> np.ndarray:
    """(views, 3, 3) camera rotations: the identity first, then tilts of up to `max_tilt_deg`
    about random axes in the x/y plane (deterministic for the seed)."""
    rng = np.random.default_rng(seed)
    rotations = np.tile(np.eye(3), (views, 1, 1))
    for view in range(1, views):
        tilt = np.deg2rad(rng.uniform(0.4, 1.0) * max_tilt_deg)
        azimuth = rng.uniform(0, 2 * np.pi)
        axis = np.array([np.cos(azimuth), np.sin(azimuth), 0.0])
        cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        rotations[view] = np.eye(3) + np.sin(tilt) * cross + (1 - np.cos(tilt)) * cross @ cross
    return rotations


def _orthographic_rays(rotations: np.ndarray, size: int, distance: float) -> np.ndarray:
    """(views, size, size, 6) parallel rays (origin, direction) covering [-0.5, 0.5]^2, row 0 at +Y."""
    centres = (np.arange(size) + 0.5) / size - 0.5
    across, up = np.meshgrid(centres, -centres)
    plane = np.stack([across, up, np.full_like(across, distance)], axis=-1)  # camera above, at +Z
    origins = (plane.reshape(-1, 3) @ rotations.transpose(0, 2, 1)).reshape(len(rotations), size, size, 3)
    directions = np.broadcast_to((rotations @ np.array([0.0, 0.0, -1.0]))[:, None, None, :], origins.shape)
    return np.concatenate([origins, directions], axis=-1).astype(np.float32)


def _trend_terms(size: int) -> np.ndarray:
    """(size, size, 6) terms of a quadratic surface over the image: 1, u, v, u^2, uv, v^2."""
    u, v = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size))
    return np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=-1)


def _print_like(depth: np.ndarray, terms: np.ndarray) -> np.ndarray:
    """One depth image (block units, inf = miss) to uint8: ground trend removed, strokes dark, ground light."""
    hits = np.isfinite(depth)
    out = np.full(depth.shape, BACKGROUND, dtype=np.uint8)
    if hits.sum() < 16:
        return out
    # Misses take the nearest hit's depth, so the median filter against scan spikes sees only the block.
    _, nearest = ndimage.distance_transform_edt(~hits, return_indices=True)
    filled = ndimage.median_filter(depth[tuple(nearest)], size=3)
    design = terms[hits]
    values = filled[hits]
    # Fit the carved ground (the farther part of the block): a plane to all hits first, which cannot
    # bend round a raised stroke, then quadratics (warp) to the points found farther than the fit.
    ground = np.ones(len(values), dtype=bool)
    for used in (3, 6, 6):
        fit = design[ground, :used]
        normal = fit.T @ fit  # normal equations: ~50x faster than lstsq; the ridge keeps strips solvable
        coef = np.linalg.solve(normal + 1e-9 * np.trace(normal) * np.eye(used), fit.T @ values[ground])
        residual = values - design[:, :used] @ coef
        ground = residual >= np.percentile(residual, GROUND_PERCENTILE)
    near, far = np.percentile(residual, 1.0), np.median(residual[ground])
    if far - near < MIN_RELIEF:
        return out  # a flat plate: nothing raised, nothing prints
    scaled = np.clip((residual - near) / max(far - near, 1e-9), 0.0, 1.0)
    out[hits] = np.round(scaled * 255).astype(np.uint8)
    return out


def render_depth_views(mesh: o3d.geometry.TriangleMesh, size: int = 128, views: int = 4,
                       max_tilt_deg: float = 6.0, seed: int = 0) -> np.ndarray:
    """uint8 (views, size, size) print-like depth views of a block mesh, any scale and offset.

    View 0 looks straight down from +Z with +Y up; the others are tilted by up to `max_tilt_deg`.
    The BVH is built once and all views' rays are cast in one call.
    """
    if views < 1 or size < 8:
        raise ValueError(f"need views >= 1 and size >= 8, got views={views}, size={size}")
    # Normalising moves the rays, not the vertices: the block's own frame, scaled to extent 1.
    vertices = np.asarray(mesh.vertices)
    centre, scale = bounding_frame(vertices)
    scene = o3d.t.geometry.RaycastingScene()
    local = (vertices - centre).astype(np.float32)
    scene.add_triangles(o3d.core.Tensor(local), o3d.core.Tensor(np.asarray(mesh.triangles, dtype=np.uint32)))
    reach = float(np.abs(local).max()) / scale + 1.0
    rays = _orthographic_rays(view_rotations(views, max_tilt_deg, seed), size, reach)
    rays[..., :3] *= scale
    depth = scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy() / scale  # in block units
    terms = _trend_terms(size)
    return np.stack([_print_like(depth[view], terms) for view in range(views)])


def mesh_depth_views(path: str | Path, size: int = 128, views: int = 4, max_tilt_deg: float = 6.0,
                     seed: int = 0) -> np.ndarray:
    """Load a mesh file and render its depth views; MeshError names the file at fault."""
    mesh = load_mesh(path, merge_vertices=False)
    try:
        return render_depth_views(mesh, size=size, views=views, max_tilt_deg=max_tilt_deg, seed=seed)
    except MeshError as exc:
        raise MeshError(f"{path}: {exc}") from exc
