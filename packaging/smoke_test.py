"""Smoke test of the bundle that ``make package`` built (dist/splatstudio/), run from outside it.

1. ``splatstudio --version`` from the bundle (timed three times: the start-up time);
2. ``splatstudio doctor --no-measure --json``: a frozen Python, resources inside the bundle;
3. ``splatstudio run ../shared/data/panos/geovisio-gopromax-2048 --preset test --until sfm``
   into a temporary project: sfm done, every view registered;
4. the bundled GUI on a private Xvfb opening ../shared/data/splats/donut_fused.ply in the viewer
   (throw-away HOME): a screenshot whose centre is not the viewer's background.

Run with the repository's Python (it reads the screenshot with OpenCV):
``.venv/bin/python packaging/smoke_test.py [--bundle dist/splatstudio] [--record]``.
``--record`` writes the size and start-up times to benchmarks/results/bundle.json. Exit code 0
when every check passed; the first failure stops it with its output.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
PANOS = DATA / "panos" / "geovisio-gopromax-2048"
DONUT = DATA / "splats" / "donut_fused.ply"
BACKGROUND = (0.08, 0.09, 0.11)  # splatstudio.gui.viewer.gl_widget.BACKGROUND (checked below)


def fail(msg: str, proc: subprocess.CompletedProcess | None = None) -> None:
    if proc is not None:
        msg += f"\n--- exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    raise SystemExit(f"smoke test FAILED: {msg}")


def run(cmd: list, env: dict | None = None, timeout: float = 600) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env,
                          timeout=timeout)
    return proc, time.perf_counter() - t0


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def start_xvfb() -> tuple[subprocess.Popen, str]:
    sys.path.insert(0, str(ROOT / "scripts"))
    from screenshots import start_xvfb as start

    return start()


def centre_distance(png: Path) -> float:
    """Mean colour distance of the 40x40 centre patch from the background, 8-bit levels."""
    import cv2
    import numpy as np

    img = cv2.imread(str(png))
    if img is None:
        fail(f"{png}: no screenshot")
    img = img[..., ::-1].astype(float)
    h, w = img.shape[:2]
    patch = img[h // 2 - 20: h // 2 + 20, w // 2 - 20: w // 2 + 20]
    return float(np.abs(patch - np.array(BACKGROUND) * 255).sum(axis=2).mean())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, default=ROOT / "dist" / "splatstudio")
    ap.add_argument("--record", action="store_true",
                    help="write benchmarks/results/bundle.json")
    ap.add_argument("--screenshot", type=Path, help="keep the viewer screenshot here")
    args = ap.parse_args()
    exe = args.bundle / "splatstudio"
    if not exe.is_file():
        fail(f"{exe} not found: run `make package` first")
    from splatstudio import __version__

    tmp = Path(tempfile.mkdtemp(prefix="splatstudio-smoke-"))
    home = tmp / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_CACHE_HOME=str(home / ".cache"), PATH="/usr/bin:/bin")
    result: dict = {"bundle": str(args.bundle.relative_to(ROOT) if args.bundle.is_relative_to(ROOT)
                                  else args.bundle)}
    try:
        # 1) --version, three times
        times = []
        for _ in range(3):
            proc, dt = run([exe, "--version"], env, timeout=120)
            if proc.returncode != 0 or proc.stdout.strip() != f"splatstudio {__version__}":
                fail("--version", proc)
            times.append(dt)
        result["version_start_s"] = {"runs": [round(t, 2) for t in times],
                                     "median": round(statistics.median(times), 2)}
        print(f"1. --version: {proc.stdout.strip()}, {statistics.median(times):.2f} s")

        # 2) doctor
        proc, dt = run([exe, "doctor", "--no-measure", "--json", "--projects-dir", tmp], env, 300)
        if proc.returncode != 0:
            fail("doctor", proc)
        rep = json.loads(proc.stdout)
        checks = {c["key"]: c for c in rep["checks"]}
        if not checks["python"]["details"]["frozen"]:
            fail("doctor: not a frozen Python", proc)
        res = Path(checks["resources"]["details"].get("dir", ""))
        if checks["resources"]["state"] != "ok" or not res.is_relative_to(args.bundle.resolve()):
            fail(f"doctor: resources {checks['resources']}", proc)
        for key in ("torch", "pycolmap", "open3d", "qt"):
            if checks[key]["state"] != "ok":
                fail(f"doctor: {key} {checks[key]}", proc)
        result["doctor_s"] = round(dt, 1)
        print(f"2. doctor: resources in {res}, torch {checks['torch']['summary']}, "
              f"{checks['pycolmap']['summary']} ({dt:.1f} s)")

        # 3) the pipeline until sfm
        if PANOS.is_dir():
            proj = tmp / "proj"
            proc, dt = run([exe, "run", PANOS, "-p", proj, "--preset", "test", "--until", "sfm",
                            "-q"], env, timeout=1800)
            if proc.returncode != 0:
                fail("run --until sfm", proc)
            st, _ = run([exe, "status", "-p", proj, "--json"], env, 120)
            stages = json.loads(st.stdout)["stages"]
            sfm = stages["sfm"]
            if sfm["state"] != "done":
                fail(f"sfm not done: {sfm}", proc)
            result["run_until_sfm_s"] = round(dt, 1)
            result["sfm_metrics"] = sfm["metrics"]
            print(f"3. run --until sfm: {dt:.1f} s, sfm {sfm['metrics']}")
        else:
            print(f"3. skipped: {PANOS} not present")

        # 4) the GUI's viewer under Xvfb
        if DONUT.is_file():
            xvfb, display = start_xvfb()
            try:
                genv = {**env, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
                shot = tmp / "viewer.png"
                proc, dt = run([exe, DONUT, "--screenshot", shot], genv, timeout=300)
            finally:
                xvfb.terminate()
                xvfb.wait(10)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode != 0 or not lines:
                fail("GUI with the donut", proc)
            state = json.loads(lines[-1])
            if state["viewer_file"] != str(DONUT) or state["gaussians"] <= 0:
                fail(f"viewer state {state}", proc)
            dist = centre_distance(shot)
            if dist < 60:
                fail(f"the screenshot's centre is background (distance {dist:.0f})")
            if args.screenshot:
                shutil.copy(shot, args.screenshot)
            result["gui_first_frame_s"] = round(dt, 1)
            result["gui_renderer"] = state["gl_renderer"]
            print(f"4. GUI: {state['gaussians']} gaussians drawn by {state['gl_renderer']}, "
                  f"centre {dist:.0f} levels from the background, {dt:.1f} s to the screenshot")
        else:
            print(f"4. skipped: {DONUT} not present")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    size = du(args.bundle)
    result["bundle_bytes"] = size
    build = ROOT / "dist" / "splatstudio-build.json"
    if build.is_file():
        info = json.loads(build.read_text())
        result["build"] = info
        archive = ROOT / info["archive"]
        if archive.is_file():
            result["archive_bytes"] = archive.stat().st_size
    print(f"bundle {size / 2**20:.0f} MiB" + (f", archive {result['archive_bytes'] / 2**20:.0f} MiB"
                                            if "archive_bytes" in result else ""))
    if args.record:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from _common import write_result

        torch_kind = checks["torch"]["summary"].split()[0]
        path = write_result("bundle", {
            "device": "cpu",
            "what": "PyInstaller one-folder bundle (make package): size, start-up time of "
                    "`splatstudio --version`, time from start to the viewer's screenshot of "
                    "donut_fused.ply under Xvfb, `run --until sfm` on the 2048 walk",
            "torch": torch_kind,
            **result,
        })
        print(f"wrote {path}")
    print("smoke test passed")
    return 0


if __name__ == "__main__":
    from splatstudio.gui.viewer.gl_widget import BACKGROUND as _BG

    assert tuple(_BG) == BACKGROUND, "update BACKGROUND here"
    sys.exit(main())
