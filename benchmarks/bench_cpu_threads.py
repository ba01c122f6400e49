"""CPU training speed under OpenMP wait settings, on idle cores and beside other busy processes.

torch's CPU kernels run on libgomp threads. When every core is not free (another program
busy, the GUI drawing), a thread that waits at a barrier for a descheduled peer spins for
``GOMP_SPINCOUNT`` iterations (libgomp default 300,000) before it sleeps, and small parallel
regions such as ours (thousands per training step) then crawl. This benchmark trains the
``test`` preset of the real 2048 GoPro MAX walk (ingest, reproject, sfm and georef run once
in a temporary project) for ``--steps`` steps on the CPU with each setting:

- ``libgomp_default``: ``GOMP_SPINCOUNT=300000`` (what libgomp does when nothing is set),
- ``spin_1000``: ``GOMP_SPINCOUNT=1000`` (what SplatStudio sets, see
  ``splatstudio.pipeline.runner.OPENMP_SPINCOUNT``),
- ``passive``: ``OMP_WAIT_POLICY=PASSIVE`` (threads sleep at once),
- ``one_thread``: ``OMP_NUM_THREADS=1``,

each with 0 and ``--busy`` other processes running a Python busy loop. Records the training
seconds the stage reports (``train/metrics.json``, the last evaluation) and the wall time of
``splatstudio train``. Writes ``benchmarks/results/cpu_threads.json``. Run:
``python benchmarks/bench_cpu_threads.py [--steps 150] [--busy 1] [--repeats 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, write_result  # noqa: E402

SETTINGS = {
    "libgomp_default": {"GOMP_SPINCOUNT": "300000"},
    "spin_1000": {"GOMP_SPINCOUNT": "1000"},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "one_thread": {"OMP_NUM_THREADS": "1"},
}
OMP_VARS = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "OMP_NUM_THREADS")


def georef_project(work: Path) -> Path:
    """A project of the 2048 walk (test preset) through georef, in `work`."""
    from splatstudio.config import ProjectConfig
    from splatstudio.pipeline.runner import PipelineRunner
    from splatstudio.project import Project

    src = DATA / "panos" / "geovisio-gopromax-2048"
    project = Project.create(work / "base", src, ProjectConfig.from_preset("test"))
    result = PipelineRunner(project, device="cpu").run(until="georef")
    if not result.ok:
        raise SystemExit(f"the project did not reach georef: {result.reason}")
    return project.root


def train_once(base: Path, work: Path, env_over: dict[str, str], busy: int, steps: int) -> dict:
    """Train a copy of `base` with the OpenMP settings `env_over` beside `busy` busy loops."""
    proj = work / "run"
    shutil.rmtree(proj, ignore_errors=True)
    shutil.copytree(base, proj, ignore=shutil.ignore_patterns("train"))
    env = {k: v for k, v in os.environ.items() if k not in OMP_VARS}
    env.update(env_over)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    try:
        t0 = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "splatstudio", "train", "-p", str(proj), "--device", "cpu",
             "--steps", str(steps), "--eval-every", "0", "--preview-every", "0", "-q"],
            env=env, check=True, stdout=subprocess.DEVNULL,
        )
        wall = time.monotonic() - t0
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    evals = json.loads((proj / "train" / "metrics.json").read_text())["evals"]
    return {"train_s": evals[-1]["seconds"], "wall_s": round(wall, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--busy", type=int, default=1, help="busy processes in the loaded runs")
    ap.add_argument("--repeats", type=int, default=2, help="runs per idle case")
    ap.add_argument("--skip-default-loaded", action="store_true",
                    help="skip libgomp's default beside busy processes (the slow case)")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-threads-") as tmp:
        work = Path(tmp)
        base = georef_project(work)
        for name, env_over in SETTINGS.items():
            for busy in (0, args.busy):
                if busy and name == "libgomp_default" and args.skip_default_loaded:
                    continue
                runs = [train_once(base, work, env_over, busy, args.steps)
                        for _ in range(args.repeats if busy == 0 else 1)]
                best = min(runs, key=lambda r: r["train_s"])
                row = {"setting": name, "env": env_over, "busy_processes": busy,
                       "steps": args.steps, "train_s": best["train_s"],
                       "runs_train_s": [r["train_s"] for r in runs], "wall_s": best["wall_s"]}
                print(json.dumps(row), flush=True)
                results.append(row)
    idle = {r["setting"]: r["train_s"] for r in results if r["busy_processes"] == 0}
    for r in results:
        r["vs_libgomp_default_idle"] = round(r["train_s"] / idle["libgomp_default"], 2)
    payload = {
        "what": "CPU training seconds of the test preset on the 2048 walk under OpenMP wait "
                "settings, idle and beside busy processes (best of the idle repeats)",
        "device": "cpu",
        "results": results,
    }
    print(write_result("cpu_threads", payload))


if __name__ == "__main__":
    main()
