"""build_textured_mesh end to end on a synthetic splat (a two-coloured sphere of flat
gaussians) with both surface methods and with or without capture cameras, measured by the
mesh-vs-splat comparison from views that built nothing."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("open3d")
pytest.importorskip("xatlas")
pytest.importorskip("torch")

from splatstudio.mesh import MeshOptions, TexturedMesh, build_textured_mesh  # noqa: E402
from splatstudio.mesh.quality import compare_views, mesh_stats  # noqa: E402
from splatstudio.render.camera import Cameras, intrinsics_from_fov, look_at  # noqa: E402
from splatstudio.splats import Splats  # noqa: E402
from splatstudio.splats.model import SH_C0  # noqa: E402


def sphere_splat(n=20_000, radius=1.0, seed=0) -> Splats:
    """Flat opaque gaussians tangent to a sphere: north half red, south half blue."""
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(n, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    # rotation whose third column (the thin axis) is the normal
    a = np.where(np.abs(p[:, :1]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]])
    t1 = np.cross(p, a)
    t1 /= np.linalg.norm(t1, axis=1, keepdims=True)
    t2 = np.cross(p, t1)
    rot = np.stack([t1, t2, p], axis=2)
    rgb = np.where(p[:, 2:] > 0, [[0.9, 0.1, 0.1]], [[0.1, 0.2, 0.9]])
    s = np.log(np.array([0.03, 0.03, 0.002]) * radius)
    from scipy.spatial.transform import Rotation

    xyzw = Rotation.from_matrix(rot).as_quat()
    return Splats(means=(p * radius).astype(np.float32), quats=xyzw[:, [3, 0, 1, 2]],
                  scales=np.tile(s, (n, 1)), opacities=np.full(n, 4.0),
                  sh0=((rgb - 0.5) / SH_C0)[:, None, :])  # fmt: skip


def ring(n, dist, elev_deg, size, shift=0.0):
    vms = []
    for i in range(n):
        az = 2 * np.pi * (i + shift) / n
        el = np.radians(elev_deg[i % len(elev_deg)])
        eye = dist * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        vms.append(np.asarray(look_at(eye, [0, 0, 0])))
    K = np.asarray(intrinsics_from_fov(60.0, size, size))
    return np.stack(vms), np.broadcast_to(K, (n, 3, 3)).copy()


@pytest.mark.parametrize("method", ["poisson", "tsdf"])
@pytest.mark.parametrize("with_cameras", [False, True])
def test_sphere_mesh_matches_the_splat(method, with_cameras):
    splats = sphere_splat()
    cams = None
    if with_cameras:  # cameras all around, below the equator too
        vm, Ks = ring(10, 3.5, [-35.0, 0.0, 35.0], 160)
        cams = Cameras(vm, Ks, np.tile([160, 160], (10, 1)))
    opts = MeshOptions(method=method, target_faces=6000, texture_size=512, bake_views=8,
                       bake_resolution=160, capture_views=10, device="cpu")  # fmt: skip
    mesh = build_textured_mesh(splats, opts, cameras=cams)
    assert mesh.method == method and len(mesh.faces) <= 6000
    r = np.linalg.norm(mesh.vertices, axis=1)
    # on the sphere; TSDF sits up to ~3 cm outside: the expected depth of 3 cm disks seen
    # obliquely lies in front of the surface
    # (Poisson from the ring of views alone: its unseen underside may bulge, see
    # surface.gaussian_normals; the seen upper part must be exact)
    seen = mesh.vertices[:, 2] > (-0.3 if method == "poisson" and not with_cameras else -2)
    assert np.quantile(np.abs(r[seen] - 1.0), 0.95) < (0.02 if method == "poisson" else 0.05)
    st = mesh_stats(mesh.vertices, mesh.faces)
    # views that built nothing: between the ring's azimuths, above and below the equator
    vm, Ks = ring(6, 3.2, [20.0, -10.0], 128, shift=0.5)
    q = compare_views(splats, mesh, vm, Ks, 128, 128, device="cpu")
    flat = TexturedMesh(vertices=mesh.vertices, faces=mesh.faces, uvs=mesh.uvs,
                        texture=np.zeros_like(mesh.texture) + mesh.texture.reshape(-1, 3).mean(0).astype(np.uint8))  # fmt: skip
    q_flat = compare_views(splats, flat, vm, Ks, 128, 128, device="cpu")
    assert q["spill"] < 0.05 if (with_cameras or method == "tsdf") else q["spill"] < 0.15
    # the splat's own colour boundary is fuzzy and view dependent (its disks overlap by 3 cm),
    # so the texture cannot match every view; it must carry the two halves all the same
    # (TSDF of the upper ring alone: the test views below see through its open bottom)
    gain = 5.0 if method == "poisson" else 1.5 if with_cameras else 0.2
    assert q["psnr_db"] > q_flat["psnr_db"] + gain, (q, q_flat)
    if method == "poisson":  # a closed sphere
        assert q["coverage"] > 0.9 and st["largest_component_fraction"] > 0.9, q
        assert q["psnr_db"] > 14.0, q
    elif with_cameras:  # TSDF from all around: most of the sphere, with holes where the
        assert q["coverage"] > 0.8, q  # views' expected depths disagree
    else:  # TSDF of the ring of views above the equator: only what they see
        assert 0.3 < q["coverage"] < 0.9 and st["boundary_edges"] > 0
