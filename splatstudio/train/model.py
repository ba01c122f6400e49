"""Gaussian parameters as a ``torch.nn.ParameterDict`` and their Adam optimisers.

Parameters (DESIGN.md names): means [N,3] (metres, world = ENU), quats [N,4] (wxyz,
unnormalised), scales [N,3] (log), opacities [N] (logit), sh0 [N,1,3], shN [N,K,3].
Initialisation and learning rates follow the 3DGS paper (Kerbl et al. 2023) as gsplat's
``examples/simple_trainer.py`` sets them: scales from the mean distance to the 3 nearest
neighbours, opacity 0.1, SH DC from the point colours, means' learning rate scaled by the scene
size and decayed exponentially to 1% over training.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..render.sh import rgb_to_sh
from ..splats.model import Splats

LEARNING_RATES = {
    "means": 1.6e-4,  # times scene_scale
    "scales": 5e-3,
    "quats": 1e-3,
    "opacities": 5e-2,
    "sh0": 2.5e-3,
    "shN": 2.5e-3 / 20,
}


def knn_mean_distance(points: np.ndarray, k: int = 3) -> np.ndarray:
    """Mean distance [N] of each point [N,3] to its `k` nearest neighbours (scipy cKDTree)."""
    from scipy.spatial import cKDTree

    n = len(points)
    if n < 2:
        return np.full(n, 0.01, np.float32)
    d, _ = cKDTree(points).query(points, k=min(k, n - 1) + 1)
    return d[:, 1:].mean(axis=1).astype(np.float32)


def init_splats(
    points: np.ndarray,
    colors: np.ndarray,
    *,
    sh_degree: int = 3,
    init_opacity: float = 0.1,
    init_scale: float = 1.0,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> torch.nn.ParameterDict:
    """Gaussians at `points` [N,3] (metres) with `colors` [N,3] (uint8 0..255 or float 0..1).

    Raises:
        ValueError: no points, or mismatched shapes.
    """
    points = np.asarray(points, np.float32)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise ValueError(f"need points [N,3] with N > 0, got {points.shape}")
    colors = np.asarray(colors)
    if colors.shape != points.shape:
        raise ValueError(f"colors {colors.shape} do not match points {points.shape}")
    rgb = colors.astype(np.float32) / (255.0 if colors.dtype == np.uint8 else 1.0)
    n = len(points)
    g = torch.Generator().manual_seed(seed)
    dist = np.maximum(knn_mean_distance(points), 1e-7)
    scales = torch.log(torch.from_numpy(dist) * init_scale)[:, None].repeat(1, 3)
    k = (sh_degree + 1) ** 2 - 1
    params = {
        "means": torch.from_numpy(points),
        "scales": scales,
        "quats": torch.rand((n, 4), generator=g),
        "opacities": torch.logit(torch.full((n,), float(init_opacity))),
        "sh0": rgb_to_sh(torch.from_numpy(rgb))[:, None, :],
        "shN": torch.zeros((n, k, 3)),
    }
    return torch.nn.ParameterDict(
        {name: torch.nn.Parameter(v.float().to(device)) for name, v in params.items()}
    )


def make_optimizers(
    splats: torch.nn.ParameterDict, scene_scale: float, batch_size: int = 1
) -> dict[str, torch.optim.Optimizer]:
    """One Adam per parameter (gsplat's strategies need them separate), 3DGS learning rates;
    the batch-size scaling of gsplat (lr * sqrt(B), betas ** B) is applied.

    On the CPU torch's fused Adam kernel is used (one pass over a parameter and its moments
    instead of ~10 elementwise passes: the update of the [N, 15, 3] SH coefficients was the
    largest optimizer cost of a CPU step); elsewhere torch's default implementation. Both
    compute the same update (Kingma & Ba 2015) up to float rounding."""
    bs = batch_size
    out = {}
    fused = all(p.device.type == "cpu" for p in splats.values()) or None
    for name, lr in LEARNING_RATES.items():
        lr = lr * (scene_scale if name == "means" else 1.0) * math.sqrt(bs)
        out[name] = torch.optim.Adam(
            [{"params": splats[name], "lr": lr, "name": name}],
            eps=1e-15 / math.sqrt(bs),
            betas=(1 - bs * (1 - 0.9), 1 - bs * (1 - 0.999)),
            fused=fused,
        )
    return out


def means_lr_scheduler(optimizer: torch.optim.Optimizer, steps: int) -> Any:
    """Exponential decay of the means' learning rate to 1% at `steps`."""
    return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.01 ** (1.0 / max(1, steps)))


def to_splats(params: torch.nn.ParameterDict) -> Splats:
    """The parameters as a numpy :class:`Splats` (for the PLY writer and viewers)."""

    def a(name: str) -> np.ndarray:
        return params[name].detach().cpu().float().numpy().copy()

    return Splats(
        means=a("means"),
        quats=a("quats"),
        scales=a("scales"),
        opacities=a("opacities"),
        sh0=a("sh0"),
        shN=a("shN"),
    )


def from_splats(splats: Splats, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The inverse of :func:`to_splats`: {means, quats, scales (log), opacities (logit), sh0,
    shN} float32 tensors on `device` (not parameters: for rendering and evaluation)."""
    return {name: torch.from_numpy(np.array(getattr(splats, name), np.float32)).to(device)
            for name in ("means", "quats", "scales", "opacities", "sh0", "shN")}
