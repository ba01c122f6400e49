"""``rasterize``: one entry point with gsplat 1.5.3 ``rasterization()`` semantics.

NVIDIA CUDA tensors go to ``gsplat.rasterization`` (imported lazily, only on that path);
CPU, Apple MPS and AMD ROCm tensors (or ``backend="torch"``) go to SplatStudio's
differentiable PyTorch implementation of the same model,
:mod:`splatstudio.render.torch_impl` (see :mod:`splatstudio.render.device`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .device import torch_path_dtype_error, uses_gsplat
from .sh import num_sh_bases
from .torch_impl import _RASTERIZE_MODES, _RENDER_MODES, RasterConfig, rasterize_torch

__all__ = ["rasterize"]

# gsplat-only keyword arguments: accepted on the torch path only with these defaults
_GSPLAT_ONLY_KW = {
    "sparse_grad": False,
    "absgrad": False,
    "distributed": False,
    "camera_model": "pinhole",
    "segmented": False,
    "with_ut": False,
    "with_eval3d": False,
    "covars": None,
    "radial_coeffs": None,
    "tangential_coeffs": None,
    "thin_prism_coeffs": None,
    "ftheta_coeffs": None,
    "viewmats_rs": None,
}
# accepted and ignored on the torch path (it always returns the unpacked layout)
_TORCH_IGNORED_KW = ("packed", "channel_chunk")
# torch-path knobs (RasterConfig fields)
_TORCH_KW = ("tile_size", "chunk_size", "max_pairs", "max_isects", "save_checkpoints",
             "max_saved_pairs", "kernel")


def _check_inputs(
    means, quats, scales, opacities, colors, viewmats, Ks, width, height, sh_degree,
    backgrounds, render_mode, rasterize_mode, near_plane, far_plane,
) -> None:  # fmt: skip
    def bad(msg: str) -> None:
        raise ValueError(f"rasterize: {msg}")

    tensors = {
        "means": means, "quats": quats, "scales": scales, "opacities": opacities,
        "colors": colors, "viewmats": viewmats, "Ks": Ks,
    }  # fmt: skip
    for name, t in tensors.items():
        if not isinstance(t, Tensor):
            raise TypeError(f"rasterize: {name} must be a torch.Tensor, got {type(t)}")
    if means.dim() != 2 or means.shape[1] != 3:
        bad(f"means must be [N, 3], got {tuple(means.shape)}")
    N = means.shape[0]
    if quats.shape != (N, 4):
        bad(f"quats must be [N, 4] = [{N}, 4], got {tuple(quats.shape)}")
    if scales.shape != (N, 3):
        bad(f"scales must be [N, 3], got {tuple(scales.shape)}")
    if opacities.shape != (N,):
        bad(f"opacities must be [N] = [{N}], got {tuple(opacities.shape)}")
    if viewmats.dim() != 3 or viewmats.shape[1:] != (4, 4):
        bad(f"viewmats must be [C, 4, 4], got {tuple(viewmats.shape)}")
    C = viewmats.shape[0]
    if Ks.shape != (C, 3, 3):
        bad(f"Ks must be [C, 3, 3] = [{C}, 3, 3], got {tuple(Ks.shape)}")
    if int(width) <= 0 or int(height) <= 0:
        bad(f"image size must be positive, got {width}x{height}")
    if not (0.0 < near_plane < far_plane):
        bad(f"need 0 < near_plane < far_plane, got {near_plane}, {far_plane}")
    if render_mode not in _RENDER_MODES:
        bad(f"render_mode must be one of {_RENDER_MODES}, got {render_mode!r}")
    if rasterize_mode not in _RASTERIZE_MODES:
        bad(f"rasterize_mode must be one of {_RASTERIZE_MODES}, got {rasterize_mode!r}")
    if sh_degree is None:
        ok = (colors.dim() == 2 and colors.shape[0] == N) or (
            colors.dim() == 3 and colors.shape[:2] == (C, N)
        )
        if not ok:
            bad(f"colors must be [N, D] or [C, N, D] without sh_degree, got "
                f"{tuple(colors.shape)}")  # fmt: skip
        D = colors.shape[-1]
    else:
        k = num_sh_bases(sh_degree)
        ok = (colors.dim() == 3 and colors.shape[0] == N) or (
            colors.dim() == 4 and colors.shape[:2] == (C, N)
        )
        if not ok or colors.shape[-1] != 3 or colors.shape[-2] < k:
            bad(f"with sh_degree={sh_degree} colors must be [N, K, 3] or [C, N, K, 3] with "
                f"K >= {k}, got {tuple(colors.shape)}")  # fmt: skip
        D = 3
    if backgrounds is not None and tuple(backgrounds.shape) != (C, D):
        bad(f"backgrounds must be [C, D] = [{C}, {D}], got {tuple(backgrounds.shape)}")
    fl = [t.dtype for t in tensors.values()]
    if any(not t.is_floating_point() for t in tensors.values()):
        bad(f"all inputs must be floating point, got {fl}")


def rasterize(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    *,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    sh_degree: int | None = None,
    backgrounds: Tensor | None = None,
    render_mode: str = "RGB",
    eps2d: float = 0.3,
    radius_clip: float = 0.0,
    rasterize_mode: str = "classic",
    device: str | torch.device | None = None,
    **kw: Any,
) -> tuple[Tensor, Tensor, dict]:
    """Render 3D Gaussians into C pinhole cameras (gsplat 1.5.3 ``rasterization`` semantics).

    The image formation model is 3D Gaussian Splatting (Kerbl et al. 2023) with EWA
    splatting (Zwicker et al. 2001) exactly as implemented by gsplat (Ye et al. 2024):
    3D covariance ``R S S^T R^T``, local affine projection with a ``eps2d`` px^2 low-pass,
    optional Mip-Splatting compensation (``rasterize_mode="antialiased"``), 3.33-sigma
    opacity-aware bounding boxes, 16x16 tile binning, per-tile front-to-back sorting by
    camera z and alpha compositing with ``alpha = min(0.999, o exp(-sigma))``, pairs with
    ``alpha < 1/255`` skipped and a pixel stopping when its transmittance would reach
    ``1e-4``. See :mod:`splatstudio.render.torch_impl` for details and the memory bound.

    Dispatch: on NVIDIA CUDA tensors (or ``device="cuda"``) this calls
    ``gsplat.rasterization`` (gsplat imported lazily). Otherwise (CPU, MPS, a ROCm GPU) -- or
    with
    ``backend="torch"`` -- it runs SplatStudio's differentiable PyTorch implementation of
    the same model, checked against an independent brute-force renderer and gsplat's
    reference projection/SH code in ``tests/unit/test_render_*.py``;
    ``tests/gpu/test_render_vs_gsplat.py`` compares it with gsplat's CUDA kernels.

    Args:
        means: ``[N, 3]`` Gaussian centres, world frame, world units (metres).
        quats: ``[N, 4]`` rotations, wxyz, need not be normalised.
        scales: ``[N, 3]`` standard deviations along the local axes, world units, already
            activated (``exp`` of the log-scales).
        opacities: ``[N]`` opacities in [0, 1], already activated (sigmoid).
        colors: ``[N, D]`` or per-camera ``[C, N, D]`` features (e.g. RGB) when
            ``sh_degree`` is None; otherwise SH coefficients ``[N, K, 3]`` or
            ``[C, N, K, 3]`` with ``K >= (sh_degree + 1) ** 2``. SH are evaluated along the
            direction camera centre -> mean, then ``max(0, value + 0.5)`` (as gsplat).
        viewmats: ``[C, 4, 4]`` world-to-camera matrices, OpenCV camera frame
            (x right, y down, z forward).
        Ks: ``[C, 3, 3]`` pinhole intrinsics in pixels (pixel centres at +0.5).
        width, height: image size in pixels.
        near_plane, far_plane: Gaussians whose camera z is outside this range are culled.
        sh_degree: SH degree to evaluate (0..4) or None for plain features.
        backgrounds: optional ``[C, D]`` background colour composited with the remaining
            transmittance (for "D"/"ED" it is ignored; for "+D" modes the depth channel
            gets 0 background), as gsplat.
        render_mode: "RGB" (D channels), "D" (accumulated depth ``sum w_i z_i``), "ED"
            (expected depth, divided by alpha), "RGB+D" or "RGB+ED" (depth appended).
        eps2d: low-pass variance added to the projected covariance, px^2 (default 0.3).
        radius_clip: Gaussians with both pixel radii ``<= radius_clip`` are skipped.
        rasterize_mode: "classic" or "antialiased" (Mip-Splatting, Yu et al. 2024).
        device: render on this device (inputs are moved there, differentiably);
            default: the device of ``means``.
        **kw: on the CUDA/gsplat path forwarded to ``gsplat.rasterization`` (e.g.
            ``tile_size``, ``absgrad``, ``sparse_grad``, ``camera_model``). ``packed``
            defaults to **False** here (gsplat's default is True) so that ``info`` has the
            same unpacked ``[C, N, ...]`` layout on both paths; pass ``packed=True`` to get
            gsplat's packed layout on CUDA. ``backend``: "auto" (default), "gsplat" or
            "torch". Torch-path knobs: ``tile_size`` (8 when gradients are needed, 16
            otherwise), ``chunk_size`` (128),
            ``max_pairs`` (2**18), ``max_isects`` (2**20), ``save_checkpoints`` (True),
            ``max_saved_pairs`` (2**24), ``kernel`` ("auto": the compiled numba
            compositing on CPU when numba is installed, else "torch"), see
            :class:`~splatstudio.render.torch_impl.RasterConfig`. gsplat-only features
            (``absgrad``, ``sparse_grad``, ``covars``, non-pinhole cameras, distortion,
            UT, distributed) raise ``NotImplementedError`` on the torch path; ``packed``
            and ``channel_chunk`` are accepted and ignored there.

    Returns:
        ``(render_colors, render_alphas, info)``: ``[C, H, W, X]`` (X = D, 1 or D + 1 by
        ``render_mode``), ``[C, H, W, 1]``, and gsplat's meta dict; on the torch path it
        holds ``means2d [C, N, 2]`` (px; call ``retain_grad()`` for densification),
        ``radii [C, N, 2]`` (int32 px, 0 = culled), ``depths [C, N]``,
        ``conics [C, N, 3]``, ``opacities [C, N]``, ``width``, ``height``,
        ``n_cameras``, ``n_batches``, ``tile_size``, ``tile_width``, ``tile_height`` and
        ``cpu_stats``. Everything is differentiable w.r.t. means, quats, scales,
        opacities, colors, backgrounds and viewmats.

    Raises:
        TypeError: non-tensor inputs or unknown keyword arguments (torch path).
        ValueError: inconsistent shapes, bad modes, non-positive size, bad SH degree,
            ``near_plane <= 0`` or ``far_plane <= near_plane``, mixed or half-precision
            dtypes, float64 on MPS (torch path).
        NotImplementedError: gsplat-only options on the torch path, or ``backend="gsplat"``
            on a device other than NVIDIA CUDA.
        ImportError: gsplat missing when the CUDA path is taken.
    """
    backend = kw.pop("backend", "auto")
    if backend not in ("auto", "gsplat", "torch"):
        raise ValueError(f"rasterize: backend must be 'auto', 'gsplat' or 'torch', got {backend!r}")
    _check_inputs(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height, sh_degree,
        backgrounds, render_mode, rasterize_mode, near_plane, far_plane,
    )  # fmt: skip
    dev = torch.device(device) if device is not None else means.device

    def mv(t: Tensor | None) -> Tensor | None:
        return t if t is None or t.device == dev else t.to(dev)

    means, quats, scales, opacities, colors, viewmats, Ks = (
        mv(t) for t in (means, quats, scales, opacities, colors, viewmats, Ks)
    )
    backgrounds = mv(backgrounds)
    width, height = int(width), int(height)

    use_gsplat = backend == "gsplat" or (backend == "auto" and uses_gsplat(dev))
    if use_gsplat:
        if not uses_gsplat(dev):
            raise NotImplementedError("rasterize: the gsplat backend needs NVIDIA CUDA tensors")
        import gsplat  # lazy: only the CUDA path needs it

        kw.setdefault("packed", False)
        for k in _TORCH_KW:  # torch-path knobs; tile_size is gsplat's too
            if k != "tile_size":
                kw.pop(k, None)
        return gsplat.rasterization(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height,
            near_plane=near_plane, far_plane=far_plane, sh_degree=sh_degree,
            backgrounds=backgrounds, render_mode=render_mode, eps2d=eps2d,
            radius_clip=radius_clip, rasterize_mode=rasterize_mode, **kw,
        )  # fmt: skip

    cfg_kw = {}
    for k, v in kw.items():
        if k in _TORCH_KW:
            cfg_kw[k] = v
        elif k in _TORCH_IGNORED_KW:
            continue
        elif k in _GSPLAT_ONLY_KW:
            default = _GSPLAT_ONLY_KW[k]
            if (v is not None) if default is None else (v != default):
                raise NotImplementedError(
                    f"rasterize: {k}={v!r} is only supported by the gsplat CUDA backend"
                )
        elif k == "rolling_shutter":
            if getattr(v, "name", str(v)).split(".")[-1].upper() != "GLOBAL":
                raise NotImplementedError("rasterize: rolling shutter needs the gsplat backend")
        else:
            raise TypeError(f"rasterize: unexpected keyword argument {k!r}")
    dtypes = {t.dtype for t in (means, quats, scales, opacities, colors, viewmats, Ks)}
    bad_dtype = torch_path_dtype_error(dev.type, dtypes)
    if bad_dtype:
        raise ValueError(f"rasterize: {bad_dtype}")
    if backgrounds is not None and backgrounds.dtype != means.dtype:
        raise ValueError("rasterize: backgrounds dtype must match means")
    if "tile_size" not in cfg_kw and not (torch.is_grad_enabled() and any(
            t.requires_grad for t in (means, quats, scales, opacities, colors))):
        # a render without gradients (render, video, mesh bake): 16 px tiles. The 8 px tiles
        # pay off in training's backward; here they only double the tile intersections
        # (bench_rasterize_cpu, 100k at 1280x720: 2.55 s with 8 px, 0.86 s with 16 px before)
        cfg_kw["tile_size"] = 16
    return rasterize_torch(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height,
        near_plane=near_plane, far_plane=far_plane, sh_degree=sh_degree,
        backgrounds=backgrounds, render_mode=render_mode, eps2d=eps2d,
        radius_clip=radius_clip, rasterize_mode=rasterize_mode,
        config=RasterConfig(**cfg_kw),
    )  # fmt: skip
