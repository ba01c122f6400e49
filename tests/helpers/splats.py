"""The one generator of random test splats (every format test draws from it)."""

from __future__ import annotations

import numpy as np

from splatstudio.splats import Splats
from splatstudio.splats.model import num_sh_coeffs


def _draw(rng: np.random.Generator, spec: tuple[str, float], size: tuple[int, ...]) -> np.ndarray:
    kind, a = spec
    if kind == "normal":
        return rng.normal(size=size) * a
    if kind == "uniform":
        return rng.uniform(-a, a, size=size)
    raise ValueError(f"unknown distribution {kind!r} (normal, uniform)")


def random_splats(n: int = 200, degree: int = 3, seed: int = 0, *,
                  means: tuple[str, float] = ("normal", 1.0),
                  scales: tuple[float, float] = (-6.0, 0.0),
                  opacity_std: float = 1.0,
                  sh0: tuple[str, float] = ("normal", 1.0),
                  shN: tuple[str, float] = ("normal", 1.0)) -> Splats:  # noqa: N803
    """`n` random gaussians of SH degree `degree`, reproducible from `seed`.

    Draws, in this order: means ``[n, 3]`` (``("normal", s)``: N(0, 1) * s metres,
    ``("uniform", a)``: U(-a, a)), quats ``[n, 4]`` N(0, 1) (wxyz, unnormalised), log-scales
    ``[n, 3]`` U(`scales`), opacity logits ``[n]`` N(0, 1) * `opacity_std`, sh0 ``[n, 1, 3]``
    and shN ``[n, K, 3]`` from their specs. Each format's tests choose the ranges its
    quantisation covers (SPZ: sh0 within ±3, shN within ±0.95 ...).
    """
    rng = np.random.default_rng(seed)
    k = num_sh_coeffs(degree)
    return Splats(
        means=_draw(rng, means, (n, 3)),
        quats=rng.normal(size=(n, 4)),
        scales=rng.uniform(scales[0], scales[1], size=(n, 3)),
        opacities=rng.normal(size=n) * opacity_std,
        sh0=_draw(rng, sh0, (n, 1, 3)),
        shN=_draw(rng, shN, (n, k, 3)),
    )
