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

The loop itself is a :class:`~splatstudio.pipeline.train_session.TrainSession` (checkpoints,
evaluations, previews, the CPU estimate, pause and the memory tiers are its hooks); with
``train.blocks`` > 1 the stage trains spatial blocks and merges them
(:mod:`splatstudio.pipeline.blocks`, ``train/blocks/``).

A re-run after a kill or a cancel resumes from the latest checkpoint when the stage's
fingerprint (its config and everything upstream) is unchanged; otherwise it starts over. The
two latest checkpoints are kept (``latest.json`` names both): when the latest does not load
(torn, corrupt) or is inconsistent, the stage logs what it discards and resumes from the previous
one, or starts over when none loads -- a broken checkpoint never needs deleting by hand.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import TrainConfig
from ..errors import InputError, StageError
from ..events import Emitter, null_emitter
from ..project import Project
from ..render.camera import PinholeCamera
from .artifacts import TRAIN_PREVIEW_CAMERA, georef_model, read_preview_camera
from .train_session import (
    CURVE_FILE,
    PAUSE_FILE,
    PAUSED_PREFIX,
    TrainSession,
    fmt_seconds,
    standard_hooks,
)

__all__ = ["CURVE_FILE", "PAUSED_PREFIX", "PAUSE_FILE", "PREVIEW_CAMERA_FILE", "RegisteredView",
           "load_cameras", "load_points", "load_view", "preview_camera", "resolve_device",
           "run_train", "split_views"]

PREVIEW_CAMERA_FILE = Path(TRAIN_PREVIEW_CAMERA.rel).name
"""Name of the optional preview camera in ``train/`` (written by a GUI, see the module doc)."""


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------
@dataclass(eq=False)
class RegisteredView:
    """A registered image: where to read it and its pinhole camera at full resolution.

    Attributes:
        name: COLMAP image name (``<view>/<pano id>.jpg`` or ``photos/<file>``).
        image: image path relative to the project folder.
        mask: keep mask path relative to the project folder (255 = keep) or None.
        camera: its :class:`~splatstudio.render.camera.PinholeCamera` (world = ENU metres) at
            the image's full size.
        dist: radial coefficients (k1, k2) of the camera, zeros for a pinhole.
    """

    name: str
    image: str
    mask: str | None
    camera: PinholeCamera
    dist: tuple[float, float] = (0.0, 0.0)


def image_paths(name: str, root: Path | None = None) -> tuple[str, str | None]:
    """(image, keep mask (nadir and platform) or None), relative to the project folder, of
    COLMAP image `name`; with project folder `root`, the nadir mask of a project reprojected
    before platform masks when it has no keep mask (:func:`reproject.view_keep_mask`)."""
    from .georef import image_source
    from .reproject import view_keep_mask
    from .sfm import PHOTO_DIR

    head = name.split("/", 1)[0]
    mask = None if head == PHOTO_DIR else view_keep_mask(root, head)
    return image_source(name), mask


def load_cameras(rec: Any, root: Path | None = None) -> list[RegisteredView]:
    """Registered images of pycolmap Reconstruction `rec`, sorted by name; with project folder
    `root` their masks are those on disk (:func:`image_paths`).

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
        img, mask = image_paths(im.name, root)
        out.append(RegisteredView(im.name, img, mask,
                                  PinholeCamera(vm, K, int(cam.width), int(cam.height)), dist))
    return out


def split_views(cameras: list[RegisteredView], holdout_every: int
                ) -> tuple[list[RegisteredView], list[RegisteredView]]:
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


def load_view(root: Path, view: RegisteredView, downscale: float) -> Any:
    """A :class:`~splatstudio.train.trainer.TrainView` of `view`: RGB uint8 [H, W, 3] and mask
    [H, W] bool, both shrunk by `downscale` (>= 1, :meth:`PinholeCamera.downscaled`), the
    camera to match, distortion removed.

    Raises:
        InputError: the image or its mask is missing or unreadable, or of another size than
            the model says.
    """
    import cv2

    from ..train.trainer import TrainView

    cam = view.camera
    path = root / view.image
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(path, "image missing or unreadable; run reproject again")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if rgb.shape[:2] != (cam.height, cam.width):
        raise InputError(
            path, f"image is {rgb.shape[1]}x{rgb.shape[0]}, the model says {cam.width}x{cam.height}"
        )
    mask = None
    if view.mask is not None:
        mp = root / view.mask
        mask = cv2.imread(str(mp), cv2.IMREAD_GRAYSCALE)
        if mask is None:
            raise InputError(mp, "mask missing or unreadable; run reproject again")
    if any(view.dist):
        rgb = _undistort(rgb, cam.K, view.dist, cv2.INTER_LINEAR)
        valid = _undistort(np.full(rgb.shape[:2], 255, np.uint8), cam.K, view.dist,
                           cv2.INTER_NEAREST)
        mask = valid if mask is None else np.minimum(mask, valid)
    small = cam.downscaled(downscale)
    if (small.width, small.height) != (cam.width, cam.height):
        rgb = cv2.resize(rgb, (small.width, small.height), interpolation=cv2.INTER_AREA)
        if mask is not None:
            mask = cv2.resize(mask, (small.width, small.height), interpolation=cv2.INTER_AREA)
    return TrainView(view.name, small, np.ascontiguousarray(rgb),
                     None if mask is None else mask >= 128)


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
            events.log(f"train: gsplat's CUDA kernels compiled in {fmt_seconds(time.monotonic() - t0)}")
    if st.usable:
        st = gsplat_ext.probe(load=True)
    if st.usable:
        return torch.device("cuda")
    if want == "cuda":
        raise StageError(f"train: device cuda was asked for, but gsplat's CUDA rasterizer cannot "
                         f"run: {st.reason}")
    events.warning(f"train: training on the CPU: gsplat's CUDA rasterizer cannot run: {st.reason}")
    return torch.device("cpu")


def preview_camera(out: Path, default: PinholeCamera) -> PinholeCamera:
    """The camera of ``out/preview_camera.json`` when present and valid, else `default` (what
    the trainer previews from)."""
    return read_preview_camera(out) or default


# ---------------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------------
@dataclass(eq=False)
class TrainInputs:
    """What the train stage reads: the split registered views, their loaded images and the
    starting points (:func:`load_inputs`).

    Attributes:
        train, eval: the registered views (training / held out), by name.
        train_views, eval_views: their loaded :class:`~splatstudio.train.trainer.TrainView`.
        points: ``[N, 3]`` float64 ENU metres; colors: ``[N, 3]`` uint8.
    """

    train: list[RegisteredView]
    eval: list[RegisteredView]
    train_views: list[Any]
    eval_views: list[Any]
    points: np.ndarray
    colors: np.ndarray

    @property
    def pixels_full(self) -> float:
        """Mean pixels of a training view at full size (before downscale)."""
        return float(np.mean([v.camera.width * v.camera.height for v in self.train]))

    def preview_default(self, config: TrainConfig, events: Emitter) -> PinholeCamera:
        """The camera of ``preview_view`` (a warning when it is not registered), else of the
        first training view, at the training resolution."""
        by_name = {v.name: v for v in self.train_views + self.eval_views}
        if config.preview_view and config.preview_view not in by_name:
            events.warning(f"train: preview_view {config.preview_view!r} is not a registered "
                           "image; previewing from the first training view")
        return by_name.get(config.preview_view, self.train_views[0]).camera


def load_inputs(root: Path, config: TrainConfig, events: Emitter,
                names: set[str] | None = None) -> TrainInputs:
    """Read the georeferenced model of project folder `root`, split its registered views,
    load them (progress 0-0.02) and its points.

    Args:
        names: keep only these image names (a training block); None: all.

    Raises:
        InputError: no georeferenced model, or a missing image or mask.
        StageError: no registered images, an unsupported camera model, no points.
        Cancelled: cancelled while loading.
    """
    model = georef_model(root).require()
    rec = model.reconstruction()
    cams = load_cameras(rec, root)
    if not cams:
        raise StageError("train: the georeferenced model has no registered images")
    train, held = split_views(cams, config.holdout_every)
    if names is not None:
        train = [c for c in train if c.name in names]
        held = [c for c in held if c.name in names]
    loaded = []
    for i, c in enumerate(train + held):
        events.check_cancelled()
        loaded.append(load_view(root, c, config.downscale))
        events.progress(0.02 * (i + 1) / len(train + held), f"loading views {i + 1}/"
                        f"{len(train + held)}")
    xyz, rgb = load_points(rec, config.max_init_points, config.seed)
    return TrainInputs(train, held, loaded[: len(train)], loaded[len(train):], xyz, rgb)


def make_session(out: Path, inputs: TrainInputs, config: TrainConfig, fingerprint: str,
                 events: Emitter, device: Any, label: str = "train",
                 points: tuple[np.ndarray, np.ndarray] | None = None) -> TrainSession:
    """A :class:`TrainSession` in `out` with a fresh trainer on `inputs` (or on `points`
    (xyz, rgb) instead of the inputs' points) and the standard hooks.

    Raises:
        StageError: no training view.
    """
    import torch

    from ..train.trainer import Trainer

    if not inputs.train_views:
        raise StageError(f"{label}: no training views")
    torch.manual_seed(config.seed)
    xyz, rgb = points if points is not None else (inputs.points, inputs.colors)
    trainer = Trainer(inputs.train_views, inputs.eval_views, xyz, rgb, config, device)
    hooks = standard_hooks(config, inputs.preview_default(config, events), inputs.pixels_full)
    return TrainSession(trainer, config, out, fingerprint, events, hooks, label)


def run_train(project: Project, config: TrainConfig, events: Emitter) -> dict[str, Any]:
    """Train stage (see the module docstring for inputs and outputs): load the inputs, run a
    :class:`~splatstudio.pipeline.train_session.TrainSession` in ``train/``, save the splat.

    Metrics (status): psnr, ssim (held-out, last evaluation), psnr_step0, gaussians, steps,
    seconds (training time, across resumes), plus per-step loss, steps_per_s, memory_mb.

    Raises:
        InputError: no georeferenced model, or a missing image or mask.
        StageError: a CPU run estimated over ``cpu_limit_s`` without ``allow_slow``, an
            unsupported camera model, no points.
        OutOfGpuMemory: CUDA ran out of memory at the strictest Gaussian cap.
        Cancelled: the user cancelled (a checkpoint is saved first).
    """
    georef_model(project.root).require()
    if config.blocks > 1:
        from .blocks import run_blocks

        return run_blocks(project, config, events)
    device = resolve_device(events)
    inputs = load_inputs(project.root, config, events)
    events.log(f"train: {len(inputs.train)} training and {len(inputs.eval)} held-out views, "
               f"{inputs.train[0].camera.width}x{inputs.train[0].camera.height} px / downscale "
               f"{config.downscale:g}, device {device}")
    session = make_session(project.stage_dir("train"), inputs, config,
                           project.fingerprints()["train"], events, device)
    final = session.run()
    return save_result(session, final)


def save_result(session: TrainSession, final: dict[str, Any]) -> dict[str, Any]:
    """Write ``splat.ply`` of the session's trainer, report the artifacts and metrics; returns
    the stage result {psnr, ssim, psnr_step0, gaussians, steps, seconds}."""
    from ..splats.io import save_splats
    from ..train.model import to_splats

    trainer, events, out = session.trainer, session.events, session.out
    info = save_splats(to_splats(trainer.splats), out / "splat.ply")
    rel = out.name
    for a in ("splat.ply", "metrics.json", CURVE_FILE, "preview.png", "checkpoints"):
        events.artifact(f"{rel}/{a}")
    history = session.evals.history
    result = {
        "psnr": final["psnr"],
        "ssim": final["ssim"],
        "psnr_step0": history[0]["psnr"] if session.evals.has_step0 else math.nan,
        "gaussians": final["gaussians"],
        "steps": trainer.step,
        "seconds": round(session.elapsed(), 3),
    }
    for k in ("psnr_step0", "steps", "seconds"):
        events.metric(k, result[k])
    events.metric("gaussians", result["gaussians"], step=trainer.step)
    events.progress(1.0, f"done: {final['psnr']:.2f} dB held-out PSNR, {info['n']} Gaussians")
    return result
