"""Spherical harmonics: orthonormality, 3DGS/gsplat conventions, gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from splatstudio.render.sh import (
    SH_C0,
    eval_sh,
    num_sh_bases,
    rgb_to_sh,
    sh_basis,
    sh_degree_from_bases,
    sh_to_rgb,
)

torch.set_num_threads(2)


def sphere_quadrature(n_theta=24, n_phi=48):
    """Gauss-Legendre in cos(theta) x uniform phi: exact for band-limited products of
    degree < 2 * n_theta (here products of SH up to degree 4)."""
    x, w = np.polynomial.legendre.leggauss(n_theta)
    phi = (np.arange(n_phi) + 0.5) * 2 * np.pi / n_phi
    ct, ph = np.meshgrid(x, phi, indexing="ij")
    st = np.sqrt(1 - ct**2)
    dirs = np.stack([st * np.cos(ph), st * np.sin(ph), ct], -1).reshape(-1, 3)
    weights = (w[:, None] * np.full(n_phi, 2 * np.pi / n_phi)[None]).reshape(-1)
    return torch.from_numpy(dirs), torch.from_numpy(weights)


def test_basis_is_orthonormal_up_to_degree_4():
    dirs, w = sphere_quadrature()
    Y = sh_basis(4, dirs)  # [M, 25]
    gram = (Y * w[:, None]).T @ Y
    torch.testing.assert_close(gram, torch.eye(25, dtype=gram.dtype), atol=1e-12, rtol=0)


def test_known_values_and_signs():
    # 3DGS: basis 1..3 = -C1 y, C1 z, -C1 x
    d = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    Y = sh_basis(1, d)
    c1 = 0.4886025119029199
    expect = torch.tensor([[SH_C0, 0, c1, 0], [SH_C0, 0, 0, -c1], [SH_C0, -c1, 0, 0]],
                          dtype=torch.float64)  # fmt: skip
    torch.testing.assert_close(Y, expect)


def test_direction_is_normalised_and_dc_is_constant():
    g = torch.Generator().manual_seed(0)
    d = torch.randn(50, 3, generator=g, dtype=torch.float64)
    c = torch.randn(50, 16, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(eval_sh(3, d, c), eval_sh(3, 7.5 * d, c))
    torch.testing.assert_close(eval_sh(0, d, c), SH_C0 * c[:, 0])
    # a lower degree ignores the higher coefficients
    c2 = c.clone()
    c2[:, 4:] = 123.0
    torch.testing.assert_close(eval_sh(1, d, c), eval_sh(1, d, c2))


@pytest.mark.parametrize("deg", [0, 1, 2, 3, 4])
def test_matches_gsplat_torch_reference(deg):
    impl = pytest.importorskip("gsplat.cuda._torch_impl")
    g = torch.Generator().manual_seed(deg)
    d = torch.randn(200, 3, generator=g, dtype=torch.float64)
    c = torch.randn(200, 25, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(eval_sh(deg, d, c), impl._spherical_harmonics(deg, d, c))


def test_gradcheck():
    g = torch.Generator().manual_seed(1)
    d = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    c = torch.randn(6, 16, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: eval_sh(3, a, b), (d, c))


def test_helpers_and_errors():
    assert [num_sh_bases(d) for d in range(5)] == [1, 4, 9, 16, 25]
    assert [sh_degree_from_bases(k) for k in (1, 4, 9, 16, 25)] == [0, 1, 2, 3, 4]
    rgb = torch.rand(10, 3)
    torch.testing.assert_close(sh_to_rgb(rgb_to_sh(rgb)), rgb)
    assert math.isclose(float(sh_to_rgb(torch.tensor(0.0))), 0.5)
    with pytest.raises(ValueError):
        num_sh_bases(5)
    with pytest.raises(ValueError):
        sh_degree_from_bases(10)
    with pytest.raises(ValueError):
        eval_sh(2, torch.randn(3, 3), torch.randn(3, 4, 3))  # needs 9 coefficients
    with pytest.raises(ValueError):
        sh_basis(1, torch.randn(3, 2))
