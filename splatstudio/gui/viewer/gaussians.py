"""Gaussians as the viewer's shaders want them, and the back-to-front sort (NumPy only).

Two textures per scene:

* the base texture, RGBA32F, 4 texels (64 bytes) per gaussian: mean, opacity, 3D covariance and
  the DC colour ``0.5 + SH_C0 * sh0`` (not clamped: the shader adds the higher bands first);
* for files with SH degree 1..3 only, the SH texture, RGBA16F (half floats), holding the
  file's higher-order coefficients ``shN [N, K, 3]`` flattened coefficient-major
  (``k * 3 + channel``) and padded to whole texels: ``ceil(3 K / 4)`` = 3, 6 or 12 texels,
  i.e. 24, 48 or 96 bytes per gaussian for degree 1, 2 or 3. Half floats keep 11 significant
  bits (relative error <= 2**-11 on each coefficient; for degree-3 coefficients of typical
  trained scenes, |shN| < 1, that is at most ~0.5/255 on a colour) and halve the memory: a
  1M-gaussian SH3 scene takes 64 + 96 = 160 MB of texture instead of 256 MB in float32.
  SH0 files get no SH texture (the cheap path).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...quaternion import quat_to_rotmat
from ...splats.model import Splats

#: Gaussians per texture row (4 RGBA32F texels each); matches splat.vert.
PER_ROW = 1024
#: Width in texels of the SH texture (divisible by 3, 6 and 12 so that a gaussian's
#: coefficients never straddle two rows).
SH_ROW_TEXELS = 3072
#: Texels per gaussian in the SH texture, by SH degree (``ceil(3 K / 4)``, K = 3, 8, 15).
SH_TEXELS = {1: 3, 2: 6, 3: 12}
#: Largest magnitude a half float holds; coefficients beyond are clipped to it.
HALF_MAX = 65504.0


@dataclass
class PackedGaussians:
    """GPU-ready gaussians.

    Attributes:
        texture: ``[rows, 4 * PER_ROW, 4] float32``, per gaussian 4 texels:
            (mean xyz, opacity), (cov xx, xy, xz, yy), (cov yz, zz, 0, 0), (r, g, b, 0);
            means in world units, covariance in world units squared, opacity in [0, 1],
            rgb the DC colour ``0.5 + SH_C0 * sh0`` (unclamped; the shader clamps at 0
            after adding the higher bands, as gsplat).
        means: ``[N, 3] float32`` for sorting; n: number of gaussians.
        sh_degree: SH degree of the file (0..3); 0 means no SH texture.
        sh_texture: ``[rows, SH_ROW_TEXELS, 4] float16`` or None (degree 0): gaussian ``i``
            occupies texels ``(i % per_row) * T .. + T - 1`` of row ``i // per_row``, with
            ``T = SH_TEXELS[sh_degree]`` and ``per_row = SH_ROW_TEXELS // T``; its texels
            hold ``shN[i].reshape(-1)`` (coefficient k of band 1..3 in the INRIA/gsplat
            order, channel c at ``3 k + c``), zero padded.
        center, radius: ``[3]`` and world units, the sphere the camera frames
            (:func:`robust_sphere`).
        antialiased: opacities need the 2D-filter compensation (gsplat's antialiased
            mode).
    """

    texture: np.ndarray
    means: np.ndarray
    n: int
    center: np.ndarray
    radius: float
    antialiased: bool
    sh_degree: int = 0
    sh_texture: np.ndarray | None = None

    @property
    def sh_texels(self) -> int:
        """Texels per gaussian in the SH texture (0 without one)."""
        return SH_TEXELS.get(self.sh_degree, 0)

    @property
    def sh_per_row(self) -> int:
        """Gaussians per row of the SH texture (0 without one)."""
        return SH_ROW_TEXELS // self.sh_texels if self.sh_texels else 0

    @property
    def bytes_per_gaussian(self) -> int:
        """Texture memory per gaussian in bytes: 64 for the base texture, plus 24 / 48 / 96
        (half floats) for SH degree 1 / 2 / 3."""
        return 64 + 8 * self.sh_texels


def robust_sphere(means: np.ndarray, scales: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """A sphere around where a scene's detail is, for the automatic framing.

    A trained scene puts its small gaussians where the cameras saw detail, and covers the far
    background (sky, distant buildings) with fewer, large ones -- on the demo capture most of
    the gaussians are 100-300 m away while the walk is 10 m long. So the sphere is fitted to
    the finest quarter of the gaussians (largest standard deviation ``max(exp(scales))`` at
    most its 25th percentile; all of them without `scales`): centre = middle of their 5-95
    percentile box, radius = 95th percentile of their distance to it. Percentiles, never the
    extreme gaussians. Non-finite rows are ignored.

    Args:
        means: ``[N, 3]`` centres, world units; scales: ``[N, 3]`` log standard deviations.

    Returns:
        ``(center [3] float64, radius > 0)``; ``(0, 1)`` without finite centres.
    """
    m = np.asarray(means, dtype=np.float32)
    ok = np.isfinite(m).all(axis=1)
    if scales is not None and len(scales) == len(m):
        size = np.max(np.asarray(scales, dtype=np.float32), axis=1)
        ok &= np.isfinite(size)
        if ok.sum() >= 8:
            ok &= size <= np.percentile(size[ok], 25.0)
    if not ok.any():
        return np.zeros(3), 1.0
    pts = m[ok]
    lo, hi = np.percentile(pts, [5.0, 95.0], axis=0)
    center = (0.5 * (lo + hi)).astype(np.float64)
    radius = float(np.percentile(np.linalg.norm(pts - center, axis=1), 95))
    return center, radius if radius > 0 else 1.0


def covariances(splats: Splats) -> np.ndarray:
    """3D covariances ``R S S^T R^T``, ``[N, 3, 3] float32`` (world units squared)."""
    rot = quat_to_rotmat(splats.normalized_quats())  # [N,3,3] float64
    m = rot * splats.linear_scales()[:, None, :].astype(np.float64)
    return np.einsum("nij,nkj->nik", m, m).astype(np.float32)


def pack_sh(shn: np.ndarray) -> np.ndarray:
    """Pack higher-order SH coefficients ``shN [N, K, 3]`` (K = 3, 8 or 15) into the SH
    texture, ``[rows, SH_ROW_TEXELS, 4] float16`` (layout in :class:`PackedGaussians`).

    Raises:
        ValueError: K is not 3, 8 or 15.
    """
    n, k = shn.shape[0], shn.shape[1]
    degree = {3: 1, 8: 2, 15: 3}.get(k)
    if degree is None or shn.shape[2:] != (3,):
        raise ValueError(f"shN must be [N, 3|8|15, 3], got {shn.shape}")
    t = SH_TEXELS[degree]
    per_row = SH_ROW_TEXELS // t
    rows = max(1, -(-n // per_row))
    flat = np.zeros((rows * per_row, 4 * t), dtype=np.float16)
    flat[:n, : 3 * k] = np.clip(shn.reshape(n, 3 * k), -HALF_MAX, HALF_MAX)
    return flat.reshape(rows, SH_ROW_TEXELS, 4)


def pack_gaussians(splats: Splats) -> PackedGaussians:
    """Pack `splats` into the viewer's textures: the base texture (geometry, opacity, DC
    colour) and, for SH degree 1..3, the half-float SH texture (see :class:`PackedGaussians`).
    """
    n = splats.n
    rows = max(1, -(-n // PER_ROW))
    tex = np.zeros((rows * PER_ROW, 4, 4), dtype=np.float32)
    cov = covariances(splats)
    tex[:n, 0, :3] = splats.means
    tex[:n, 0, 3] = splats.alphas()
    tex[:n, 1] = np.stack([cov[:, 0, 0], cov[:, 0, 1], cov[:, 0, 2], cov[:, 1, 1]], axis=1)
    tex[:n, 2, 0] = cov[:, 1, 2]
    tex[:n, 2, 1] = cov[:, 2, 2]
    tex[:n, 3, :3] = splats.rgb()
    degree = int(splats.sh_degree)
    sh_tex = pack_sh(splats.shN) if degree > 0 and n > 0 else None
    means = np.ascontiguousarray(splats.means, dtype=np.float32)
    center, radius = robust_sphere(means, splats.scales)
    return PackedGaussians(
        tex.reshape(rows, PER_ROW * 4, 4),
        means,
        n,
        center,
        radius if radius > 0 else 1.0,
        bool(getattr(splats, "antialiased", False)),
        degree if sh_tex is not None else 0,
        sh_tex,
    )


def back_to_front(means: np.ndarray, viewmat: np.ndarray) -> np.ndarray:
    """Indices ``[N] uint32`` of `means` ``[N, 3]`` ordered far to near along the view axis
    (camera z of the OpenCV world-to-camera `viewmat` ``[4, 4]``)."""
    depth = means @ viewmat[2, :3].astype(np.float32)
    return np.argsort(-depth).astype(np.uint32)
