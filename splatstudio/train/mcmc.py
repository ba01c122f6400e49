"""MCMC densification (``gsplat.strategy.MCMCStrategy``) on any device.

gsplat's MCMC strategy (Kheradmand et al. 2024, "3D Gaussian Splatting as Markov Chain Monte
Carlo", arXiv:2404.09591) is torch code except for two calls into gsplat's CUDA kernels:
``compute_relocation`` (the paper's Eq. 9: opacity and scale of the N Gaussians a dead one is
split into, so that the rendered density is preserved) and ``quat_scale_to_covar_preci`` (the
covariances that shape the position noise). :func:`enable_cpu_mcmc` puts device-dispatching
wrappers in their place inside ``gsplat.strategy.ops``: CUDA tensors still go to gsplat's
kernels, CPU tensors to the torch implementations below. Nothing else of gsplat changes.
"""

from __future__ import annotations

import threading

import torch
from torch import Tensor

_LOCK = threading.Lock()
_ENABLED = False


def relocation_torch(
    opacities: Tensor, scales: Tensor, ratios: Tensor, binoms: Tensor
) -> tuple[Tensor, Tensor]:
    """Opacity and scales of Gaussians after splitting each into `ratios` copies (Eq. 9).

    For a Gaussian of opacity o split into n copies: o' = 1 - (1 - o)^(1/n), and the scales are
    multiplied by o / sum_{i=1..n} sum_{k=0..i-1} C(i-1, k) (-1)^k o'^(k+1) / sqrt(k+1), so that
    the sum of the copies renders like the original (the paper's Eq. 9; gsplat's
    ``relocation`` kernel computes the same sums).

    Args:
        opacities: [N] in (0, 1).
        scales: [N, 3] world units (not log).
        ratios: [N] number of copies per Gaussian; clamped to [1, n_max] (in place, as gsplat).
        binoms: [n_max, n_max] binomial coefficients C(n, k).

    Returns:
        (new_opacities [N], new_scales [N, 3]), the dtype of `opacities`.
    """
    n_max = binoms.shape[0]
    ratios.clamp_(min=1, max=n_max)
    n = ratios.to(torch.long)
    dtype = opacities.dtype
    new_op = 1.0 - torch.pow(1.0 - opacities, 1.0 / n.to(dtype))
    # The double sum over i = 1..n and k = 0..i-1 equals sum_k c_k(n) * term_k with
    # c_k(n) = sum_{i=k+1..n} C(i-1, k): a cumulative sum of the binomial table's columns.
    b = binoms.to(dtype)
    cum = torch.cumsum(b, dim=0)                      # cum[m, k] = sum_{j<=m} C(j, k)
    coeff = cum[n - 1]                                # [N, n_max]: sum_{i=1..n} C(i-1, k)
    k = torch.arange(n_max, dtype=dtype, device=opacities.device)
    sign = torch.where(k.to(torch.long) % 2 == 0, 1.0, -1.0).to(dtype)
    term = sign / torch.sqrt(k + 1.0) * torch.pow(new_op[:, None], k + 1.0)
    denom = (coeff * term).sum(1)
    new_scales = (opacities / denom)[:, None] * scales
    return new_op, new_scales


def quat_scale_to_covar_torch(
    quats: Tensor, scales: Tensor, compute_covar: bool = True, compute_preci: bool = True,
    triu: bool = False,
) -> tuple[Tensor | None, Tensor | None]:
    """Covariances R S S R^T and precisions R S^-2 R^T from quats (wxyz, any norm) and scales.

    Same signature and results as gsplat's ``quat_scale_to_covar_preci`` (`triu` gives the
    upper triangle [..., 6] in the order xx, xy, xz, yy, yz, zz).

    Args:
        quats: [..., 4] wxyz. scales: [..., 3].

    Returns:
        (covars [..., 3, 3] or None, precis [..., 3, 3] or None).
    """
    from ..render.torch_impl import quat_to_rotmat

    R = quat_to_rotmat(quats)
    out: list[Tensor | None] = []
    for want, s in ((compute_covar, scales), (compute_preci, 1.0 / scales)):
        if not want:
            out.append(None)
            continue
        M = R * s[..., None, :]
        m = M @ M.transpose(-1, -2)
        if triu:
            m = m[..., [0, 0, 0, 1, 1, 2], [0, 1, 2, 1, 2, 2]]
        out.append(m)
    return out[0], out[1]


def enable_cpu_mcmc() -> None:
    """Let ``gsplat.strategy.MCMCStrategy`` run on CPU tensors (idempotent, thread-safe).

    Replaces ``compute_relocation`` and ``quat_scale_to_covar_preci`` in the namespace of
    ``gsplat.strategy.ops`` by wrappers that call gsplat's CUDA kernels for CUDA tensors and
    :func:`relocation_torch` / :func:`quat_scale_to_covar_torch` otherwise.
    """
    global _ENABLED
    with _LOCK:
        if _ENABLED:
            return
        from gsplat.strategy import ops

        cuda_relocation = ops.compute_relocation
        cuda_covar = ops.quat_scale_to_covar_preci

        def compute_relocation(opacities, scales, ratios, binoms):
            if opacities.is_cuda:
                return cuda_relocation(opacities, scales, ratios, binoms)
            return relocation_torch(opacities, scales, ratios, binoms)

        def quat_scale_to_covar_preci(quats, scales, compute_covar=True, compute_preci=True,
                                      triu=False):
            if quats.is_cuda:
                return cuda_covar(quats, scales, compute_covar, compute_preci, triu)
            return quat_scale_to_covar_torch(quats, scales, compute_covar, compute_preci, triu)

        ops.compute_relocation = compute_relocation
        ops.quat_scale_to_covar_preci = quat_scale_to_covar_preci
        _ENABLED = True
