"""Render a :class:`~splatstudio.splats.model.Splats` scene to an 8-bit image from one camera.

Used by ``splatstudio render`` (any splat file to PNG) and for previews. Picks CUDA (gsplat)
when asked and available, else our CPU rasterizer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .camera import frame_points, intrinsics_from_fov, look_at
from .rasterize import rasterize


def resolve_device(device: str = "auto") -> torch.device:
    """"auto" -> CUDA when available else CPU; "cpu"; "cuda".

    Raises:
        RuntimeError: "cuda" without a CUDA GPU, or an unknown device name.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device cuda was asked for, but torch sees no CUDA GPU")
    if device not in ("cpu", "cuda"):
        raise RuntimeError(f"unknown device {device!r} (auto, cpu or cuda)")
    return torch.device(device)


def camera_for(
    means: np.ndarray,
    width: int,
    height: int,
    *,
    fov_deg: float = 60.0,
    eye: Any = None,
    target: Any = None,
    up: Any = (0.0, 0.0, 1.0),
) -> tuple[np.ndarray, np.ndarray]:
    """(viewmat [4,4] world-to-camera OpenCV, K [3,3] pixels) for a look-at camera, or, when
    `eye` is None, an automatic framing of `means` [N,3] (robust percentiles) seen from above
    along -`up`'s horizon at 30 degrees. `target` defaults to the median of `means`."""
    K = np.asarray(intrinsics_from_fov(fov_deg, width, height), dtype=np.float64)
    if eye is None:
        vm, _ = frame_points(np.asarray(means, np.float64), fov_deg, width, height, up=up)
        return np.asarray(vm, np.float64), K
    if target is None:
        target = np.median(np.asarray(means, np.float64), axis=0)
    return np.asarray(look_at(eye, target, up), np.float64), K


def to_tensor(a: Any, device: torch.device) -> torch.Tensor:
    """float32 copy of array `a` on `device` (a copy: splat arrays may be read-only views of
    the file, which torch would share and warn about)."""
    return torch.from_numpy(np.array(a, dtype=np.float32)).to(device)


def render_splats(
    splats: Any,
    viewmat: np.ndarray,
    K: np.ndarray,
    width: int,
    height: int,
    *,
    device: str = "auto",
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """Render `splats` (means [N,3], quats wxyz, log-scales, opacity logits, sh0, shN) to an
    sRGB uint8 image [H, W, 3] from world-to-camera `viewmat` [4,4] and pixel intrinsics
    `K` [3,3]. Colours are the SH evaluated in the view direction, clamped to [0, 1]."""
    dev = resolve_device(device)

    def t(a: Any) -> torch.Tensor:
        return to_tensor(a, dev)

    sh = np.concatenate([splats.sh0, splats.shN], axis=1) if splats.shN.shape[1] else splats.sh0
    with torch.no_grad():
        colors, _, _ = rasterize(
            t(splats.means),
            t(splats.quats),
            torch.exp(t(splats.scales)),
            torch.sigmoid(t(splats.opacities)),
            t(sh),
            t(viewmat)[None],
            t(K)[None],
            int(width),
            int(height),
            sh_degree=int(splats.sh_degree),
            backgrounds=t(np.asarray(background, np.float32))[None],
        )
    img = colors[0].clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8).cpu().numpy()
    return img
