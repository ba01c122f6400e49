"""Surfaces from gaussians: screened Poisson on centres + normals, and quadric decimation."""

from __future__ import annotations

import numpy as np

from ..splats.model import Splats, quat_to_rotation, sigmoid


def gaussian_normals(splats: Splats, eyes: np.ndarray) -> np.ndarray:
    """Normals of flat gaussians: the axis of each one's smallest scale, turned towards the
    nearest of the viewpoints `eyes` (the surface faces where it was seen from).

    Args:
        splats: ``N`` gaussians (means in metres, wxyz quats, log-scales).
        eyes: ``[C, 3]`` viewpoints in the same frame.

    Returns:
        ``[N, 3] float64`` unit normals.
    """
    rot = quat_to_rotation(splats.quats)  # [N, 3, 3], columns = the gaussian's axes
    axis = np.argmin(splats.scales, axis=1)
    n = rot[np.arange(splats.n), :, axis]
    from scipy.spatial import cKDTree

    _, nearest = cKDTree(eyes).query(splats.means.astype(np.float64), k=1)
    to_eye = eyes[nearest] - splats.means
    flip = np.sum(n * to_eye, axis=1) < 0
    n[flip] *= -1.0
    return n


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
        depth: octree depth (0: 8 below 50k points, else 9: a 512^3 grid, which already
            gives ~1M triangles before decimation to the usual 300k budget).
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
        depth = 8 if points.shape[0] < 50_000 else 9
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


def decimate(
    vertices: np.ndarray, faces: np.ndarray, target_faces: int
) -> tuple[np.ndarray, np.ndarray]:
    """Quadric-error decimation (Garland & Heckbert, open3d) to at most `target_faces`
    triangles; smaller meshes are returned as they are. Small disconnected pieces (under
    0.1% of the faces) are dropped.

    Returns:
        ``(vertices [V, 3] float64, faces [F, 3] int64)``.
    """
    import open3d as o3d

    mesh = o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(vertices), o3d.utility.Vector3iVector(faces.astype(np.int32))
    )
    if faces.shape[0] > target_faces:
        mesh = mesh.simplify_quadric_decimation(int(target_faces))
    clusters, counts, _ = mesh.cluster_connected_triangles()
    clusters, counts = np.asarray(clusters), np.asarray(counts)
    if counts.size > 1:
        small = counts[clusters] < max(10, 0.001 * len(clusters))
        mesh.remove_triangles_by_mask(small)
    mesh.remove_degenerate_triangles()
    mesh.remove_unreferenced_vertices()
    return np.asarray(mesh.vertices).copy(), np.asarray(mesh.triangles).astype(np.int64)


def opaque(splats: Splats, min_opacity: float) -> Splats:
    """The gaussians with ``sigmoid(opacity) >= min_opacity``."""
    return splats.subset(sigmoid(splats.opacities) >= np.float32(min_opacity))
