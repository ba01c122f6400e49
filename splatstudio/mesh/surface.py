"""Surfaces from gaussians: screened Poisson on centres + normals, TSDF fusion of rendered
depth, quadric decimation."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ..quaternion import quat_to_rotmat
from ..render.camera import camera_centres
from ..splats.model import Splats, sigmoid


def gaussian_normals(splats: Splats, eyes: np.ndarray, views: Any = None) -> np.ndarray:
    """Normals of flat gaussians: the axis of each one's smallest scale, turned towards the
    cameras that see it.

    With `views` (renders of the splat, :class:`~splatstudio.mesh.bake.ViewRenders`), a
    gaussian is *seen* by a view when its centre projects inside the image where the
    render is opaque (alpha > 0.5) and the rendered depth is within ``1% + its largest
    scale`` of its own; each view that sees it at more than ~73 degrees from edge-on
    (``|cos| > 0.3``) votes for the side facing it, weighted by ``|cos|``. Gaussians no view
    sees (all, without `views`) face the nearest of `eyes`, which turns the far side of an
    object inwards (the nearest camera is on the other side) -- hence the votes. (Growing
    the seen orientation over the unseen gaussians, neighbour by neighbour, fixed a
    synthetic sphere's underside but cost the shared donut splat 1.7 dB and 4% coverage:
    real splats have gaussians inside their objects, which nearest-camera orientation leaves
    harmless.) Measured on ``donut_fused.ply`` from 8 views that built nothing: nearest
    camera only 14.49 dB, spill 3.3%; with votes 15.06 dB, spill 2.2%.

    Args:
        splats: ``N`` gaussians (means in metres, wxyz quats, log-scales).
        eyes: ``[C, 3]`` viewpoints in the same frame.
        views: renders to vote with, or None.

    Returns:
        ``[N, 3] float64`` unit normals.
    """
    rot = quat_to_rotmat(splats.quats)  # [N, 3, 3], columns = the gaussian's axes
    axis = np.argmin(splats.scales, axis=1)
    n = rot[np.arange(splats.n), :, axis]
    from scipy.spatial import cKDTree

    p = splats.means.astype(np.float64)
    _, nearest = cKDTree(eyes).query(p, k=1)
    side = np.sign(np.sum(n * (eyes[nearest] - p), axis=1))
    if views is not None:
        votes = np.zeros(splats.n)
        big = np.exp(splats.scales.max(axis=1).astype(np.float64))
        view_eyes = camera_centres(views.viewmats)
        for c in range(len(views)):
            vm, K = views.viewmats[c], views.Ks[c]
            depth, alpha = views.depth[c], views.alpha[c]
            h, w = depth.shape
            pc = p @ vm[:3, :3].T + vm[:3, 3]
            z = pc[:, 2]
            ok = z > 1e-6
            zs = np.where(ok, z, 1.0)
            u = np.floor(K[0, 0] * pc[:, 0] / zs + K[0, 2]).astype(np.int64)
            v = np.floor(K[1, 1] * pc[:, 1] / zs + K[1, 2]).astype(np.int64)
            ok &= (u >= 0) & (u < w) & (v >= 0) & (v < h)
            idx = np.flatnonzero(ok)
            d = depth[v[idx], u[idx]]
            tol = 0.01 * z[idx] + big[idx]
            seen = (alpha[v[idx], u[idx]] > 0.5) & (np.abs(d - z[idx]) < tol)
            idx = idx[seen]
            ray = view_eyes[c] - p[idx]
            cos = np.sum(n[idx] * ray, axis=1) / np.maximum(np.linalg.norm(ray, axis=1), 1e-12)
            # seen edge-on, a gaussian on the far side near the silhouette passes the depth
            # test too; only clear views vote
            clear = np.abs(cos) > 0.3
            votes[idx[clear]] += cos[clear]
        side = np.where(votes != 0, np.sign(votes), side)
    n = n * np.where(side < 0, -1.0, 1.0)[:, None]
    return n


def default_poisson_depth(n_points: int) -> int:
    """Poisson octree depth for `n_points` points: 8 below 50k points, else 9 (a 512^3 grid,
    which already gives ~1M triangles before decimation to the usual 300k budget)."""
    return 8 if n_points < 50_000 else 9


def poisson_surface(
    points: np.ndarray,
    normals: np.ndarray,
    *,
    depth: int = 0,
    density_quantile: float = 0.02,
    threads: int = -1,
) -> tuple[np.ndarray, np.ndarray]:
    """Screened Poisson reconstruction (Kazhdan & Hoppe 2013, open3d) of oriented points.

    Args:
        points: ``[N, 3]`` positions, metres.
        normals: ``[N, 3]`` unit normals pointing out of the surface.
        depth: octree depth (0: :func:`default_poisson_depth` of the point count).
        density_quantile: cut vertices in this lowest quantile of Poisson density (where the
            surface was extrapolated far from any point), and faces outside the points'
            bounding box.
        threads: open3d threads (-1: all cores).

    Returns:
        ``(vertices [V, 3] float64, faces [F, 3] int64)``.

    Raises:
        ValueError: fewer than 100 points.
    """
    import open3d as o3d

    if points.shape[0] < 100:
        raise ValueError(f"Poisson needs at least 100 opaque gaussians, got {points.shape[0]}")
    if depth <= 0:
        depth = default_poisson_depth(points.shape[0])
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
    pcd.normals = o3d.utility.Vector3dVector(normals.astype(np.float64))
    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        mesh, dens = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(
            pcd, depth=depth, n_threads=threads
        )
    dens = np.asarray(dens)
    if density_quantile > 0 and dens.size:
        mesh.remove_vertices_by_mask(dens < np.quantile(dens, density_quantile))
    lo, hi = points.min(axis=0), points.max(axis=0)
    pad = 0.01 * (hi - lo)
    mesh = mesh.crop(o3d.geometry.AxisAlignedBoundingBox(lo - pad, hi + pad))
    mesh.remove_degenerate_triangles()
    mesh.remove_unreferenced_vertices()
    return np.asarray(mesh.vertices).copy(), np.asarray(mesh.triangles).astype(np.int64)


def tsdf_surface(
    frames: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    *,
    voxel_size: float,
    trunc_voxels: float = 8.0,
    depth_trunc: float = 0.0,
    min_alpha: float = 0.5,
    min_weight: float = 1.0,
    max_incidence_deg: float = 90.0,
) -> tuple[np.ndarray, np.ndarray]:
    """TSDF fusion (Curless & Levoy 1996) of depth maps rendered from the splat, then
    marching cubes: open3d's tensor ``VoxelBlockGrid`` on the CPU.

    (open3d-cpu 0.20's legacy ``ScalableTSDFVolume`` integrates nothing, not even a constant
    depth plane seen five times, which is why an earlier attempt found an empty volume; the
    ``VoxelBlockGrid`` works, but its mesh extraction keeps only voxels with
    ``weight >= 3`` unless told otherwise, hence `min_weight`.)

    Args:
        frames: per view ``(depth [H, W], alpha [H, W], viewmat [4, 4], K [3, 3])``:
            expected depth along the optical axis in metres and accumulated opacity of a
            render of the splat (:func:`splatstudio.mesh.bake.render_views`), the
            world-to-camera matrix in OpenCV axes (x right, y down, z forward; open3d's
            extrinsic convention) and pixel intrinsics with pixel centres at ``i + 0.5``
            (shifted by half a pixel for open3d, whose centres are at integers).
        voxel_size: voxel edge, metres.
        trunc_voxels: truncation distance of the signed distance, in voxels.
        depth_trunc: depths beyond this are ignored, metres (0: no limit).
        min_alpha: pixels with less opacity carry no depth.
        min_weight: voxels observed by fewer views than this are not meshed.
        max_incidence_deg: pixels where the depth map's own slope says the surface is seen
            more obliquely than this are dropped (the expected depth of a splat seen at a
            grazing angle bulges towards the camera, and one view's bulge carves away the
            surface another view put there).

    Returns:
        ``(vertices [V, 3] float64, faces [F, 3] int64)``, metres, the cameras' world frame.

    Raises:
        ValueError: a frame with mismatched shapes, or a non-positive voxel size.
    """
    import open3d as o3d
    import open3d.core as o3c

    if not voxel_size > 0:
        raise ValueError(f"tsdf_surface: voxel_size must be > 0, got {voxel_size}")
    dev = o3c.Device("CPU:0")
    grid = o3d.t.geometry.VoxelBlockGrid(
        attr_names=("tsdf", "weight", "color"),
        attr_dtypes=(o3c.float32, o3c.float32, o3c.float32),
        attr_channels=((1), (1), (3)),
        voxel_size=float(voxel_size), block_resolution=8, block_count=50_000, device=dev,
    )  # fmt: skip
    n = 0
    for depth, alpha, viewmat, K in frames:
        depth = np.asarray(depth, np.float32)
        if depth.ndim != 2 or np.shape(alpha) != depth.shape:
            raise ValueError(f"tsdf_surface: depth {depth.shape} and alpha "
                             f"{np.shape(alpha)} of frame {n} do not match")  # fmt: skip
        valid = (np.asarray(alpha) >= min_alpha) & np.isfinite(depth) & (depth > 0)
        if max_incidence_deg < 90.0 and valid.any():
            # surface slope from central differences: tan(incidence) ~ |grad z| * f / z
            dz = np.where(valid, depth, np.nan)
            gy, gx = np.gradient(dz)
            f = 0.5 * (float(K[0][0]) + float(K[1][1]))
            tan_inc = np.hypot(gx, gy) * f / np.maximum(depth, 1e-9)
            valid &= np.nan_to_num(tan_inc, nan=np.inf) < np.tan(np.radians(max_incidence_deg))
        if not valid.any():
            continue
        far = float(depth_trunc) if depth_trunc > 0 else float(depth[valid].max()) * 1.01
        d = np.where(valid, depth, np.float32(0.0))
        dimg = o3d.t.geometry.Image(o3c.Tensor(np.ascontiguousarray(d)))
        color = o3d.t.geometry.Image(o3c.Tensor(np.zeros(depth.shape + (3,), np.float32)))
        k = np.array(K, np.float64)
        k[0, 2] -= 0.5
        k[1, 2] -= 0.5
        intr = o3c.Tensor(k, o3c.float64)
        extr = o3c.Tensor(np.asarray(viewmat, np.float64), o3c.float64)
        blocks = grid.compute_unique_block_coordinates(dimg, intr, extr, 1.0, far,
                                                       float(trunc_voxels))  # fmt: skip
        grid.integrate(blocks, dimg, color, intr, intr, extr, 1.0, far, float(trunc_voxels))
        n += 1
    if n == 0:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    mesh = grid.extract_triangle_mesh(weight_threshold=float(min_weight))
    v = mesh.vertex.positions.numpy().astype(np.float64)
    f = mesh.triangle.indices.numpy().astype(np.int64)
    v, f = weld(v, f)  # the grid's marching cubes repeats vertices on block borders
    return drop_small_pieces(v, f, min_fraction=0.0)


def weld(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge vertices with identical coordinates (e.g. duplicated along UV seams or block
    borders) so faces share them.

    Returns:
        ``(vertices [V', 3], faces [F, 3] int64)``, faces in the same order.
    """
    v = np.ascontiguousarray(vertices)
    if v.shape[0] == 0:
        return v, np.asarray(faces, np.int64)
    uniq, inverse = np.unique(v, axis=0, return_inverse=True)
    return uniq, inverse.reshape(-1)[np.asarray(faces, np.int64)]


def decimate(
    vertices: np.ndarray, faces: np.ndarray, target_faces: int
) -> tuple[np.ndarray, np.ndarray]:
    """Quadric-error decimation (Garland & Heckbert 1997) to at most `target_faces`
    triangles; smaller meshes are returned as they are. Small disconnected pieces (under
    0.1% of the faces) are dropped.

    Uses ``fast_simplification`` (pyvista's wrapper of Sp4cerat's Fast-Quadric-Mesh-
    Simplification, aggressiveness 3) when it is installed (the ``mesh`` extra): measured on
    the 1M-gaussian benchmark (1.32M -> 300k faces) 1.7 s of CPU against 15.5 s for open3d's
    ``simplify_quadric_decimation``, with the same distance from the gaussian centres to the
    mesh (1.46 vs 1.52 mm mean). Without it, open3d's decimation is used.

    Args:
        vertices: ``[V, 3]`` positions, metres.
        faces: ``[F, 3]`` vertex indices.
        target_faces: the triangle budget.

    Returns:
        ``(vertices [V', 3] float64, faces [F', 3] int64)``.
    """
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    if f.shape[0] > target_faces:
        try:
            import fast_simplification
        except ImportError:
            fast_simplification = None
        if fast_simplification is not None:
            # aggressiveness 3 (more careful than the default 7) stops short of the target
            # on ragged meshes (e.g. TSDF of few views); 7 then finishes the job
            for agg in (3.0, 7.0):
                v, f = fast_simplification.simplify(v, f.astype(np.int32),
                                                    target_count=int(target_faces), agg=agg)  # fmt: skip
                if f.shape[0] <= target_faces:
                    break
        else:
            import open3d as o3d

            mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(v),
                                             o3d.utility.Vector3iVector(f.astype(np.int32)))  # fmt: skip
            mesh = mesh.simplify_quadric_decimation(int(target_faces))
            v, f = np.asarray(mesh.vertices), np.asarray(mesh.triangles)
    return drop_small_pieces(np.asarray(v, np.float64), np.asarray(f, np.int64))


def drop_small_pieces(
    vertices: np.ndarray, faces: np.ndarray, min_fraction: float = 0.001
) -> tuple[np.ndarray, np.ndarray]:
    """Remove degenerate triangles (repeated vertex), pieces of the mesh (vertex-connected
    components) with fewer than ``max(10, min_fraction * F)`` faces, and unreferenced
    vertices (scipy connected components).

    Returns:
        ``(vertices [V', 3] float64, faces [F', 3] int64)``, faces in their original order.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    f = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2])
              & (faces[:, 0] != faces[:, 2])]  # fmt: skip
    nv = vertices.shape[0]
    if f.shape[0] == 0:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]]])
    graph = coo_matrix((np.ones(len(edges), np.int8), (edges[:, 0], edges[:, 1])), (nv, nv))
    _, comp = connected_components(graph, directed=False)
    fcomp = comp[f[:, 0]]
    counts = np.bincount(fcomp)
    if counts.size > 1:
        f = f[counts[fcomp] >= max(10, min_fraction * f.shape[0])]
    used = np.unique(f)
    remap = np.full(nv, -1, np.int64)
    remap[used] = np.arange(used.size)
    return np.asarray(vertices, np.float64)[used], remap[f]


def opaque(splats: Splats, min_opacity: float) -> Splats:
    """The gaussians with ``sigmoid(opacity) >= min_opacity``."""
    return splats.subset(sigmoid(splats.opacities) >= np.float32(min_opacity))
