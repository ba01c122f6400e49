"""What SfM costs on the full-resolution walk, before and after the cost cuts, in one run.

On ``../shared/data/panos/geovisio-gopromax`` (5 GoPro MAX panoramas, 5760 x 2880; the 18-view
rig at 1440 px, the ``test`` preset otherwise), ingest and reproject once, then SfM + georef
from a fresh database for each configuration:

- ``before``: every view pair of two neighbouring panoramas (18 x 18), SIFT on the whole
  1440 px views (the defaults before this benchmark);
- ``after``: only views whose axes are within ``--overlap`` degrees once the panoramas'
  relative heading is known (``sfm.view_overlap_deg``), SIFT on views shrunk to ``--sift``
  pixels (``sfm.max_image_size``, never upsampled back).

Per configuration: seconds per phase, image pairs matched, pairs verified, registered views,
points, GPS RMS. Writes benchmarks/results/sfm_cost.json. Usage:
    python benchmarks/bench_sfm_cost.py [--overlap 60] [--sift 1024]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, write_result  # noqa: E402


def sfm_georef(base: Path, dst: Path, sfm: dict) -> dict:
    from splatstudio.config import update_config
    from splatstudio.pipeline.runner import PipelineRunner
    from splatstudio.project import Project, read_json

    shutil.copytree(base, dst)
    for name in (".lock", ".worker.lock"):
        (dst / name).unlink(missing_ok=True)
    project = Project.open(dst)
    project.config.sfm = update_config(project.config.sfm, sfm)
    project.save()
    t = time.perf_counter()
    res = PipelineRunner(project, device="cpu").run(until="georef")
    out: dict = {"options": sfm, "ok": res.ok, "reason": res.reason,
                 "seconds_sfm_georef": round(time.perf_counter() - t, 2)}
    sj = read_json(dst / "sfm" / "sfm.json") if (dst / "sfm" / "sfm.json").exists() else None
    if sj:
        out.update({"seconds": sj["seconds"], "images": sj["images"],
                    "registered_images": sj["registered_images"], "image_pairs": sj["pairs"],
                    "verified_pairs": sj["verified_pairs"],
                    "points3D": sj["metrics"].get("points3D"),
                    "view_pairs": sj.get("view_pairs")})
        out["seconds_sfm"] = round(sum(v for k, v in sj["seconds"].items()), 2)
    gj = dst / "georef" / "georef.json"
    if res.ok and gj.exists():
        g = read_json(gj)
        out.update({"rms_gps_residual_all_m": g["rms_residual_all_m"],
                    "check": {k: v for k, v in g["check"].items() if k != "within"}})
    print(out, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--overlap", type=float, default=60.0)
    ap.add_argument("--sift", type=int, default=1024)
    ap.add_argument("--work", type=Path)
    args = ap.parse_args()

    from splatstudio.config import ProjectConfig, update_config
    from splatstudio.pipeline.runner import PipelineRunner
    from splatstudio.project import Project

    src = DATA / "panos" / "geovisio-gopromax"
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_sfm_cost_"))
    cfg = ProjectConfig.from_preset("test")
    cfg.reproject = update_config(cfg.reproject, {"max_size": 1440})
    base = work / "base"
    project = Project.create(base, src, cfg)
    assert PipelineRunner(project, device="cpu").run(until="reproject").ok
    runs = {
        "before": sfm_georef(base, work / "before", {"view_overlap_deg": 0.0,
                                                     "max_image_size": 0}),
        "after": sfm_georef(base, work / "after", {"view_overlap_deg": args.overlap,
                                                   "max_image_size": args.sift}),
    }
    b, a = runs["before"], runs["after"]
    summary = {}
    if b.get("seconds_sfm") and a.get("seconds_sfm"):
        summary = {"sfm_time_ratio": round(a["seconds_sfm"] / b["seconds_sfm"], 3),
                   "pairs_ratio": round(a["image_pairs"] / b["image_pairs"], 3)}
    write_result("sfm_cost", {"data": str(src.relative_to(DATA)), "view_size": 1440,
                              "runs": runs, "summary": summary})
    print(summary)


if __name__ == "__main__":
    main()
