"""UV atlas (xatlas in blocks) and texel rasterisation."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("xatlas")

from splatstudio.mesh.bake import dilate, rasterize_uv  # noqa: E402
from splatstudio.mesh.uv import unwrap  # noqa: E402


def grid_mesh(n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """A bumpy n x n height field over [0, 2] x [0, 1] metres: 2 (n-1)^2 triangles."""
    x, y = np.meshgrid(np.linspace(0, 2, n), np.linspace(0, 1, n))
    z = 0.1 * np.sin(3 * x) * np.cos(4 * y)
    v = np.stack([x, y, z], -1).reshape(-1, 3)
    i = np.arange(n * n).reshape(n, n)
    a, b, c, d = i[:-1, :-1].ravel(), i[:-1, 1:].ravel(), i[1:, :-1].ravel(), i[1:, 1:].ravel()
    f = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    return v, f


def test_unwrap_keeps_faces_and_is_isometric_up_to_scale():
    v, f = grid_mesh()
    v2, f2, uv = unwrap(v, f, texture_size=1024, block_faces=2000)
    assert f2.shape == f.shape and uv.shape == (len(v2), 2)
    assert uv.min() >= 0 and uv.max() <= 1
    # same triangles in 3D, in the same order
    assert np.allclose(v2[f2], v[f])
    t, u = v2[f2], uv[f2].astype(np.float64)
    a3 = 0.5 * np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1)
    d, e = u[:, 1] - u[:, 0], u[:, 2] - u[:, 0]
    a2 = 0.5 * np.abs(d[:, 0] * e[:, 1] - d[:, 1] * e[:, 0])
    ratio = a2 / a3
    assert np.percentile(ratio, 95) / np.percentile(ratio, 5) < 2.0  # one texel density
    # charts do not overlap: every covered texel belongs to one face only
    texels, face, _ = rasterize_uv(uv[f2], 512)
    assert texels.size == np.unique(texels).size
    assert texels.size > 0.9 * a2.sum() * 512**2


def test_rasterize_uv_barycentrics_reproduce_texel_centres():
    rng = np.random.default_rng(1)
    tri = rng.uniform(0, 1, (50, 3, 2))
    texels, face, bary = rasterize_uv(tri, 64)
    assert np.allclose(bary.sum(1), 1, atol=1e-5) and (bary >= -1e-5).all()
    p = np.einsum("tk,tkd->td", bary.astype(np.float64), tri[face]) * 64 - 0.5
    assert np.allclose(p[:, 0], texels % 64, atol=1e-3)
    assert np.allclose(p[:, 1], texels // 64, atol=1e-3)


def test_dilate_grows_charts_into_empty_texels():
    tex = np.zeros((32, 32, 3), np.float32)
    filled = np.zeros((32, 32), bool)
    filled[10:20, 10:20] = True
    tex[filled] = (0.2, 0.4, 0.6)
    out = dilate(tex, filled, iterations=4)
    assert np.allclose(out[10:20, 10:20], (0.2, 0.4, 0.6))
    assert np.allclose(out[7, 12], (0.2, 0.4, 0.6)) and np.allclose(out[0, 0], (0.2, 0.4, 0.6))
