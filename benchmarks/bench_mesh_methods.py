"""Benchmark: Poisson vs TSDF surfaces for the textured mesh, by measured quality.

For each scene both methods build the full textured mesh (the export defaults: 300k faces,
4096^2 texture, 12 bake views of 640^2), then the mesh is ray-cast and compared with the
splat rendered from cameras that built neither (:func:`splatstudio.mesh.quality.compare_views`):

* ``demo``: the demo project's trained splat (``demo-project/train/splat.ply``, real GoPro
  MAX capture, ENU metres) with its registered cameras (``georef/sparse``): every 8th camera
  (the trainer's held-out views) is the test set, the others feed TSDF and orient the
  Poisson normals;
* the shared splats (``../shared/data/splats``) and the mesh benchmark's 1M-gaussian tiled
  scene: no capture cameras, so TSDF fuses the 12 bake views; the test views are 8 other
  virtual cameras (elevations 10 and 40 degrees, azimuths between the bake views').

Reported per scene and method: PSNR of the mesh render against the splat render (over the
pixels either covers; and over the splat's opaque pixels), depth error where both are
opaque, coverage of the splat's opaque pixels, spill (mesh pixels where the splat is
empty), topology (faces, boundary edges, pieces, watertight) and seconds.

Usage: ``.venv/bin/python benchmarks/bench_mesh_methods.py [--scenes demo,donut,...]``
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DATA, ROOT, write_result  # noqa: E402

from splatstudio.mesh import MeshOptions, build_textured_mesh  # noqa: E402
from splatstudio.mesh.bake import render_views, ring_cameras  # noqa: E402
from splatstudio.mesh.quality import compare_views, mesh_stats  # noqa: E402
from splatstudio.render.camera import Cameras, intrinsics_from_fov, look_at  # noqa: E402
from splatstudio.splats import Splats, load_splats  # noqa: E402

SHARED = {
    "fruit": "fruit_drops_minimal.ply",
    "donut": "donut_fused.ply",
    "guitar": "guitar.compressed.ply",
    "biker": "biker.spz",
}
EVAL_SIZE = 480


def test_ring(splats: Splats, n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """``n`` virtual test cameras (60 degree fov) at 10 and 40 degrees elevation, azimuths
    half-way between those of the bake views; framing as :func:`ring_cameras`."""
    _, _, centre, radius = ring_cameras(splats.means.astype(np.float64), 12)
    dist = radius / math.sin(math.radians(30.0)) * 1.05
    vms = []
    for i in range(n):
        az = 2 * math.pi * (i + 0.25) / n
        el = math.radians(10.0 if i % 2 == 0 else 40.0)
        eye = centre + dist * np.array([math.cos(el) * math.cos(az),
                                        math.cos(el) * math.sin(az), math.sin(el)])  # fmt: skip
        vms.append(look_at(eye, centre, (0.0, 0.0, 1.0)))
    K = np.asarray(intrinsics_from_fov(60.0, EVAL_SIZE, EVAL_SIZE))
    return np.stack(vms), np.broadcast_to(K, (n, 3, 3)).copy()


def demo_scene() -> tuple[Splats, Cameras, np.ndarray, np.ndarray, tuple[int, int]]:
    """The demo project: splat, training cameras (not held out), test cameras."""
    import pycolmap

    from splatstudio.pipeline.train import load_cameras, split_views

    proj = ROOT / "demo-project"
    splats = load_splats(proj / "train" / "splat.ply")
    cams = load_cameras(pycolmap.Reconstruction(str(proj / "georef" / "sparse")))
    train, test = split_views(cams, 8)
    train, test = [c.camera for c in train], [c.camera for c in test]
    mc = Cameras.stack(train)
    w, h = test[0].width, test[0].height
    s = min(1.0, EVAL_SIZE / max(w, h))
    ks = []
    for c in test:
        K = c.K.copy()
        K[:2] *= s
        ks.append(K)
    return (
        splats,
        mc,
        np.stack([c.viewmat for c in test]),
        np.stack(ks),
        (round(w * s), round(h * s)),
    )


def evaluate(name: str, splats: Splats, cameras: Cameras | None, test_vm: np.ndarray,
             test_K: np.ndarray, size: tuple[int, int], methods: list[str]) -> dict:  # fmt: skip
    print(f"{name}: {splats.n} gaussians, load {os.getloadavg()[0]:.2f}", flush=True)
    ref = None
    if all(np.allclose(k, test_K[0]) for k in test_K):
        ref = render_views(splats, test_vm, test_K[0], size, "cpu")
    out: dict = {"gaussians": splats.n, "test_views": int(test_vm.shape[0]),
                 "test_size": list(size), "capture_cameras": None if cameras is None
                 else int(cameras.viewmats.shape[0])}  # fmt: skip
    for method in methods:
        t0 = time.perf_counter()
        mesh = build_textured_mesh(splats, MeshOptions(method=method), cameras=cameras)
        build_s = time.perf_counter() - t0
        q = compare_views(splats, mesh, test_vm, test_K, size[0], size[1], splat_renders=ref)
        views = q.pop("views")
        out[method] = {
            **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in q.items()},
            "psnr_db_per_view": [round(v["psnr_db"], 2) for v in views],
            **mesh_stats(mesh.vertices, mesh.faces),
            "seconds": {k: round(v, 2) for k, v in mesh.timings.items()} | {
                "build_total": round(build_s, 2)},
            "load_avg_1min_after": round(os.getloadavg()[0], 2),
        }  # fmt: skip
        print(f"  {method}: {out[method]}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", default="demo,fruit,donut,guitar,biker,tiled1m")
    ap.add_argument("--methods", default="poisson,tsdf")
    ap.add_argument("--no-write", action="store_true", help="do not write the result JSON")
    args = ap.parse_args()
    import torch

    methods = args.methods.split(",")
    scenes: dict = {}
    for name in args.scenes.split(","):
        if name == "demo":
            splats, cams, vm, Ks, size = demo_scene()
            scenes[name] = evaluate(name, splats, cams, vm, Ks, size, methods)
        else:
            if name == "tiled1m":
                from bench_mesh import tiled_splat

                splats = tiled_splat(1_000_000)
            else:
                splats = load_splats(DATA / "splats" / SHARED[name])
            vm, Ks = test_ring(splats)
            scenes[name] = evaluate(name, splats, None, vm, Ks, (EVAL_SIZE, EVAL_SIZE), methods)
    result = {
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "settings": {
            "target_faces": 300_000,
            "texture_size": 4096,
            "bake_views": 12,
            "bake_resolution": 640,
            "eval_size": EVAL_SIZE,
        },  # fmt: skip
        "scenes": scenes,
    }
    if not args.no_write:
        print(write_result("mesh_methods", result))


if __name__ == "__main__":
    main()
