"""Time depth-view rendering of a real-scan-sized block (~130k triangles): load, BVH build, ray casting.

    .venv/bin/python scripts/bench_depth.py [--resolution 256] [--size 128] [--views 4] [--repeats 10]

Carves a block from a drawn mask, saves it as binary STL, then times loading it, building the
ray-casting scene, and rendering all views (the reference study took 2.2 s per mesh).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import open3d as o3d
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datagen.depth import mesh_depth_views, render_depth_views  # noqa: E402
from datagen.meshes import CarveParams, bounding_frame, carve_block, load_mesh, save_mesh  # noqa: E402


def bench_mask(size: int = 128) -> np.ndarray:
    """An asymmetric character-like mask: a frame, a bar and a hooked stroke."""
    image = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(image)
    scale = size / 128
    for box in [(14, 14, 114, 26), (20, 26, 32, 114), (32, 60, 90, 72), (80, 72, 92, 110), (50, 90, 80, 100)]:
        draw.rectangle([round(c * scale) for c in box], fill=255)
    return np.asarray(image, dtype=np.float32) / 255


def best_of(repeats: int, action) -> float:
    """Fastest wall time of `repeats` runs, in seconds (the least disturbed by other load)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, default=256, help="carving grid (256 -> ~133k triangles)")
    parser.add_argument("--size", type=int, default=128, help="depth view side in pixels")
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    mesh, _ = carve_block(bench_mask(), CarveParams(resolution=args.resolution), seed=0)
    with tempfile.TemporaryDirectory() as folder:
        path = save_mesh(mesh, Path(folder) / "block.stl")
        load_s = best_of(args.repeats, lambda: load_mesh(path, merge_vertices=False))
        merged_s = best_of(args.repeats, lambda: load_mesh(path))
        end_to_end_s = best_of(args.repeats, lambda: mesh_depth_views(path, size=args.size, views=args.views))
        loaded = load_mesh(path, merge_vertices=False)

    def build_scene() -> None:
        vertices = np.asarray(loaded.vertices)
        centre, _ = bounding_frame(vertices)
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor((vertices - centre).astype(np.float32)),
                            o3d.core.Tensor(np.asarray(loaded.triangles, dtype=np.uint32)))
        scene.count_intersections(o3d.core.Tensor(np.array([[0, 0, 2, 0, 0, -1]], dtype=np.float32)))

    build_s = best_of(args.repeats, build_scene)
    render_s = best_of(args.repeats, lambda: render_depth_views(loaded, size=args.size, views=args.views))
    many = 32
    many_s = best_of(max(1, args.repeats // 3), lambda: render_depth_views(loaded, size=args.size, views=many))
    print(f"mesh: {len(mesh.triangles)} triangles, binary STL, {args.size} px views, best of {args.repeats}")
    print(f"load STL for depth (as stored):  {load_s * 1000:7.1f} ms")
    print(f"load STL, vertices merged:       {merged_s * 1000:7.1f} ms")
    print(f"frame + scene build (BVH):       {build_s * 1000:7.1f} ms")
    print(f"render {args.views} views (incl. build):    {render_s * 1000:7.1f} ms per mesh "
          f"({args.views / render_s:.0f} views/s)")
    print(f"render {many} views (incl. build):   {many_s * 1000:7.1f} ms "
          f"({(many - args.views) / max(many_s - render_s, 1e-9):.0f} views/s once the BVH is built)")
    print(f"mesh_depth_views, {args.views} views:       {end_to_end_s * 1000:7.1f} ms per mesh "
          f"(load + render; reference study: 2200 ms)")

if __name__ == "__main__":
    main()
