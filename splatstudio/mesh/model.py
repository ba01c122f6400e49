"""Mesh options and the textured-mesh container."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(kw_only=True)
class MeshOptions:
    """Options of :func:`~splatstudio.mesh.build_textured_mesh`.

    Attributes:
        method: ``"poisson"`` (screened Poisson on centres + normals).
        target_faces: triangle budget after decimation.
        min_opacity: gaussians with ``sigmoid(opacity)`` below this do not shape the surface.
        poisson_depth: octree depth of the Poisson solve (0: from the point count, 8..10).
        density_quantile: vertices whose Poisson density is in this lowest quantile are cut
            (removes the closed "bubble" Poisson adds where there are no points).
        texture_size: texture width = height in pixels.
        bake_views: number of virtual cameras rendered for the bake.
        bake_resolution: width = height of each rendered view, pixels.
        device: render device ("auto": CUDA when available, else CPU).
    """

    method: str = "poisson"
    target_faces: int = 300_000
    min_opacity: float = 0.5
    poisson_depth: int = 0
    density_quantile: float = 0.02
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
