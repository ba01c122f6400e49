"""Structure-from-motion on the real GoPro MAX panoramas: our pipeline vs COLMAP's own.

In one run, on one set of panoramas (default: the full-resolution geovisio set, 5 x 5760x2880):

- ours: ingest, reproject (18-view rig), sfm with the global mapper and with the incremental
  mapper (the second reuses the features and matches of the first, as a re-run would), georef;
  per step seconds, image/frame pairs, verified pairs, registered views, points, GPS RMS and
  the consecutive panorama distances of the model vs the GPS steps;
- COLMAP 4's panorama pipeline shipped in the pycolmap wheel
  (``pycolmap.panorama.reconstruct``, 12 overlapping views per panorama), with exhaustive
  matching and the global mapper (its best configuration on these captures per the issue), and
  optionally its other matcher/mapper combinations (``--colmap-all``); its model is aligned to
  the GPS with a 7-DoF Umeyama fit for the same distance figures.

Writes benchmarks/results/sfm[_<set>].json. Usage:
    python benchmarks/bench_sfm.py [--set full|2048] [--size N] [--colmap-all] [--skip-colmap]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, write_result  # noqa: E402


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """s, R, t with dst ~ s R src + t (least squares, Umeyama 1991). src, dst: [N, 3]."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    u, d, vt = np.linalg.svd(b.T @ a / len(src))
    e = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        e[2, 2] = -1
    r = u @ e @ vt
    s = float(np.trace(np.diag(d) @ e) / a.var(0).sum())
    return s, r, md - s * r @ ms


def distances(ids: list[str], pos: dict[str, np.ndarray], gps: dict[str, np.ndarray]) -> dict:
    """Consecutive panorama distances of the model (ENU metres) vs GPS, and their ratios."""
    both = [i for i in ids if i in pos]
    p = np.array([pos[i] for i in both])
    g = np.array([gps[i] for i in both])
    dm = np.linalg.norm(np.diff(p, axis=0), axis=1)
    dg = np.linalg.norm(np.diff(g, axis=0), axis=1)
    return {"frames": both, "model_steps_m": dm.round(3).tolist(),
            "gps_steps_m": dg.round(3).tolist(),
            "relative_error": ((dm - dg) / dg).round(3).tolist()}


def run_ours(src: Path, work: Path, size: int, sift_size: int) -> dict:
    """Our stages on `src`; returns per-mapper results."""
    from splatstudio.config import ProjectConfig, update_config
    from splatstudio.pipeline.runner import PipelineRunner
    from splatstudio.project import Project, read_json

    cfg = ProjectConfig.from_preset("test")
    cfg.reproject = update_config(cfg.reproject, {"max_size": size})
    cfg.sfm = update_config(cfg.sfm, {"max_image_size": sift_size})
    out: dict = {"view_size": size, "sift_max_image_size": sift_size}
    base = work / "ours"
    project = Project.create(base, src, cfg)
    t = time.perf_counter()
    res = PipelineRunner(project, device="cpu").run(until="reproject")
    assert res.ok, res.reason
    out["seconds_ingest_reproject"] = round(time.perf_counter() - t, 2)
    frames = read_json(base / "reproject" / "frames.json")["frames"]
    ids = [f["id"] for f in frames]
    gps = {f["id"]: np.asarray(f["enu_m"]) for f in frames if f.get("enu_m") is not None}
    for mapper in ("global", "incremental"):
        project = Project.open(base)
        project.config.sfm = update_config(project.config.sfm, {"mapper": mapper})
        project.save()
        t = time.perf_counter()
        res = PipelineRunner(project, device="cpu").run(until="georef")
        wall = time.perf_counter() - t
        r: dict = {"ok": res.ok, "reason": res.reason, "seconds_sfm_georef": round(wall, 2)}
        st = project.root / "sfm" / "sfm.json"
        if st.exists():
            sj = read_json(st)
            m = sj["metrics"]
            r.update({
                "seconds": sj["seconds"],
                "images": sj["images"], "registered_images": sj["registered_images"],
                "frame_pairs": len(sj["frame_pairs"]), "image_pairs": sj["pairs"],
                "verified_pairs": sj["verified_pairs"], "points3D": m.get("points3D"),
                "mean_reprojection_error_px": m.get("mean_reprojection_error_px"),
                "models": m.get("models"), "other_models": sj["other_models"],
            })
        gj = project.root / "georef" / "georef.json"
        if res.ok and gj.exists():
            g = read_json(gj)
            pos = {k: np.asarray(v["sfm_enu_m"]) for k, v in g["frames"].items()
                   if v.get("sfm_enu_m") is not None}
            both = [i for i in ids if i in pos and i in gps]
            s, rot, t_ = umeyama(np.array([pos[i] for i in both]), np.array([gps[i] for i in both]))
            res7 = [np.linalg.norm(s * rot @ pos[i] + t_ - gps[i]) for i in both]
            r.update({"rms_gps_residual_m": g["rms_residual_m"],
                      "rms_horizontal_m": g.get("rms_horizontal_m"),
                      "rms_vertical_m": g.get("rms_vertical_m"),
                      # the same 7-DoF fit as for COLMAP's model below, for comparison (it may
                      # roll the model about the walk to follow GPS altitude noise)
                      "rms_gps_residual_sim3_m": round(float(np.sqrt(np.mean(np.square(res7)))),
                                                       3),
                      "residuals_m": {k: v.get("residual_m") for k, v in g["frames"].items()},
                      **distances(ids, pos, gps)})
        out[mapper] = r
        print(f"ours/{mapper}: {json.dumps(r)[:400]}", flush=True)
    return out


def run_colmap(src: Path, work: Path, matcher: str, mapper: str, gps: dict, ids: list[str]) -> dict:
    """pycolmap.panorama.reconstruct on a copy of the panoramas (images only)."""
    from pycolmap import panorama as P

    inp = work / "colmap_in"
    if not inp.exists():
        inp.mkdir(parents=True)
        for p in sorted(src.glob("*.jpg")):
            shutil.copy(p, inp / p.name)
    out = work / f"colmap_{matcher}_{mapper}"
    shutil.rmtree(out, ignore_errors=True)
    opts = P.PanoramaReconstructionOptions(matcher=P.Matcher(matcher), mapper=P.Mapper(mapper),
                                           use_gpu=False, show_progress=False)
    t = time.perf_counter()
    recs = P.reconstruct(inp, out, opts)
    wall = time.perf_counter() - t
    r: dict = {"seconds": round(wall, 2), "views_per_panorama": 12,
               "models": {str(k): rec.num_reg_images() for k, rec in recs.items()}}
    if recs:
        best = max(recs.values(), key=lambda rec: rec.num_reg_images())
        r["registered_images"] = best.num_reg_images()
        r["images"] = 12 * len(ids)
        r["points3D"] = best.num_points3D()
        centres: dict[str, np.ndarray] = {}
        for im in best.images.values():
            if im.has_pose:
                centres.setdefault(Path(im.name).stem, np.asarray(im.projection_center()))
        both = [i for i in ids if i in centres and i in gps]
        if len(both) >= 3:
            s, rot, t_ = umeyama(np.array([centres[i] for i in both]),
                                 np.array([gps[i] for i in both]))
            pos = {i: s * rot @ centres[i] + t_ for i in both}
            res = [float(np.linalg.norm(pos[i] - gps[i])) for i in both]
            r["rms_gps_residual_sim3_m"] = round(float(np.sqrt(np.mean(np.square(res)))), 3)
            r.update(distances(ids, pos, gps))
    print(f"colmap/{matcher}/{mapper}: {json.dumps(r)[:400]}", flush=True)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--set", choices=["full", "2048"], default="full")
    ap.add_argument("--size", type=int, default=0,
                    help="our view size (0: the panorama's natural 90-degree size, width / 4)")
    ap.add_argument("--sift-size", type=int, default=0, help="our SIFT max image size (0: all)")
    ap.add_argument("--colmap-all", action="store_true",
                    help="also COLMAP's sequential/exhaustive x incremental/global")
    ap.add_argument("--skip-colmap", action="store_true")
    ap.add_argument("--work", type=Path, help="keep the work folder here")
    args = ap.parse_args()

    src = DATA / "panos" / ("geovisio-gopromax" if args.set == "full" else
                            "geovisio-gopromax-2048")
    width = 5760 if args.set == "full" else 2048
    size = args.size or width // 4
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_sfm_"))
    work.mkdir(parents=True, exist_ok=True)
    ours = run_ours(src, work, size, args.sift_size)

    from splatstudio.project import read_json

    frames = read_json(work / "ours" / "reproject" / "frames.json")["frames"]
    ids = [f["id"] for f in frames]
    gps = {f["id"]: np.asarray(f["enu_m"]) for f in frames if f.get("enu_m") is not None}
    colmap: dict = {}
    if not args.skip_colmap:
        combos = [("exhaustive", "global")]
        if args.colmap_all:
            combos += [("sequential", "incremental"), ("exhaustive", "incremental"),
                       ("sequential", "global")]
        for matcher, mapper in combos:
            colmap[f"{matcher}+{mapper}"] = run_colmap(src, work, matcher, mapper, gps, ids)
    import pycolmap

    payload = {
        "data": str(src.relative_to(DATA)),
        "panoramas": len(ids),
        "pycolmap": pycolmap.__version__,
        "threads": os.cpu_count(),
        "ours": ours,
        "colmap_panorama": colmap,
        "note": "ours: ingest+reproject once, then sfm+georef per mapper (the incremental run "
                "reuses the database of the global run: features and matches are not redone); "
                "COLMAP's seconds include its own rendering of the perspective views",
    }
    name = "sfm" if args.set == "full" else "sfm_2048"
    print(write_result(name, payload))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
