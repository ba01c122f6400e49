"""Fly-through videos: camera paths (the smoothed capture path, or keyframes) and MP4 frames.

Paths are sequences of world-to-camera view matrices (OpenCV axes, :func:`look_at`):

* :func:`capture_path_viewmats` -- along the capture positions (``[M, 3]`` centres in capture
  order, e.g. :func:`splatstudio.pipeline.capture_path.capture_poses`): the positions are
  smoothed (a Gaussian of ``smooth`` positions along the sequence, ends kept), joined by a
  Catmull-Rom spline and sampled at equal arc-length steps, one per frame; each frame looks at
  the path a little ahead (``look_ahead`` of its length), so the camera turns with the path.
* :func:`keyframe_viewmats` -- through user keyframes (eye, target pairs): eyes and targets each
  follow a Catmull-Rom spline through the keyframes, frames evenly spread over the segments.

:func:`render_video` renders each frame with :func:`splatstudio.render.image.render_splats`
(our CPU rasterizer, or gsplat on CUDA where it runs) and encodes H.264 MP4 with imageio and
its ffmpeg binary (``imageio-ffmpeg``, a PyPI wheel).

Catmull-Rom: the uniform cubic Hermite spline whose tangents are half the difference of the
neighbouring points (Catmull & Rom 1974), passing through every control point.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .camera import look_at

__all__ = [
    "capture_path_viewmats",
    "load_keyframes",
    "catmull_rom",
    "keyframe_viewmats",
    "render_video",
    "resample_by_length",
    "smooth_positions",
]


def smooth_positions(points: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Gaussian-smooth ``[M, 3]`` points along their sequence (`sigma` in positions; 0 = as
    they are); the first and last points stay where they are. Returns ``[M, 3]`` float64."""
    p = np.asarray(points, dtype=np.float64)
    if sigma <= 0 or len(p) < 3:
        return p.copy()
    r = max(1, int(np.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    padded = np.concatenate([np.repeat(p[:1], r, 0), p, np.repeat(p[-1:], r, 0)])
    out = np.stack([np.convolve(padded[:, j], k / k.sum(), mode="valid") for j in range(3)], 1)
    out[0], out[-1] = p[0], p[-1]
    return out


def catmull_rom(points: np.ndarray, per_segment: int) -> np.ndarray:
    """Dense samples of the uniform Catmull-Rom spline through ``[M, D]`` control points:
    `per_segment` samples per segment plus the last point, ``[(M - 1) * per_segment + 1, D]``
    float64 (ends: the first and last point are repeated as outer controls)."""
    p = np.asarray(points, dtype=np.float64)
    if len(p) < 2:
        return p.copy()
    ext = np.concatenate([p[:1], p, p[-1:]])
    t = np.linspace(0.0, 1.0, int(per_segment), endpoint=False)[:, None]
    t2, t3 = t * t, t * t * t
    out = []
    for i in range(len(p) - 1):
        p0, p1, p2, p3 = ext[i], ext[i + 1], ext[i + 2], ext[i + 3]
        out.append(0.5 * (2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2
                          + (-p0 + 3 * p1 - 3 * p2 + p3) * t3))
    out.append(p[-1:])
    return np.concatenate(out)


def resample_by_length(poly: np.ndarray, n: int) -> np.ndarray:
    """`n` points ``[n, D]`` evenly spaced by arc length along polyline `poly` ``[K, D]``
    (both ends included); a polyline of zero length gives `n` copies of its first point."""
    poly = np.asarray(poly, dtype=np.float64)
    seg = np.linalg.norm(np.diff(poly, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    if s[-1] <= 0:
        return np.repeat(poly[:1], n, 0)
    q = np.linspace(0.0, s[-1], int(n))
    return np.stack([np.interp(q, s, poly[:, j]) for j in range(poly.shape[1])], 1)


def _check_frames(frames: int) -> int:
    if int(frames) < 1:
        raise ValueError(f"a video needs at least 1 frame, got {frames}")
    return int(frames)


def capture_path_viewmats(
    centres: np.ndarray,
    frames: int,
    *,
    up: Sequence[float] = (0.0, 0.0, 1.0),
    smooth: float = 1.0,
    look_ahead: float = 0.1,
) -> np.ndarray:
    """View matrices ``[frames, 4, 4]`` along the smoothed capture path (see the module
    docstring).

    Args:
        centres: ``[M, 3]`` capture positions in capture order, world units, M >= 2.
        frames: number of frames (>= 1).
        up: world up; smooth: Gaussian sigma in positions (0 = off).
        look_ahead: how far ahead each frame looks, as a fraction of the path length (the
            last frames look along the path's end direction).

    Raises:
        ValueError: fewer than 2 distinct positions, or frames < 1.
    """
    n = _check_frames(frames)
    c = np.asarray(centres, dtype=np.float64).reshape(-1, 3)
    if len(c) < 2 or np.ptp(c, axis=0).max() <= 0:
        raise ValueError(f"a capture path needs at least 2 distinct positions, got {len(c)}")
    dense = catmull_rom(smooth_positions(c, smooth), 32)
    fine = resample_by_length(dense, max(4 * n, 200))
    eyes = resample_by_length(dense, n)
    length = float(np.sum(np.linalg.norm(np.diff(fine, axis=0), axis=1)))
    ahead = max(look_ahead * length, 1e-6)
    end_dir = fine[-1] - fine[-max(2, len(fine) // 20)]
    s_fine = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(fine, axis=0), axis=1))])
    s_eye = np.linspace(0.0, length, n) if n > 1 else np.zeros(1)
    out = np.empty((n, 4, 4))
    for i, (e, s) in enumerate(zip(eyes, s_eye, strict=True)):
        if s + ahead <= length:
            tgt = np.array([np.interp(s + ahead, s_fine, fine[:, j]) for j in range(3)])
        else:
            tgt = e + end_dir / max(np.linalg.norm(end_dir), 1e-12) * ahead
        out[i] = look_at(e, tgt, up)
    return out


def keyframe_viewmats(
    eyes: np.ndarray, targets: np.ndarray, frames: int, *, up: Sequence[float] = (0.0, 0.0, 1.0)
) -> np.ndarray:
    """View matrices ``[frames, 4, 4]`` through keyframes: eyes ``[M, 3]`` and targets
    ``[M, 3]`` (world units), M >= 2, each on a Catmull-Rom spline, frames spread evenly
    over the M - 1 segments (first and last keyframe included).

    Raises:
        ValueError: fewer than 2 keyframes, shapes that differ, or frames < 1.
    """
    n = _check_frames(frames)
    e = np.asarray(eyes, dtype=np.float64).reshape(-1, 3)
    t = np.asarray(targets, dtype=np.float64).reshape(-1, 3)
    if len(e) < 2 or e.shape != t.shape:
        raise ValueError(f"keyframes need >= 2 eyes and as many targets, got {len(e)} and "
                         f"{len(t)}")
    per = max(8, int(np.ceil(n / (len(e) - 1))) * 4)
    both = catmull_rom(np.concatenate([e, t], axis=1), per)  # same parameter for eye, target
    idx = np.linspace(0, len(both) - 1, n).round().astype(int)
    return np.stack([look_at(both[i, :3], both[i, 3:], up) for i in idx])


def load_keyframes(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Keyframes of a JSON file: ``[{"eye": [x, y, z], "target": [x, y, z]}, ...]`` or
    ``{"keyframes": [...]}`` (world units, the splat's frame). Returns ``(eyes [M, 3],
    targets [M, 3])``.

    Raises:
        ValueError: the file is not such JSON (the message names the file and the keyframe),
            or has fewer than 2 keyframes.
    """
    import json

    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{p}: cannot read keyframes JSON ({e})") from None
    frames = data.get("keyframes") if isinstance(data, dict) else data
    if not isinstance(frames, list) or len(frames) < 2:
        raise ValueError(f"{p}: needs a list of at least 2 keyframes "
                         '[{"eye": [x, y, z], "target": [x, y, z]}, ...]')
    eyes, targets = [], []
    for i, k in enumerate(frames):
        try:
            e = np.asarray(k["eye"], dtype=np.float64).reshape(3)
            t = np.asarray(k["target"], dtype=np.float64).reshape(3)
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{p}: keyframe {i} needs 'eye' and 'target', 3 numbers each, "
                             f"got {k!r}") from None
        if not (np.isfinite(e).all() and np.isfinite(t).all()) or np.allclose(e, t):
            raise ValueError(f"{p}: keyframe {i}: eye and target must be finite and differ")
        eyes.append(e)
        targets.append(t)
    return np.array(eyes), np.array(targets)


def render_video(
    splats: Any,
    viewmats: np.ndarray,
    K: np.ndarray,
    width: int,
    height: int,
    output: str | Path,
    *,
    fps: float = 30.0,
    device: str = "auto",
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    quality: int = 8,
) -> dict[str, Any]:
    """Render one frame per view matrix and write an H.264 MP4 (yuv420p, every player).

    Args:
        splats: the scene (:class:`~splatstudio.splats.model.Splats`).
        viewmats: ``[F, 4, 4]`` world-to-camera (OpenCV); K: ``[3, 3]`` pixel intrinsics.
        width, height: frame size in pixels, both even (H.264 4:2:0).
        output: the ``.mp4`` file (parent folders are created; written to a temporary name
            first, so a cancelled or failed render leaves no partial video).
        fps: frames per second; device: "auto", "cpu" or "cuda" (see
            :func:`splatstudio.render.image.resolve_device`).
        progress: called with (frames done, frames) after each frame.
        cancelled: polled before each frame; True stops and removes the partial file.
        quality: imageio-ffmpeg quality 0..10 (10 best).

    Returns:
        ``{"path", "frames", "width", "height", "fps", "seconds", "device", "cancelled"}``.

    Raises:
        ValueError: odd or non-positive size, no frames, or a file name not ending in .mp4.
        RuntimeError: as :func:`~splatstudio.render.image.render_splats` (device).
    """
    import imageio.v2 as imageio

    from .image import render_splats, resolve_device

    out = Path(output)
    vms = np.asarray(viewmats, dtype=np.float64).reshape(-1, 4, 4)
    if out.suffix.lower() != ".mp4":
        raise ValueError(f"{out}: the video file must end in .mp4")
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise ValueError(f"video size must be positive and even (H.264), got {width}x{height}")
    if len(vms) == 0:
        raise ValueError("no frames to render")
    dev = str(resolve_device(device))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.part.mp4")
    t0 = time.perf_counter()
    done = 0
    stopped = False
    writer = imageio.get_writer(str(tmp), fps=float(fps), codec="libx264", quality=quality,
                                macro_block_size=2, pixelformat="yuv420p", format="FFMPEG")
    try:
        for vm in vms:
            if cancelled is not None and cancelled():
                stopped = True
                break
            frame = render_splats(splats, vm, K, width, height, device=dev,
                                  background=background)
            writer.append_data(frame)
            done += 1
            if progress is not None:
                progress(done, len(vms))
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    writer.close()
    if stopped:
        tmp.unlink(missing_ok=True)
    else:
        tmp.replace(out)
    return {"path": str(out), "frames": done, "width": int(width), "height": int(height),
            "fps": float(fps), "seconds": time.perf_counter() - t0, "device": dev,
            "cancelled": stopped}
