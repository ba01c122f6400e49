"""``build_textured_mesh``: splat -> surface -> decimation -> UV atlas -> baked texture."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from ..splats.model import Splats
from .model import MeshOptions, TexturedMesh

if TYPE_CHECKING:
    from ..render.camera import Cameras

METHODS = ("poisson", "tsdf")


def build_textured_mesh(splats: Splats, options: MeshOptions | None = None, *, events=None,
                        cameras: Cameras | None = None) -> TexturedMesh:  # fmt: skip
    """Build a textured triangle mesh of `splats` (see :mod:`splatstudio.mesh`).

    Args:
        splats: gaussians, metres, z-up frame (ENU for SplatStudio scenes).
        options: :class:`MeshOptions`.
        events: an :class:`~splatstudio.events.Emitter` for logs and cancellation, or None.
        cameras: the capture's cameras (:class:`~splatstudio.render.camera.Cameras`), or
            None. ``tsdf`` fuses depth rendered from them (from the bake views without them);
            ``poisson`` turns each gaussian's normal towards the nearest of them (of the bake
            views without them).

    Returns:
        :class:`TexturedMesh` in the splats' frame; ``timings`` in seconds (``render``: the
        bake views; ``surface`` includes TSDF's own depth renders).

    Raises:
        ValueError: an unknown method, bad sizes, or too few opaque gaussians.
    """
    from .bake import bake_texture, render_cameras, render_ring
    from .surface import (
        decimate,
        default_poisson_depth,
        gaussian_normals,
        opaque,
        poisson_surface,
        tsdf_surface,
    )
    from .uv import unwrap

    o = options or MeshOptions()
    if o.method not in METHODS:
        raise ValueError(f"unknown mesh method {o.method!r}; choose one of {', '.join(METHODS)}")
    if not 64 <= o.texture_size <= 16384:
        raise ValueError(f"texture_size must be in 64..16384, got {o.texture_size}")
    if o.target_faces < 100:
        raise ValueError(f"target_faces must be >= 100, got {o.target_faces}")
    if o.bake_views < 1:
        raise ValueError(f"bake_views must be >= 1, got {o.bake_views}")

    def log(msg: str) -> None:
        if events is not None:
            events.log(msg)
            events.check_cancelled()

    timings: dict[str, float] = {}
    t = time.perf_counter()
    solid = opaque(splats, o.min_opacity)
    if solid.n < 100:
        raise ValueError(
            f"only {solid.n} gaussians are at least {o.min_opacity} opaque; lower the mesh "
            "opacity threshold"
        )
    if cameras is None:
        renders = render_ring(splats, o.bake_views, o.bake_resolution, o.device, events)
        what = f"{len(renders)} ring views"
    else:
        subset = _capture_subset(cameras, o.capture_views, o.bake_resolution)
        renders = render_cameras(splats, subset, o.device, events)
        what = f"{len(subset)} of the {len(cameras)} capture cameras"
    timings["render"] = time.perf_counter() - t
    log(f"mesh: rendered {what} ({timings['render']:.1f} s)")

    t = time.perf_counter()
    pts = solid.means.astype(np.float64)
    depth = o.poisson_depth if o.poisson_depth > 0 else default_poisson_depth(solid.n)
    if o.method == "poisson":
        eyes = renders.eyes if cameras is None else cameras.centres
        normals = gaussian_normals(solid, eyes, renders)
        v, f = poisson_surface(pts, normals, depth=depth,
                               density_quantile=o.density_quantile)  # fmt: skip
    else:
        voxel = 1.1 * float((pts.max(axis=0) - pts.min(axis=0)).max()) / 2**depth
        frames = zip(renders.depth, renders.alpha, renders.viewmats, renders.Ks, strict=True)
        v, f = tsdf_surface(frames, voxel_size=voxel, min_alpha=o.min_opacity)
    timings["surface"] = time.perf_counter() - t
    log(f"mesh: {o.method} surface: {len(f)} faces ({timings['surface']:.1f} s)")
    if len(f) == 0:
        raise ValueError(f"the {o.method} surface reconstruction produced no triangles")

    t = time.perf_counter()
    v, f = decimate(v, f, o.target_faces)
    timings["decimate"] = time.perf_counter() - t
    log(f"mesh: decimated to {len(f)} faces ({timings['decimate']:.1f} s)")

    t = time.perf_counter()
    v, f, uv = unwrap(v, f, texture_size=o.texture_size)
    timings["uv"] = time.perf_counter() - t
    log(f"mesh: UV atlas, {len(v)} vertices ({timings['uv']:.1f} s)")

    t = time.perf_counter()
    tex, stats = bake_texture(splats, v, f, uv, size=o.texture_size, device=o.device,
                              events=events, renders=renders)  # fmt: skip
    timings["bake"] = time.perf_counter() - t
    log(f"mesh: texture {o.texture_size}^2 baked from {what}, "
        f"{stats['seen_fraction']:.0%} of texels seen ({timings['bake']:.1f} s)")  # fmt: skip
    return TexturedMesh(vertices=v, faces=f, uvs=uv, texture=tex, method=o.method,
                        timings=timings)  # fmt: skip


def _capture_subset(cameras: Cameras, most: int, longest: int) -> Cameras:
    """At most `most` of `cameras` (evenly subsampled), each
    :meth:`~splatstudio.render.camera.PinholeCamera.resized` so that its longest side is
    `longest` pixels (the other side rounded, at least 1)."""
    from ..render.camera import Cameras

    n = len(cameras)
    pick = np.unique(np.linspace(0, n - 1, max(1, min(n, most))).round().astype(int))
    scaled = []
    for c in (cameras[int(i)] for i in pick):
        s = longest / max(c.width, c.height)
        scaled.append(c.resized(max(1, round(c.width * s)), max(1, round(c.height * s))))
    return Cameras.stack(scaled)
