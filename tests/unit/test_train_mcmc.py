"""MCMC densification on the CPU: the relocation formula, covariances, and a real training run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from splatstudio.config import TrainConfig
from splatstudio.train.mcmc import quat_scale_to_covar_torch, relocation_torch
from splatstudio.train.trainer import Trainer
from tests.unit.test_train_core import _scene, _views

torch.set_num_threads(2)


def _binoms(n_max=51):
    b = torch.zeros(n_max, n_max)
    for n in range(n_max):
        for k in range(n + 1):
            b[n, k] = math.comb(n, k)
    return b


def _relocation_loop(o: float, s: np.ndarray, n: int, binoms: torch.Tensor):
    """Eq. 9 of Kheradmand et al. 2024, written as the paper's double sum."""
    new_o = 1.0 - (1.0 - o) ** (1.0 / n)
    denom = 0.0
    for i in range(1, n + 1):
        for k in range(i):
            denom += float(binoms[i - 1, k]) * (-1) ** k / math.sqrt(k + 1) * new_o ** (k + 1)
    return new_o, o / denom * s


def test_relocation_matches_the_papers_double_sum():
    g = torch.Generator().manual_seed(0)
    n = 64
    op = torch.rand(n, generator=g, dtype=torch.float64) * 0.98 + 0.01
    sc = torch.rand(n, 3, generator=g, dtype=torch.float64) + 0.1
    ratios = torch.randint(1, 60, (n,), generator=g).to(torch.float64)  # some above n_max=51
    binoms = _binoms().to(torch.float64)
    new_op, new_sc = relocation_torch(op, sc, ratios.clone(), binoms)
    for i in range(n):
        r = int(min(max(ratios[i], 1), 51))
        eo, es = _relocation_loop(float(op[i]), sc[i].numpy(), r, binoms)
        assert float(new_op[i]) == pytest.approx(eo, rel=1e-9)
        np.testing.assert_allclose(new_sc[i].numpy(), es, rtol=1e-6)
    # n = 1 leaves a Gaussian unchanged
    o1, s1 = relocation_torch(op, sc, torch.ones(n, dtype=torch.float64), binoms)
    torch.testing.assert_close(o1, op)
    torch.testing.assert_close(s1, sc)


def test_covariances_match_r_s_s_rt():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(20, 4, generator=g, dtype=torch.float64)
    s = torch.rand(20, 3, generator=g, dtype=torch.float64) + 0.05
    cov, prec = quat_scale_to_covar_torch(q, s)
    eye = torch.eye(3, dtype=torch.float64).expand(20, 3, 3)
    torch.testing.assert_close(cov @ prec, eye, atol=1e-9, rtol=0)
    # eigenvalues are the squared scales
    ev = torch.linalg.eigvalsh(cov)
    torch.testing.assert_close(ev, torch.sort(s**2, dim=1).values, atol=1e-9, rtol=0)
    tri, none = quat_scale_to_covar_torch(q, s, compute_preci=False, triu=True)
    assert none is None and tri.shape == (20, 6)
    torch.testing.assert_close(tri[:, 1], cov[:, 0, 1])


@pytest.mark.slow
def test_mcmc_training_runs_on_cpu_and_respects_the_cap():
    scene = _scene(150)
    views = _views(scene, size=32)
    train, held_out = [v for i, v in enumerate(views) if i % 5], views[::5]
    rng = np.random.default_rng(1)
    pts = scene[0].numpy() + rng.normal(scale=0.05, size=(150, 3)).astype(np.float32)
    cols = np.full((150, 3), 0.5, np.float32)
    cap = 260
    cfg = TrainConfig(steps=160, sh_degree=1, sh_degree_interval=50, refine_start=40,
                        refine_every=20, init_opacity=0.5, strategy="mcmc", max_gaussians=cap)
    tr = Trainer(train, held_out, pts, cols, cfg)
    assert tr.regularisers == (0.01, 0.01)
    before = tr.evaluate()["psnr"]
    counts = []
    tr.train(callback=lambda step, stats: counts.append(stats["gaussians"]))
    after = tr.evaluate()["psnr"]
    assert after > before + 4.0, (before, after)
    assert max(counts) <= cap and counts[-1] > 150  # grew, never past the cap
    # the position noise moved the means (MCMC's exploration) and nothing went NaN
    assert torch.isfinite(tr.splats["means"]).all() and torch.isfinite(tr.splats["scales"]).all()
    tr.set_max_gaussians(200)
    assert tr.strategy.cap_max == 200


def test_unknown_strategy_is_refused():
    scene = _scene(20)
    views = _views(scene, n_views=2, size=16)
    with pytest.raises(ValueError, match="unknown densification strategy"):
        Trainer(views, [], scene[0].numpy(), np.zeros((20, 3), np.float32),
                TrainConfig(strategy="nope"))
