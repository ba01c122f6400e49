"""Train: fit 3D Gaussians to the georeferenced views (3DGS, Kerbl et al. 2023).

Reads ``georef/sparse`` (``pycolmap.Reconstruction`` in local ENU metres, Z up), the views and
photos of ``reproject/`` (COLMAP image ``<view>/<pano id>.jpg`` is
``reproject/views/<pano id>/<view>.jpg``, ``photos/<file>`` is ``reproject/photos/<file>``) and
the keep masks ``reproject/masks/<view>.keep.png`` (nadir and platform, 255 = keep; photos
have none). Writes into
``train/``::

    splat.ply            the trained Gaussians, standard INRIA 3DGS PLY, ENU metres
    metrics.json         per evaluation: step, psnr (dB), ssim, gaussians, seconds, peak memory
    curve.jsonl          every ``metrics_every`` steps one JSON line: step, loss (mean L1+SSIM
                         loss since the previous line), gaussians, steps_per_s, memory_mb; a
                         resume cuts it back to the checkpoint's step (:func:`read_curve`)
    preview.png          the latest preview render (every ``preview_every`` steps)
    checkpoints/         ckpt_<step>.pt (exact resume) and latest.json (which one, for which
                         config fingerprint); written atomically
    preview_camera.json  optional, written by a GUI: {viewmat [4x4] world-to-camera OpenCV,
                         K [3x3] pixels, width, height}; read before each preview
    pause                optional, an empty flag file: training pauses while it exists

Cameras: each registered image's ``cam_from_world`` is the world-to-camera viewmat (OpenCV
axes: x right, y down, z forward; world = ENU metres). Intrinsics come from the PINHOLE /
SIMPLE_PINHOLE / SIMPLE_RADIAL / RADIAL camera; radial distortion, when non-zero, is removed by
undistorting the image and its mask to the pinhole part of the camera (``cv2.remap``), so the
rasterizer's pinhole model is exact. Images are shrunk by the explicit ``downscale`` factor
(``cv2.INTER_AREA``), never silently. Every ``holdout_every``-th image by sorted name is held
out for evaluation. Gaussians start at the model's 3D points with their colours.

Device: ``SPLATSTUDIO_DEVICE`` (auto | cpu | cuda | mps; set by the runner; MPS and ROCm GPUs
train with the torch rasterizer, :mod:`splatstudio.render.device`). CUDA is used only when
gsplat's CUDA rasterizer can run (:mod:`splatstudio.render.gsplat_ext`): when its kernels are not
compiled yet and ``nvcc`` is there, the stage compiles them first in a child process, shown as
the stage message "compiling gsplat CUDA kernels (first use, several minutes)" with ninja's
``k/n`` lines, cancel honoured (the compiler's process group is killed). When they cannot run
(no gsplat, no ``nvcc``, a CUDA toolkit of another major version than torch's, a failed build),
``auto`` trains on the CPU with a warning naming what is missing and ``cuda`` stops with that
message. On the CPU the stage
times its first steps (median of steps 4-8) and stops a run whose estimate exceeds
``cpu_limit_s`` unless ``allow_slow`` is set (the message gives the estimate and the largest
preset that fits, from a cost per pixel and step). On CUDA an out-of-memory error in a training
step (forward, backward, densification) or an evaluation is handled after leaving the ``except``
block (so the failed step's graph is freed first): the state is checked (an error in the middle
of a densification can leave parameters of different lengths; then the last valid checkpoint is
reloaded), the Gaussians are cut to the next lower cap (``OOM_TIERS``), a checkpoint is saved
and training goes on; past the last tier it raises :class:`OutOfGpuMemory`.

Pause: while ``train/pause`` exists the loop sleeps between steps (:func:`wait_while_paused`),
still honouring cancel, and reports "paused at step N"; paused time counts neither in the
training seconds nor in steps/s. The GUI's Pause button creates the file; from a shell,
``touch PROJECT/train/pause`` pauses a running ``splatstudio train`` and ``rm`` resumes it. A run
started while the file exists starts paused.

A re-run after a kill or a cancel resumes from the latest checkpoint when the stage's
fingerprint (its config and everything upstream) is unchanged; otherwise it starts over. The
two latest checkpoints are kept (``latest.json`` names both): when the latest does not load
(torn, corrupt) or is inconsistent, the stage logs what it discards and resumes from the previous
one, or starts over when none loads -- a broken checkpoint never needs deleting by hand.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..config import PRESETS, ProjectConfig, TrainConfig
from ..errors import Cancelled, InputError, OutOfGpuMemory, StageError
from ..events import Emitter, null_emitter
from ..project import Project, read_json, write_json_atomic
from .artifacts import (
    TRAIN_CURVE,
    TRAIN_PAUSE,
    TRAIN_PREVIEW_CAMERA,
    georef_model,
    read_curve,
    read_preview_camera,
)

OOM_TIERS: tuple[int, ...] = (3_000_000, 2_000_000, 1_000_000, 500_000, 250_000)
"""Gaussian caps tried in turn after a CUDA out-of-memory error (those below the current count)."""

PAUSE_FILE = Path(TRAIN_PAUSE.rel).name
"""Name of the flag file in ``train/`` that pauses the training loop while it exists."""

PREVIEW_CAMERA_FILE = Path(TRAIN_PREVIEW_CAMERA.rel).name
"""Name of the optional preview camera in ``train/`` (written by a GUI, see the module doc)."""

PAUSED_PREFIX = "paused"
"""How the progress message starts while training is paused ("paused at step N"); a GUI reads
a stage as paused from it."""

CURVE_FILE = Path(TRAIN_CURVE.rel).name
"""Name of the training curve in ``train/`` (one JSON object per line, see the module doc)."""

PAUSE_POLL_S = 0.2
"""Seconds between checks of the pause file (and of cancel) while paused."""

ESTIMATE_WARMUP, ESTIMATE_STEPS = 3, 5
"""CPU estimate: steps skipped (first calls are slow), then steps whose median time counts."""

GROWTH_FACTOR = 2.0
"""Assumed mean cost of a step over a run relative to the first steps (densification grows the
Gaussians; the cap and pruning bound it). A deliberately rough factor for the CPU estimate."""


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Camera:
    """A registered image: where to read it and its pinhole camera at full resolution.

    Attributes:
        name: COLMAP image name (``<view>/<pano id>.jpg`` or ``photos/<file>``).
        image: image path relative to the project folder.
        mask: nadir mask path relative to the project folder (255 = keep) or None.
        viewmat: [4, 4] world-to-camera (OpenCV axes), world = ENU metres, float64.
        K: [3, 3] pinhole intrinsics in pixels (pixel centres at +0.5), float64.
        width, height: image size in pixels.
        dist: radial coefficients (k1, k2) of the camera, zeros for a pinhole.
    """

    name: str
    image: str
    mask: str | None
    viewmat: np.ndarray
    K: np.ndarray
    width: int
    height: int
    dist: tuple[float, float] = (0.0, 0.0)


def image_paths(name: str) -> tuple[str, str | None]:
    """(image, keep mask (nadir and platform) or None), relative to the project folder, of
    COLMAP image `name`."""
    from .georef import image_source
    from .reproject import view_keep_mask
    from .sfm import PHOTO_DIR

    head = name.split("/", 1)[0]
    mask = None if head == PHOTO_DIR else view_keep_mask(None, head)
    return image_source(name), mask


def load_cameras(rec: Any) -> list[Camera]:
    """Registered images of pycolmap Reconstruction `rec`, sorted by name.

    Raises:
        StageError: a camera model other than (SIMPLE_)PINHOLE / SIMPLE_RADIAL / RADIAL.
    """
    out = []
    for im in sorted(rec.images.values(), key=lambda im: im.name):
        if not im.has_pose:
            continue
        cam = rec.cameras[im.camera_id]
        p = [float(x) for x in cam.params]
        model = cam.model_name
        if model == "PINHOLE":
            fx, fy, cx, cy, dist = p[0], p[1], p[2], p[3], (0.0, 0.0)
        elif model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
            fx = fy = p[0]
            cx, cy = p[1], p[2]
            dist = (p[3] if len(p) > 3 else 0.0, p[4] if len(p) > 4 else 0.0)
        else:
            raise StageError(
                f"train: camera model {model} of image {im.name} is not supported "
                "(PINHOLE, SIMPLE_PINHOLE, SIMPLE_RADIAL, RADIAL)"
            )
        vm = np.eye(4)
        vm[:3, :] = np.asarray(im.cam_from_world().matrix())
        K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        img, mask = image_paths(im.name)
        out.append(Camera(im.name, img, mask, vm, K, int(cam.width), int(cam.height), dist))
    return out


def split_views(cameras: list[Camera], holdout_every: int) -> tuple[list[Camera], list[Camera]]:
    """(train, eval): every `holdout_every`-th camera by sorted name (indices 0, n, 2n ...) is
    held out; 0 holds out none. With fewer than 2 cameras nothing is held out."""
    cams = sorted(cameras, key=lambda c: c.name)
    if holdout_every <= 0 or len(cams) < 2:
        return cams, []
    ev = [c for i, c in enumerate(cams) if i % holdout_every == 0]
    tr = [c for i, c in enumerate(cams) if i % holdout_every != 0]
    return tr, ev


def _undistort(img: np.ndarray, K: np.ndarray, dist: tuple[float, float], interp: int) -> np.ndarray:
    """Remove radial distortion (COLMAP RADIAL model, +0.5 pixel centres) keeping `K`."""
    import cv2

    Kcv = K.copy()
    Kcv[0, 2] -= 0.5  # OpenCV puts pixel centres at integers
    Kcv[1, 2] -= 0.5
    d = np.array([dist[0], dist[1], 0.0, 0.0], np.float64)
    h, w = img.shape[:2]
    m1, m2 = cv2.initUndistortRectifyMap(Kcv, d, None, Kcv, (w, h), cv2.CV_32FC1)
    return cv2.remap(img, m1, m2, interp, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def load_view(root: Path, cam: Camera, downscale: float) -> Any:
    """A :class:`~splatstudio.train.trainer.TrainView` of `cam`: RGB uint8 [H, W, 3] and mask
    [H, W] bool, both shrunk by `downscale` (>= 1), K scaled to match, distortion removed.

    Raises:
        InputError: the image or its mask is missing or unreadable.
    """
    import cv2

    from ..train.trainer import TrainView

    path = root / cam.image
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(path, "image missing or unreadable; run reproject again")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if rgb.shape[:2] != (cam.height, cam.width):
        raise InputError(
            path, f"image is {rgb.shape[1]}x{rgb.shape[0]}, the model says {cam.width}x{cam.height}"
        )
    mask = None
    if cam.mask is not None:
        mp = root / cam.mask
        if not mp.exists() and mp.name.endswith(".keep.png"):  # reprojected before platform masks
            mp = mp.with_name(mp.name.replace(".keep.png", ".nadir.png"))
        mask = cv2.imread(str(mp), cv2.IMREAD_GRAYSCALE)
        if mask is None:
            raise InputError(mp, "mask missing or unreadable; run reproject again")
    if any(cam.dist):
        rgb = _undistort(rgb, cam.K, cam.dist, cv2.INTER_LINEAR)
        valid = _undistort(np.full(rgb.shape[:2], 255, np.uint8), cam.K, cam.dist, cv2.INTER_NEAREST)
        mask = valid if mask is None else np.minimum(mask, valid)
    K = cam.K.copy()
    if downscale > 1.0:
        w = max(1, round(cam.width / downscale))
        h = max(1, round(cam.height / downscale))
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
        if mask is not None:
            mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_AREA)
        K[0] *= w / cam.width
        K[1] *= h / cam.height
    return TrainView(
        cam.name,
        cam.viewmat.astype(np.float32),
        K.astype(np.float32),
        np.ascontiguousarray(rgb),
        None if mask is None else mask >= 128,
    )


def load_points(rec: Any, max_points: int = 0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(xyz [N,3] float64 ENU metres, rgb [N,3] uint8) of the model's 3D points; at most
    `max_points` (0: all), a random subset.

    Raises:
        StageError: the model has no 3D points.
    """
    pts = rec.points3D
    if len(pts) == 0:
        raise StageError("train: the georeferenced model has no 3D points to start from")
    ids = sorted(pts.keys())
    xyz = np.array([pts[i].xyz for i in ids], np.float64)
    rgb = np.array([pts[i].color for i in ids], np.uint8)
    if max_points and len(ids) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(ids), max_points, replace=False))
        xyz, rgb = xyz[keep], rgb[keep]
    return xyz, rgb


# ---------------------------------------------------------------------------------------------
# Device, estimate, presets
# ---------------------------------------------------------------------------------------------
def resolve_device(events: Emitter | None = None) -> Any:
    """torch device from ``SPLATSTUDIO_DEVICE`` (auto | cpu | cuda | mps, default auto).

    auto: CUDA when gsplat's CUDA rasterizer can run on an NVIDIA GPU; an AMD GPU under a ROCm
    torch or Apple's MPS with the torch rasterizer; else the CPU
    (:func:`splatstudio.render.device.choose_device`). When gsplat's kernels are not compiled yet and can be, they are compiled here first
    (:func:`splatstudio.render.gsplat_ext.build`: a child process, progress "compiling gsplat
    CUDA kernels (first use, several minutes)" with ninja's ``k/n`` lines, cancel polled).
    When they cannot run, auto falls back to the CPU with a warning that names what is
    missing; cuda stops.

    Raises:
        StageError: cuda asked for but gsplat's CUDA rasterizer cannot run (the message names
            what is missing: a GPU, a CUDA build of torch, gsplat, nvcc and the CUDA version
            torch was built for, a failed build), mps asked for without MPS, or an unknown
            value.
        Cancelled: cancelled during the compile.
    """
    import torch

    from ..render import gsplat_ext
    from ..render.device import DEVICE_CHOICES, choose_device, torch_backends

    events = events or null_emitter("train")
    want = os.environ.get("SPLATSTUDIO_DEVICE", "auto").lower() or "auto"
    if want not in DEVICE_CHOICES:
        raise StageError(f"train: unknown device {want!r} ({', '.join(DEVICE_CHOICES)})")
    backends = torch_backends()
    if want in ("cpu", "mps") or (backends.cuda and backends.hip) or (
        want == "auto" and not backends.cuda
    ):
        # no NVIDIA GPU involved: the torch rasterizer on the CPU, MPS or a ROCm GPU
        try:
            choice = choose_device(want, backends)
        except ValueError as e:
            raise StageError(f"train: {e}") from None
        if choice.device != "cpu":
            events.log(f"train: the torch rasterizer on {choice.device} (untested here: "
                       "MPS / ROCm)")
        return torch.device(choice.device)
    st = gsplat_ext.probe()
    if not st.usable and st.can_build:
        msg = gsplat_ext.COMPILE_MESSAGE
        events.log(f"train: {msg}; cache {st.cache_dir}")
        events.progress(0.0, msg)
        t0 = time.monotonic()
        st = gsplat_ext.build(lambda line: events.progress(0.0, f"{msg}: {line}"),
                              events.cancelled)
        events.check_cancelled()
        if st.usable:
            events.log(f"train: gsplat's CUDA kernels compiled in {_fmt_s(time.monotonic() - t0)}")
    if st.usable:
        st = gsplat_ext.probe(load=True)
    if st.usable:
        return torch.device("cuda")
    if want == "cuda":
        raise StageError(f"train: device cuda was asked for, but gsplat's CUDA rasterizer cannot "
                         f"run: {st.reason}")
    events.warning(f"train: training on the CPU: gsplat's CUDA rasterizer cannot run: {st.reason}")
    return torch.device("cpu")


def preset_train_config(name: str) -> TrainConfig:
    """The :class:`TrainConfig` of preset `name` (defaults plus its "train" entries)."""
    return ProjectConfig.from_preset(name).train


def estimate_seconds(cfg: TrainConfig, seconds_per_pixel_step: float, pixels: float,
                     steps_left: int | None = None) -> float:
    """Rough training time in seconds of `cfg` on views of `pixels` pixels each at full size
    (before `cfg.downscale`), from a measured cost per pixel and step (early steps), times
    :data:`GROWTH_FACTOR` for the Gaussians densification adds."""
    steps = cfg.steps if steps_left is None else steps_left
    px = pixels / (cfg.downscale**2)
    return seconds_per_pixel_step * px * steps * GROWTH_FACTOR


def _fmt_s(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


# ---------------------------------------------------------------------------------------------
# Checkpoints, previews
# ---------------------------------------------------------------------------------------------
def _checkpoint_candidates(ck_dir: Path, fingerprint: str) -> tuple[list[dict[str, Any]], list[str]]:
    """(entries, notes): the checkpoints of ``latest.json`` to try in turn -- the latest, then
    the previous one -- when they belong to `fingerprint` and their files exist; `notes` say
    in words what is discarded (an unreadable ``latest.json``, a missing file)."""
    p = ck_dir / "latest.json"
    if not p.exists():
        return [], []
    try:
        meta = read_json(p)
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except Exception as e:  # noqa: BLE001 - a broken sidecar only means "start over"
        return [], [f"train: discarding the checkpoints: {p} does not read ({e})"]
    if meta.get("fingerprint") != fingerprint:
        return [], []  # another config: the caller starts over
    out, notes = [], []
    for entry in (meta, meta.get("previous")):
        if not isinstance(entry, dict) or not entry.get("file"):
            continue
        if (ck_dir / entry["file"]).exists():
            out.append(entry)
        else:
            notes.append(f"train: checkpoint {entry['file']} named in latest.json is missing")
    return out, notes


def _checkpoint_entry(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: entry[k] for k in ("file", "step", "seconds", "max_gaussians") if k in entry}


def _rewrite_curve(path: Path, max_step: int) -> None:
    """Cut ``curve.jsonl`` back to the points up to `max_step` (a resume from a checkpoint)."""
    if not path.exists():
        return
    lines = "".join(json.dumps(p) + "\n" for p in read_curve(path, max_step))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(lines, encoding="utf-8")
    os.replace(tmp, path)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    """Write RGB uint8 [H, W, 3] as PNG atomically."""
    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise StageError(f"train: could not encode the preview {path}")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buf.tobytes())
    os.replace(tmp, path)


def preview_camera(out: Path, default: Any) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(viewmat [4,4], K [3,3], width, height) of ``train/preview_camera.json`` when present
    and valid, else of TrainView `default`."""
    cam = read_preview_camera(out)
    if cam is not None:
        return cam.viewmat, cam.K, cam.width, cam.height
    return default.viewmat, default.K, default.width, default.height


def wait_while_paused(out: Path, events: Emitter, step: int, steps: int) -> float:
    """Block while the pause flag ``out/pause`` exists; return the seconds spent paused (0.0
    when the file is absent, the usual case: one ``stat`` per step).

    While paused: logs "train: paused at step N" once, then every :data:`PAUSE_POLL_S`
    seconds checks cancel (raises :class:`Cancelled`, so Stop works while paused) and reports
    progress "paused at step N"; logs the resume. The caller removes the returned seconds from
    its clocks (training seconds, steps/s).
    """
    flag = out / PAUSE_FILE
    if not flag.exists():
        return 0.0
    t0 = time.monotonic()
    events.log(f"train: paused at step {step} (remove train/{PAUSE_FILE} to resume)")
    fraction = 0.02 + 0.96 * step / max(1, steps)
    while flag.exists():
        events.check_cancelled()
        events.progress(fraction, f"{PAUSED_PREFIX} at step {step}")
        time.sleep(PAUSE_POLL_S)
    paused = time.monotonic() - t0
    events.log(f"train: resumed at step {step} after {paused:.1f} s paused")
    return paused


# ---------------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------------
def run_train(project: Project, config: TrainConfig, events: Emitter) -> dict[str, Any]:
    """Train stage (see the module docstring for inputs and outputs).

    Metrics (status): psnr, ssim (held-out, last evaluation), psnr_step0, gaussians, steps,
    seconds (training time, across resumes), plus per-step loss, steps_per_s, memory_mb.

    Raises:
        InputError: no georeferenced model, or a missing image or mask.
        StageError: a CPU run estimated over ``cpu_limit_s`` without ``allow_slow``, an
            unsupported camera model, no points.
        OutOfGpuMemory: CUDA ran out of memory at the strictest Gaussian cap.
        Cancelled: the user cancelled (a checkpoint is saved first).
    """
    import torch

    from ..splats.io import save_splats
    from ..train.model import to_splats
    from ..train.trainer import Trainer, TrainerConfig

    root = project.root
    model = georef_model(root).require()
    if config.downscale < 1.0:
        raise StageError(f"train: downscale must be >= 1, got {config.downscale}")
    out = project.stage_dir("train")
    ck_dir = out / "checkpoints"
    fingerprint = project.fingerprints()["train"]
    device = resolve_device(events)
    torch.manual_seed(config.seed)

    rec = model.reconstruction()
    cams = load_cameras(rec)
    if not cams:
        raise StageError("train: the georeferenced model has no registered images")
    train_cams, eval_cams = split_views(cams, config.holdout_every)
    events.log(
        f"train: {len(train_cams)} training and {len(eval_cams)} held-out views, "
        f"{cams[0].width}x{cams[0].height} px / downscale {config.downscale:g}, device {device}"
    )
    views = []
    for i, c in enumerate(train_cams + eval_cams):
        events.check_cancelled()
        views.append(load_view(root, c, config.downscale))
        events.progress(0.02 * (i + 1) / len(cams), f"loading views {i + 1}/{len(cams)}")
    train_views, eval_views = views[: len(train_cams)], views[len(train_cams) :]
    xyz, rgb = load_points(rec, config.max_init_points, config.seed)

    # TrainerConfig takes every training hyper-parameter of TrainConfig under the same name.
    shared = {f.name for f in dataclasses.fields(TrainerConfig)} & {
        f.name for f in dataclasses.fields(TrainConfig)
    }
    tcfg = TrainerConfig(**{name: getattr(config, name) for name in shared})
    trainer = Trainer(train_views, eval_views, xyz, rgb, tcfg, device)

    # -- checkpoints -----------------------------------------------------------------------------
    history: list[dict[str, Any]] = []
    seconds_before = 0.0
    saved: dict[str, Any] = {"latest": None, "previous": None}  # entries of latest.json

    def load_valid_checkpoint() -> dict[str, Any] | None:
        """Load the newest checkpoint that loads and is consistent; log each one discarded
        (and delete its file). Returns its entry, or None when none does."""
        from ..train.trainer import CheckpointError

        entries, notes = _checkpoint_candidates(ck_dir, fingerprint)
        for note in notes:
            events.warning(note)
        for i, entry in enumerate(entries):
            try:
                trainer.load_checkpoint(ck_dir / entry["file"])
            except CheckpointError as e:
                then = ("trying the previous one" if i + 1 < len(entries) else "starting over")
                events.warning(f"train: discarding checkpoint {entry['file']} (step "
                               f"{entry.get('step', '?')}): {e}; {then}")
                (ck_dir / entry["file"]).unlink(missing_ok=True)
                continue
            saved["latest"], saved["previous"] = _checkpoint_entry(entry), None
            if i > 0:  # latest.json names this one now, so a later save keeps it as previous
                write_json_atomic(ck_dir / "latest.json",
                                  {**saved["latest"], "fingerprint": fingerprint, "previous": None})
            return entry
        return None

    meta = load_valid_checkpoint() if (ck_dir / "latest.json").exists() else None
    if meta is not None:
        trainer.set_max_gaussians(int(meta.get("max_gaussians", trainer.cfg.max_gaussians)))
        seconds_before = float(meta.get("seconds", 0.0))
        mp = out / "metrics.json"
        if mp.exists():
            history = [e for e in read_json(mp).get("evals", []) if e["step"] <= trainer.step]
        _rewrite_curve(out / CURVE_FILE, trainer.step)
        events.log(f"train: resuming from checkpoint {meta['file']} at step {trainer.step}")
        events.metric("resumed_step", trainer.step, step=trainer.step)
    else:  # a fresh start: drop another config's checkpoints and results
        shutil.rmtree(ck_dir, ignore_errors=True)
        for stale in ("splat.ply", "metrics.json", "preview.png", CURVE_FILE):
            (out / stale).unlink(missing_ok=True)
    ck_dir.mkdir(parents=True, exist_ok=True)

    # -- the loop ------------------------------------------------------------------------------
    def peak_mb() -> float:
        if device.type == "cuda":
            return torch.cuda.max_memory_allocated(device) / 2**20
        try:
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB
        except ImportError:  # Windows
            return 0.0

    t_start = time.monotonic()

    def elapsed() -> float:
        return seconds_before + time.monotonic() - t_start

    def save_ckpt() -> None:
        """Save a checkpoint; keep it and the one before it (the fallback of a resume)."""
        bad = trainer.inconsistency()
        if bad:  # never write a state that cannot be resumed
            events.warning(f"train: no checkpoint at step {trainer.step}: inconsistent state ({bad})")
            return
        name = f"ckpt_{trainer.step:07d}.pt"
        trainer.save_checkpoint(ck_dir / name)
        prev = saved["latest"]
        if prev is not None and prev["file"] == name:
            prev = saved["previous"]
        entry = {"file": name, "step": trainer.step, "seconds": round(elapsed(), 3),
                 "max_gaussians": trainer.cfg.max_gaussians}
        write_json_atomic(ck_dir / "latest.json",
                          {**entry, "fingerprint": fingerprint, "previous": prev})
        saved["latest"], saved["previous"] = entry, prev
        keep = {name} | ({prev["file"]} if prev else set())
        for old in ck_dir.glob("ckpt_*.pt"):
            if old.name not in keep:
                old.unlink(missing_ok=True)

    cap0 = trainer.cfg.max_gaussians
    tiers = [t for t in OOM_TIERS if not cap0 or t < cap0]

    def recover_from_oom(where: str, error: str) -> None:
        """After a CUDA out-of-memory error in `where`, outside its ``except`` block (the
        failed step's graph is gone): reload the last checkpoint if the state is
        inconsistent, cut the Gaussians to the next cap, save a checkpoint.

        Raises:
            OutOfGpuMemory: no lower cap is left.
            StageError: the state is inconsistent and no checkpoint loads.
        """
        for o in trainer.optimizers.values():
            o.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        step = trainer.step
        bad = trainer.inconsistency()
        if bad:
            events.warning(f"train: the out-of-memory error in the {where} at step {step} left "
                           f"an inconsistent state ({bad}); reloading the last checkpoint")
            entry = load_valid_checkpoint()
            if entry is None:
                raise StageError(f"train: the out-of-memory error in the {where} at step {step} "
                                 f"left an inconsistent state ({bad}) and no checkpoint loads")
            events.log(f"train: reloaded checkpoint {entry['file']} (step {trainer.step})")
        n = len(trainer.splats["means"])
        fitting = [t for t in tiers if t < n]
        if not fitting:
            raise OutOfGpuMemory(
                f"train: CUDA out of memory in the {where} with {n} Gaussians at "
                f"{train_views[0].width}x{train_views[0].height} px even at the strictest cap "
                f"({error}); raise downscale, lower max_gaussians or use a smaller preset (or "
                "the CPU)"
            )
        cap = fitting[0]
        tiers[:] = [t for t in tiers if t < cap]
        trainer.set_max_gaussians(cap)
        trainer._prune_to(cap)
        torch.cuda.empty_cache()
        save_ckpt()
        events.warning(
            f"train: CUDA out of memory in the {where} at step {step} with {n} Gaussians; "
            f"continuing with at most {cap}"
        )

    def evaluate() -> dict[str, Any]:
        while True:
            oom = None
            try:
                ev = trainer.evaluate() or trainer.evaluate(trainer.train_views[:8])
            except torch.cuda.OutOfMemoryError as e:
                oom = str(e).splitlines()[0] if str(e) else "out of memory"
            if oom is None:
                break
            recover_from_oom("evaluation", oom)  # outside the except: the graph is gone
        entry = {
            "step": trainer.step,
            "psnr": round(ev["psnr"], 4),
            "ssim": round(ev["ssim"], 5),
            "gaussians": len(trainer.splats["means"]),
            "seconds": round(elapsed(), 3),
            "peak_memory_mb": round(peak_mb(), 1),
            "views": len(trainer.eval_views) or min(8, len(trainer.train_views)),
            "held_out": bool(trainer.eval_views),
        }
        history[:] = [e for e in history if e["step"] != trainer.step] + [entry]
        write_json_atomic(
            out / "metrics.json",
            {"device": str(device), "evals": history, "config": dataclasses.asdict(config)},
        )
        events.metric("psnr", entry["psnr"], step=trainer.step)
        events.metric("ssim", entry["ssim"], step=trainer.step)
        return entry

    def cpu_estimate(sec: float, steps_left: int) -> None:
        """Refuse (StageError) a CPU run estimated over the limit, from `sec` per step."""
        px_full = float(np.mean([c.width * c.height for c in train_cams]))
        per_px = sec / float(np.mean([v.width * v.height for v in train_views]))
        est = estimate_seconds(config, per_px, px_full, steps_left)
        events.metric("estimated_seconds", est, step=trainer.step)
        events.log(f"train: {sec:.2f} s per step on the CPU; about {_fmt_s(est)} to go")
        if est <= config.cpu_limit_s:
            return
        fits = [n for n in PRESETS
                if estimate_seconds(preset_train_config(n), per_px, px_full) <= config.cpu_limit_s]
        hint = (f"the largest preset that fits is {fits[-1]!r}" if fits
                else "no preset fits; raise downscale or lower steps")
        raise StageError(
            f"train: this run would take about {_fmt_s(est)} on the CPU ({steps_left} steps "
            f"at {sec:.2f} s now, more as Gaussians grow), over the limit of "
            f"{_fmt_s(config.cpu_limit_s)} (cpu_limit_s); {hint} for these views; or set "
            "allow_slow to train anyway, or use a CUDA GPU"
        )

    by_name = {v.name: v for v in views}
    if config.preview_view and config.preview_view not in by_name:
        events.warning(f"train: preview_view {config.preview_view!r} is not a registered image; "
                       "previewing from the first training view")
    preview_default = by_name.get(config.preview_view, train_views[0])

    def preview() -> None:
        vm, K, w, h = preview_camera(out, preview_default)
        img = None
        try:
            with torch.no_grad():
                img, _, _ = trainer.render(vm, K, w, h)
        except torch.cuda.OutOfMemoryError:
            pass
        if img is None:
            torch.cuda.empty_cache()
            events.warning(f"train: no preview at step {trainer.step}: CUDA out of memory")
            return
        rgb8 = img[0].clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()
        _write_png(out / "preview.png", rgb8)
        events.preview(str(out / "preview.png"), trainer.step)

    if meta is None:
        save_ckpt()  # step 0: what an inconsistent state after an early out-of-memory reloads
    if not history or history[0]["step"] != 0:
        if trainer.step == 0:
            events.progress(0.02, "evaluating the start (step 0)")
            evaluate()
            preview()
    # CPU estimate: from the median time of real steps after a few warm-up steps
    check_cpu = device.type == "cpu" and not config.allow_slow
    step_times: list[float] = []
    last_t, last_step = time.monotonic(), trainer.step
    losses: list[float] = []
    steps = config.steps
    while trainer.step < steps:
        try:
            events.check_cancelled()
            paused_s = wait_while_paused(out, events, trainer.step, steps)
        except Cancelled:
            save_ckpt()
            events.artifact("train/checkpoints")
            raise
        t_start += paused_s  # paused time is not training time (seconds, steps/s)
        last_t += paused_s
        oom = None
        try:
            t_step = time.perf_counter()
            stats = trainer.train_step()
            step_times.append(time.perf_counter() - t_step)
        except torch.cuda.OutOfMemoryError as e:
            oom = str(e).splitlines()[0] if str(e) else "out of memory"
        if oom is not None:
            # outside the except block: the exception, its traceback and so the failed
            # step's graph are released before the recovery allocates anything
            recover_from_oom("training step", oom)
            continue
        s = trainer.step
        if check_cpu and len(step_times) == ESTIMATE_WARMUP + ESTIMATE_STEPS:
            check_cpu = False
            cpu_estimate(float(np.median(step_times[ESTIMATE_WARMUP:])), steps - s)
        now = time.monotonic()
        events.progress(0.02 + 0.96 * s / steps, f"step {s}/{steps}")
        losses.append(stats["loss"])
        if s % max(1, config.metrics_every) == 0 or s == steps:
            sps = (s - last_step) / max(1e-9, now - last_t)
            last_t, last_step = now, s
            point = {"step": s, "loss": float(np.mean(losses)), "gaussians": stats["gaussians"],
                     "steps_per_s": sps, "memory_mb": peak_mb()}
            losses.clear()
            for name, value in point.items():
                if name != "step":
                    events.metric(name, value, step=s)
            with open(out / CURVE_FILE, "a", encoding="utf-8") as f:
                f.write(json.dumps({k: round(v, 6) for k, v in point.items()}) + "\n")
        if config.eval_every and s % config.eval_every == 0 and s < steps:
            evaluate()
        if config.preview_every and s % config.preview_every == 0 and s < steps:
            preview()
        if config.checkpoint_every and s % config.checkpoint_every == 0 and s < steps:
            save_ckpt()

    # -- outputs -------------------------------------------------------------------------------
    final = evaluate()
    preview()
    save_ckpt()
    info = save_splats(to_splats(trainer.splats), out / "splat.ply")
    for a in ("train/splat.ply", "train/metrics.json", f"train/{CURVE_FILE}", "train/preview.png",
              "train/checkpoints"):
        events.artifact(a)
    result = {
        "psnr": final["psnr"],
        "ssim": final["ssim"],
        "psnr_step0": history[0]["psnr"] if history and history[0]["step"] == 0 else math.nan,
        "gaussians": final["gaussians"],
        "steps": trainer.step,
        "seconds": round(elapsed(), 3),
    }
    for k in ("psnr_step0", "steps", "seconds"):
        events.metric(k, result[k])
    events.metric("gaussians", result["gaussians"], step=trainer.step)
    events.progress(1.0, f"done: {final['psnr']:.2f} dB held-out PSNR, {info['n']} Gaussians")
    return result
