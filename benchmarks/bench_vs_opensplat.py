"""CPU training speed of SplatStudio against OpenSplat's CPU backend, same workload, same run.

Workload (issue 16; :mod:`_cpu_workload`): the COLMAP model of the real 2048 GoPro MAX walk
(90 views of 512x512 px, trained at full size, unmasked), started from ``n`` points (10k /
100k / 300k), SH degree 3 raised every 1000 steps (so degree 0 here), no densification in the
timed steps. Both trainers run as fresh processes with the same OpenMP setting
(``GOMP_SPINCOUNT=1000``, what SplatStudio's runner sets; on this shared machine libgomp's
default spin makes both crawl) and all cores, **interleaved**: for each count SplatStudio
``short``, OpenSplat ``short``, SplatStudio ``long``, OpenSplat ``long`` steps, so both see the
same machine load. Time per step = (wall(long) - wall(short)) / (long - short), which cancels
start-up; start-up = wall(short) - short x time per step (process start, imports, image
loading, initialisation; each trainer also writes its PLY at the end, inside the wall time).
The same is computed from the CPU seconds (user + system) of each process (``*_cpu_*``; our
untimed evaluation excluded): on a shared, loaded machine wall time swings with the other
jobs while CPU time measures the work, so both are reported. The 1-minute load average
before and after every run is recorded.

Also recorded:

* ``profile``: seconds per step of each phase of our CPU step (projection, SH, tile binning,
  compositing forward / backward, loss, rest of the backward = projection + SH + SSIM
  backward, optimizer, densification), measured in-process with
  :func:`_step_profile.profile_steps`, per count;
* ``numba_startup``: the compiled kernels' start-up (:func:`jit_startup`): a fresh process's
  first differentiable render + loss with an empty numba cache (compilation) and with the
  cache; the default cache is filled before the timed runs, as after a user's first run;
* ``psnr``: our held-out PSNR (every 8th view) after the long run, and with ``--baseline-src``
  the same run of another SplatStudio checkout (e.g. the code before a change; same seed).

OpenSplat is found at ``--opensplat`` / ``$OPENSPLAT_BIN`` / ``../opensplat-build/build/
opensplat`` (build it with ``../shared/tools/build_opensplat.sh``); when absent its runs are
skipped with a message and only ours are timed. Writes ``benchmarks/results/vs_opensplat.json``.
Run: ``python benchmarks/bench_vs_opensplat.py [--counts 10000:20:70,100000:20:70,300000:10:30]
[--work DIR] [--baseline-src ../main]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, write_result  # noqa: E402

DEFAULT_BIN = ROOT.parent / "opensplat-build" / "build" / "opensplat"
ENV = {"GOMP_SPINCOUNT": "1000"}

# Our trainer as a fresh process: load the views and points, train, write the PLY; then
# (untimed) evaluate the held-out views. Prints one JSON line.
WORKER = r"""
import json, sys, time
t0 = time.time()
A = json.loads(sys.argv[1])
sys.path.insert(0, A["src"])
sys.path.insert(1, A["bench"])
from pathlib import Path
import numpy as np
import torch
from _cpu_workload import load_views
from splatstudio.splats.io import save_splats
from splatstudio.train.model import to_splats
from splatstudio.config import TrainConfig
from splatstudio.train.trainer import Trainer
torch.manual_seed(0)
tr, ev = load_views(Path(A["project"]))
for v in tr + ev:
    v.mask = None
pts = np.load(A["points"])
cfg = TrainConfig(steps=A["steps"], sh_degree=3, sh_degree_interval=1000,
                    refine_start=10**9, seed=0)
t = Trainer(tr, ev, pts["xyz"], pts["rgb"], cfg, "cpu")
t1 = time.time()
t.train(A["steps"])
save_splats(to_splats(t.splats), A["out"])
t2 = time.time()
c2 = time.process_time()
ev = t.evaluate()
print(json.dumps({"t_start": t0, "t_ready": t1, "t_end": t2, "psnr": ev["psnr"],
                  "eval_cpu_s": time.process_time() - c2,
                  "ssim": ev["ssim"], "gaussians": len(t.splats["means"])}))
"""


# The numba kernels' start-up: import + one differentiable render and SSIM of a small scene
# in a fresh process; the first run with an empty cache compiles, the next loads the cache.
JIT_PROBE = r"""
import json, sys, time
t0 = time.time()
sys.path.insert(0, sys.argv[1])
import torch
from splatstudio.render import look_at, intrinsics_from_fov, rasterize
from splatstudio.train.losses import photometric_loss
g = torch.Generator().manual_seed(0)
n = 500
ps = [torch.randn(n, 3, generator=g), torch.randn(n, 4, generator=g),
      torch.rand(n, 3, generator=g) * 0.1 + 0.01, torch.rand(n, generator=g),
      torch.rand(n, 3, generator=g)]
for p in ps:
    p.requires_grad_(True)
vm = torch.as_tensor(look_at([0.0, -4.0, 1.0], [0.0, 0.0, 0.0]), dtype=torch.float32)
K = torch.as_tensor(intrinsics_from_fov(60.0, 64, 48), dtype=torch.float32)
t1 = time.time()
img, alp, info = rasterize(*ps, vm[None], K[None], 64, 48)
photometric_loss(img, torch.rand_like(img)).backward()
print(json.dumps({"import_s": t1 - t0, "first_step_s": time.time() - t1,
                  "kernel": info["cpu_stats"]["kernel"]}))
"""


def jit_startup(src: Path) -> dict:
    """Start-up of the compiled kernels: a fresh process with an empty numba cache (compiles
    and writes the cache) and one with that cache; plus a run with the default cache, so the
    timed runs do not pay the compilation."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        for name in ("cold_cache", "warm_cache"):
            env = {**os.environ, **ENV, "PYTHONPATH": str(src), "NUMBA_CACHE_DIR": cache}
            r = subprocess.run([sys.executable, "-c", JIT_PROBE, str(src)], env=env,
                               capture_output=True, text=True)
            if r.returncode:
                raise SystemExit(f"the numba start-up probe failed:\n{r.stderr[-3000:]}")
            out[name] = {k: round(v, 3) if isinstance(v, float) else v
                         for k, v in json.loads(r.stdout.strip().splitlines()[-1]).items()}
    env = {**os.environ, **ENV, "PYTHONPATH": str(src)}
    subprocess.run([sys.executable, "-c", JIT_PROBE, str(src)], env=env, check=True,
                   capture_output=True)
    out["load_avg_1min"] = load1()
    return out


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def children_cpu_s() -> float:
    """User + system CPU seconds of the finished child processes so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_ours(src: Path, project: Path, points: Path, steps: int, out: Path) -> dict:
    """Wall seconds of a fresh SplatStudio training process of `steps` steps (from `src`)."""
    args = {"src": str(src), "bench": str(Path(__file__).resolve().parent),
            "project": str(project), "points": str(points), "steps": steps, "out": str(out)}
    env = {**os.environ, **ENV, "PYTHONPATH": str(src)}
    l0 = load1()
    c0 = children_cpu_s()
    t0 = time.time()
    r = subprocess.run([sys.executable, "-c", WORKER, json.dumps(args)], env=env,
                       capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"our trainer failed:\n{r.stderr[-3000:]}")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    return {"steps": steps, "wall_s": round(res["t_end"] - t0, 3),
            "cpu_s": round(children_cpu_s() - c0 - res["eval_cpu_s"], 3),
            "ready_s": round(res["t_ready"] - t0, 3), "psnr": round(res["psnr"], 4),
            "ssim": round(res["ssim"], 5), "load_before": l0, "load_after": load1()}


def run_opensplat(binary: Path, data: Path, steps: int, out: Path) -> dict:
    """Wall seconds of an OpenSplat CPU training process of `steps` steps."""
    env = {**os.environ, **ENV}
    l0 = load1()
    c0 = children_cpu_s()
    t0 = time.time()
    r = subprocess.run([str(binary), str(data), "--cpu", "-n", str(steps), "-o", str(out)],
                       env=env, capture_output=True, text=True, cwd=out.parent)
    wall = time.time() - t0
    if r.returncode:
        raise SystemExit(f"OpenSplat failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return {"steps": steps, "wall_s": round(wall, 3), "cpu_s": round(children_cpu_s() - c0, 3),
            "load_before": l0, "load_after": load1()}


def per_step(short: dict, long: dict, key: str = "wall_s") -> tuple[float, float]:
    """(seconds per step, start-up seconds) of `key` (wall_s or cpu_s) from a short and a
    long run."""
    s = (long[key] - short[key]) / (long["steps"] - short["steps"])
    return round(s, 4), round(short[key] - short["steps"] * s, 3)


def profile(project: Path, n: int, steps: int) -> dict:
    """In-process phase profile of our step at `n` Gaussians (seconds per step)."""
    import numpy as np
    import torch
    from _cpu_workload import initial_points, load_views
    from _step_profile import profile_steps, ssim_cost

    from splatstudio.config import TrainConfig
    from splatstudio.train.trainer import Trainer

    torch.manual_seed(0)
    tr, ev = load_views(project)
    for v in tr + ev:
        v.mask = None
    xyz, rgb = initial_points(project, n)
    cfg = TrainConfig(steps=1000, sh_degree=3, sh_degree_interval=1000,
                        refine_start=10**9, seed=0)
    t = Trainer(tr, ev, xyz, rgb, cfg, "cpu")
    out = profile_steps(t, steps)
    out["ssim_loss_fwd_bwd_512"] = round(ssim_cost(512, 512), 5)
    out["threads"] = torch.get_num_threads()
    out["load_avg_1min"] = load1()
    np.random.default_rng(0)
    return out


def _payload(args, have_os: bool, rows: list, jit: dict | None = None) -> dict:
    """The JSON payload (written after every count, so a cut run keeps what it measured)."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    os_commit = ""
    cf = args.opensplat.parent.parent / "COMMIT"
    if cf.exists():
        os_commit = cf.read_text().strip()
    payload = {
        "what": "CPU training seconds per step and start-up, SplatStudio vs OpenSplat (CPU "
                "backend), same workload, interleaved runs; plus our per-phase step profile",
        "device": "cpu",
        "workload": "geovisio-gopromax-2048, test preset through georef: 90 views 512x512, "
                    "unmasked, full size; initial points = the SfM points resampled and "
                    "jittered (benchmarks/_cpu_workload.py); SH degree 0 (of 3), no "
                    "densification; GOMP_SPINCOUNT=1000 for both",
        "splatstudio_commit": commit,
        "opensplat": {"binary": str(args.opensplat), "present": have_os, "commit": os_commit},
        "baseline_src": str(args.baseline_src) if args.baseline_src else None,
        "load_avg_1min_at_end": load1(),
        "numba_startup": jit,
        "results": rows,
    }
    return payload


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--counts", default="10000:20:70,100000:20:70,300000:10:30",
                    help="n:short:long,... initial Gaussians and the two run lengths")
    ap.add_argument("--work", type=Path, help="keep the project and datasets here")
    ap.add_argument("--opensplat", type=Path,
                    default=Path(os.environ.get("OPENSPLAT_BIN", DEFAULT_BIN)))
    ap.add_argument("--baseline-src", type=Path,
                    help="another SplatStudio checkout to time and evaluate the same way")
    ap.add_argument("--profile-steps", type=int, default=5)
    ap.add_argument("--skip-profile", action="store_true")
    args = ap.parse_args()
    os.environ.update(ENV)  # the in-process profile uses the same OpenMP setting

    from _cpu_workload import georef_project, initial_points, write_opensplat_dataset

    have_os = args.opensplat.is_file() and os.access(args.opensplat, os.X_OK)
    if not have_os:
        print(f"OpenSplat binary not found at {args.opensplat}: its runs are skipped (build it "
              "with ../shared/tools/build_opensplat.sh, or pass --opensplat / set "
              "OPENSPLAT_BIN)", flush=True)
    tmp = None
    work = args.work
    if work is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-vs-opensplat-")
        work = Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    project = georef_project(work)
    import numpy as np

    jit = jit_startup(ROOT)
    print("numba start-up", json.dumps(jit), flush=True)
    rows = []
    for spec in args.counts.split(","):
        n, short, long = (int(x) for x in spec.split(":"))
        pts = work / f"points_{n}.npz"
        data = work / f"opensplat_{n}"
        if not pts.exists() or not (data / "sparse" / "0" / "points3D.bin").exists():
            xyz, rgb = initial_points(project, n)
            np.savez(pts, xyz=xyz, rgb=rgb)
            shutil.rmtree(data, ignore_errors=True)
            write_opensplat_dataset(project, xyz, rgb, data)
        row: dict = {"gaussians": n, "runs": {"ours": [], "opensplat": [], "baseline": []}}
        for steps in (short, long):
            row["runs"]["ours"].append(
                run_ours(ROOT, project, pts, steps, work / "ours.ply"))
            print(n, "ours", row["runs"]["ours"][-1], flush=True)
            if have_os:
                row["runs"]["opensplat"].append(
                    run_opensplat(args.opensplat, data, steps, work / "os.ply"))
                print(n, "opensplat", row["runs"]["opensplat"][-1], flush=True)
            if args.baseline_src:
                row["runs"]["baseline"].append(
                    run_ours(args.baseline_src.resolve(), project, pts, steps,
                             work / "base.ply"))
                print(n, "baseline", row["runs"]["baseline"][-1], flush=True)
        for who in ("ours", "opensplat", "baseline"):
            r = row["runs"][who]
            if len(r) == 2:
                row[f"{who}_s_per_step"], row[f"{who}_startup_s"] = per_step(*r)
                row[f"{who}_cpu_s_per_step"], row[f"{who}_startup_cpu_s"] = per_step(*r, "cpu_s")
        if have_os:
            row["ratio_ours_to_opensplat"] = round(
                row["ours_s_per_step"] / row["opensplat_s_per_step"], 3)
            row["ratio_ours_to_opensplat_cpu"] = round(
                row["ours_cpu_s_per_step"] / row["opensplat_cpu_s_per_step"], 3)
            row["startup_diff_s"] = round(row["ours_startup_s"] - row["opensplat_startup_s"], 3)
        row["psnr_ours"] = row["runs"]["ours"][-1]["psnr"]
        if args.baseline_src:
            row["psnr_baseline"] = row["runs"]["baseline"][-1]["psnr"]
            row["speedup_vs_baseline"] = round(
                row["baseline_s_per_step"] / row["ours_s_per_step"], 3)
            row["speedup_vs_baseline_cpu"] = round(
                row["baseline_cpu_s_per_step"] / row["ours_cpu_s_per_step"], 3)
        if not args.skip_profile:
            row["profile"] = profile(project, n, args.profile_steps)
        print(json.dumps({k: v for k, v in row.items() if k != "runs"}), flush=True)
        rows.append(row)
        print(write_result("vs_opensplat", _payload(args, have_os, rows, jit)), flush=True)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
