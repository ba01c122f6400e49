"""Image losses and metrics: masked L1, SSIM, PSNR.

SSIM follows Wang et al. 2004 ("Image quality assessment: from error visibility to structural
similarity") with an 11x11 Gaussian window (sigma 1.5), as the 3DGS paper (Kerbl et al. 2023)
and gsplat's trainer use it; images are [B, H, W, 3] in [0, 1].

The metrics (:func:`psnr`, :func:`ssim`) run with TF32 off (:func:`no_tf32`): cuDNN may run
float32 convolutions in TF32 (10-bit mantissa) on Ampere and newer GPUs, which would make the
SSIM of a GPU run differ from the CPU's for the same images. The training loss keeps torch's
defaults (speed).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import torch
import torch.nn.functional as F


@lru_cache(maxsize=8)
def _window(size: int, sigma: float, device: str, dtype: torch.dtype) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = (g / g.sum()).to(dtype)
    return (g[:, None] @ g[None, :]).to(device)[None, None].expand(3, 1, size, size).contiguous()


@contextmanager
def no_tf32() -> Iterator[None]:
    """Inside: cuDNN convolutions and CUDA matmuls in full float32 (no TF32); the previous
    settings come back on exit. No effect on the CPU."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = (cudnn.allow_tf32, matmul.allow_tf32)
    cudnn.allow_tf32 = False
    matmul.allow_tf32 = False
    try:
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = before


def ssim_map(img: torch.Tensor, ref: torch.Tensor, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-pixel SSIM [B, H, W] of images [B, H, W, 3] (values in [0, 1]), mean over channels.

    Borders use zero padding of the local statistics window ("same" size output).
    """
    x = img.permute(0, 3, 1, 2)
    y = ref.permute(0, 3, 1, 2)
    w = _window(size, sigma, str(x.device), x.dtype)
    pad = size // 2

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, w, padding=pad, groups=3)

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x**2
    syy = blur(y * y) - mu_y**2
    sxy = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.mean(1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of x [B, H, W] or [B, H, W, C] over the pixels where mask [B, H, W] is true."""
    if mask is None:
        return x.mean()
    m = mask.to(x.dtype)
    if x.dim() == 4:
        m = m[..., None].expand_as(x)
    return (x * m).sum() / m.sum().clamp_min(1.0)


def photometric_loss(
    img: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor | None = None, ssim_lambda: float = 0.2
) -> torch.Tensor:
    """(1 - lambda) L1 + lambda (1 - SSIM) over the pixels of `mask` (3DGS loss).

    img, ref: [B, H, W, 3] in [0, 1]; mask: [B, H, W] bool (True = use) or None.
    """
    l1 = masked_mean((img - ref).abs(), mask)
    dssim = 1.0 - masked_mean(ssim_map(img, ref), mask)
    return (1.0 - ssim_lambda) * l1 + ssim_lambda * dssim


def psnr(img: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Peak signal-to-noise ratio in dB of images in [0, 1] over the pixels of `mask` (TF32
    off)."""
    with no_tf32():
        mse = masked_mean((img - ref) ** 2, mask).clamp_min(1e-12)
        return float(-10.0 * torch.log10(mse))


def ssim(img: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Mean SSIM over the pixels of `mask` (TF32 off: the same value on a GPU as on the CPU,
    up to float32 rounding)."""
    with no_tf32():
        return float(masked_mean(ssim_map(img, ref), mask))
