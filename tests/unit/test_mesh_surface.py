"""Surfaces: TSDF fusion conventions (analytic sphere), decimation, small-piece removal."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("open3d")

from splatstudio.mesh.quality import camera_rays, mesh_stats  # noqa: E402
from splatstudio.mesh.surface import decimate, drop_small_pieces, tsdf_surface  # noqa: E402
from splatstudio.render.camera import intrinsics_from_fov, look_at  # noqa: E402


def sphere_frames(radius=1.0, centre=(0.3, -0.2, 0.1), n=10, size=96, offset_half_px=False):
    """Depth maps (z along the optical axis, metres) of a sphere from a ring of cameras."""
    c = np.asarray(centre)
    K = np.asarray(intrinsics_from_fov(60.0, size, size))
    frames = []
    for i in range(n):
        az, el = 2 * np.pi * i / n, (0.4 if i % 2 else -0.3)
        eye = c + 3.5 * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        vm = np.asarray(look_at(eye, c))
        rays = camera_rays(vm, K, size, size).astype(np.float64)
        o, d = rays[:, :3], rays[:, 3:]  # camera z of d is 1, so t is the depth
        oc = o - c
        a, b, cc = (d * d).sum(1), 2 * (d * oc).sum(1), (oc * oc).sum(1) - radius**2
        disc = b * b - 4 * a * cc
        t = np.where(disc > 0, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), 0.0)
        depth = t.reshape(size, size).astype(np.float32)
        alpha = (disc > 0).reshape(size, size).astype(np.float32)
        frames.append((depth, alpha, vm, K))
    return frames, c


def test_tsdf_of_rendered_sphere_depth_lies_on_the_sphere():
    frames, c = sphere_frames()
    voxel = 0.04
    v, f = tsdf_surface(frames, voxel_size=voxel, trunc_voxels=4)
    assert len(f) > 1000
    r = np.linalg.norm(v - c, axis=1)
    # depth units, extrinsic (world-to-camera) and intrinsic conventions all right: the
    # surface is where the depth says, to a fraction of a voxel
    assert abs(np.median(r) - 1.0) < 0.25 * voxel
    assert np.quantile(np.abs(r - 1.0), 0.99) < voxel
    # every side of the sphere was seen: vertices in every octant around the centre
    octant = ((v - c) > 0).astype(int) @ [1, 2, 4]
    assert len(np.unique(octant)) == 8


def test_tsdf_ignores_transparent_pixels_and_rejects_bad_input():
    frames, _ = sphere_frames(n=4)
    empty = [(d, np.zeros_like(a), vm, K) for d, a, vm, K in frames]
    v, f = tsdf_surface(empty, voxel_size=0.05)
    assert len(v) == 0 and len(f) == 0
    with pytest.raises(ValueError, match="voxel_size"):
        tsdf_surface(frames, voxel_size=0.0)
    d, a, vm, K = frames[0]
    with pytest.raises(ValueError, match="do not match"):
        tsdf_surface([(d, a[:-1], vm, K)], voxel_size=0.05)


def grid(n=101):
    x, y = np.meshgrid(np.linspace(0, 2, n), np.linspace(0, 1, n))
    z = 0.1 * np.sin(3 * x) * np.cos(4 * y)
    v = np.stack([x, y, z], -1).reshape(-1, 3)
    i = np.arange(n * n).reshape(n, n)
    a, b, c, d = i[:-1, :-1].ravel(), i[:-1, 1:].ravel(), i[1:, :-1].ravel(), i[1:, 1:].ravel()
    return v, np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])


def test_decimate_meets_the_budget_and_keeps_the_shape():
    v, f = grid()
    v2, f2 = decimate(v, f, 2000)
    assert 1500 <= len(f2) <= 2000
    z = 0.1 * np.sin(3 * v2[:, 0]) * np.cos(4 * v2[:, 1])
    assert np.abs(v2[:, 2] - z).max() < 0.01  # vertices stay on the height field
    st = mesh_stats(v2, f2)
    assert st["components"] == 1 and st["nonmanifold_edges"] == 0
    v3, f3 = decimate(v, f, 10**6)  # under budget: unchanged
    assert len(f3) == len(f)


def test_drop_small_pieces():
    v, f = grid(21)
    tiny_v = np.array([[5, 5, 5], [5.1, 5, 5], [5, 5.1, 5]], float)
    v2 = np.concatenate([v, tiny_v])
    f2 = np.concatenate([f, [[len(v), len(v) + 1, len(v) + 2], [0, 0, 1]]])
    v3, f3 = drop_small_pieces(v2, f2)
    assert len(f3) == len(f) and len(v3) == len(v)
    assert np.array_equal(v3[f3], v[f])
