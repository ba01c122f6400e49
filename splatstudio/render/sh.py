"""Real spherical harmonics for view-dependent Gaussian colours.

The basis, ordering, signs and constants are the ones used by the reference 3D Gaussian
Splatting code (Kerbl et al. 2023, ``utils/sh_utils.py``) and by gsplat
(Ye et al. 2024, ``gsplat.cuda._torch_impl._eval_sh_bases_fast`` /
``spherical_harmonics``), which follow P.-P. Sloan, "Efficient Spherical Harmonic
Evaluation", JCGT 2013. Basis index ``k = l * (l + 1) + m`` for band ``l`` and order
``m in [-l, l]``; for a unit direction ``(x, y, z)``::

    k = 0           C0
    k = 1, 2, 3     -C1 y,  C1 z,  -C1 x
    k = 4 .. 8      degree 2 (xy, yz, 3z^2 - 1, xz, x^2 - y^2)
    k = 9 .. 15     degree 3
    k = 16 .. 24    degree 4 (gsplat supports it; the 3DGS reference stops at 3)

The basis is orthonormal over the unit sphere (``tests/unit/test_render_sh.py`` checks
this with a Gauss-Legendre quadrature). Nothing here adds the ``+0.5`` offset or the
clamp at zero that 3DGS/gsplat apply to the evaluated colour; the rasterizer does that.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "MAX_SH_DEGREE",
    "SH_C0",
    "SH_C1",
    "SH_C2",
    "SH_C3",
    "eval_sh",
    "num_sh_bases",
    "rgb_to_sh",
    "sh_basis",
    "sh_degree_from_bases",
    "sh_to_rgb",
]

#: Highest supported SH degree (gsplat 1.5.3 supports 0..4; 3DGS uses 0..3).
MAX_SH_DEGREE = 4

#: Standard 3DGS constants (Kerbl et al. 2023, ``utils/sh_utils.py``).
SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (
    1.0925484305920792,
    -1.0925484305920792,
    0.31539156525252005,
    -1.0925484305920792,
    0.5462742152960396,
)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def num_sh_bases(degree: int) -> int:
    """Number of SH basis functions ``(degree + 1) ** 2`` for ``degree`` in 0..4.

    Raises:
        ValueError: if ``degree`` is not an integer in ``[0, MAX_SH_DEGREE]``.
    """
    if isinstance(degree, bool) or not isinstance(degree, int):
        raise ValueError(f"SH degree must be an int, got {degree!r}")
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"SH degree must be in [0, {MAX_SH_DEGREE}], got {degree}")
    return (degree + 1) ** 2


def sh_degree_from_bases(n_bases: int) -> int:
    """Inverse of :func:`num_sh_bases`: 1 -> 0, 4 -> 1, 9 -> 2, 16 -> 3, 25 -> 4.

    Raises:
        ValueError: if ``n_bases`` is not a supported perfect square.
    """
    for d in range(MAX_SH_DEGREE + 1):
        if (d + 1) ** 2 == n_bases:
            return d
    raise ValueError(f"{n_bases} is not (d + 1)^2 for a supported SH degree d")


def sh_basis(degree: int, dirs: Tensor) -> Tensor:
    """Evaluate the real SH basis functions up to ``degree``.

    Args:
        degree: SH degree, 0..4.
        dirs: ``[..., 3]`` view directions in any frame (the same frame the SH
            coefficients were fitted in; 3DGS/gsplat use world coordinates and the
            direction from the camera centre to the Gaussian mean). They need not be
            unit length: they are normalised here (a zero vector yields only the DC term).

    Returns:
        ``[..., (degree + 1) ** 2]`` basis values, same dtype/device as ``dirs``;
        differentiable with respect to ``dirs``.

    Raises:
        ValueError: bad degree or ``dirs`` without a trailing dimension of 3.

    Source: Kerbl et al. 2023 (3DGS) ``eval_sh``; gsplat (Ye et al. 2024)
    ``_eval_sh_bases_fast``; Sloan, JCGT 2013.
    """
    n = num_sh_bases(degree)
    if dirs.shape[-1:] != (3,):
        raise ValueError(f"dirs must have shape [..., 3], got {tuple(dirs.shape)}")
    c0 = torch.full_like(dirs[..., 0], SH_C0)
    if degree == 0:
        return c0[..., None]
    d = F.normalize(dirs, p=2, dim=-1)
    x, y, z = d.unbind(-1)
    out = [c0, -SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        xy, yz, xz = x * y, y * z, x * z
        out += [
            SH_C2[0] * xy,
            SH_C2[1] * yz,
            SH_C2[2] * (2.0 * zz - xx - yy),
            SH_C2[3] * xz,
            SH_C2[4] * (xx - yy),
        ]
    if degree >= 3:
        out += [
            SH_C3[0] * y * (3.0 * xx - yy),
            SH_C3[1] * xy * z,
            SH_C3[2] * y * (4.0 * zz - xx - yy),
            SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy),
            SH_C3[4] * x * (4.0 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy),
            SH_C3[6] * x * (xx - 3.0 * yy),
        ]
    if degree >= 4:
        # Sloan 2013 recurrences, as in gsplat's _eval_sh_bases_fast (unit vectors).
        fc1, fs1 = xx - yy, 2.0 * xy
        fc2, fs2 = x * fc1 - y * fs1, x * fs1 + y * fc1
        fc3, fs3 = x * fc2 - y * fs2, x * fs2 + y * fc2
        p6 = 0.9461746957575601 * zz - 0.3153915652525201
        p12 = z * (1.865881662950577 * zz - 1.119528997770346)
        tmp_d = z * (-4.683325804901025 * zz + 2.007139630671868)
        tmp_c = 3.31161143515146 * zz - 0.47308734787878
        tmp_b = -1.770130769779931 * z
        tmp_a = 0.6258357354491763
        out += [
            tmp_a * fs3,  # 16
            tmp_b * fs2,  # 17
            tmp_c * fs1,  # 18
            tmp_d * y,  # 19
            1.984313483298443 * z * p12 - 1.006230589874905 * p6,  # 20
            tmp_d * x,  # 21
            tmp_c * fc1,  # 22
            tmp_b * fc2,  # 23
            tmp_a * fc3,  # 24
        ]
    assert len(out) == n
    return torch.stack(out, dim=-1)


def eval_sh(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """Evaluate SH colours ``sum_k basis_k(dir) * coeffs[k]`` (no +0.5, no clamp).

    Equivalent to ``gsplat.spherical_harmonics(degree, dirs, coeffs)``.

    Args:
        degree: SH degree actually used, 0..4 (may be lower than what ``coeffs`` holds,
            e.g. for progressive SH training; higher coefficients are ignored).
        dirs: ``[..., 3]`` directions (normalised inside), see :func:`sh_basis`.
        coeffs: ``[..., K, C]`` coefficients with ``K >= (degree + 1) ** 2`` (usually C = 3,
            RGB); broadcastable against ``dirs`` in the leading dimensions.

    Returns:
        ``[..., C]`` evaluated values; differentiable w.r.t. ``dirs`` and ``coeffs``.

    Raises:
        ValueError: bad degree, too few coefficients, or bad shapes.
    """
    n = num_sh_bases(degree)
    if coeffs.dim() < 2 or coeffs.shape[-2] < n:
        raise ValueError(
            f"coeffs must be [..., K, C] with K >= {n} for degree {degree}, "
            f"got {tuple(coeffs.shape)}"
        )
    basis = sh_basis(degree, dirs)  # [..., n]
    co = coeffs[..., :n, :]
    if basis.shape[:-1] == co.shape[:-2]:
        # batched (1 x n) @ (n x C): no [..., n, C] temporary (matters for 1M Gaussians)
        lead = basis.shape[:-1]
        out = torch.bmm(basis.reshape(-1, 1, n), co.reshape(-1, n, co.shape[-1]))
        return out.reshape(lead + (co.shape[-1],))
    return (basis[..., :, None] * co).sum(dim=-2)


def rgb_to_sh(rgb: Tensor) -> Tensor:
    """Convert a colour in [0, 1] to the DC SH coefficient, ``(rgb - 0.5) / C0``.

    Inverse of :func:`sh_to_rgb`; same convention as 3DGS ``RGB2SH``. Any shape.
    """
    return (rgb - 0.5) / SH_C0


def sh_to_rgb(sh_dc: Tensor) -> Tensor:
    """Convert the DC SH coefficient to a colour, ``sh_dc * C0 + 0.5`` (3DGS ``SH2RGB``)."""
    return sh_dc * SH_C0 + 0.5
