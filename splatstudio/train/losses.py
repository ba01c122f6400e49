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
def _window1d(size: int, sigma: float, device: str, dtype: torch.dtype) -> torch.Tensor:
    """Normalised 1-D Gaussian window [size] (the 2-D SSIM window is its outer product)."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).to(dtype).to(device)


def _blur(t: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of every channel of t [B, K, H, W] with window g [size], zero
    padded to the same size: equal to the 11x11 2-D convolution (the window is separable)
    with 2 x 11 instead of 121 taps. Symmetric, so it is its own adjoint."""
    k, size = t.shape[1], g.numel()
    pad = size // 2
    wv = g.view(1, 1, size, 1).expand(k, 1, size, 1)
    wh = g.view(1, 1, 1, size).expand(k, 1, 1, size)
    return F.conv2d(F.conv2d(t, wv, padding=(pad, 0), groups=k), wh, padding=(0, pad), groups=k)


_C1, _C2 = 0.01**2, 0.03**2


class _FusedSSIM(torch.autograd.Function):
    """SSIM map with a hand-written backward (the "fused SSIM" of Mallick et al. 2024,
    "Taming 3DGS", in plain torch): the forward blurs the five moment images in one
    separable convolution; the backward needs the three partial derivatives of SSIM w.r.t.
    the blurred moments of x (mu_x, E[x^2], E[xy]), blurs them once (the blur is
    self-adjoint) and combines them per pixel, instead of autograd's graph of ~30 ops.
    Only ``x`` gets a gradient (the reference image is data)."""

    @staticmethod
    def forward(ctx, x, y, g):
        C = x.shape[1]
        mu_x, mu_y, exx, eyy, exy = _blur(torch.cat([x, y, x * x, y * y, x * y], 1), g).split(C, 1)
        mxy = mu_x * mu_y
        mx2 = mu_x * mu_x
        my2 = mu_y * mu_y
        a1 = 2.0 * mxy + _C1
        a2 = 2.0 * (exy - mxy) + _C2
        b1 = mx2 + my2 + _C1
        b2 = (exx - mx2) + (eyy - my2) + _C2
        s = (a1 * a2) / (b1 * b2)
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(x, y, g, mu_x, mu_y, a1, a2, b1, b2, s)
        return s.mean(1)

    @staticmethod
    def backward(ctx, grad):
        x, y, g, mu_x, mu_y, a1, a2, b1, b2, s = ctx.saved_tensors
        C = x.shape[1]
        G = grad[:, None] / C  # d loss / d s, [B, 1, H, W]
        inv = G / (b1 * b2)
        gs = G * s
        # s = a1 a2 / (b1 b2) as a function of mu_x, E[x^2] (in b2) and E[xy] (in a2)
        g_mu = 2.0 * mu_y * (a2 - a1) * inv - 2.0 * mu_x * gs * (1.0 / b1 - 1.0 / b2)
        g_xx = -gs / b2
        g_xy = 2.0 * a1 * inv
        b_mu, b_xx, b_xy = _blur(torch.cat([g_mu, g_xx, g_xy], 1), g).split(C, 1)
        return b_mu + 2.0 * x * b_xx + y * b_xy, None, None


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


def ssim_map(
    img: torch.Tensor, ref: torch.Tensor, size: int = 11, sigma: float = 1.5,
    kernel: str = "auto",
) -> torch.Tensor:
    """Per-pixel SSIM [B, H, W] of images [B, H, W, 3] (values in [0, 1]), mean over channels.

    Borders use zero padding of the local statistics window ("same" size output). The
    gradient flows to `img` only (through :class:`_FusedSSIM`); `ref` is treated as data.
    ``kernel``: "torch" (:class:`_FusedSSIM`, any device), "numba" (the same computation
    compiled, row-parallel: ``splatstudio.render.numba_impl.FusedSSIMNumba``; CPU float32 /
    float64 tensors), or "auto" (numba where it applies and is installed).

    Raises:
        ValueError: an unknown ``kernel``, or "numba" where it does not apply.
    """
    if kernel not in ("auto", "numba", "torch"):
        raise ValueError(f"ssim_map: kernel must be 'auto', 'numba' or 'torch', got {kernel!r}")
    x = img.permute(0, 3, 1, 2).contiguous()
    y = ref.detach().permute(0, 3, 1, 2).contiguous()
    g = _window1d(size, sigma, str(x.device), x.dtype)
    if kernel != "torch":
        ok = x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
        if ok:
            from ..render import numba_impl  # lazy: numba loads only on the CPU path

            ok = numba_impl.numba_available()
            if ok:
                return numba_impl.FusedSSIMNumba.apply(x, y, g)
        if kernel == "numba":
            raise ValueError("ssim_map: kernel='numba' needs numba installed and CPU float32 "
                             f"or float64 images, got {x.device} {x.dtype}")
    return _FusedSSIM.apply(x, y, g)


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
