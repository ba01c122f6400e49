"""Camera helpers: look-at matrices (OpenCV), intrinsics from FOV, automatic framing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from splatstudio.render import frame_points, intrinsics_from_fov, look_at, rasterize

torch.set_num_threads(2)


def project(viewmat, K, pts):
    pc = pts @ viewmat[:3, :3].T + viewmat[:3, 3]
    uv = pc @ K.T
    return uv[:, :2] / uv[:, 2:3], pc[:, 2]


def test_look_at_is_opencv_world_to_camera():
    eye = np.array([1.0, -5.0, 2.0])
    target = np.array([0.5, 0.0, 0.3])
    vm = look_at(eye, target, up=(0, 0, 1))
    R = vm[:3, :3]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert math.isclose(np.linalg.det(R), 1.0, abs_tol=1e-12)
    np.testing.assert_allclose(vm[3], [0, 0, 0, 1])
    # eye -> origin, target on +z at its distance
    np.testing.assert_allclose(vm[:3, :3] @ eye + vm[:3, 3], 0, atol=1e-12)
    t_cam = vm[:3, :3] @ target + vm[:3, 3]
    np.testing.assert_allclose(t_cam, [0, 0, np.linalg.norm(target - eye)], atol=1e-12)
    # world up points to image up (-y), a point to the right of the view maps to +x
    assert (R @ np.array([0, 0, 1.0]))[1] < 0
    right = np.cross(target - eye, [0, 0, 1.0])
    assert (R @ right)[0] > 0


def test_look_at_torch_and_errors():
    vm = look_at(torch.tensor([0.0, -3.0, 0.0]), torch.zeros(3), (0.0, 0.0, 1.0))
    assert isinstance(vm, torch.Tensor) and vm.dtype == torch.float32 and vm.shape == (4, 4)
    with pytest.raises(ValueError):
        look_at([0, 0, 0], [0, 0, 0])
    with pytest.raises(ValueError):
        look_at([0, 0, 5], [0, 0, 0], up=(0, 0, 1))  # looking along up
    with pytest.raises(ValueError):
        look_at([0, 0], [0, 0, 1])


def test_intrinsics_from_fov():
    K = intrinsics_from_fov(90.0, 640, 480)
    np.testing.assert_allclose(K, [[320, 0, 320], [0, 320, 240], [0, 0, 1]], atol=1e-9)
    K2 = intrinsics_from_fov(60.0, 100, 50, like=torch.zeros(1, dtype=torch.float64))
    assert isinstance(K2, torch.Tensor) and K2.dtype == torch.float64
    assert math.isclose(float(K2[0, 0]), 50 / math.tan(math.radians(30)), rel_tol=1e-12)
    # the horizontal half-angle reaches the image border exactly
    uv, _ = project(np.eye(4), K, np.array([[1.0, 0.0, 1.0]]))
    assert math.isclose(uv[0, 0], 640.0)
    for bad in (0.0, 180.0, -5.0):
        with pytest.raises(ValueError):
            intrinsics_from_fov(bad, 10, 10)
    with pytest.raises(ValueError):
        intrinsics_from_fov(60, 0, 10)


@pytest.mark.parametrize("up", [(0, 0, 1), (0, -1, 0)])
def test_frame_points_fits_inliers_and_ignores_outliers(up):
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(5000, 3)) * [3.0, 1.0, 0.5] + [10.0, -4.0, 2.0]
    outliers = rng.normal(size=(20, 3)) * 1000.0
    W, H = 320, 200
    vm, K = frame_points(np.concatenate([pts, outliers]), 60.0, W, H, up=up)
    vm0, K0 = frame_points(pts, 60.0, W, H, up=up)
    uv, z = project(vm, K, pts)
    assert (z > 0).all()
    lo = np.percentile(uv, 2, axis=0)
    hi = np.percentile(uv, 98, axis=0)
    assert lo[0] >= 0 and lo[1] >= 0 and hi[0] <= W and hi[1] <= H
    # reasonably tight (the whole percentile *box* is fitted, so points fill a bit less)
    assert max((hi[0] - lo[0]) / W, (hi[1] - lo[1]) / H) > 0.5
    # 0.4 % outliers barely move the camera
    eye = -vm[:3, :3].T @ vm[:3, 3]
    eye0 = -vm0[:3, :3].T @ vm0[:3, 3]
    dist = np.linalg.norm(eye0 - pts.mean(0))
    assert np.linalg.norm(eye - eye0) < 0.05 * dist
    # explicit view direction
    vm2, _ = frame_points(pts, 60.0, W, H, view_dir=(0, 1, 0), up=(0, 0, 1))
    np.testing.assert_allclose(vm2[2, :3], [0, 1, 0], atol=1e-12)


def test_frame_points_torch_and_render():
    g = torch.Generator().manual_seed(0)
    n = 300
    means = torch.randn(n, 3, generator=g) * torch.tensor([1.0, 1.0, 0.3])
    vm, K = frame_points(means, 50.0, 64, 48)
    assert isinstance(vm, torch.Tensor) and vm.dtype == torch.float32
    img, alpha, info = rasterize(
        means, torch.randn(n, 4, generator=g), torch.full((n, 3), 0.08), torch.full((n,), 0.8),
        torch.rand(n, 3, generator=g), vm[None], K[None], 64, 48,
    )  # fmt: skip
    assert float(alpha[0, 20:28, 28:36].mean()) > 0.9  # the centre is covered
    assert (info["radii"][0] > 0).all(-1).float().mean() > 0.95


def test_frame_points_errors():
    with pytest.raises(ValueError):
        frame_points(np.zeros((0, 3)), 60, 10, 10)
    with pytest.raises(ValueError):
        frame_points(np.zeros((5, 2)), 60, 10, 10)
    with pytest.raises(ValueError):
        frame_points(np.random.rand(5, 3), 60, 10, 10, margin=0.5)
    with pytest.raises(ValueError):
        frame_points(np.random.rand(5, 3), 60, 10, 10, elevation_deg=90)


def _old_render_orthonormal_horizontal(up):
    """render.camera's former private basis (replaced by horizontal_basis), frozen here."""
    cand = np.array([1.0, 0.0, 0.0]) if abs(up[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    h1 = cand - up * (cand @ up)
    h1 /= np.linalg.norm(h1)
    return h1, np.cross(up, h1)


def test_horizontal_basis_is_right_handed_and_keeps_the_usual_axes():
    from splatstudio.render.camera import horizontal_basis

    rng = np.random.default_rng(0)
    axes = [(0.0, 0.0, 1.0), (0.0, -1.0, 0.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0)]
    for up in [*(np.array(u) for u in axes), *rng.normal(size=(200, 3))]:
        h1, h2 = horizontal_basis(up)
        u = up / np.linalg.norm(up)
        np.testing.assert_allclose([h1 @ h1, h2 @ h2, h1 @ h2, h1 @ u, h2 @ u], [1, 1, 0, 0, 0],
                                   atol=1e-12)  # fmt: skip
        np.testing.assert_allclose(np.cross(h1, h2), u, atol=1e-12)
    # the up axes the viewer offers (gui.viewer.camera.UP_AXES) and ENU's: the same basis as both former copies (the
    # viewer's and render's), so default views and orbit yaws do not move
    for up, (e1, e2) in {(0, 0, 1): ((1, 0, 0), (0, 1, 0)), (0, -1, 0): ((1, 0, 0), (0, 0, 1)),
                         (0, 1, 0): ((1, 0, 0), (0, 0, -1))}.items():  # fmt: skip
        h1, h2 = horizontal_basis(torch.tensor(up, dtype=torch.float32))
        np.testing.assert_allclose(np.stack([h1, h2]), [e1, e2], atol=1e-12)
        o1, o2 = _old_render_orthonormal_horizontal(np.array(up, float))
        np.testing.assert_allclose(np.stack([h1, h2]), np.stack([o1, o2]), atol=1e-12)
    for bad in ([0, 0, 0], [1, 2], [np.nan, 0, 1]):
        with pytest.raises(ValueError, match="up"):
            horizontal_basis(bad)
