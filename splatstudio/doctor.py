"""``splatstudio doctor``: what this machine and this installation can run, and what a missing
piece means for the user (which stages or presets it affects).

One :class:`Check` per component: Python and the package's resources, torch and its devices
(CUDA name, memory and compute capability; MPS; CPU cores), gsplat's CUDA kernels, pycolmap and
its build, open3d, Qt and OpenGL, and the free disk space for projects. On a machine without CUDA
the report also says which presets the train stage would refuse on the CPU: it times a few
training steps of our CPU rasterizer on a small synthetic scene and applies the train stage's own
estimate and limit (:func:`splatstudio.pipeline.train_session.estimate_seconds`, ``cpu_limit_s``).

Qt's OpenGL version and renderer come from a child process (``splatstudio _gl-probe``): making an
OpenGL context without a display aborts the process that tries. The GUI's System dialog builds
the same report in its own process and passes its own OpenGL facts (:func:`collect` ``gl=``).

This module imports neither Qt nor torch at import time.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from . import __version__

OK, WARN, MISSING, FAIL = "ok", "warn", "missing", "fail"
"""States of a :class:`Check`: works; works with a limit; not installed; installed but broken."""

LOW_DISK_BYTES = 5 * 1024**3
"""Free space under which the disk check warns (a project of a few dozen panoramas keeps its
views, COLMAP database, checkpoints and exports: several GB)."""

REQUIREMENTS = ("gui", "sfm", "train", "cuda", "mesh", "gsplat")
"""What ``--require`` can ask for; each maps to the checks it needs (:data:`NEEDS`)."""

NEEDS: dict[str, tuple[str, ...]] = {
    "gui": ("resources", "qt", "opengl"),
    "sfm": ("pycolmap",),
    "train": ("torch",),
    "cuda": ("torch", "cuda"),
    "mesh": ("open3d",),
    "gsplat": ("torch", "cuda", "gsplat"),
}
"""Checks that must not be ``missing`` or ``fail`` for a requirement to be met."""

GSPLAT_PROBE_MISSING = "gsplat build probe not available in this version"


@dataclass
class Check:
    """One component's state.

    Attributes:
        key: short id (``torch``, ``cuda``, ``gsplat``, ``pycolmap``, ...).
        title: what it is, for people.
        state: :data:`OK`, :data:`WARN`, :data:`MISSING` or :data:`FAIL`.
        summary: the facts in one line (versions, device, sizes).
        impact: what the state means for the user ('' when nothing is affected).
        details: the facts as JSON-ready values.
    """

    key: str
    title: str
    state: str
    summary: str
    impact: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class PresetEstimate:
    """The train stage's CPU estimate for one preset on this machine.

    Attributes:
        preset: preset name.
        view_pixels: pixels of one full-size view (the preset's reproject ``max_size`` squared:
            the virtual rig's views are square).
        train_pixels: pixels trained per step (after the preset's ``downscale``).
        steps: training steps of the preset.
        estimate_s: estimated training seconds on this CPU (the stage's formula).
        limit_s: the train stage's ``cpu_limit_s``.
        refused: True when the train stage would stop the run (estimate over the limit).
    """

    preset: str
    view_pixels: int
    train_pixels: int
    steps: int
    estimate_s: float
    limit_s: float
    refused: bool


@dataclass
class Report:
    """The whole report: checks in display order, CPU preset estimates (empty when not measured
    or when CUDA trains), and how the CPU speed was measured."""

    checks: list[Check]
    presets: list[PresetEstimate] = field(default_factory=list)
    cpu_measure: dict[str, Any] = field(default_factory=dict)

    def check(self, key: str) -> Check | None:
        """The check named `key`, or None."""
        return next((c for c in self.checks if c.key == key), None)

    def unmet(self, requirements: list[str]) -> list[str]:
        """Messages for each of `requirements` (see :data:`NEEDS`) that cannot work here."""
        out = []
        for req in requirements:
            for key in NEEDS[req]:
                c = self.check(key)
                if c is None or c.state in (MISSING, FAIL):
                    why = c.summary if c is not None else "not checked"
                    out.append(f"{req}: needs {key} ({why})")
                    break
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``splatstudio doctor --json``)."""
        return {
            "splatstudio": __version__,
            "checks": [dataclasses.asdict(c) for c in self.checks],
            "cpu_presets": [dataclasses.asdict(p) for p in self.presets],
            "cpu_measure": self.cpu_measure,
        }

    def to_text(self) -> str:
        """The report for people: one line per check, its impact indented below."""
        mark = {OK: "ok  ", WARN: "warn", MISSING: "--  ", FAIL: "FAIL"}
        lines = [f"SplatStudio {__version__}"]
        for c in self.checks:
            lines.append(f"[{mark[c.state]}] {c.title:<13} {c.summary}")
            if c.impact:
                lines.append(f"{'':>7}{'':<13} -> {c.impact}")
        if self.presets:
            m = self.cpu_measure
            lines.append(
                f"Presets on this CPU (train stage estimate from {m['steps']} steps at "
                f"{m['seconds_per_step']:.3f} s on a synthetic {m['width']}x{m['height']} scene of "
                f"{m['gaussians']} Gaussians; the stage re-measures on the real views):"
            )
            for p in self.presets:
                verdict = (f"refused: over cpu_limit_s = {_fmt_s(p.limit_s)}" if p.refused
                           else "runs")
                lines.append(f"  {p.preset:<9} {p.steps:>6} steps at {p.train_pixels / 1e6:.2f} MP"
                             f"  about {_fmt_s(p.estimate_s):>7}  {verdict}")
            if any(p.refused for p in self.presets):
                lines.append("  (a refused preset still runs with --set train.allow_slow=true, "
                             "or on a CUDA GPU)")
        return "\n".join(lines)


def _fmt_s(s: float) -> str:
    from .pipeline.train_session import fmt_seconds

    return fmt_seconds(s)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _short(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------
def check_python() -> Check:
    """Python version, executable and whether this is a bundled (frozen) application."""
    frozen = bool(getattr(sys, "frozen", False))
    summary = f"{platform.python_version()} ({sys.executable}{', bundled' if frozen else ''})"
    return Check("python", "Python", OK, summary, details={
        "version": platform.python_version(), "executable": sys.executable, "frozen": frozen,
        "platform": platform.platform()})


def check_resources() -> Check:
    """The style sheet, icons and shaders (:mod:`splatstudio.resources`)."""
    from . import resources

    try:
        root = resources.resources_dir()
    except FileNotFoundError as e:
        return Check("resources", "Resources", FAIL, str(e),
                     "the window has no style and the splat viewer cannot load its shaders")
    return Check("resources", "Resources", OK, str(root), details={"dir": str(root)})


def check_cpu() -> Check:
    """CPU cores (logical, and those this process may use)."""
    logical = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else logical
    return Check("cpu", "CPU", OK, f"{usable} cores usable ({logical} logical), "
                 f"{platform.machine()}", details={"logical": logical, "usable": usable})


def check_torch() -> tuple[Check, Check, Any]:
    """(torch check, CUDA/MPS check, the torch module or None)."""
    try:
        import torch
    except ImportError as e:
        missing = Check("torch", "torch", MISSING, f"not installed ({_short(e)})",
                        "no training and no `splatstudio render`: install the 'train' extra")
        return missing, Check("cuda", "GPU", MISSING, "no torch", "training needs torch"), None
    t = Check("torch", "torch", OK, f"{torch.__version__} (threads {torch.get_num_threads()})",
              details={"version": torch.__version__, "cuda_build": torch.version.cuda,
                       "threads": torch.get_num_threads()})
    if torch.cuda.is_available():
        devs = []
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            devs.append({"index": i, "name": p.name, "memory_gib": round(p.total_memory / 1024**3, 1),
                         "capability": f"{p.major}.{p.minor}"})
        d = devs[0]
        summary = (f"CUDA {torch.version.cuda}: {d['name']}, {d['memory_gib']} GiB, compute "
                   f"capability {d['capability']}" + (f" (+{len(devs) - 1} more)" if len(devs) > 1
                                                      else ""))
        return t, Check("cuda", "GPU", OK, summary, details={"cuda": torch.version.cuda,
                                                             "devices": devs}), torch
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if torch.version.cuda is None:
        why = f"torch {torch.__version__} is a CPU-only build"
    else:
        why = f"torch is built for CUDA {torch.version.cuda} but sees no GPU (driver?)"
    if mps:
        return t, Check("cuda", "GPU", WARN, f"no CUDA ({why}); Apple MPS available",
                        "training runs on the CPU (gsplat needs CUDA); the CPU limits below apply",
                        details={"mps": True}), torch
    return t, Check("cuda", "GPU", MISSING, f"no CUDA: {why}",
                    "training runs on our CPU rasterizer: fine for the 'test' preset, the "
                    "larger presets are refused when estimated over cpu_limit_s (below)",
                    details={"mps": False}), torch


def _gsplat_cache_dir() -> str:
    base = os.environ.get("TORCH_EXTENSIONS_DIR")
    if base:
        return base
    return str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "torch_extensions")


def check_gsplat(torch_mod: Any, build: bool = False,
                 progress: Callable[[str], None] | None = None) -> Check:
    """gsplat: installed version, and through ``splatstudio.render.gsplat_ext`` (when this
    version has it) whether its CUDA kernels are compiled, will compile on first use, or cannot;
    with `build`, compiles them now."""
    version = _version("gsplat")
    if version is None:
        impact = ("CUDA training needs gsplat: install it (README, GPU installs)"
                  if torch_mod is not None and torch_mod.cuda.is_available()
                  else "only needed for CUDA training")
        return Check("gsplat", "gsplat", MISSING, "not installed", impact)
    try:
        from .render import gsplat_ext  # type: ignore[attr-defined]
    except ImportError:
        has_cuda = torch_mod is not None and torch_mod.cuda.is_available()
        return Check("gsplat", "gsplat", OK if not has_cuda else WARN,
                     f"{version}; {GSPLAT_PROBE_MISSING} (kernel cache: {_gsplat_cache_dir()})",
                     "" if not has_cuda else "its CUDA kernels compile on first use "
                     "(minutes) unless already cached",
                     details={"version": version, "probe": False, "cache_dir": _gsplat_cache_dir()})
    st = gsplat_ext.build(progress=progress) if build else gsplat_ext.probe()
    details = {"probe": True, **dataclasses.asdict(st)}
    facts = [f"{st.gsplat_version or version}"]
    if st.nvcc:
        facts.append(f"nvcc {st.nvcc}")
    facts.append("CUDA kernels compiled" if st.compiled else "CUDA kernels not compiled")
    if st.cache_dir:
        facts.append(f"cache {st.cache_dir}")
    summary = "; ".join(facts)
    if st.usable and st.compiled:
        return Check("gsplat", "gsplat", OK, summary, details=details)
    if st.usable:
        return Check("gsplat", "gsplat", WARN, summary, "the kernels compile on the first CUDA "
                     "training (minutes); `splatstudio doctor --build-gsplat` does it now",
                     details=details)
    if not st.torch_cuda:
        return Check("gsplat", "gsplat", OK, summary + "; no CUDA here",
                     "not used: training runs on the CPU", details=details)
    return Check("gsplat", "gsplat", FAIL, summary + (f": {st.reason}" if st.reason else ""),
                 "CUDA training cannot run" + (f" ({st.reason})" if st.reason else ""),
                 details=details)


def check_pycolmap() -> Check:
    """pycolmap: version and build (CPU or CUDA)."""
    try:
        import pycolmap
    except ImportError as e:
        return Check("pycolmap", "pycolmap", MISSING, f"not installed ({_short(e)})",
                     "no structure from motion (sfm, georef): install the 'sfm' extra")
    except Exception as e:  # noqa: BLE001 - a broken native library must be reported, not crash
        return Check("pycolmap", "pycolmap", FAIL, f"import failed: {_short(e)}",
                     "no structure from motion (sfm, georef)")
    cuda = bool(getattr(pycolmap, "has_cuda", False))
    build = getattr(pycolmap, "COLMAP_build", "")
    return Check("pycolmap", "pycolmap", OK,
                 f"{pycolmap.__version__}, {'CUDA' if cuda else 'CPU'} build",
                 "" if cuda else "SIFT features and matching run on the CPU (minutes for a "
                 "walk of panoramas, see README 'Measured')",
                 details={"version": pycolmap.__version__, "cuda": cuda, "build": build})


def check_open3d() -> Check:
    """open3d (the textured-mesh export)."""
    try:
        import open3d
    except ImportError as e:
        return Check("open3d", "open3d", MISSING, f"not installed ({_short(e)})",
                     "no textured mesh export (glb, obj): install the 'mesh' extra")
    except Exception as e:  # noqa: BLE001 - e.g. a missing system library (libGL, libusb)
        return Check("open3d", "open3d", FAIL, f"import failed: {_short(e)}",
                     "no textured mesh export (glb, obj)")
    return Check("open3d", "open3d", OK, open3d.__version__,
                 details={"version": open3d.__version__})


def check_qt() -> Check:
    """PySide6 and the Qt library version (no window is made; see
    :func:`splatstudio.gui.system.qt_check`, the only place outside this check that imports Qt)."""
    try:
        from .gui.system import qt_check
    except ImportError as e:
        return Check("qt", "Qt", MISSING, f"not installed ({_short(e)})",
                     "no desktop application (the commands work): install the 'gui' extra")
    except Exception as e:  # noqa: BLE001 - a broken Qt library must be reported, not crash
        return Check("qt", "Qt", FAIL, f"import failed: {_short(e)}", "no desktop application")
    return qt_check()


def gl_check(info: dict[str, Any]) -> Check:
    """The OpenGL check from a probe's answer (``{"version", "renderer", "vendor"}`` or
    ``{"error"}``, see :func:`splatstudio.gui.system.gl_info`)."""
    if info.get("no_display"):
        return Check("opengl", "OpenGL", MISSING, info["error"],
                     "no desktop application without a display (the commands work)",
                     details=info)
    if "error" in info:
        return Check("opengl", "OpenGL", FAIL, info["error"],
                     "the splat viewer cannot draw (the rest of the window works)", details=info)
    version = info.get("version", "")
    ok = info.get("major", 0) > 3 or (info.get("major", 0) == 3 and info.get("minor", 0) >= 3)
    summary = f"{version} on {info.get('renderer', '?')} ({info.get('vendor', '?')})"
    if not ok:
        return Check("opengl", "OpenGL", FAIL, summary, "the splat viewer needs OpenGL 3.3 core",
                     details=info)
    soft = any(s in info.get("renderer", "").lower() for s in ("llvmpipe", "softpipe", "swrast"))
    return Check("opengl", "OpenGL", WARN if soft else OK, summary,
                 "software rendering: the viewer is slow on large splats" if soft else "",
                 details=info)


def probe_gl_subprocess(timeout: float = 30.0) -> dict[str, Any]:
    """OpenGL facts from a child process (``splatstudio _gl-probe``), or ``{"error": ...}``
    (with ``"no_display": True`` on a Linux machine without X11 or Wayland display)."""
    env = os.environ
    if (sys.platform.startswith("linux") and not env.get("DISPLAY")
            and not env.get("WAYLAND_DISPLAY") and not env.get("QT_QPA_PLATFORM")):
        return {"error": "no display (DISPLAY and WAYLAND_DISPLAY are unset)", "no_display": True}
    if getattr(sys, "frozen", False):
        cmd = [sys.executable, "_gl-probe"]
    else:
        cmd = [sys.executable, "-m", "splatstudio", "_gl-probe"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"no answer from the OpenGL probe in {timeout:.0f} s"}
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                break
    err = (out.stderr.strip().splitlines() or [f"exit code {out.returncode}"])[0]
    return {"error": f"cannot make an OpenGL context: {err}"}


def check_disk(path: Path) -> Check:
    """Free space on the file system of `path` (the projects folder)."""
    p = Path(path).expanduser()
    probe = p
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    free_gib = usage.free / 1024**3
    summary = f"{free_gib:.1f} GiB free of {usage.total / 1024**3:.0f} GiB at {p}"
    details = {"path": str(p), "free_bytes": usage.free, "total_bytes": usage.total}
    if usage.free < LOW_DISK_BYTES:
        return Check("disk", "Disk", WARN, summary,
                     f"under {LOW_DISK_BYTES / 1024**3:.0f} GiB: a project's views, COLMAP "
                     "database and checkpoints may fill it", details=details)
    return Check("disk", "Disk", OK, summary, details=details)


# ---------------------------------------------------------------------------------------------
# CPU presets
# ---------------------------------------------------------------------------------------------
def measure_cpu_step(width: int = 256, height: int = 256, n_points: int = 1_000,
                     n_views: int = 4) -> dict[str, Any]:
    """Seconds per training step of :class:`splatstudio.train.trainer.Trainer` on the CPU, on
    a synthetic scene: `n_points` Gaussians in a 2 m cube seen by `n_views` cameras of
    `width` x `height` pixels on a 4 m ring (ENU metres, z up). Timed like the train stage: the
    median of ``ESTIMATE_STEPS`` steps after ``ESTIMATE_WARMUP`` warm-up steps. The defaults
    resemble the first steps of the ``test`` preset on the demo walk (256² views, ~900 SfM
    points); a real scene's cost per pixel depends on its Gaussians, so this is a first guess
    the train stage replaces with its own measure.

    Returns:
        ``{"seconds_per_step", "seconds_per_pixel_step", "width", "height", "gaussians",
        "steps"}``.
    """
    import numpy as np

    from .config import TrainConfig
    from .pipeline.train_session import ESTIMATE_STEPS, ESTIMATE_WARMUP
    from .render.camera import PinholeCamera, intrinsics_from_fov, look_at
    from .train.trainer import Trainer, TrainView

    rng = np.random.default_rng(0)
    points = rng.uniform(-1.0, 1.0, (n_points, 3))
    colors = rng.integers(0, 256, (n_points, 3), dtype=np.uint8)
    K = np.asarray(intrinsics_from_fov(70.0, width, height), dtype=np.float32)
    views = []
    for i in range(n_views):
        a = 2 * np.pi * i / n_views
        eye = (4.0 * np.cos(a), 4.0 * np.sin(a), 1.0)
        vm = np.asarray(look_at(eye, (0.0, 0.0, 0.0)), dtype=np.float32)
        img = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        views.append(TrainView(f"v{i}", PinholeCamera(vm, K, width, height), img))
    steps = ESTIMATE_WARMUP + ESTIMATE_STEPS
    trainer = Trainer(views, [], points, colors, TrainConfig(steps=steps, sh_degree=1), "cpu")
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        trainer.train_step()
        times.append(time.perf_counter() - t0)
    sec = float(np.median(times[ESTIMATE_WARMUP:]))
    return {"seconds_per_step": sec, "seconds_per_pixel_step": sec / (width * height),
            "width": width, "height": height, "gaussians": n_points, "steps": ESTIMATE_STEPS}


def cpu_presets(seconds_per_pixel_step: float) -> list[PresetEstimate]:
    """Every preset's CPU training estimate with the train stage's own formula and limit.

    Args:
        seconds_per_pixel_step: measured cost of one step per trained pixel, seconds.
    """
    from .config import PRESETS, ProjectConfig
    from .pipeline.train_session import estimate_seconds

    out = []
    for name in PRESETS:
        preset = ProjectConfig.from_preset(name)
        rep, cfg = preset.reproject, preset.train
        px = int(rep.max_size) ** 2
        est = estimate_seconds(cfg, seconds_per_pixel_step, px)
        out.append(PresetEstimate(name, px, int(px / cfg.downscale**2), cfg.steps, est,
                                  cfg.cpu_limit_s, est > cfg.cpu_limit_s))
    return out


# ---------------------------------------------------------------------------------------------
def collect(projects_dir: Path | None = None, *, measure: bool = True,
            gl: dict[str, Any] | None = None, build_gsplat: bool = False,
            progress: Callable[[str], None] | None = None) -> Report:
    """Run every check.

    Args:
        projects_dir: where projects go (free disk space); default the working directory.
        measure: on a machine without CUDA, time CPU training steps and estimate the presets
            (a few seconds).
        gl: OpenGL facts already known (the GUI's own context); None asks a child process.
        build_gsplat: compile gsplat's CUDA kernels now (through ``render.gsplat_ext``).
        progress: called with a line of text as checks start (and during a gsplat build).
    """
    say = progress or (lambda _m: None)
    checks = [check_python(), check_resources(), check_cpu()]
    say("torch")
    t, cuda, torch_mod = check_torch()
    checks += [t, cuda]
    say("gsplat")
    checks.append(check_gsplat(torch_mod, build=build_gsplat, progress=progress))
    say("pycolmap")
    checks.append(check_pycolmap())
    say("open3d")
    checks.append(check_open3d())
    say("Qt")
    qt = check_qt()
    checks.append(qt)
    if qt.state == OK:
        say("OpenGL")
        checks.append(gl_check(gl if gl is not None else probe_gl_subprocess()))
    else:
        checks.append(Check("opengl", "OpenGL", MISSING, "no Qt", "no splat viewer"))
    checks.append(check_disk(projects_dir or Path.cwd()))
    report = Report(checks)
    if measure and torch_mod is not None and cuda.state != OK:
        say("timing CPU training steps")
        report.cpu_measure = measure_cpu_step()
        report.presets = cpu_presets(report.cpu_measure["seconds_per_pixel_step"])
    return report
