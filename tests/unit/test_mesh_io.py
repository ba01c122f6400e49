"""GLB and OBJ writers (read back with trimesh) and the texture bake on a simple scene."""

from __future__ import annotations

import json

import numpy as np
import pytest

from splatstudio.mesh import TexturedMesh, write_glb, write_obj
from splatstudio.mesh.io import ENU_TO_YUP

trimesh = pytest.importorskip("trimesh")


def quad() -> TexturedMesh:
    v = np.array([[0, 0, 0], [2, 0, 0], [2, 3, 0], [0, 3, 1]], np.float64)  # ENU metres
    f = np.array([[0, 1, 2], [0, 2, 3]])
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
    tex = np.zeros((16, 16, 3), np.uint8)
    tex[:8] = (255, 0, 0)  # top half red
    return TexturedMesh(vertices=v, faces=f, uvs=uv, texture=tex)


def test_glb_round_trip_y_up(tmp_path):
    m = quad()
    assert write_glb(m, tmp_path / "q.glb") == []
    data = (tmp_path / "q.glb").read_bytes()
    n = int(np.frombuffer(data[12:16], "<u4")[0])
    gltf = json.loads(data[20 : 20 + n])
    assert gltf["accessors"][0]["max"] == [2.0, 1.0, 0.0]  # y = up, z = -north
    scene = trimesh.load(tmp_path / "q.glb")
    g = next(iter(scene.geometry.values()))
    assert np.allclose(g.vertices, m.vertices @ ENU_TO_YUP.T)
    assert np.array_equal(g.faces, m.faces)


def test_obj_mtl_png(tmp_path):
    import cv2

    m = quad()
    extra = write_obj(m, tmp_path / "q.obj")
    assert [p.name for p in extra] == ["q.mtl", "q.png"]
    png = cv2.imread(str(tmp_path / "q.png"))[..., ::-1]
    assert np.array_equal(png, m.texture)
    o = trimesh.load(tmp_path / "q.obj", process=False)
    assert np.allclose(o.vertices, m.vertices @ ENU_TO_YUP.T, atol=1e-6)
    assert np.allclose(o.visual.uv[:, 1], 1 - m.uvs[:, 1])  # OBJ v points up


def test_bake_projects_the_rendered_colours():
    pytest.importorskip("torch")
    from splatstudio.mesh.bake import bake_texture
    from splatstudio.render.sh import rgb_to_sh
    from splatstudio.splats import Splats

    # a flat 1 m square of small opaque gaussians at z = 0: west half red, east half blue
    g = np.linspace(-0.5, 0.5, 60)
    x, y = np.meshgrid(g, g)
    n = x.size
    s = Splats.empty(n)
    s.means[:, 0], s.means[:, 1] = x.ravel(), y.ravel()
    s.scales[:] = np.log([0.012, 0.012, 0.001])
    s.opacities[:] = 5.0
    rgb = np.where((x.ravel() < 0)[:, None], [0.9, 0.1, 0.1], [0.1, 0.1, 0.9])
    s.sh0[:, 0] = np.asarray(rgb_to_sh(rgb), np.float32)
    v = np.array([[-0.4, -0.4, 0], [0.4, -0.4, 0], [0.4, 0.4, 0], [-0.4, 0.4, 0]], float)
    f = np.array([[0, 1, 2], [0, 2, 3]])
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
    tex, stats = bake_texture(s, v, f, uv, size=64, views=4, resolution=128)
    assert stats["seen_fraction"] > 0.95
    west, east = tex[32, 5].astype(int), tex[32, 58].astype(int)  # u = x: column 5 is west
    assert west[0] > 150 and west[2] < 100, west
    assert east[2] > 150 and east[0] < 100, east
