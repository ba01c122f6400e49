"""Tests of the in-memory splat model (splatstudio.splats.model)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from helpers.splats import random_splats as make_random_splats

from splatstudio.quaternion import quat_to_rotmat
from splatstudio.splats.model import (
    SH_C0,
    Splats,
    logit,
    num_sh_coeffs,
    quat_multiply,
    sh_basis,
    sh_degree_from_coeffs,
    sh_transform_matrix,
    sigmoid,
)


def random_splats(n: int = 200, degree: int = 3, seed: int = 0) -> Splats:
    return make_random_splats(n, degree, seed, means=("normal", 2.0), opacity_std=3.0,
                              shN=("normal", 0.3))


def test_fields_are_float32_and_properties():
    s = random_splats(10, 2)
    for name in ("means", "quats", "scales", "opacities", "sh0", "shN"):
        assert getattr(s, name).dtype == np.float32
    assert s.n == len(s) == 10
    assert s.sh_degree == 2
    assert s.validate() is s
    assert "n=10" in repr(s) and "sh_degree=2" in repr(s)
    e = Splats.empty(5, 3)
    assert e.n == 5 and e.sh_degree == 3 and e.shN.shape == (5, 15, 3)
    assert np.allclose(e.alphas(), 0.5) and np.allclose(e.rgb(), 0.5)
    assert np.array_equal(e.normalized_quats(), np.tile([1, 0, 0, 0], (5, 1)))
    # shN omitted means degree 0; sh0 given as [N, 3] is accepted
    s0 = Splats(np.zeros((2, 3)), np.ones((2, 4)), np.zeros((2, 3)), np.zeros(2), np.zeros((2, 3)))
    assert s0.sh_degree == 0 and s0.sh0.shape == (2, 1, 3)


def test_sh_degree_helpers():
    assert [num_sh_coeffs(d) for d in range(4)] == [0, 3, 8, 15]
    assert [sh_degree_from_coeffs(k) for k in (0, 3, 8, 15)] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="0..3"):
        num_sh_coeffs(4)
    with pytest.raises(ValueError, match="one of"):
        sh_degree_from_coeffs(5)


def test_sigmoid_logit_inverse_and_stable():
    x = np.array([-100.0, -5.0, 0.0, 5.0, 100.0], np.float32)
    p = sigmoid(x)
    assert np.all(np.isfinite(p)) and p[0] < 1e-40 and p[2] == 0.5 and p[-1] == 1.0
    assert np.allclose(logit(sigmoid(x[1:4])), x[1:4], atol=1e-5)
    assert np.isfinite(logit(np.array([0.0, 1.0]))).all()


def test_subset_mask_index_slice():
    s = random_splats(50, 1)
    mask = s.opacities > 0
    sub = s.subset(mask)
    assert sub.n == int(mask.sum())
    assert np.array_equal(sub.means, s.means[mask])
    idx = np.array([3, 1, 3])
    sub = s.subset(idx)
    assert np.array_equal(sub.shN, s.shN[idx]) and sub.n == 3
    assert s.subset(slice(0, 5)).n == 5
    assert s.subset([]).n == 0
    sub.means[0] = 1e6  # a copy, not a view
    assert not np.any(s.means == 1e6)
    with pytest.raises(ValueError, match="mask"):
        s.subset(np.ones(3, bool))


def test_with_sh_degree_caps_never_raises():
    s = random_splats(20, 3)
    for d, k in ((0, 0), (1, 3), (2, 8), (3, 15)):
        c = s.with_sh_degree(d)
        assert c.shN.shape == (20, k, 3)
        assert np.array_equal(c.shN, s.shN[:, :k])
    low = random_splats(20, 1)
    assert low.with_sh_degree(3).sh_degree == 1
    with pytest.raises(ValueError):
        s.with_sh_degree(4)


def test_concat_pads_sh():
    a, b = random_splats(5, 0), random_splats(7, 2, seed=1)
    c = Splats.concat([a, b])
    assert c.n == 12 and c.sh_degree == 2
    assert np.all(c.shN[:5] == 0) and np.array_equal(c.shN[5:], b.shN)
    with pytest.raises(ValueError):
        Splats.concat([])


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda s: setattr(s, "means", s.means[:, :2]), "means has shape"),
        (lambda s: setattr(s, "quats", s.quats[:-1]), "quats has shape"),
        (lambda s: setattr(s, "opacities", s.opacities[:, None]), "opacities has shape"),
        (lambda s: setattr(s, "shN", np.zeros((s.n, 4, 3), np.float32)), "coefficients"),
        (lambda s: s.scales.__setitem__((3, 1), np.nan), "scales has non-finite"),
        (lambda s: s.quats.__setitem__(2, 0.0), "all-zero quaternion"),
        (lambda s: setattr(s, "sh0", s.sh0.astype(np.float64)), "dtype"),
    ],
)
def test_validate_names_the_problem(mutate, message):
    s = random_splats(10, 1)
    mutate(s)
    with pytest.raises(ValueError, match=message):
        s.validate()


def test_sh_transform_matches_spz_reference_tables():
    # RDF -> RUB is diag(1, -1, -1): the nianticlabs/spz per-coefficient sign table
    t = sh_transform_matrix(np.diag([1.0, -1.0, -1.0]))
    flips = [-1, -1, 1, -1, 1, 1, -1, 1, -1, 1, -1, -1, 1, -1, 1]
    assert np.array_equal(t, np.diag(flips))
    # rotation by +90 deg about x, (x, y, z) -> (x, -z, y): band 1 and 2 tables of the
    # reference implementation
    m = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float)
    t = sh_transform_matrix(m)
    assert np.allclose(t[:3, :3], [[0, 1, 0], [-1, 0, 0], [0, 0, 1]], atol=1e-12)
    s3 = np.sqrt(3) / 2
    band2 = [[0, 0, 0, 1, 0], [0, -1, 0, 0, 0], [0, 0, -0.5, 0, -s3], [-1, 0, 0, 0, 0],
             [0, 0, -s3, 0, 0.5]]  # fmt: skip
    assert np.allclose(t[3:8, 3:8], band2, atol=1e-12)


@pytest.mark.parametrize("reflect", [False, True])
def test_transformed_preserves_colour_and_covariance(reflect):
    s = random_splats(30, 3)
    rng = np.random.default_rng(4)
    r = quat_to_rotmat(rng.normal(size=4))
    if reflect:
        r = r @ np.diag([1.0, 1.0, -1.0])
    t = s.transformed(r, translation=[1.0, 2.0, 3.0], scale=2.0)
    assert np.allclose(t.means, 2.0 * s.means @ r.T + [1, 2, 3], atol=1e-4)
    assert np.allclose(t.scales, s.scales + np.log(2.0), atol=1e-6)

    # covariance: M Sigma M^T (scaled)
    def cov(sp, scale=1.0):
        rot = quat_to_rotmat(sp.quats)
        d = np.exp(2 * sp.scales.astype(np.float64))
        return np.einsum("nij,nj,nkj->nik", rot, d, rot) * scale**2

    expected = np.einsum("ij,njk,lk->nil", r, cov(s), r) * 4.0
    assert np.allclose(cov(t), expected, rtol=1e-4, atol=1e-12)
    # view-dependent colour: the same in both frames for matching directions
    dirs = rng.normal(size=(20, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    before = np.einsum("mk,nkc->nmc", sh_basis(dirs), s.shN)
    after = np.einsum("mk,nkc->nmc", sh_basis(dirs @ r.T), t.shN)
    assert np.allclose(before, after, atol=1e-5)
    assert np.array_equal(t.sh0, s.sh0) and np.array_equal(t.opacities, s.opacities)


def test_transformed_rejects_bad_input():
    s = random_splats(3, 0)
    with pytest.raises(ValueError, match="orthogonal"):
        s.transformed(np.ones((3, 3)))
    with pytest.raises(ValueError, match="scale"):
        s.transformed(np.eye(3), scale=0.0)


def test_quat_multiply_identity_and_rotation():
    q = np.array([[0.5, 0.5, 0.5, 0.5]])
    assert np.allclose(quat_multiply(np.array([1.0, 0, 0, 0]), q), q)
    r = quat_to_rotmat(quat_multiply(q, q))[0]
    assert np.allclose(r, quat_to_rotmat(q)[0] @ quat_to_rotmat(q)[0])


def test_rgb_and_scales_helpers():
    s = random_splats(4, 0)
    assert np.allclose(s.rgb(), 0.5 + SH_C0 * s.sh0[:, 0])
    assert np.allclose(s.linear_scales(), np.exp(s.scales))


def test_import_does_not_pull_heavy_modules():
    import subprocess

    code = (
        "import sys, splatstudio.splats, splatstudio.splats.io; "
        "bad = [m for m in ('torch', 'PySide6', 'pyqtgraph', 'OpenGL', 'scipy') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
