"""Benchmark: textured mesh from a 1M-gaussian splat (Poisson, decimation, xatlas, bake).

The splat is synthetic but made of real gaussians: ``donut_fused.ply`` (45,624 gaussians)
tiled on a 5 x 5 grid with a small random jitter of each copy, cut to 1,000,000 gaussians.
Runs :func:`splatstudio.mesh.build_textured_mesh` with the export stage's defaults (300k
faces, 4096^2 texture, 12 bake views of 640^2) and writes GLB and OBJ; records the seconds of
each step and the load average in ``benchmarks/results/mesh.json``. Then (not timed) measures
the mesh against the splat from 8 views that built nothing (:mod:`splatstudio.mesh.quality`:
PSNR, depth error, coverage, spill) so that a faster pipeline cannot lose quality unseen;
``--save-mesh`` / ``--eval-mesh`` store a mesh as ``.npz`` and measure one (e.g. built by an
older checkout) the same way.

Usage: ``.venv/bin/python benchmarks/bench_mesh.py [--n 1000000] [--texture 4096]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DATA, write_result  # noqa: E402

from splatstudio.mesh import MeshOptions, build_textured_mesh, write_glb, write_obj  # noqa: E402
from splatstudio.splats import Splats, load_splats  # noqa: E402


def tiled_splat(n: int, seed: int = 0) -> Splats:
    """`n` gaussians: copies of donut_fused.ply on a square grid (spacing 1.3 x its extent),
    each copy shifted by up to 5% of the extent."""
    base = load_splats(DATA / "splats" / "donut_fused.ply")
    rng = np.random.default_rng(seed)
    copies = -(-n // base.n)
    side = int(np.ceil(np.sqrt(copies)))
    ext = float(np.ptp(base.means[:, :2], axis=0).max())
    parts = []
    for i in range(copies):
        s = base.copy()
        off = np.array([(i % side) * 1.3 * ext, (i // side) * 1.3 * ext, 0.0])
        off[:2] += rng.uniform(-0.05, 0.05, 2) * ext
        s.means += off.astype(np.float32)
        parts.append(s)
    return Splats.concat(parts).subset(slice(0, n))


def quality(splats: Splats, mesh) -> dict:
    """Mesh vs splat from 8 views that built nothing (elevations 10 and 40 degrees, azimuths
    between the bake views'), 480^2; plus topology."""
    from bench_mesh_methods import test_ring

    from splatstudio.mesh.quality import compare_views, mesh_stats

    vm, Ks = test_ring(splats)
    q = compare_views(splats, mesh, vm, Ks, 480, 480, device="cpu")
    q.pop("views")
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in q.items()} | {
        "topology": mesh_stats(mesh.vertices, mesh.faces)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--texture", type=int, default=4096)
    ap.add_argument("--faces", type=int, default=300_000)
    ap.add_argument("--views", type=int, default=12)
    ap.add_argument("--resolution", type=int, default=640)
    ap.add_argument("--method", default=MeshOptions().method, help="tsdf or poisson")
    ap.add_argument("--json-out", type=Path, help="write the result here (not results/)")
    ap.add_argument("--no-write", action="store_true", help="do not write the result JSON")
    ap.add_argument("--save-mesh", type=Path, help="also save the mesh as .npz here")
    ap.add_argument("--eval-mesh", type=Path, help="only measure this .npz mesh; print JSON")
    args = ap.parse_args()
    import torch

    if args.eval_mesh:
        from splatstudio.mesh import TexturedMesh

        z = np.load(args.eval_mesh)
        mesh = TexturedMesh(vertices=z["vertices"], faces=z["faces"], uvs=z["uvs"],
                            texture=z["texture"])  # fmt: skip
        print(json.dumps(quality(tiled_splat(args.n), mesh)))
        return

    splats = tiled_splat(args.n)
    opts = MeshOptions(method=args.method, target_faces=args.faces, texture_size=args.texture,
                       bake_views=args.views, bake_resolution=args.resolution)  # fmt: skip
    from splatstudio.events import Emitter

    t0 = time.perf_counter()

    def show(event) -> None:
        if type(event).__name__ == "Log":
            print(f"{time.perf_counter() - t0:7.1f} s  {event.message}", flush=True)

    load0 = os.getloadavg()[0]
    mesh = build_textured_mesh(splats, opts, events=Emitter("bench", show))
    build_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        write_glb(mesh, Path(tmp) / "scene.glb")
        glb_s = time.perf_counter() - t
        glb_bytes = (Path(tmp) / "scene.glb").stat().st_size
        t = time.perf_counter()
        write_obj(mesh, Path(tmp) / "scene.obj")
        obj_s = time.perf_counter() - t
    total = time.perf_counter() - t0
    load1 = os.getloadavg()[0]
    if args.save_mesh:
        np.savez(args.save_mesh, vertices=mesh.vertices, faces=mesh.faces, uvs=mesh.uvs,
                 texture=mesh.texture)  # fmt: skip
    result = {
        "device": "cpu",
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "scene": f"donut_fused.ply tiled 5x5 with jitter, first {splats.n} gaussians",
        "settings": {
            "method": opts.method,
            "target_faces": args.faces,
            "texture_size": args.texture,
            "bake_views": args.views,
            "bake_resolution": args.resolution,
        },  # fmt: skip
        "gaussians": splats.n,
        "faces": int(mesh.faces.shape[0]),
        "vertices": int(mesh.vertices.shape[0]),
        "seconds": {
            **{k: round(v, 2) for k, v in mesh.timings.items()},
            "build_total": round(build_s, 2),
            "write_glb": round(glb_s, 2),
            "write_obj": round(obj_s, 2),
            "total": round(total, 2),
        },  # fmt: skip
        "glb_bytes": glb_bytes,
        "target_s": 60.0,
        "met_target": total <= 60.0,
        "load_avg_1min": {"start": round(load0, 2), "end": round(load1, 2)},
        "quality": quality(splats, mesh),
    }
    print(result)
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    elif not args.no_write:
        print(write_result("mesh", result))


if __name__ == "__main__":
    main()
