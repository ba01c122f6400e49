"""Gaussians as the viewer's shaders want them, and the back-to-front sort (NumPy only)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...splats.model import Splats, quat_to_rotation

#: Gaussians per texture row (4 RGBA32F texels each); matches splat.vert.
PER_ROW = 1024


@dataclass
class PackedGaussians:
    """GPU-ready gaussians.

    Attributes:
        texture: ``[rows, 4 * PER_ROW, 4] float32``, per gaussian 4 texels:
            (mean xyz, opacity), (cov xx, xy, xz, yy), (cov yz, zz, 0, 0), (r, g, b, 0);
            means in world units, covariance in world units squared, opacity and colour
            in [0, 1].
        means: ``[N, 3] float32`` for sorting; n: number of gaussians.
        center: ``[3]`` robust centre (middle of the 2-98 percentile box);
        radius: 95th percentile distance to it.
        antialiased: opacities need the 2D-filter compensation (gsplat's antialiased
            mode).
    """

    texture: np.ndarray
    means: np.ndarray
    n: int
    center: np.ndarray
    radius: float
    antialiased: bool


def covariances(splats: Splats) -> np.ndarray:
    """3D covariances ``R S S^T R^T``, ``[N, 3, 3] float32`` (world units squared)."""
    rot = quat_to_rotation(splats.normalized_quats())  # [N,3,3] float64
    m = rot * splats.linear_scales()[:, None, :].astype(np.float64)
    return np.einsum("nij,nkj->nik", m, m).astype(np.float32)


def pack_gaussians(splats: Splats) -> PackedGaussians:
    """Pack `splats` (base colour only: SH degree 0) into the viewer's float texture."""
    n = splats.n
    rows = max(1, -(-n // PER_ROW))
    tex = np.zeros((rows * PER_ROW, 4, 4), dtype=np.float32)
    cov = covariances(splats)
    tex[:n, 0, :3] = splats.means
    tex[:n, 0, 3] = splats.alphas()
    tex[:n, 1] = np.stack([cov[:, 0, 0], cov[:, 0, 1], cov[:, 0, 2], cov[:, 1, 1]], axis=1)
    tex[:n, 2, 0] = cov[:, 1, 2]
    tex[:n, 2, 1] = cov[:, 2, 2]
    tex[:n, 3, :3] = np.clip(splats.rgb(), 0.0, 1.0)
    means = np.ascontiguousarray(splats.means, dtype=np.float32)
    finite = np.isfinite(means).all(axis=1)
    if finite.any():
        lo, hi = np.percentile(means[finite], [2.0, 98.0], axis=0)
        center = (0.5 * (lo + hi)).astype(np.float64)
        radius = float(np.percentile(np.linalg.norm(means[finite] - center, axis=1), 95))
    else:
        center, radius = np.zeros(3), 1.0
    return PackedGaussians(
        tex.reshape(rows, PER_ROW * 4, 4),
        means,
        n,
        center,
        radius if radius > 0 else 1.0,
        bool(getattr(splats, "antialiased", False)),
    )


def back_to_front(means: np.ndarray, viewmat: np.ndarray) -> np.ndarray:
    """Indices ``[N] uint32`` of `means` ``[N, 3]`` ordered far to near along the view axis
    (camera z of the OpenCV world-to-camera `viewmat` ``[4, 4]``)."""
    depth = means @ viewmat[2, :3].astype(np.float32)
    return np.argsort(-depth).astype(np.uint32)
