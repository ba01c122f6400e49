"""Rotation matrices <-> unit quaternions (wxyz), in NumPy: the one converter pair.

NumPy twins of gsplat's converters, named as gsplat names them (``quat_to_rotmat`` in
``gsplat/cuda/_torch_impl.py`` and the CUDA ``quat.cuh``); the differentiable torch
:func:`splatstudio.render.torch_impl.quat_to_rotmat` is their torch twin and uses the same
matrix. Quaternions are ``(w, x, y, z)`` (scalar first, gsplat's and COLMAP's order) and act
as ``p' = R p`` on column vectors (Hamilton convention).

This module sits at the bottom of the import layers (it imports NumPy only), so the splat
model (:mod:`splatstudio.splats`), the renderer (:mod:`splatstudio.render`) and the
panorama rig (:mod:`splatstudio.pano`), which must not import each other, all use it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["quat_to_rotmat", "rotmat_to_quat"]


def quat_to_rotmat(quats: np.ndarray) -> np.ndarray:
    """Rotation matrices of (not necessarily unit) wxyz quaternions.

    Args:
        quats: ``[..., 4]`` quaternions ``(w, x, y, z)``, any float dtype; normalised here
            (a zero quaternion gives NaNs).

    Returns:
        ``[..., 3, 3]`` float64 rotation matrices; ``q`` and ``-q`` give the same matrix.

    Source: the unit-quaternion rotation matrix as gsplat writes it (``quat_to_rotmat`` of
    ``gsplat/cuda/_torch_impl.py``, gsplat's "Data Conventions" page; 3DGS
    ``build_rotation``).
    """
    q = np.asarray(quats, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=-2,
    )


def rotmat_to_quat(rotmats: np.ndarray) -> np.ndarray:
    """Unit wxyz quaternions of proper rotation matrices, with ``w >= 0``.

    The inverse of :func:`quat_to_rotmat` up to the sign of ``q``: of ``q`` and ``-q`` the one
    with a non-negative scalar part is returned (the rig file ``rig.json`` and COLMAP's text
    models are written with it; quaternions of gaussians do not depend on the sign).

    Args:
        rotmats: ``[..., 3, 3]`` rotation matrices (orthonormal, determinant +1), any float
            dtype. Nearly orthonormal input (float32 round-off) gives the quaternion of a
            nearby rotation; the result is normalised.

    Returns:
        ``[..., 4]`` float64 unit quaternions ``(w, x, y, z)``, ``w >= 0``.

    Raises:
        ValueError: `rotmats` is not ``[..., 3, 3]``.

    Source: Shepperd's method (S. W. Shepperd, "Quaternion from rotation matrix", J.
    Guidance and Control 1(3), 1978): of ``4 w^2 = 1 + tr R`` and ``4 x_i^2 = 1 + 2 R_ii -
    tr R`` the branch with the largest square (trace first, then the diagonal's largest
    entry) avoids dividing by a small number.
    """
    r = np.asarray(rotmats, dtype=np.float64)
    if r.ndim < 2 or r.shape[-2:] != (3, 3):
        raise ValueError(f"rotation matrices must have shape [..., 3, 3], got {r.shape}")
    m00, m01, m02 = r[..., 0, 0], r[..., 0, 1], r[..., 0, 2]
    m10, m11, m12 = r[..., 1, 0], r[..., 1, 1], r[..., 1, 2]
    m20, m21, m22 = r[..., 2, 0], r[..., 2, 1], r[..., 2, 2]
    tr = m00 + m11 + m22
    with np.errstate(invalid="ignore", divide="ignore"):  # the branches not taken
        s0 = 2.0 * np.sqrt(np.maximum(tr + 1.0, 0.0))
        s1 = 2.0 * np.sqrt(np.maximum(1.0 + m00 - m11 - m22, 0.0))
        s2 = 2.0 * np.sqrt(np.maximum(1.0 + m11 - m00 - m22, 0.0))
        s3 = 2.0 * np.sqrt(np.maximum(1.0 + m22 - m00 - m11, 0.0))
        branches = [
            np.stack([0.25 * s0, (m21 - m12) / s0, (m02 - m20) / s0, (m10 - m01) / s0], -1),
            np.stack([(m21 - m12) / s1, 0.25 * s1, (m01 + m10) / s1, (m02 + m20) / s1], -1),
            np.stack([(m02 - m20) / s2, (m01 + m10) / s2, 0.25 * s2, (m12 + m21) / s2], -1),
            np.stack([(m10 - m01) / s3, (m02 + m20) / s3, (m12 + m21) / s3, 0.25 * s3], -1),
        ]
    use_trace = tr > 0
    use_x = ~use_trace & (m00 > m11) & (m00 > m22)
    use_y = ~use_trace & ~use_x & (m11 > m22)
    q = np.select([use_trace[..., None], use_x[..., None], use_y[..., None]], branches[:3],
                  branches[3])  # fmt: skip
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., :1] < 0, -q, q)
