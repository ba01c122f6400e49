"""Measuring on a splat: the surface point under a pixel, distances, ENU and WGS84 coordinates.

Picking (:func:`pick_ray`) finds where a viewing ray meets the splat's surface, without a
depth buffer (the viewer's OpenGL splats are blended without one): every gaussian is taken
at its point of maximum response along the ray -- the 3D Gaussian ray-tracing estimate of
Moenne-Loccoz et al. 2024 ("3D Gaussian Ray Tracing", eq. 8): for a ray ``o + t d`` and a
gaussian of centre ``mu``, covariance ``Sigma`` and opacity ``a``,
``t* = d^T Sigma^-1 (mu - o) / (d^T Sigma^-1 d)`` and ``alpha = a exp(-D^2 / 2)`` with
``D^2`` the Mahalanobis distance from ``mu`` to the ray. The gaussians hit (alpha >= 1/255,
as the rasterizers) are composited front to back by ``t*`` and the surface is the ``t*`` at
which the accumulated opacity first reaches one half: the *median depth* that gsplat and
2DGS report for a pixel (robust to the half-transparent floaters in front, unlike the
alpha-weighted mean depth).

Coordinates: world units of the splat; metric -- metres, ENU about the project origin -- only
for a georeferenced project (:func:`splatstudio.pipeline.capture_path.georef_state`), which
the caller decides, and converts ENU to WGS84 with :func:`splatstudio.geo.enu.enu_to_geodetic`
(this module stays below :mod:`splatstudio.geo` in the layers).

No Qt, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..quaternion import quat_to_rotmat
from .model import Splats, sigmoid

__all__ = ["Measurement", "measure", "pick_ray"]

#: Contributions below this opacity are skipped, as in the rasterizers.
MIN_ALPHA = 1.0 / 255.0
#: The rasterizers' screen-space low-pass, px^2 (gsplat ``eps2d``), for ``pixel_size``.
EPS2D_PX2 = 0.3


def pick_ray(
    splats: Splats,
    origin: np.ndarray,
    direction: np.ndarray,
    *,
    alive: np.ndarray | None = None,
    threshold: float = 0.5,
    near: float = 0.0,
    pixel_size: float = 0.0,
) -> float | None:
    """Distance along a ray to the splat's surface (median depth; see the module docstring).

    Args:
        splats: the scene (means, quats wxyz, log-scales, opacity logits).
        origin: ``[3]`` ray origin; direction: ``[3]`` (normalised here), world frame.
        alive: optional ``[N] bool``: only these gaussians (the viewer's deleted ones are not).
        threshold: accumulated opacity that counts as the surface (0, 1).
        near: ignore hits closer than this, world units.
        pixel_size: angular size of one pixel of the view, radians (``1 / focal_px``); 0 =
            an infinitely thin ray. With it every gaussian is widened by the rasterizers'
            screen-space low-pass (0.3 px^2, gsplat's ``eps2d``) taken at its distance ``t``
            (an isotropic variance ``0.3 (t * pixel_size)^2``), so the pick sees the surface
            the view draws: tiny gaussians a thin ray slips between still cover their pixel.

    Returns:
        ``t`` in world units (the point is ``origin + t * direction``), or None when the ray
        gathers less than `threshold` opacity (it hits nothing).

    Cost: one pass over the N centres (distance to the ray, 3 sigma of the largest axis),
    then the exact response for the few gaussians near the ray.
    """
    o = np.asarray(origin, dtype=np.float64)
    d = np.asarray(direction, dtype=np.float64)
    d = d / np.linalg.norm(d)
    m = np.asarray(splats.means, dtype=np.float32)
    rel = m - o.astype(np.float32)
    tc = rel @ d.astype(np.float32)
    perp2 = np.einsum("ij,ij->i", rel, rel) - tc * tc
    blur = EPS2D_PX2 * (np.maximum(tc, 0.0) * np.float32(pixel_size)) ** 2  # [N] world^2
    reach2 = 9.0 * (np.exp(2.0 * np.max(splats.scales, axis=1)) + blur)
    cand = (perp2 <= reach2) & (tc + np.sqrt(reach2) > near)
    if alive is not None:
        cand &= np.asarray(alive, dtype=bool)
    idx = np.flatnonzero(cand)
    if len(idx) == 0:
        return None
    r = quat_to_rotmat(splats.normalized_quats()[idx])  # [k, 3, 3] float64
    inv_var = 1.0 / (np.exp(2.0 * splats.scales[idx].astype(np.float64))
                     + blur[idx, None].astype(np.float64))  # [k, 3], 1 / (s^2 + blur)
    # Sigma^-1 = R diag(1/s^2) R^T: work in each gaussian's local frame (R^T x)
    dl = np.einsum("kji,j->ki", r, d)  # R^T d
    ml = np.einsum("kji,kj->ki", r, rel[idx].astype(np.float64))  # R^T (mu - o)
    a = np.sum(dl * dl * inv_var, axis=1)  # d^T Sigma^-1 d
    b = np.sum(dl * ml * inv_var, axis=1)  # d^T Sigma^-1 (mu - o)
    c = np.sum(ml * ml * inv_var, axis=1)  # (mu - o)^T Sigma^-1 (mu - o)
    t_star = b / a
    d2 = np.maximum(c - b * b / a, 0.0)
    alpha = np.minimum(sigmoid(splats.opacities[idx]).astype(np.float64) * np.exp(-0.5 * d2),
                       0.999)
    hit = (alpha >= MIN_ALPHA) & (t_star > near)
    if not hit.any():
        return None
    t_star, alpha = t_star[hit], alpha[hit]
    order = np.argsort(t_star, kind="stable")
    t_star, alpha = t_star[order], alpha[order]
    acc = 1.0 - np.cumprod(1.0 - alpha)
    k = int(np.searchsorted(acc, threshold))
    return float(t_star[k]) if k < len(acc) else None


@dataclass(frozen=True)
class Measurement:
    """Between two picked points ``a`` and ``b`` (``[3]`` world units).

    Attributes:
        distance: ``|b - a|``; horizontal: its part in the plane normal to `up`;
        height: ``(b - a) . up`` (positive when b is higher); all in world units, metres when
        the splat is georeferenced (`metric`).
    """

    a: np.ndarray
    b: np.ndarray
    distance: float
    horizontal: float
    height: float
    metric: bool


def measure(a: np.ndarray, b: np.ndarray, *, up: np.ndarray = (0.0, 0.0, 1.0),
            metric: bool = False) -> Measurement:
    """Distance, horizontal distance and height difference from `a` to `b` (``[3]``), with
    `up` ``[3]`` the world's up axis (z for ENU).

    Raises:
        ValueError: `up` is not a non-zero finite ``[3]`` vector.
    """
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    u = np.asarray(up, dtype=np.float64).reshape(-1)
    n = float(np.linalg.norm(u)) if u.shape == (3,) else 0.0
    if not (np.isfinite(n) and n > 0):
        raise ValueError(f"up must be a non-zero [3] vector, got {up!r}")
    u = u / n
    v = b64 - a64
    h = float(v @ u)
    return Measurement(a64, b64, float(np.linalg.norm(v)),
                       float(np.linalg.norm(v - h * u)), h, bool(metric))
