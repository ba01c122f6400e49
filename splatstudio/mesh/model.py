"""Mesh options and the textured-mesh container."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(kw_only=True)
class MeshOptions:
    """Options of :func:`~splatstudio.mesh.build_textured_mesh`.

    Attributes:
        method: ``"tsdf"`` (default: TSDF fusion of expected-depth renders of the splat from
            the capture's cameras, or from the bake views without cameras, then marching
            cubes) or ``"poisson"`` (screened Poisson on the opaque gaussians' centres with
            normals). Measured (``benchmarks/results/mesh_methods.json``, views that built
            nothing): TSDF 0.9-5.3 dB better on the shared donut, guitar and biker splats and
            2.0 dB on the 1M-gaussian benchmark, 2-4x smaller depth error, almost no surface
            where the splat is empty (Poisson closes bubbles: up to 39% of its pixels), and
            10x faster; but open where no view looked (not watertight), and 0.6 dB worse on
            the 4,892-gaussian demo splat.
        target_faces: triangle budget after decimation.
        min_opacity: gaussians with ``sigmoid(opacity)`` below this do not shape the surface
            (Poisson: the points; TSDF: a render pixel needs this much alpha to have depth).
        poisson_depth: octree depth of the Poisson solve (0: from the point count, 8 or 9,
            :func:`~splatstudio.mesh.surface.default_poisson_depth`);
            the TSDF voxel is the same size, ``1.1 * extent / 2 ** depth``.
        density_quantile: vertices whose Poisson density is in this lowest quantile are cut
            (removes the closed "bubble" Poisson adds where there are no points).
        capture_views: when the capture's cameras are known, at most this many of them
            (evenly subsampled) are rendered, with their longest side at `bake_resolution`;
            those renders feed the bake and TSDF in place of the ring of `bake_views`.
        texture_size: texture width = height in pixels.
        bake_views: number of virtual cameras rendered for the bake (and TSDF) when the
            capture's cameras are not known.
        bake_resolution: width = height of each rendered ring view, pixels (the longest
            side of capture-camera renders).
        device: render device ("auto": CUDA when available, else CPU).
    """

    method: str = "tsdf"
    target_faces: int = 300_000
    min_opacity: float = 0.5
    poisson_depth: int = 0
    density_quantile: float = 0.02
    capture_views: int = 24
    texture_size: int = 4096
    bake_views: int = 12
    bake_resolution: int = 640
    device: str = "auto"


@dataclass(kw_only=True)
class TexturedMesh:
    """A triangle mesh with one texture.

    Attributes:
        vertices: ``[V, 3] float64`` positions, metres, the splat's frame (ENU).
        faces: ``[F, 3] int64`` vertex indices, counter-clockwise seen from outside.
        uvs: ``[V, 2] float32`` texture coordinates in ``[0, 1]``; ``(0, 0)`` is the top-left
            corner of the texture image (glTF convention; OBJ flips v).
        texture: ``[S, S, 3] uint8`` sRGB image, row 0 at the top.
        method: how the surface was made.
        timings: seconds per step (surface, decimate, uv, bake).
    """

    vertices: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray
    texture: np.ndarray
    method: str = "poisson"
    timings: dict[str, float] = field(default_factory=dict)
