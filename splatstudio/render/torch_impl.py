"""Differentiable PyTorch implementation of gsplat's 3D Gaussian rasterizer (CPU path).

This reimplements, in plain vectorised PyTorch, the image formation model of gsplat 1.5.3
``rasterization()`` for pinhole cameras (Ye et al. 2024, "gsplat: An Open-Source Library
for Gaussian Splatting"; CUDA kernels ``ProjectionEWA3DGSFused.cu``, ``IntersectTile.cu``,
``RasterizeToPixels3DGSFwd.cu`` and the reference ``cuda/_torch_impl.py``), which is the
model of 3D Gaussian Splatting (Kerbl et al. 2023) with EWA splatting (Zwicker et al.
2001):

1. **Projection** (per camera, vectorised over Gaussians). ``Sigma = R S S^T R^T`` from
   the normalised wxyz quaternion and linear scales; world-to-camera with the view matrix;
   the local affine (Jacobian) approximation ``J`` of the pinhole projection with gsplat's
   clamping of ``x/z, y/z`` to 1.3x the field of view; ``cov2d = J W Sigma W^T J^T + eps2d I``
   (the 0.3 px^2 low-pass of EWA/3DGS). ``rasterize_mode="antialiased"`` multiplies the
   opacity by Mip-Splatting's compensation ``sqrt(det(cov2d) / det(cov2d + eps2d I))``
   (Yu et al. 2024).
2. **Culling** exactly as gsplat's CUDA kernel: depth outside ``[near_plane, far_plane]``,
   ``det <= 0``, (compensated) opacity ``< 1/255``; radius ``ceil(extend * sqrt(diag(cov2d)))``
   with the opacity-aware ``extend = min(3.33, sqrt(2 ln(255 * opacity)))`` (Radl et al. 2024,
   "StopThePop", Sec. B.2, as used by gsplat), ``radius_clip`` and the image-bounds test.
   Pixels outside that box always have ``alpha < 1/255`` so tile binning does not change
   the result, which is why a brute-force per-pixel evaluation reproduces it exactly.
   Gaussians that a conservative bound puts outside the image are dropped before any
   differentiable work (:func:`_project_camera`), and the tiles of a box that the
   ``alpha >= 1/255`` ellipse misses are dropped before compositing (:func:`_tile_hits`,
   gsplat's exact ellipse-tile test): neither changes the result.
3. **Rasterisation**: gsplat's tile binning (``tile_size`` px tiles, per-tile lists sorted
   front to back by camera-space z, ties by Gaussian index) and per-pixel front-to-back
   compositing at pixel centres ``(col + 0.5, row + 0.5)``:
   ``sigma = 0.5 (a dx^2 + c dy^2) + b dx dy``; skip if ``sigma < 0``;
   ``alpha = min(0.999, opacity * exp(-sigma))``; skip if ``alpha < 1/255``;
   stop (exclusive) when ``T * (1 - alpha) <= 1e-4``;
   ``C = sum_i c_i alpha_i T_i + T_final * background``; ``render_alpha = 1 - T_final``.

On CPU tensors, step 3 (with its tile binning) runs by default in the compiled, all-core
kernels of :mod:`splatstudio.render.numba_impl` (``RasterConfig.kernel``); the version in
this module is their reference twin and the path on every other device.

Differentiability: step 1 is ordinary autograd; step 3 is a custom
:class:`torch.autograd.Function` whose backward recomputes each block (like gsplat's
backward kernel) and uses the analytic gradients of the compositing equation, so the
memory of the backward pass is bounded too. Gradients flow to means, quats, scales,
opacities, colours / SH coefficients, backgrounds and view matrices (and Ks).

Memory bound (``tile_size`` = t, ``P = t * t`` pixels per tile; measured, float32):

* the image is processed in horizontal bands of tile rows holding at most ``max_isects``
  tile/Gaussian intersections (a band is at least one tile row, which is never split),
  costing ~60 bytes per intersection while the band is processed (~60 MiB at the
  default ``max_isects = 2**20``);
* inside a band, tiles with similar Gaussian counts are batched and their front-to-back
  lists are consumed ``chunk_size`` Gaussians at a time, so every dense temporary has at
  most ``max(max_pairs, P)`` (pixel, Gaussian) elements; peak ~20 bytes per element in
  the forward and ~40 in the backward pass (x2 in float64): ~5 / ~10 MiB at the default
  ``max_pairs = 2**18`` -- independent of N, H and W;
* plus O(N) for the projected Gaussians and SH colours (~0.2 KB per Gaussian without
  gradients; with gradients the autograd graph and input gradients take ~1 KB per
  Gaussian at SH degree 3: 1.05-1.2 GB above the inputs at N = 1M, measured by
  ``benchmarks/bench_rasterize_cpu.py``), O(C H W D) for the images, and, when gradients
  are needed and ``save_checkpoints`` is on, ~5 bytes per pixel per processed chunk and
  the forward's alphas and transmittances, 8 bytes per evaluated (pixel, Gaussian) pair up
  to ``max_saved_pairs`` (128 MiB by default; the backward recomputes blocks beyond it).

Nothing ever allocates N x H x W.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from .sh import eval_sh

__all__ = [
    "ALPHA_THRESHOLD",
    "MAX_ALPHA",
    "RADIUS_EXTEND",
    "TRANSMITTANCE_THRESHOLD",
    "RasterConfig",
    "project_gaussians",
    "quat_to_rotmat",
    "rasterize_torch",
]

#: gsplat ``ALPHA_THRESHOLD`` (``Common.h``): contributions below it are skipped.
ALPHA_THRESHOLD = 1.0 / 255.0
#: Per-Gaussian alpha is clamped to this value (3DGS / gsplat).
MAX_ALPHA = 0.999
#: A pixel stops accumulating once the transmittance would drop to this value or below.
TRANSMITTANCE_THRESHOLD = 1e-4
#: Bounding-box extent in standard deviations before the opacity-aware tightening.
RADIUS_EXTEND = 3.33

_RENDER_MODES = ("RGB", "D", "ED", "RGB+D", "RGB+ED")
_RASTERIZE_MODES = ("classic", "antialiased")
_KERNELS = ("auto", "numba", "torch")


@dataclass
class RasterConfig:
    """Tuning knobs of the CPU rasterizer (they do not change the rendered values).

    Attributes:
        tile_size: tile edge in pixels (gsplat's default is 16; 8 here: with the
            ellipse-tile test it evaluates ~1.7x fewer (pixel, Gaussian) pairs on real
            scenes, measured by ``benchmarks/bench_vs_opensplat.py``).
        chunk_size: Gaussians per tile consumed per step; smaller = finer early
            termination, larger = less Python overhead.
        max_pairs: maximum (pixel, Gaussian) elements of one dense block (at least one
            tile x one Gaussian); bounds the working memory (~20 / ~40 bytes per element
            in the float32 forward / backward pass, see the module docstring).
        max_isects: maximum tile/Gaussian intersections materialised at once (one band
            of tile rows; a single tile row may exceed it).
        save_checkpoints: when gradients are needed, keep the per-pixel transmittance
            before every processed chunk (~5 bytes per pixel per chunk) so the backward
            pass does not recompute the forward; False trades that memory for time.
        max_saved_pairs: with ``save_checkpoints``, also keep the alphas and
            transmittances of the forward's blocks (8 bytes per (pixel, Gaussian) pair
            in float32) for up to this many pairs per call (default 2**24: 128 MiB), so
            the backward pass recomputes only the blocks beyond it.
        kernel: the compositing implementation: "numba" (the compiled per-tile loops of
            :mod:`splatstudio.render.numba_impl`, all cores; CPU tensors, numba installed),
            "torch" (the batched-tensor twin in this module, any device; the reference),
            or "auto" (default: "numba" when it applies, else "torch"). Same values up to
            float rounding; ``chunk_size``, ``max_pairs``, ``max_isects`` and the saving
            knobs apply to "torch" only.
        stats: counters filled by the last call (``n_isects``, ``n_bands``,
            ``max_band_isects``, ``n_blocks``, ``max_block_pairs``; ``kernel``, the one used).
    """

    tile_size: int = 8
    chunk_size: int = 128
    max_pairs: int = 1 << 18
    max_isects: int = 1 << 20
    save_checkpoints: bool = True
    max_saved_pairs: int = 1 << 24
    kernel: str = "auto"
    stats: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kernel not in _KERNELS:
            raise ValueError(f"kernel must be one of {', '.join(_KERNELS)}, got {self.kernel!r}")
        for name in ("tile_size", "chunk_size", "max_pairs", "max_isects", "max_saved_pairs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name} must be a positive int, got {v!r}")


# ---------------------------------------------------------------------------------------
# Projection
# ---------------------------------------------------------------------------------------


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Rotation matrices from (not necessarily unit) quaternions in wxyz order.

    Args:
        quats: ``[..., 4]`` quaternions ``(w, x, y, z)``; normalised here.

    Returns:
        ``[..., 3, 3]`` rotation matrices (differentiable).

    Source: gsplat ``_quat_to_rotmat`` / 3DGS ``build_rotation``; the NumPy twin is
    :func:`splatstudio.quaternion.quat_to_rotmat`.
    """
    q = F.normalize(quats, p=2, dim=-1)
    w, x, y, z = q.unbind(-1)
    xx, yy, zz = x * x, y * y, z * z
    xy, xz, yz = x * y, x * z, y * z
    wx, wy, wz = w * x, w * y, w * z
    R = torch.stack(
        [
            1 - 2 * (yy + zz), 2 * (xy - wz), 2 * (xz + wy),
            2 * (xy + wz), 1 - 2 * (xx + zz), 2 * (yz - wx),
            2 * (xz - wy), 2 * (yz + wx), 1 - 2 * (xx + yy),
        ],
        dim=-1,
    )  # fmt: skip
    return R.reshape(quats.shape[:-1] + (3, 3))


@dataclass
class _Projected:
    """Visible Gaussians of one camera, sorted front to back (all tensors length V)."""

    gids: Tensor  # [V] int64 indices into the N Gaussians
    means2d: Tensor  # [V, 2] pixels
    conics: Tensor  # [V, 3] (a, b, c) of the inverse 2D covariance
    depths: Tensor  # [V] camera-space z
    opacities: Tensor  # [V] (times the compensation in antialiased mode)
    radii: Tensor  # [V, 2] int32 pixels
    depths_all: Tensor  # [N] camera-space z of every Gaussian


def _project_camera(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    viewmat: Tensor,
    K: Tensor,
    width: int,
    height: int,
    near_plane: float,
    far_plane: float,
    eps2d: float,
    radius_clip: float,
    antialiased: bool,
) -> _Projected:
    """EWA projection + gsplat culling for one camera.

    Before any differentiable work, Gaussians whose bounding box cannot touch the image
    are dropped with a conservative bound (no autograd): with ``J`` the projection
    Jacobian (its ``x/z, y/z`` clamped as below) and ``s`` the largest scale,
    ``cov2d <= |J|_F^2 s^2 + eps2d``, so no radius exceeds
    ``3.33 sqrt(|J|_F^2 s^2 + eps2d) + 1`` px; a mean projected farther than that outside
    the image is culled by gsplat's image-bounds test anyway. Only the rest get their
    rotation, covariance and conic (on a training view of a large scene most Gaussians
    are outside the view frustum)."""
    Rw = viewmat[:3, :3]
    tw = viewmat[:3, 3]
    means_c = torch.addmm(tw, means, Rw.T)  # [N, 3]
    depths_all = means_c[:, 2]
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    tan_fovx = 0.5 * width / fx
    tan_fovy = 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + 0.3 * tan_fovx
    lim_x_neg = cx / fx + 0.3 * tan_fovx
    lim_y_pos = (height - cy) / fy + 0.3 * tan_fovy
    lim_y_neg = cy / fy + 0.3 * tan_fovy
    with torch.no_grad():
        mcd = means_c.detach()
        zd = mcd[:, 2]
        front = (zd >= near_plane) & (zd <= far_plane)
        zs = torch.where(front, zd, 1.0)
        u = mcd[:, 0] / zs
        v = mcd[:, 1] / zs
        ku, kv = float(fx), float(fy)
        lx = torch.clamp(u, min=-float(lim_x_neg), max=float(lim_x_pos))
        ly = torch.clamp(v, min=-float(lim_y_neg), max=float(lim_y_pos))
        jf2 = ((ku * ku) * (1.0 + lx * lx) + (kv * kv) * (1.0 + ly * ly)) / (zs * zs)
        smax = scales.detach().amax(-1)
        rb = RADIUS_EXTEND * torch.sqrt(jf2 * smax * smax + eps2d) + 1.0
        mu = ku * u + float(cx)
        mv = kv * v + float(cy)
        near_img = (mu + rb > 0) & (mu - rb < width) & (mv + rb > 0) & (mv - rb < height)
        idx = torch.nonzero(front & near_img).squeeze(1)
    mc = means_c[idx]
    x, y, z = mc.unbind(-1)
    # camera-space rotation-scale: W @ R @ S
    rs = quat_to_rotmat(quats[idx]) * scales[idx][:, None, :]
    wm = torch.einsum("ij,njk->nik", Rw, rs)  # [V, 3, 3]
    rz = 1.0 / z
    rz2 = rz * rz
    tx = z * torch.clamp(x * rz, min=-lim_x_neg, max=lim_x_pos)
    ty = z * torch.clamp(y * rz, min=-lim_y_neg, max=lim_y_pos)
    # rows of J @ (W R S): J = [[fx/z, 0, -fx tx/z^2], [0, fy/z, -fy ty/z^2]]
    t0 = (fx * rz)[:, None] * wm[:, 0, :] - (fx * tx * rz2)[:, None] * wm[:, 2, :]
    t1 = (fy * rz)[:, None] * wm[:, 1, :] - (fy * ty * rz2)[:, None] * wm[:, 2, :]
    cxx = (t0 * t0).sum(-1)
    cxy = (t0 * t1).sum(-1)
    cyy = (t1 * t1).sum(-1)
    means2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], dim=-1)
    opac = opacities[idx]
    det_orig = cxx * cyy - cxy * cxy
    cxx = cxx + eps2d
    cyy = cyy + eps2d
    det = cxx * cyy - cxy * cxy
    if antialiased:
        # Mip-Splatting compensation; clamped away from 0 so sqrt stays differentiable
        comp = torch.sqrt(torch.clamp(det_orig / torch.where(det > 0, det, 1.0), min=1e-30))
        opac = opac * comp
    with torch.no_grad():
        o = opac.detach()
        dd = det.detach()
        good = (dd > 0) & (o >= ALPHA_THRESHOLD)
        extend = torch.clamp(
            torch.sqrt(2.0 * torch.log(torch.clamp(o, min=ALPHA_THRESHOLD) / ALPHA_THRESHOLD)),
            max=RADIUS_EXTEND,
        )
        rx = torch.ceil(extend * torch.sqrt(cxx.detach().clamp(min=0)))
        ry = torch.ceil(extend * torch.sqrt(cyy.detach().clamp(min=0)))
        good &= ~((rx <= radius_clip) & (ry <= radius_clip))
        m2 = means2d.detach()
        good &= ~(
            (m2[:, 0] + rx <= 0)
            | (m2[:, 0] - rx >= width)
            | (m2[:, 1] + ry <= 0)
            | (m2[:, 1] - ry >= height)
        )
        sel = torch.nonzero(good).squeeze(1)
        order = torch.argsort(z.detach()[sel], stable=True)
        sel = sel[order]
        radii = torch.stack([rx[sel], ry[sel]], dim=-1).to(torch.int32)
    cxx, cxy, cyy, det = cxx[sel], cxy[sel], cyy[sel], det[sel]
    conics = torch.stack([cyy / det, -cxy / det, cxx / det], dim=-1)
    return _Projected(
        gids=idx[sel],
        means2d=means2d[sel],
        conics=conics,
        depths=z[sel],
        opacities=opac[sel],
        radii=radii,
        depths_all=depths_all,
    )


def project_gaussians(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    viewmat: Tensor,
    K: Tensor,
    width: int,
    height: int,
    *,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    radius_clip: float = 0.0,
    rasterize_mode: str = "classic",
) -> dict[str, Tensor]:
    """Project 3D Gaussians into one pinhole camera with gsplat's EWA model and culling.

    Args:
        means: ``[N, 3]`` world positions (world units, e.g. metres).
        quats: ``[N, 4]`` wxyz rotations (normalised inside).
        scales: ``[N, 3]`` linear (already activated) standard deviations, world units.
        opacities: ``[N]`` opacities in [0, 1] (already sigmoid-activated).
        viewmat: ``[4, 4]`` world-to-camera matrix, OpenCV camera frame.
        K: ``[3, 3]`` intrinsics in pixels.
        width, height: image size in pixels.
        near_plane, far_plane: camera-space z clipping range (world units).
        eps2d: low-pass variance added to the 2D covariance, px^2.
        radius_clip: Gaussians whose x and y radii are both ``<=`` this (px) are dropped.
        rasterize_mode: "classic" or "antialiased" (opacity times Mip-Splatting
            compensation).

    Returns:
        dict of the V visible Gaussians sorted front to back: ``gaussian_ids [V]``,
        ``means2d [V, 2]`` (px), ``conics [V, 3]`` (inverse 2D covariance a, b, c),
        ``depths [V]`` (camera z), ``opacities [V]`` (compensated), ``radii [V, 2]``
        (int32 px). Differentiable w.r.t. every floating input.

    Source: gsplat ``fully_fused_projection`` (``ProjectionEWA3DGSFused.cu``); EWA
    splatting (Zwicker et al. 2001); 3DGS (Kerbl et al. 2023).
    """
    p = _project_camera(
        means, quats, scales, opacities, viewmat, K, width, height, near_plane, far_plane,
        eps2d, radius_clip, rasterize_mode == "antialiased",
    )  # fmt: skip
    return {
        "gaussian_ids": p.gids,
        "means2d": p.means2d,
        "conics": p.conics,
        "depths": p.depths,
        "opacities": p.opacities,
        "radii": p.radii,
    }


# ---------------------------------------------------------------------------------------
# Tile binning
# ---------------------------------------------------------------------------------------


def _alpha_cut(dtype: torch.dtype) -> float:
    """Largest value strictly below 1/255 in ``dtype``: ``F.threshold(x, cut)`` keeps
    exactly ``x >= 1/255`` (gsplat skips ``alpha < ALPHA_THRESHOLD``)."""
    t = torch.tensor(ALPHA_THRESHOLD, dtype=dtype)
    return float(torch.nextafter(t, torch.tensor(-1.0, dtype=dtype)).item())


def _neg_zero_cut(dtype: torch.dtype) -> float:
    """Largest value strictly below zero: ``F.threshold(s, cut, inf)`` keeps ``s >= 0``."""
    t = torch.tensor(0.0, dtype=dtype)
    return float(torch.nextafter(t, torch.tensor(-1.0, dtype=dtype)).item())


@dataclass
class _Batch:
    tile_ids: Tensor  # [B] global tile index (row-major over tiles)
    ids: Tensor  # [B, Kmax] int64 indices into the V (+1 dummy) Gaussians, front to back
    counts: Tensor  # [B] number of real entries per row of ids (descending)
    counts_list: list[int]
    chunk: int  # Gaussians per tile per step (chunk_size, capped by max_pairs / P)


def _tile_hits(
    params: Tensor, gid: Tensor, tile: Tensor, tw: int, ts: int, width: int, height: int
) -> Tensor:
    """Which (Gaussian, tile) pairs of the bounding-box cover can hold a contributing pixel.

    A pixel centre ``p`` gets ``alpha >= 1/255`` from Gaussian ``i`` only where
    ``sigma(p) = A dx^2 + B dx dy + C dy^2 <= tau = ln(255 o)`` (``A, B, C`` = a/2, b, c/2
    of the conic, ``d = mean - p``): an ellipse. ``sigma`` is a convex quadratic, so its
    minimum over the rectangle spanned by the tile's pixel centres is 0 when the mean lies
    inside, else it is on one of the four edges, where it is a 1-D quadratic minimised at
    its vertex clamped to the edge. Pairs whose minimum exceeds ``tau`` (plus a margin of
    float rounding, so a kept pixel is never dropped) are culled: gsplat's exact
    ellipse-tile intersection (gsplat 1.5 ``IntersectTile.cu``; the "AccuTile" test of
    Hanson et al. 2025, "Speedy-Splat"), which leaves the rendered values unchanged.

    Args:
        params: ``[6, V + 1]`` packed Gaussians (:func:`_pack_params`).
        gid: ``[M]`` Gaussian index of each pair; tile: ``[M]`` tile index (row-major over
            the image's ``tw`` tile columns).
        tw, ts, width, height: tile columns, tile size and image size in pixels.

    Returns:
        ``[M]`` bool, True for the pairs to keep.
    """
    g = params[:, gid]  # [6, M]
    mx, my, A, B, Cq, o = g.unbind(0)
    tx = tile % tw
    ty = torch.div(tile, tw, rounding_mode="floor")
    dt = params.dtype
    x0 = (tx * ts).to(dt) + 0.5
    y0 = (ty * ts).to(dt) + 0.5
    x1 = torch.clamp((tx * ts + ts).to(dt), max=float(width)) - 0.5
    y1 = torch.clamp((ty * ts + ts).to(dt), max=float(height)) - 0.5
    # offsets d = mean - pixel over the rectangle: dx in [mx - x1, mx - x0]
    dxl, dxh = mx - x1, mx - x0
    dyl, dyh = my - y1, my - y0
    inside = (dxl <= 0) & (dxh >= 0) & (dyl <= 0) & (dyh >= 0)
    A_ = A.clamp(min=1e-30)
    C_ = Cq.clamp(min=1e-30)
    best = torch.full_like(mx, math.inf)
    for dy in (dyl, dyh):  # horizontal edges: minimise over dx at fixed dy
        dx = torch.minimum(torch.maximum(-B * dy / (2.0 * A_), dxl), dxh)
        best = torch.minimum(best, A * dx * dx + B * dx * dy + Cq * dy * dy)
    for dx in (dxl, dxh):  # vertical edges: minimise over dy at fixed dx
        dy = torch.minimum(torch.maximum(-B * dx / (2.0 * C_), dyl), dyh)
        best = torch.minimum(best, A * dx * dx + B * dx * dy + Cq * dy * dy)
    tau = torch.log(o.clamp(min=ALPHA_THRESHOLD) / ALPHA_THRESHOLD)
    return inside | (best <= tau * (1.0 + 1e-3) + 1e-3)


def _tile_batches(
    means2d: Tensor,
    radii: Tensor,
    width: int,
    height: int,
    cfg: RasterConfig,
    stats: dict,
    params: Tensor | None = None,
):
    """Yield batches of tiles with their front-to-back Gaussian lists (no autograd).

    ``means2d`` / ``radii`` are the visible Gaussians already sorted front to back
    (stable, so ties keep the index order), hence sorting the unique keys
    ``tile * (V + 1) + rank`` yields gsplat's order: by tile, then depth, then index (its
    stable radix sort of (tile, depth) keys). With ``params`` (:func:`_pack_params`) the
    tiles of each Gaussian's bounding box that its ellipse misses are culled
    (:func:`_tile_hits`)."""
    ts = cfg.tile_size
    tw = (width + ts - 1) // ts
    th = (height + ts - 1) // ts
    P = ts * ts
    V = means2d.shape[0]
    dev = means2d.device
    if V == 0:
        return
    chunk = max(1, min(cfg.chunk_size, cfg.max_pairs // P))
    m = means2d.detach()
    r = radii.to(m.dtype)
    tx = m[:, 0] / ts
    ty = m[:, 1] / ts
    trx = r[:, 0] / ts
    try_ = r[:, 1] / ts
    txmin = torch.floor(tx - trx).clamp(0, tw).long()
    txmax = torch.ceil(tx + trx).clamp(0, tw).long()
    tymin = torch.floor(ty - try_).clamp(0, th).long()
    tymax = torch.ceil(ty + try_).clamp(0, th).long()
    wx = txmax - txmin
    wy = tymax - tymin
    live = (wx > 0) & (wy > 0)
    wx = wx * live
    # intersections per tile row, via a difference array
    diff = torch.zeros(th + 1, dtype=torch.int64, device=dev)
    diff.index_add_(0, tymin, wx)
    diff.index_add_(0, tymax, -wx)
    rows = torch.cumsum(diff, 0)[:th].tolist()
    stats["n_isects"] = stats.get("n_isects", 0) + int(sum(rows))
    # greedy bands of tile rows
    bands = []
    r0, acc = 0, 0
    for row, n in enumerate(rows):
        if acc > 0 and acc + n > cfg.max_isects:
            bands.append((r0, row))
            r0, acc = row, 0
        acc += n
    bands.append((r0, th))
    stats["n_bands"] = stats.get("n_bands", 0) + len(bands)
    for r0, r1 in bands:
        sel = torch.nonzero(live & (tymin < r1) & (tymax > r0)).squeeze(1)
        if sel.numel() == 0:
            continue
        y0 = tymin[sel].clamp(min=r0)
        hy = tymax[sel].clamp(max=r1) - y0
        w = wx[sel]
        total = int((w * hy).sum())
        stats["max_band_isects"] = max(stats.get("max_band_isects", 0), total)
        # (Gaussian, tile row) pairs, then (Gaussian, tile) pairs -- no integer division
        rep1 = torch.repeat_interleave(torch.arange(sel.numel(), device=dev), hy)
        start1 = torch.cumsum(hy, 0) - hy
        row = y0[rep1] + torch.arange(rep1.numel(), device=dev) - start1[rep1] - r0
        base1 = row * tw + txmin[sel][rep1]  # first tile of each (Gaussian, row)
        w1 = w[rep1]
        g1 = sel[rep1]
        del row, start1, y0, hy
        rep2 = torch.repeat_interleave(torch.arange(rep1.numel(), device=dev), w1)
        del rep1
        start2 = torch.cumsum(w1, 0) - w1
        tile = base1[rep2] + torch.arange(total, device=dev) - start2[rep2]
        del start2, base1, w1
        gpair = g1[rep2]
        del rep2, g1
        if params is not None:
            hit = _tile_hits(params, gpair, tile + r0 * tw, tw, ts, width, height)
            stats["n_isects_bbox"] = stats.get("n_isects_bbox", 0) + total
            keep = torch.nonzero(hit).squeeze(1)
            tile, gpair = tile[keep], gpair[keep]
            total = int(keep.numel())
            stats["n_isects"] = stats.get("n_isects", 0) - (int(hit.numel()) - total)
            del hit, keep
            if total == 0:
                continue
        n_tiles_band = (r1 - r0) * tw
        cnt = torch.bincount(tile, minlength=n_tiles_band)
        # unique keys (tile, depth rank) -> one sort yields per-tile front-to-back lists
        key = tile.mul_(V + 1).add_(gpair)
        del gpair
        key = torch.sort(key).values
        tile_of = torch.repeat_interleave(torch.arange(n_tiles_band, device=dev), cnt)
        ids_sorted = key.sub_(tile_of.mul_(V + 1))
        del tile_of
        offsets = torch.cumsum(cnt, 0) - cnt
        nz = torch.nonzero(cnt).squeeze(1)
        cnt_nz = cnt[nz]
        order = torch.argsort(cnt_nz, descending=True, stable=True)
        tiles = nz[order]
        cnts = cnt_nz[order]
        cl = cnts.tolist()
        neg = [-c for c in cl]
        i = 0
        while i < len(cl):
            kmax = cl[i]
            kc = min(kmax, chunk)
            bmax = max(1, cfg.max_pairs // (P * kc))
            # keep padding bounded: stop the batch where counts fall below kc / 2
            j_half = bisect.bisect_right(neg, -max(1, kc // 2), lo=i)
            j = min(i + bmax, max(i + 1, j_half))
            bt = tiles[i:j]
            bc = cnts[i:j]
            ar = torch.arange(kmax, device=dev)
            pos = offsets[bt][:, None] + ar[None, :]
            ids = ids_sorted[pos.clamp_(max=total - 1)]
            ids.masked_fill_(ar[None, :] >= bc[:, None], V)
            yield _Batch(
                tile_ids=bt + r0 * tw, ids=ids, counts=bc, counts_list=cl[i:j], chunk=chunk
            )
            i = j


def _pixel_grid(batch: _Batch, width: int, height: int, ts: int, tw: int, dtype, dev):
    """Pixel-centre coordinates ``[B, P, 1]`` of each tile and the in-image mask."""
    P = ts * ts
    ar = torch.arange(P, device=dev)
    ox = (ar % ts).to(dtype) + 0.5
    oy = torch.div(ar, ts, rounding_mode="floor").to(dtype) + 0.5
    tx = (batch.tile_ids % tw).to(dtype) * ts
    ty = torch.div(batch.tile_ids, tw, rounding_mode="floor").to(dtype) * ts
    px = tx[:, None] + ox[None, :]
    py = ty[:, None] + oy[None, :]
    inside = (px < width) & (py < height)
    return px[:, :, None], py[:, :, None], inside


# ---------------------------------------------------------------------------------------
# Per-block compositing kernels (no autograd)
# ---------------------------------------------------------------------------------------


def _block_alpha(g: Tensor, px: Tensor, py: Tensor, sig_cut: float, a_cut: float):
    """Evaluate a block of (pixel, Gaussian) pairs.

    Args:
        g: ``[6, b, k]`` packed Gaussians (mx, my, a/2, b, c/2, opacity).
        px, py: ``[b, P, 1]`` pixel centres.
        sig_cut, a_cut: see :func:`_neg_zero_cut`, :func:`_alpha_cut`.

    Returns:
        ``a [b, P, k]``, the applied alpha ``min(0.999, o exp(-sigma))`` or 0 where gsplat
        skips the pair, and the offsets ``dx, dy [b, P, k]`` (mean - pixel centre).
    """
    g = g[:, :, None, :]  # [6, b, 1, k]
    dx = g[0] - px
    dy = g[1] - py
    s = dx * dx
    s.mul_(g[2])
    t = dy * dy
    t.mul_(g[4])
    s.add_(t)
    torch.mul(dx, dy, out=t)
    t.mul_(g[3])
    s.add_(t)
    del t
    F.threshold_(s, sig_cut, math.inf)  # gsplat skips sigma < 0: exp(-inf) = 0
    a = s.neg_().exp_().mul_(g[5]).clamp_max_(MAX_ALPHA)
    return F.threshold_(a, a_cut, 0.0), dx, dy


def _block_transmittance(a: Tensor, T0: Tensor, done0: Tensor):
    """Front-to-back transmittance of a block with gsplat's early termination.

    Args:
        a: ``[b, P, k]`` applied alphas (0 = skipped); **modified in place**: entries at
            or after a pixel's termination point are zeroed.
        T0: ``[b, P]`` transmittance before the block.
        done0: ``[b, P]`` pixels that already terminated (or lie outside the image).

    Returns:
        ``texc [b, P, k]`` transmittance before each entry (a view),
        ``om [b, P, k]`` = ``1 - a`` before the termination masking (a view),
        ``T1 [b, P]`` transmittance after the block, ``done1 [b, P]``.
    """
    b, P, k = a.shape
    buf = torch.empty((b, P, k + 1), dtype=a.dtype, device=a.device)
    buf[:, :, 0] = T0.masked_fill(done0, 0.0)
    om = buf[:, :, 1:]
    om.copy_(a).neg_().add_(1.0)
    cp = torch.cumprod(buf, dim=-1)
    tinc = cp[:, :, 1:]
    if bool(done0.any()) or not bool((tinc[:, :, -1] > TRANSMITTANCE_THRESHOLD).all()):
        # T is non-increasing, so the kept entries are the prefix whose inclusive
        # transmittance stays > 1e-4; the first entry reaching <= 1e-4 is excluded
        # (gsplat: "this pixel is done: exclusive").
        keep = torch.sign(F.threshold(tinc, TRANSMITTANCE_THRESHOLD, 0.0))
        a.mul_(keep)
        n_keep = keep.sum(-1, keepdim=True).long()
        T1 = torch.where(done0, T0, cp.gather(-1, n_keep).squeeze(-1))
        done1 = done0 | (n_keep.squeeze(-1) < k)
    else:
        T1 = tinc[:, :, -1].clone()
        done1 = done0
    return cp[:, :, :-1], om, T1, done1


def _forward_batch(
    params: Tensor,
    colors: Tensor | None,
    batch: _Batch,
    grid: tuple[Tensor, Tensor, Tensor],
    cfg: RasterConfig,
    cuts: tuple[float, float],
    record: list | None,
    stats: dict,
):
    """Composite one batch of tiles front to back, ``chunk_size`` Gaussians at a time.

    ``grid`` is :func:`_pixel_grid`'s ``(px, py, inside)``. Returns ``out [B, D, P]``
    (None when ``colors`` is None) and the final transmittance ``T [B, P]``. When
    ``record`` is a list, the state before every chunk ``(k0, kc, active_tiles, T0,
    done0)`` is appended for the backward pass."""
    px, py, inside = grid
    B, P = inside.shape
    T = torch.ones((B, P), dtype=params.dtype, device=params.device)
    done = ~inside
    out = None
    if colors is not None:
        out = torch.zeros((B, colors.shape[1], P), dtype=params.dtype, device=params.device)
    counts = batch.counts
    kmax = batch.counts_list[0]
    k0 = 0
    while k0 < kmax:
        if k0 == 0:
            aidx = torch.arange(B, device=params.device)
        else:
            aidx = torch.nonzero((counts > k0) & ~done.all(dim=1)).squeeze(1)
            if aidx.numel() == 0:
                break
        kc = min(batch.chunk, batch.counts_list[int(aidx[0])] - k0)
        ids = batch.ids[aidx, k0 : k0 + kc]
        T0 = T[aidx]
        d0 = done[aidx]
        a, _, _ = _block_alpha(params[:, ids], px[aidx], py[aidx], *cuts)
        stats["max_block_pairs"] = max(stats.get("max_block_pairs", 0), a.numel())
        stats["n_blocks"] = stats.get("n_blocks", 0) + 1
        texc, _, T1, d1 = _block_transmittance(a, T0, d0)
        keep_block = record is not None and stats.get("saved_pairs", 0) + a.numel() <= (
            cfg.max_saved_pairs
        )
        if record is not None:
            if keep_block:
                stats["saved_pairs"] = stats.get("saved_pairs", 0) + a.numel()
                record.append((k0, kc, aidx, T0, d0, a, texc))
            else:
                record.append((k0, kc, aidx, T0, d0, None, None))
        if out is not None:
            w = a * texc if keep_block else a.mul_(texc)
            # [b, D, k] @ [b, k, P]: much faster than [b, P, k] @ [b, k, D] for small D
            contrib = torch.bmm(colors[ids].transpose(1, 2).contiguous(), w.transpose(1, 2))
            if k0 == 0:
                out += contrib
            else:
                out[aidx] += contrib
        T[aidx] = T1
        done[aidx] = d1
        k0 += kc
    return out, T


def _backward_batch(
    params: Tensor,
    colors: Tensor,
    batch: _Batch,
    grid: tuple[Tensor, Tensor, Tensor],
    cfg: RasterConfig,
    cuts: tuple[float, float],
    saved: tuple[list, Tensor] | None,
    gC: Tensor,
    gA: Tensor,
    grad_params: Tensor,
    grad_colors: Tensor,
) -> None:
    """Analytic backward of one batch of tiles, recomputing its blocks back to front.

    With ``T_i`` the transmittance before entry i, ``w_i = a_i T_i`` and
    ``R_i = sum_{j>i} w_j (c_j . gC) - T_final gA``, the loss gradient w.r.t. an applied
    alpha is ``T_i (c_i . gC) - R_i / (1 - a_i)`` (render = sum_i w_i c_i and
    alpha = 1 - T_final; the background term is added by autograd outside). It is then
    chained through ``alpha = min(0.999, o exp(-sigma))`` and the quadratic form sigma.
    Gradients are accumulated into ``grad_params [V + 1, 6]`` (mx, my, a, b, c, o) and
    ``grad_colors [V + 1, D]``."""
    px, py, _ = grid
    if saved is None:
        record: list = []
        no_saving = {"saved_pairs": cfg.max_saved_pairs + 1}  # keep the memory bound
        _, T_final = _forward_batch(params, None, batch, grid, cfg, cuts, record, no_saving)
    else:
        record, T_final = saved
    R = -T_final * gA  # [B, P]
    for k0, kc, aidx, T0, d0, a_saved, texc_saved in reversed(record):
        ids = batch.ids[aidx, k0 : k0 + kc]
        g = params[:, ids]  # [6, b, k]
        cgt = colors[ids].transpose(1, 2).contiguous()  # [b, D, k]
        if a_saved is None:
            a, dx, dy = _block_alpha(g, px[aidx], py[aidx], *cuts)
            texc, om, _, _ = _block_transmittance(a, T0, d0)
        else:
            # the forward's alphas and transmittances; 1 - a differs from the unmasked
            # 1 - alpha only where the pixel had terminated, where a = 0 zeroes the term
            a, texc = a_saved, texc_saved
            om = torch.rsub(a, 1.0)
            gb = g[:, :, None, :]
            dx = gb[0] - px[aidx]
            dy = gb[1] - py[aidx]
        gCa = gC[aidx]
        dot = torch.bmm(gCa, cgt)  # [b, P, k] = c_i . gC
        w = a * texc
        wd = w * dot
        tot = wd.sum(-1)
        Ra = R[aidx]
        # R_i = R_after_block + sum_{j > i in block} wd_j
        S = torch.cumsum(wd, dim=-1).neg_().add_((Ra + tot)[:, :, None])
        dal = texc.mul_(dot).sub_(S.div_(om))  # d loss / d alpha
        del S, dot, wd
        # Chain through alpha = o exp(-sigma) on applied (a > 0), unclamped (a < 0.999)
        # entries: d alpha / d o = alpha / o and d alpha / d sigma = -alpha. The 0.999
        # clamp has zero gradient (gsplat: only if opac * vis <= 0.999), skipped pairs too.
        a_eff = F.threshold_(a.neg_(), -MAX_ALPHA, 0.0).neg_()  # a where a < 0.999 else 0
        ga = dal.mul_(a_eff)  # d loss / d alpha * alpha = -d loss / d sigma
        del a_eff, a
        gop = ga.sum(1) / g[5].clamp(min=1e-30)
        u = ga * dx
        t = ga.mul_(dy)
        su = u.sum(1)
        st = t.sum(1)
        suxx = (u * dx).sum(1)
        suy = u.mul_(dy).sum(1)
        sty = t.mul_(dy).sum(1)
        del u, t, ga, dx, dy
        ca = 2.0 * g[2]
        cb = g[3]
        cc = 2.0 * g[4]
        # sigma = 0.5 (a dx^2 + c dy^2) + b dx dy with dx = mx - px, dy = my - py;
        # the sums above carry d loss / d sigma with the opposite sign
        gp = torch.stack(
            [-(ca * su + cb * st), -(cb * su + cc * st), -0.5 * suxx, -suy, -0.5 * sty, gop],
            dim=-1,
        )
        flat = ids.reshape(-1)
        grad_params.index_add_(0, flat, gp.reshape(-1, 6))
        gcol = torch.bmm(gCa.transpose(1, 2).contiguous(), w)  # [b, D, k]
        grad_colors.index_add_(0, flat, gcol.transpose(1, 2).reshape(-1, gcol.shape[1]))
        R[aidx] = Ra + tot


class _RasterizeToPixels(torch.autograd.Function):
    """Tile-based front-to-back compositing of one image (see module docstring)."""

    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, radii, width, height, cfg):
        V, D = colors.shape
        dtype, dev = means2d.dtype, means2d.device
        params = _pack_params(means2d, conics, opacities)
        colors_p = torch.cat([colors, colors.new_zeros(1, D)], dim=0)
        ts = cfg.tile_size
        tw = (width + ts - 1) // ts
        th = (height + ts - 1) // ts
        P = ts * ts
        out_t = torch.zeros((th * tw, D, P), dtype=dtype, device=dev)
        T_t = torch.ones((th * tw, P), dtype=dtype, device=dev)
        cuts = (_neg_zero_cut(dtype), _alpha_cut(dtype))
        need_grad = any(ctx.needs_input_grad[:4]) and cfg.save_checkpoints
        records = [] if need_grad else None
        stats = cfg.stats
        for batch in _tile_batches(means2d, radii, width, height, cfg, stats, params):
            grid = _pixel_grid(batch, width, height, ts, tw, dtype, dev)
            rec = [] if need_grad else None
            out, T = _forward_batch(params, colors_p, batch, grid, cfg, cuts, rec, stats)
            if records is not None:
                records.append((rec, T, batch))
            out_t[batch.tile_ids] = out
            T_t[batch.tile_ids] = T
        img = _untile(out_t.transpose(1, 2), th, tw, ts, height, width)
        alpha = 1.0 - _untile(T_t[:, :, None], th, tw, ts, height, width)
        ctx.save_for_backward(means2d, conics, colors, opacities, radii)
        ctx.records = records
        ctx.meta = (width, height, cfg)
        return img, alpha

    @staticmethod
    def backward(ctx, g_img, g_alpha):
        means2d, conics, colors, opacities, radii = ctx.saved_tensors
        width, height, cfg = ctx.meta
        V, D = colors.shape
        dtype, dev = means2d.dtype, means2d.device
        params = _pack_params(means2d, conics, opacities)
        colors_p = torch.cat([colors, colors.new_zeros(1, D)], dim=0)
        ts = cfg.tile_size
        tw = (width + ts - 1) // ts
        th = (height + ts - 1) // ts
        gC_t = _tile(g_img, th, tw, ts)  # [nt, P, D]
        gA_t = _tile(g_alpha, th, tw, ts)[:, :, 0]  # [nt, P]
        grad_params = torch.zeros((V + 1, 6), dtype=dtype, device=dev)
        grad_colors = torch.zeros((V + 1, D), dtype=dtype, device=dev)
        cuts = (_neg_zero_cut(dtype), _alpha_cut(dtype))
        records = ctx.records
        if records is not None:  # the forward's tile lists, transmittances and batches
            batches = [(r[2], (r[0], r[1])) for r in records]
        else:
            batches = ((b, None) for b in _tile_batches(means2d, radii, width, height, cfg, {},
                                                         params))
        for batch, rec in batches:
            grid = _pixel_grid(batch, width, height, ts, tw, dtype, dev)
            _backward_batch(
                params, colors_p, batch, grid, cfg, cuts, rec,
                gC_t[batch.tile_ids], gA_t[batch.tile_ids], grad_params, grad_colors,
            )  # fmt: skip
        ctx.records = None
        gp = grad_params[:V]
        g_means2d = gp[:, 0:2]
        g_conics = gp[:, 2:5]
        g_opac = gp[:, 5]
        g_colors = grad_colors[:V]
        return g_means2d, g_conics, g_colors, g_opac, None, None, None, None


def _pack_params(means2d: Tensor, conics: Tensor, opacities: Tensor) -> Tensor:
    """``[6, V + 1]`` rows (mx, my, a/2, b, c/2, opacity) (structure of arrays, so that
    gathered blocks are contiguous); the last column is a dummy Gaussian with zero
    opacity used for padding."""
    p = torch.stack(
        [
            means2d[:, 0],
            means2d[:, 1],
            0.5 * conics[:, 0],
            conics[:, 1],
            0.5 * conics[:, 2],
            opacities,
        ]
    ).detach()
    return torch.cat([p, p.new_zeros(6, 1)], dim=1)


def _untile(x: Tensor, th: int, tw: int, ts: int, height: int, width: int) -> Tensor:
    """``[th * tw, ts * ts, D]`` tile-major -> ``[height, width, D]`` image."""
    D = x.shape[-1]
    img = x.reshape(th, tw, ts, ts, D).permute(0, 2, 1, 3, 4).reshape(th * ts, tw * ts, D)
    return img[:height, :width].contiguous()


def _tile(img: Tensor, th: int, tw: int, ts: int) -> Tensor:
    """``[H, W, D]`` image -> ``[th * tw, ts * ts, D]`` tile-major (zero padded)."""
    H, W, D = img.shape
    pad = img.new_zeros((th * ts, tw * ts, D))
    pad[:H, :W] = img
    return pad.reshape(th, ts, tw, ts, D).permute(0, 2, 1, 3, 4).reshape(th * tw, ts * ts, D)


# ---------------------------------------------------------------------------------------
# Full pipeline
# ---------------------------------------------------------------------------------------


def _compositor(cfg: RasterConfig, dev: torch.device):
    """The autograd Function that composites: ``cfg.kernel`` resolved for device ``dev``.

    Raises:
        ValueError: ``kernel="numba"`` on a non-CPU device.
        ImportError: ``kernel="numba"`` without numba installed.
    """
    if cfg.kernel == "torch":
        cfg.stats["kernel"] = "torch"
        return _RasterizeToPixels
    from . import numba_impl  # lazy: numba is only loaded by the CPU path

    if cfg.kernel == "numba":
        if dev.type != "cpu":
            raise ValueError(f"kernel='numba' runs on CPU tensors only, got device {dev}")
        if not numba_impl.numba_available():
            raise ImportError("kernel='numba' needs the numba package (pip install numba)")
    elif dev.type != "cpu" or not numba_impl.numba_available():
        cfg.stats["kernel"] = "torch"
        return _RasterizeToPixels
    cfg.stats["kernel"] = "numba"
    return numba_impl.RasterizeToPixelsNumba


def rasterize_torch(
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
    config: RasterConfig | None = None,
) -> tuple[Tensor, Tensor, dict]:
    """Pure-PyTorch, differentiable equivalent of ``gsplat.rasterization`` (pinhole).

    Runs on any device (used for CPU). Arguments, conventions and outputs are those of
    :func:`splatstudio.render.rasterize` (which validates them and calls this function);
    ``config`` holds the tile / memory knobs (:class:`RasterConfig`). Float32 or
    float64. See the module docstring for the algorithm, sources and memory bound.

    Returns:
        ``(render_colors [C, H, W, X], render_alphas [C, H, W, 1], info)`` where the info
        dict uses gsplat's unpacked layout: ``means2d [C, N, 2]`` (px, the tensor that is
        actually rasterised, so ``info["means2d"].retain_grad()`` works as with gsplat),
        ``radii [C, N, 2]`` int32 (0 = culled), ``depths [C, N]`` (camera z of every
        Gaussian), ``conics [C, N, 3]``, ``opacities [C, N]`` (compensated), ``width``,
        ``height``, ``n_cameras``, ``n_batches`` (1), ``tile_size``, ``tile_width``,
        ``tile_height``, ``camera_ids``/``gaussian_ids``/``batch_ids`` (None: unpacked
        layout) and ``cpu_stats`` (intersection/block counters). Entries of culled
        Gaussians are 0 (gsplat leaves them undefined).
    """
    cfg = config if config is not None else RasterConfig()
    cfg.stats.clear()
    N = means.shape[0]
    C = viewmats.shape[0]
    dtype, dev = means.dtype, means.device
    antialiased = rasterize_mode == "antialiased"
    projs = [
        _project_camera(
            means, quats, scales, opacities, viewmats[c], Ks[c], width, height, near_plane,
            far_plane, eps2d, radius_clip, antialiased,
        )  # fmt: skip
        for c in range(C)
    ]
    cam_idx = torch.cat(
        [torch.full((p.gids.numel(),), c, dtype=torch.int64, device=dev) for c, p in
         enumerate(projs)]
    )  # fmt: skip
    gid_all = torch.cat([p.gids for p in projs])
    # info tensors in gsplat's unpacked [C, N, ...] layout; means2d is upstream of render
    means2d_info = torch.zeros((C, N, 2), dtype=dtype, device=dev).index_put(
        (cam_idx, gid_all), torch.cat([p.means2d for p in projs])
    )
    conics_info = torch.zeros((C, N, 3), dtype=dtype, device=dev).index_put(
        (cam_idx, gid_all), torch.cat([p.conics for p in projs])
    )
    opac_info = torch.zeros((C, N), dtype=dtype, device=dev).index_put(
        (cam_idx, gid_all), torch.cat([p.opacities for p in projs])
    )
    radii_info = torch.zeros((C, N, 2), dtype=torch.int32, device=dev)
    radii_info[cam_idx, gid_all] = torch.cat([p.radii for p in projs])
    depths_info = torch.stack([p.depths_all for p in projs])

    composite = _compositor(cfg, dev)
    renders, alphas = [], []
    for c, p in enumerate(projs):
        gids = p.gids
        m2d = means2d_info[c, gids]
        if sh_degree is None:
            feats = colors[gids] if colors.dim() == 2 else colors[c, gids]
        else:
            Rw = viewmats[c, :3, :3]
            campos = -Rw.T @ viewmats[c, :3, 3]  # camera centre in world coordinates
            shs = colors if colors.dim() == 3 else colors[c]
            if 2 * gids.numel() >= N:
                # most Gaussians visible: evaluate all, avoiding a [V, K, 3] gathered copy
                feats = eval_sh(sh_degree, means - campos, shs)[gids]
            else:
                feats = eval_sh(sh_degree, means[gids] - campos, shs[gids])
            feats = torch.clamp_min(feats + 0.5, 0.0)
        bg = backgrounds[c] if backgrounds is not None else None
        if render_mode in ("RGB+D", "RGB+ED"):
            feats = torch.cat([feats, p.depths[:, None]], dim=-1)
            if bg is not None:
                bg = torch.cat([bg, bg.new_zeros(1)])
        elif render_mode in ("D", "ED"):
            feats = p.depths[:, None]
            bg = None
        img, alpha = composite.apply(
            m2d, p.conics, feats, p.opacities, p.radii, width, height, cfg
        )
        if bg is not None:
            img = img + (1.0 - alpha) * bg
        renders.append(img)
        alphas.append(alpha)
    render_colors = torch.stack(renders)
    render_alphas = torch.stack(alphas)
    if render_mode in ("ED", "RGB+ED"):
        render_colors = torch.cat(
            [
                render_colors[..., :-1],
                render_colors[..., -1:] / render_alphas.clamp(min=1e-10),
            ],
            dim=-1,
        )
    ts = cfg.tile_size
    info = {
        "batch_ids": None,
        "camera_ids": None,
        "gaussian_ids": None,
        "radii": radii_info,
        "means2d": means2d_info,
        "depths": depths_info,
        "conics": conics_info,
        "opacities": opac_info,
        "width": width,
        "height": height,
        "tile_size": ts,
        "tile_width": (width + ts - 1) // ts,
        "tile_height": (height + ts - 1) // ts,
        "n_batches": 1,
        "n_cameras": C,
        "cpu_stats": dict(cfg.stats),
    }
    return render_colors, render_alphas, info
