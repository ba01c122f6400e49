"""Mesh-vs-splat measurements: ray-cast renders of a textured mesh, PSNR, topology."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("open3d")

from splatstudio.mesh import TexturedMesh  # noqa: E402
from splatstudio.mesh.quality import MeshRaycaster, mesh_stats, psnr  # noqa: E402
from splatstudio.render.camera import intrinsics_from_fov, look_at  # noqa: E402


def quad(z=0.0):
    v = np.array([[-1, -1, z], [1, -1, z], [1, 1, z], [-1, 1, z]], float)
    f = np.array([[0, 1, 2], [0, 2, 3]])
    uv = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], np.float32)  # v down = -y (north)
    tex = np.zeros((8, 8, 3), np.uint8)
    tex[:, :4] = (255, 0, 0)  # west half red
    tex[:, 4:] = (0, 0, 255)  # east half blue
    return TexturedMesh(vertices=v, faces=f, uvs=uv, texture=tex)


def test_raycast_depth_and_texture():
    m = quad(z=0.5)
    vm = np.asarray(look_at([0, 0, 3.0], [0, 0, 0.5], up=(0, 1, 0)))
    K = np.asarray(intrinsics_from_fov(90.0, 64, 64))
    rgb, depth, hit = MeshRaycaster(m.vertices, m.faces, m.uvs, m.texture).render(vm, K, 64, 64)
    assert hit[32, 32] and not hit[0, 0]
    assert depth[32, 32] == pytest.approx(2.5, abs=1e-4)  # z along the optical axis
    assert depth[hit].max() == pytest.approx(2.5, abs=1e-4)  # a plane facing the camera
    # the camera's x (right) is east here: west half red, east half blue
    assert np.allclose(rgb[32, 20], (1, 0, 0), atol=1e-3)
    assert np.allclose(rgb[32, 44], (0, 0, 1), atol=1e-3)
    assert np.isinf(depth[0, 0]) and np.all(rgb[0, 0] == 0)


def test_psnr_and_stats():
    a = np.zeros((4, 4, 3))
    b = a.copy()
    b[0, 0] = 0.1
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = True
    assert psnr(a, b, mask) == pytest.approx(20.0)
    assert psnr(a, a) == float("inf")
    m = quad()
    st = mesh_stats(m.vertices, m.faces)
    assert st["boundary_edges"] == 4 and not st["watertight"] and st["components"] == 1
    assert st["area_m2"] == pytest.approx(4.0)
    # a closed tetrahedron is watertight
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float)
    f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    assert mesh_stats(v, f)["watertight"]
