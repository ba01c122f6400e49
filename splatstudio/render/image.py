"""Render a :class:`~splatstudio.splats.model.Splats` scene to an 8-bit image from one camera.

Used by ``splatstudio render`` (any splat file to PNG) and for previews. Picks CUDA (gsplat)
when asked and gsplat's CUDA rasterizer can run (:mod:`splatstudio.render.gsplat_ext`), else
our CPU rasterizer.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .camera import frame_points, intrinsics_from_fov, look_at
from .rasterize import rasterize


def resolve_device(
    device: str = "auto", *, warn: Callable[[str], None] | None = None, load: bool = True
) -> torch.device:
    """The torch device to render on: "auto", "cpu", "cuda" or "mps".

    "mps" (Apple) and an AMD GPU under a ROCm torch ("cuda" or "auto") render with the torch
    rasterizer (:func:`splatstudio.render.device.choose_device`); "auto" without a GPU takes
    MPS when there is one, else the CPU.

    "auto" picks CUDA only when gsplat's CUDA rasterizer can run
    (:func:`splatstudio.render.gsplat_ext.probe`), not from ``torch.cuda.is_available()``
    alone: a GPU without gsplat, without compiled kernels and no ``nvcc`` to compile them, or
    whose last build failed falls back to the CPU with a warning naming what is missing
    (through `warn`, default :func:`warnings.warn`). A machine without a CUDA GPU picks the
    CPU silently.

    Args:
        device: "auto", "cpu", "cuda" or "mps".
        warn: called with the fallback warning (default: ``warnings.warn`` RuntimeWarning).
        load: True (default): load gsplat's CUDA extension now -- compiling it in this process
            when it is not cached and nvcc is there (minutes, gsplat prints its own message)
            -- so a failure falls back here rather than in the first render. False: only the
            cheap probe; the caller builds (see :func:`splatstudio.render.gsplat_ext.build`).

    Raises:
        RuntimeError: "cuda" when gsplat's CUDA rasterizer cannot run (the message says what
            is missing: a GPU, a CUDA build of torch, gsplat, nvcc and the CUDA version torch
            was built for, a failed build), "mps" without MPS, or an unknown device name.
    """
    from .device import DEVICE_CHOICES, choose_device, torch_backends

    if device not in DEVICE_CHOICES:
        raise RuntimeError(f"unknown device {device!r} ({', '.join(DEVICE_CHOICES)})")
    backends = torch_backends()
    if device in ("cpu", "mps") or (backends.cuda and backends.hip) or (
        device == "auto" and not backends.cuda
    ):  # the torch rasterizer: CPU, Apple MPS or an AMD GPU under ROCm
        try:
            return torch.device(choose_device(device, backends).device)
        except ValueError as e:
            raise RuntimeError(str(e)) from None
    from . import gsplat_ext

    st = gsplat_ext.probe()
    if load and (st.usable or st.can_build):
        st = gsplat_ext.probe(load=True)
    elif not load and st.can_build:
        return torch.device("cuda")
    if st.usable:
        return torch.device("cuda")
    if device == "cuda":
        raise RuntimeError(f"device cuda was asked for, but gsplat's CUDA rasterizer cannot run: "
                           f"{st.reason}")
    msg = f"device auto: using the CPU: gsplat's CUDA rasterizer cannot run: {st.reason}"
    if warn is None:
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
    else:
        warn(msg)
    return torch.device("cpu")


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
