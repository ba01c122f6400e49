"""Measure a textured mesh against the splat it was made from.

* :class:`MeshRaycaster` ray-casts a textured mesh into pinhole cameras (open3d
  ``RaycastingScene``, Embree): colour from its texture (bilinear), the depth along the
  optical axis, and which pixels it covers.
* :func:`compare_views` renders the splat (our rasterizer, expected depth) and the mesh
  from the same cameras -- views that were not used to build the mesh -- and reports, per
  view and averaged: PSNR of the mesh image against the splat image over the pixels either
  of them covers (both on black, so a hole and a surface where the splat is empty both
  cost), the depth difference where both are opaque, the fraction of the splat's opaque
  pixels the mesh covers (``coverage``) and the fraction of the mesh's pixels where the
  splat is transparent (``spill``: bubbles, floaters, surfaces the splat does not have).
* :func:`mesh_stats`: face/vertex counts, boundary and non-manifold edges, connected
  pieces, watertightness, area.

Conventions: viewmats ``[4, 4]`` world-to-camera, OpenCV axes (x right, y down, z forward);
``K [3, 3]`` pixels with pixel centres at ``i + 0.5``; world units metres.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..render.camera import camera_centres
from .model import TexturedMesh


def camera_rays(viewmat: np.ndarray, K: np.ndarray, width: int, height: int) -> np.ndarray:
    """Rays through the pixel centres of a pinhole camera, ``[H * W, 6]`` float32
    ``(origin xyz, direction xyz)`` in world coordinates, row-major; each direction has
    camera-frame z = 1, so a ray parameter ``t`` is the depth along the optical axis."""
    vm = np.asarray(viewmat, np.float64)
    R = vm[:3, :3]
    eye = camera_centres(vm)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    d = np.stack([(xs + 0.5 - K[0, 2]) / K[0, 0], (ys + 0.5 - K[1, 2]) / K[1, 1],
                  np.ones_like(xs)], -1).reshape(-1, 3)  # fmt: skip
    rays = np.empty((d.shape[0], 6), np.float32)
    rays[:, :3] = eye
    rays[:, 3:] = d @ R  # R^T d, row-wise
    return rays


class MeshRaycaster:
    """A mesh loaded once into an open3d ``RaycastingScene`` for many renders.

    Args:
        vertices: ``[V, 3]`` metres; faces: ``[F, 3]`` vertex indices; uvs: ``[V, 2]`` in
            ``[0, 1]`` with ``(0, 0)`` the top-left texel corner, or None; texture:
            ``[S, S, 3]`` uint8, or None (then renders are grey).
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray | None = None,
                 texture: np.ndarray | None = None) -> None:  # fmt: skip
        import open3d as o3d

        self.vertices = np.asarray(vertices, np.float32)
        self.faces = np.asarray(faces, np.int64)
        self.uvs = None if uvs is None else np.asarray(uvs, np.float32)
        self.texture = None if texture is None else np.asarray(texture, np.float32) / 255.0
        self.scene = o3d.t.geometry.RaycastingScene()
        if self.faces.shape[0]:
            self.scene.add_triangles(o3d.core.Tensor(self.vertices),
                                     o3d.core.Tensor(self.faces.astype(np.uint32)))  # fmt: skip

    def render(self, viewmat: np.ndarray, K: np.ndarray, width: int,
               height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """Ray-cast one view.

        Returns:
            ``(rgb [H, W, 3] float32 in [0, 1] (0 where nothing is hit), depth [H, W]
            float32 metres along the optical axis (inf where nothing is hit), hit [H, W]
            bool)``.
        """
        import open3d as o3d

        from .bake import _sample

        rays = camera_rays(viewmat, K, width, height)
        rgb = np.zeros((height * width, 3), np.float32)
        if self.faces.shape[0] == 0:
            return (rgb.reshape(height, width, 3), np.full((height, width), np.inf, np.float32),
                    np.zeros((height, width), bool))  # fmt: skip
        r = self.scene.cast_rays(o3d.core.Tensor(rays))
        depth = r["t_hit"].numpy().astype(np.float32)
        hit = np.isfinite(depth)
        idx = np.flatnonzero(hit)
        if self.texture is not None and self.uvs is not None and idx.size:
            prim = r["primitive_ids"].numpy()[idx].astype(np.int64)
            b = r["primitive_uvs"].numpy()[idx]  # weights of corners 1 and 2
            tri = self.uvs[self.faces[prim]]  # [M, 3, 2]
            uv = tri[:, 0] * (1 - b[:, :1] - b[:, 1:]) + tri[:, 1] * b[:, :1] + tri[:, 2] * b[:, 1:]
            s = self.texture.shape[0]
            rgb[idx] = _sample(self.texture, uv[:, 0] * s, uv[:, 1] * s)
        elif idx.size:
            rgb[idx] = 0.5
        return (
            rgb.reshape(height, width, 3),
            depth.reshape(height, width),
            hit.reshape(height, width),
        )


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB of images in ``[0, 1]`` (``[H, W, 3]``) over `mask` ``[H, W]`` (all if None);
    inf for identical images, nan for an empty mask."""
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    if mask is not None:
        if not mask.any():
            return float("nan")
        d = d[mask]
    mse = float(d.mean())
    return float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)


def _db(se: float, n: float, empty: float | None = None) -> float | None:
    """PSNR in dB of images in ``[0, 1]`` from the sum `se` of `n` per-pixel mean squared
    errors: `empty` when ``n == 0``, inf when ``se == 0``."""
    if n == 0:
        return empty
    return float("inf") if se == 0 else 10.0 * math.log10(n / se)


def compare_views(
    splats: Any,
    mesh: TexturedMesh,
    viewmats: np.ndarray,
    Ks: np.ndarray,
    width: int,
    height: int,
    *,
    device: str = "cpu",
    splat_renders: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Compare `mesh` with `splats` from the cameras ``viewmats [C, 4, 4]``, ``Ks [C, 3, 3]``.

    Args:
        splats: the :class:`~splatstudio.splats.Splats` the mesh was made from (metres).
        mesh: the textured mesh, same frame.
        viewmats, Ks: world-to-camera OpenCV matrices and pixel intrinsics.
        width, height: image size, pixels.
        device: render device for the splat.
        splat_renders: ``(rgb [C, H, W, 3], depth [C, H, W], alpha [C, H, W])`` of the
            splat from these cameras when already rendered
            (:func:`splatstudio.mesh.bake.render_views`).

    Returns:
        ``{"psnr_db", "psnr_db_opaque", "depth_err_median_m", "depth_err_p90_m",
        "coverage", "spill", "views": [per view the same keys]}``: ``psnr_db`` over the
        pixels where the splat's alpha > 0.5 or the mesh is hit, ``psnr_db_opaque`` over
        the splat's opaque pixels only; depth errors where both are opaque; averages are
        over views (PSNR: of the per-view mean squared errors).
    """
    from .bake import render_views

    if splat_renders is None:
        if width != height or (Ks.shape[0] and not np.allclose(Ks, Ks[0])):
            raise ValueError("compare_views renders square views with one K; pass "
                             "splat_renders for other cameras")  # fmt: skip
        splat_renders = render_views(splats, viewmats, Ks[0], width, device)
    s_rgb, s_depth, s_alpha = splat_renders
    caster = MeshRaycaster(mesh.vertices, mesh.faces, mesh.uvs, mesh.texture)
    views = []
    se_union = se_opaque = n_union = n_opaque = 0.0
    for c in range(viewmats.shape[0]):
        m_rgb, m_depth, hit = caster.render(viewmats[c], Ks[c], width, height)
        opaque = s_alpha[c] > 0.5
        empty = s_alpha[c] < 0.1
        union = opaque | hit
        ref = s_rgb[c]
        d2 = ((m_rgb.astype(np.float64) - ref) ** 2).mean(axis=-1)  # per pixel
        se_u, n_u = float(d2[union].sum()), float(union.sum())
        se_o, n_o = float(d2[opaque].sum()), float(opaque.sum())
        both = opaque & hit
        dz = np.abs(m_depth[both] - s_depth[c][both])
        v = {
            "psnr_db": _db(se_u, n_u, empty=float("nan")),
            "psnr_db_opaque": _db(se_o, n_o, empty=float("nan")),
            "depth_err_median_m": float(np.median(dz)) if dz.size else None,
            "depth_err_p90_m": float(np.quantile(dz, 0.9)) if dz.size else None,
            "coverage": float(both.sum() / max(opaque.sum(), 1)),
            "spill": float((hit & empty).sum() / max(hit.sum(), 1)),
        }
        views.append(v)
        se_union += se_u
        n_union += n_u
        se_opaque += se_o
        n_opaque += n_o

    def mean(key: str) -> float | None:
        vals = [v[key] for v in views if v[key] is not None]
        return float(np.mean(vals)) if vals else None

    return {
        "psnr_db": _db(se_union, n_union),
        "psnr_db_opaque": _db(se_opaque, n_opaque),
        "depth_err_median_m": mean("depth_err_median_m"),
        "depth_err_p90_m": mean("depth_err_p90_m"),
        "coverage": mean("coverage"),
        "spill": mean("spill"),
        "views": views,
    }


def mesh_stats(vertices: np.ndarray, faces: np.ndarray) -> dict[str, Any]:
    """Topology and size of a triangle mesh, after merging vertices with identical
    coordinates (a textured mesh repeats them along its UV seams).

    Returns:
        ``{"faces", "vertices", "area_m2", "boundary_edges", "nonmanifold_edges",
        "components", "largest_component_fraction", "watertight"}``; watertight = no
        boundary and no non-manifold edge (open3d's definition adds self-intersections).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from .surface import weld

    v, f = weld(np.asarray(vertices, np.float64), np.asarray(faces, np.int64))
    out: dict[str, Any] = {"faces": int(f.shape[0]), "vertices": int(v.shape[0])}
    if f.shape[0] == 0:
        return out | {"area_m2": 0.0, "boundary_edges": 0, "nonmanifold_edges": 0,
                      "components": 0, "largest_component_fraction": 0.0,
                      "watertight": False}  # fmt: skip
    tri = v[f]
    out["area_m2"] = float(0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0],
                                                        tri[:, 2] - tri[:, 0]), axis=1).sum())  # fmt: skip
    e = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    _, counts = np.unique(e[:, 0] * v.shape[0] + e[:, 1], return_counts=True)
    out["boundary_edges"] = int((counts == 1).sum())
    out["nonmanifold_edges"] = int((counts > 2).sum())
    nv = v.shape[0]
    graph = coo_matrix((np.ones(len(e), np.int8), (e[:, 0], e[:, 1])), (nv, nv))
    _, comp = connected_components(graph, directed=False)
    fc = np.bincount(comp[f[:, 0]])
    fc = fc[fc > 0]
    out["components"] = int(fc.size)
    out["largest_component_fraction"] = float(fc.max() / f.shape[0])
    out["watertight"] = out["boundary_edges"] == 0 and out["nonmanifold_edges"] == 0
    return out
