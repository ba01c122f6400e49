"""Frames per second of the OpenGL splat viewer for 100k gaussians (Xvfb + Mesa llvmpipe here).

Scenes: ``donut_fused.ply`` (45,624 gaussians) tiled three times side by side, 100,000 of them
kept (random subset, seed 0): ``sh0`` as is (SH degree 0, the cheap path: no SH texture), and
``sh3`` the same gaussians with random degree-3 coefficients (``shN ~ N(0, 0.1)``, seed 0), so
the difference is the cost of the SH texture and of evaluating bands 1..3 in the vertex shader.
Window 1280x720. Three numbers per scene (``cpu_ms``: CPU time of this process, all llvmpipe
threads, per frame: the work, which a busy machine changes less than the wall time):

* ``static``: paintGL + glFinish with a still camera (no re-sort): pure drawing cost;
* ``orbit``: the camera turns 2 degrees every frame, so every frame re-sorts (NumPy argsort)
  and re-uploads the index buffer, then draws: the cost while the user drags;
* ``interactive``: update() -> frameSwapped loop through Qt for a few seconds while orbiting:
  what the user sees, composition to the X window included.

Run: ``python benchmarks/bench_viewer.py`` (starts a private Xvfb when DISPLAY is unset).
Writes ``benchmarks/results/viewer_fps.json``, with the 1-minute load average before and after:
llvmpipe draws on the CPU, so a loaded machine (load > 1.5 on 2 cores) gives lower numbers, and
the JSON says so (``loaded``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import DATA, write_result  # noqa: E402

N = 100_000
SIZE = (1280, 720)
#: A machine busier than this (1-minute load average) is flagged in the result.
LOAD_LIMIT = 1.5


def _start_xvfb() -> subprocess.Popen | None:
    if os.environ.get("DISPLAY"):
        return None
    exe = shutil.which("Xvfb")
    if exe is None:
        raise SystemExit("no DISPLAY and no Xvfb: install xvfb or run under a display")
    r, w = os.pipe()
    proc = subprocess.Popen([exe, "-screen", "0", "1920x1080x24", "-nolisten", "tcp",
                             "-displayfd", str(w)], pass_fds=(w,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    with os.fdopen(r) as f:
        os.environ["DISPLAY"] = ":" + f.readline().strip()
    return proc


def scene():
    """The 100k-gaussian benchmark scene (see the module docstring)."""
    from splatstudio.splats.io import load_splats
    from splatstudio.splats.model import Splats

    donut = load_splats(DATA / "splats" / "donut_fused.ply")
    width = float(np.ptp(donut.means[:, 0])) * 1.1
    parts = []
    for k in range(3):
        part = donut.copy()
        part.means[:, 0] += (k - 1) * width
        parts.append(part)
    tiled = Splats.concat(parts)
    keep = np.sort(np.random.default_rng(0).choice(tiled.n, N, replace=False))
    return tiled.subset(keep)


def scene_sh3(base):
    """:func:`scene` with random SH degree-3 coefficients (N(0, 0.1), seed 0)."""
    from splatstudio.splats.model import Splats

    rng = np.random.default_rng(0)
    return Splats(means=base.means, quats=base.quats, scales=base.scales,
                  opacities=base.opacities, sh0=base.sh0,
                  shN=rng.normal(0.0, 0.1, (base.n, 15, 3)).astype(np.float32))


def main() -> int:
    xvfb = _start_xvfb()
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    try:
        from OpenGL import GL
        from PySide6.QtCore import QEventLoop, QTimer
        from PySide6.QtWidgets import QApplication

        from splatstudio.gui.viewer.gaussians import back_to_front
        from splatstudio.gui.viewer.gl_widget import SplatGLWidget

        app = QApplication(["bench_viewer"])
        load_start = os.getloadavg()[0]
        base = scene()
        w = SplatGLWidget()
        w.resize(*SIZE)
        w.show()

        def show(splats) -> None:
            loop = QEventLoop()
            w.frameSwapped.connect(loop.quit)
            w.set_splats(splats)
            QTimer.singleShot(30_000, loop.quit)
            loop.exec()  # first frame on screen
            w.frameSwapped.disconnect(loop.quit)
            app.processEvents()
            if w.error:
                raise SystemExit(w.error)

        def timed(frames: int, turn: float) -> list[tuple[float, float]]:
            out = []
            w.makeCurrent()
            for _ in range(frames):
                if turn:
                    w.camera.orbit(turn, 0.0)
                t0, c0 = time.perf_counter(), time.process_time()
                w.paintGL()
                GL.glFinish()
                out.append((time.perf_counter() - t0, time.process_time() - c0))
            w.doneCurrent()
            return out

        def stats(ts: list[tuple[float, float]]) -> dict:
            med = float(np.median([t for t, _ in ts]))
            cpu = float(np.median([c for _, c in ts]))
            return {"median_ms": round(med * 1000, 1), "fps": round(1.0 / med, 2),
                    "cpu_ms": round(cpu * 1000, 1), "frames": len(ts)}

        def measure(splats, label: str) -> dict:
            show(splats)
            timed(3, 0.0)  # warm-up
            static = timed(20, 0.0)
            sorts0 = w.sort_count
            orbit = timed(20, 2.0)
            assert w.sort_count - sorts0 == 20

            vm = w.camera.viewmat()
            sort_s = []
            for _ in range(10):
                t0 = time.perf_counter()
                back_to_front(w.packed.means, vm)
                sort_s.append(time.perf_counter() - t0)

            frames = {"n": 0}

            def on_swap() -> None:
                frames["n"] += 1
                w.camera.orbit(2.0, 0.0)
                w.update()

            w.frameSwapped.connect(on_swap)
            t0 = time.perf_counter()
            w.update()
            stop = QEventLoop()
            QTimer.singleShot(5000, stop.quit)
            stop.exec()
            interactive_fps = frames["n"] / (time.perf_counter() - t0)
            w.frameSwapped.disconnect(on_swap)
            app.processEvents()
            return {
                "scene": label,
                "sh_degree": int(w.packed.sh_degree),
                "texture_bytes_per_gaussian": int(w.packed.bytes_per_gaussian),
                "static": stats(static),
                "orbit_with_resort": stats(orbit),
                "sort_argsort_median_ms": round(float(np.median(sort_s)) * 1000, 1),
                "interactive_fps": round(interactive_fps, 2),
            }

        sh0 = measure(base, f"donut_fused.ply tiled x3, random subset of {N} gaussians, SH0")
        sh3 = measure(scene_sh3(base), "the same gaussians with random SH degree 3 "
                      "(shN ~ N(0, 0.1), seed 0)")
        load_end = os.getloadavg()[0]
        loaded = max(load_start, load_end) > LOAD_LIMIT
        result = {
            "device": "llvmpipe" if "llvmpipe" in w.gl_info.get("renderer", "") else
            w.gl_info.get("renderer", "unknown"),
            "opengl": w.gl_info,
            "display": "Xvfb" if xvfb is not None else os.environ.get("DISPLAY"),
            "gaussians": int(w.packed.n),
            "window_px": list(SIZE),
            "load_avg_1min": {"start": round(load_start, 2), "end": round(load_end, 2)},
            "loaded": loaded,
            "note": (f"load average above {LOAD_LIMIT} on {os.cpu_count()} cores: other "
                     "processes shared the CPU that llvmpipe draws on, the numbers are low"
                     if loaded else "idle machine"),
            "sh0": sh0,
            "sh3": sh3,
        }
        path = write_result("viewer_fps", result)
        print(path.read_text())
        w.close()
        w.deleteLater()
        app.processEvents()
        app.shutdown()  # before Xvfb goes away
        return 0
    finally:
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(timeout=10)


if __name__ == "__main__":
    raise SystemExit(main())
