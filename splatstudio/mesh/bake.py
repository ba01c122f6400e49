"""Bake a splat's appearance into a mesh texture.

The splat is rendered (colour and expected depth, :func:`splatstudio.render.rasterize` with
``render_mode="RGB+ED"``) from the capture's cameras when they are known, else from a ring
of virtual cameras around it (:class:`ViewRenders`); every texel's surface point is
projected into each view, kept where the view's depth agrees with the point's depth (it is
not hidden) and the splat is opaque there, and the views' colours are averaged with weights
``cos(angle between normal and view ray)^2 * alpha / distance^2``. Texels no view sees take
the colour of the nearest opaque gaussian; finally the charts are dilated into the empty
texels so bilinear filtering and mip-maps do not bleed background into the seams.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..render.camera import Cameras, camera_centres
from ..splats.model import SH_C0, Splats

#: :class:`~splatstudio.render.torch_impl.RasterConfig` knobs of the bake's CPU renders
#: (``tile_size`` is chosen per view by :func:`cpu_tile_size`)
CPU_RENDER_KNOBS = {"max_pairs": 1 << 20, "max_isects": 1 << 22}


@dataclass
class ViewRenders:
    """Renders of a splat from a set of pinhole cameras.

    Attributes:
        viewmats: ``[C, 4, 4]`` world-to-camera, OpenCV axes (x right, y down, z forward).
        Ks: ``[C, 3, 3]`` pixel intrinsics (pixel centres at ``i + 0.5``).
        rgb: per view ``[H_c, W_c, 3]`` float32 in ``[0, 1]`` on black.
        depth: per view ``[H_c, W_c]`` float32 expected depth along the optical axis, metres.
        alpha: per view ``[H_c, W_c]`` float32 accumulated opacity.
    """

    viewmats: np.ndarray
    Ks: np.ndarray
    rgb: list[np.ndarray]
    depth: list[np.ndarray]
    alpha: list[np.ndarray]

    @property
    def eyes(self) -> np.ndarray:
        """``[C, 3]`` camera centres, world frame."""
        return camera_centres(self.viewmats)

    def __len__(self) -> int:
        return int(self.viewmats.shape[0])


def cpu_tile_size(
    splats: Splats, viewmat: np.ndarray, K: np.ndarray, width: int, height: int
) -> int:
    """The tile edge (2, 4, 8 or 16 px) that minimises the CPU rasterizer's estimated work
    for one view.

    The CPU rasterizer evaluates every pixel of every tile a gaussian touches, so its work
    is about ``isects(t) * (t^2 + 3)`` (``isects``: tile/gaussian pairs; the 3 is the
    measured cost of binning and sorting one pair, in pixel evaluations); small gaussians
    favour small tiles (1M gaussians of 1-3 px at 640^2: 4 px tiles 4x faster than 16),
    large ones big tiles. ``isects`` is estimated from each gaussian's 3-sigma screen radius
    (largest scale, ``f * s / z`` plus the 0.3 px^2 low-pass). Tiling never changes the
    rendered values.
    """
    R, tv = np.asarray(viewmat, np.float64)[:3, :3], np.asarray(viewmat, np.float64)[:3, 3]
    pc = splats.means.astype(np.float64) @ R.T + tv
    z = pc[:, 2]
    vis = z > 0.01
    if not vis.any():
        return 16
    pc, z = pc[vis], z[vis]
    f = float(max(K[0, 0], K[1, 1]))
    sig = f * np.exp(splats.scales[vis].max(axis=1).astype(np.float64)) / z
    r = 3.0 * np.sqrt(sig * sig + 0.3)
    u = f * pc[:, 0] / z + K[0, 2]
    v = f * pc[:, 1] / z + K[1, 2]
    on = (u + r > 0) & (u - r < width) & (v + r > 0) & (v - r < height)
    r = np.minimum(r[on], max(width, height))
    best, best_cost = 16, math.inf
    for t in (2, 4, 8, 16):
        span = np.ceil(2.0 * r / t) + 1.0
        cost = float((span * span).sum()) * (t * t + 3.0)
        if cost < best_cost:
            best, best_cost = t, cost
    return best


def ring_cameras(
    points: np.ndarray, n_views: int, *, fov_deg: float = 60.0, up=(0.0, 0.0, 1.0)
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Virtual cameras on two rings around `points` (z-up frame), looking at their centre.

    Two thirds of the views at 25 degrees elevation, the rest at 60 degrees (turned by half
    a step), at a distance that frames the points' 1-99 percentile bounding sphere.

    Returns:
        ``(viewmats [C, 4, 4] world-to-camera OpenCV, eyes [C, 3], centre [3], radius)``,
        metres.
    """
    from ..render.camera import look_at

    lo, hi = np.percentile(points, 1, axis=0), np.percentile(points, 99, axis=0)
    centre = 0.5 * (lo + hi)
    radius = max(0.5 * float(np.linalg.norm(hi - lo)), 1e-3)
    dist = radius / math.sin(math.radians(fov_deg) / 2) * 1.05
    n_low = max(1, math.ceil(n_views * 2 / 3))
    rings = [(25.0, n_low, 0.0), (60.0, n_views - n_low, 0.5)]
    vms, eyes = [], []
    for elev, count, shift in rings:
        for i in range(count):
            az = 2 * math.pi * (i + shift) / count
            el = math.radians(elev)
            eye = centre + dist * np.array(
                [math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)]
            )
            vms.append(look_at(eye, centre, up))
            eyes.append(eye)
    return np.stack(vms), np.stack(eyes), centre, radius


def _render_each(
    splats: Splats,
    viewmats: np.ndarray,
    Ks: np.ndarray,
    sizes: Sequence[tuple[int, int]] | np.ndarray,
    device: str = "auto",
    events=None,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Render colour, expected depth and alpha of `splats` from each camera in turn (black
    background); the splat's tensors are built once for all the cameras.

    Args:
        splats: the gaussians (metres).
        viewmats: ``[C, 4, 4]`` world-to-camera, OpenCV axes.
        Ks: ``[C, 3, 3]`` pixel intrinsics.
        sizes: ``[C, 2]`` per camera ``(width, height)``, pixels.
        device: "auto", "cpu" or "cuda".
        events: an Emitter whose cancel token is checked before each view, or None.

    Yields:
        per camera ``(rgb [H, W, 3] float32 in [0, 1], depth [H, W] float32 metres along
        the optical axis (expected depth, divided by alpha), alpha [H, W] float32)``.
    """
    import torch

    from ..render.image import resolve_device, to_tensor
    from ..render.rasterize import rasterize

    dev = resolve_device(device)

    def t(a):
        return to_tensor(a, dev)

    # CPU rasterizer: bigger blocks and a tile size fitted to the gaussians' screen size;
    # the same image (tiling does not change the values), measured 4x faster than the
    # training defaults (16 px tiles) for 1M gaussians at 640^2
    cpu = dev.type == "cpu"
    sh = np.concatenate([splats.sh0, splats.shN], axis=1) if splats.shN.shape[1] else splats.sh0
    args = (t(splats.means), t(splats.quats), torch.exp(t(splats.scales)),
            torch.sigmoid(t(splats.opacities)), t(sh))  # fmt: skip
    black = t(np.zeros(3, np.float32))[None]
    for c in range(viewmats.shape[0]):
        if events is not None:
            events.check_cancelled()
        width, height = (int(x) for x in sizes[c])
        knobs = {}
        if cpu:
            ts = cpu_tile_size(splats, viewmats[c], Ks[c], width, height)
            knobs = CPU_RENDER_KNOBS | {"tile_size": ts}
        with torch.no_grad():
            img, alpha, _ = rasterize(
                *args, t(viewmats[c])[None], t(Ks[c])[None], width, height,
                sh_degree=splats.sh_degree, render_mode="RGB+ED", backgrounds=black, **knobs,
            )  # fmt: skip
        img = img[0].cpu().numpy()
        yield np.clip(img[..., :3], 0, 1), img[..., 3], alpha[0, ..., 0].cpu().numpy()


def render_views(
    splats: Splats,
    viewmats: np.ndarray,
    K: np.ndarray,
    size: int | tuple[int, int],
    device: str = "auto",
    events=None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render colour, expected depth and alpha of `splats` from each camera (black
    background).

    Args:
        splats: the gaussians (metres).
        viewmats: ``[C, 4, 4]`` world-to-camera, OpenCV axes.
        K: ``[3, 3]`` pixel intrinsics shared by the cameras, or ``[C, 3, 3]``.
        size: image side ``S`` (square) or ``(width, height)``, pixels.
        device: "auto", "cpu" or "cuda".
        events: an Emitter whose cancel token is checked between views, or None.

    Returns:
        ``(rgb [C, H, W, 3] float32 in [0, 1], depth [C, H, W] float32 metres along the
        optical axis (expected depth, divided by alpha), alpha [C, H, W] float32)``.
    """
    width, height = (size, size) if isinstance(size, int | np.integer) else size
    n = viewmats.shape[0]
    Ks = np.broadcast_to(np.asarray(K, np.float64), (n, 3, 3))
    views = list(_render_each(splats, viewmats, Ks, [(width, height)] * n, device, events))
    rgb, depth, alpha = zip(*views, strict=True) if views else ((), (), ())
    return np.stack(rgb), np.stack(depth), np.stack(alpha)


def render_cameras(splats: Splats, cameras: Cameras, device: str = "auto",
                   events=None) -> ViewRenders:  # fmt: skip
    """Render `splats` from `cameras` of any sizes (black background; see
    :func:`render_views`).

    Args:
        cameras: C pinhole cameras (:class:`~splatstudio.render.camera.Cameras`: world-to-camera
            OpenCV viewmats, pixel Ks, ``(width, height)`` sizes).

    Returns:
        :class:`ViewRenders` of those cameras (viewmats and Ks as float64).
    """
    out = ViewRenders(cameras.viewmats, cameras.Ks, [], [], [])
    for rgb, depth, alpha in _render_each(splats, out.viewmats, out.Ks, cameras.sizes, device,
                                          events):  # fmt: skip
        out.rgb.append(rgb)
        out.depth.append(depth)
        out.alpha.append(alpha)
    return out


def render_ring(
    splats: Splats, views: int, resolution: int, device: str = "auto", events=None
) -> ViewRenders:
    """Render `splats` from `views` virtual cameras around it (:func:`ring_cameras` with a
    60 degree field of view), square images of side `resolution` pixels, black background.

    Args:
        splats: the gaussians (metres, z-up frame such as ENU).
        views: number of ring cameras.
        resolution: width = height of each view, pixels.
        device: "auto", "cpu" or "cuda".
        events: an Emitter whose cancel token is checked between views, or None.

    Returns:
        :class:`ViewRenders` of the ring (``Ks`` the same ``[3, 3]`` for every view).
    """
    from ..render.camera import Cameras, intrinsics_from_fov

    fov = 60.0
    vm, _, _, _ = ring_cameras(splats.means.astype(np.float64), views, fov_deg=fov)
    K = np.asarray(intrinsics_from_fov(fov, resolution, resolution), np.float64)
    ring = Cameras(vm, np.broadcast_to(K, (len(vm), 3, 3)), [(resolution, resolution)] * len(vm))
    return render_cameras(splats, ring, device, events)


def rasterize_uv(faces_uv: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which triangle covers each texel centre of a ``size x size`` texture.

    Args:
        faces_uv: ``[F, 3, 2]`` uv of each face's corners in ``[0, 1]`` (u right, v down).

    Returns:
        ``(texel_index [T] int64 = row * size + col, face [T] int64, bary [T, 3] float32)``
        for the covered texels (each texel once).
    """
    p = faces_uv.astype(np.float64) * size - 0.5  # texel centres at integers
    lo = np.floor(p.min(axis=1)).astype(np.int64) + 1
    hi = np.floor(p.max(axis=1)).astype(np.int64)
    lo = np.clip(lo, 0, size - 1)
    hi = np.clip(hi, 0, size - 1)
    ext = np.maximum(hi - lo + 1, 0).max(axis=1)
    owner = np.full(size * size, -1, np.int64)
    bary_all = np.zeros((size * size, 3), np.float32)
    a, b, c = p[:, 0], p[:, 1], p[:, 2]
    den = (b[:, 1] - c[:, 1]) * (a[:, 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (a[:, 1] - c[:, 1])
    ok = np.abs(den) > 1e-12
    groups = [(0, 2), (2, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 1 << 30)]
    for g_lo, g_hi in groups:
        sel = np.nonzero(ok & (ext > g_lo) & (ext <= g_hi))[0]
        if sel.size == 0:
            continue
        k = int(ext[sel].max())
        dy, dx = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
        dy, dx = dy.ravel(), dx.ravel()
        step = max(1, 4_000_000 // (k * k))
        for s in range(0, sel.size, step):
            fi = sel[s : s + step]
            x = lo[fi, 0][:, None] + dx[None]
            y = lo[fi, 1][:, None] + dy[None]
            inside = (x <= hi[fi, 0][:, None]) & (y <= hi[fi, 1][:, None])
            ax, ay = a[fi, 0][:, None], a[fi, 1][:, None]
            bx, by = b[fi, 0][:, None], b[fi, 1][:, None]
            cx, cy = c[fi, 0][:, None], c[fi, 1][:, None]
            d = den[fi][:, None]
            w0 = ((by - cy) * (x - cx) + (cx - bx) * (y - cy)) / d
            w1 = ((cy - ay) * (x - cx) + (ax - cx) * (y - cy)) / d
            w2 = 1.0 - w0 - w1
            eps = -1e-6
            inside &= (w0 >= eps) & (w1 >= eps) & (w2 >= eps)
            r, col = np.nonzero(inside)
            tix = y[r, col] * size + x[r, col]
            owner[tix] = fi[r]
            bary_all[tix] = np.stack([w0[r, col], w1[r, col], w2[r, col]], axis=1)
    texels = np.nonzero(owner >= 0)[0]
    return texels, owner[texels], bary_all[texels]


def _sample(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear samples ``[M, 3]`` of ``img [H, W, 3] float32`` at pixel coordinates `x`, `y`
    ``[M]`` (pixel centres at ``i + 0.5``; clamped at the border), by ``cv2.remap``."""
    import cv2

    m = x.size
    cols = 4096
    rows = -(-m // cols)
    mx = np.zeros(rows * cols, np.float32)
    my = np.zeros(rows * cols, np.float32)
    mx[:m] = x
    mx[:m] -= 0.5
    my[:m] = y
    my[:m] -= 0.5
    out = cv2.remap(img, mx.reshape(rows, cols), my.reshape(rows, cols), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
    return out.reshape(-1, img.shape[2])[:m]


def dilate(texture: np.ndarray, filled: np.ndarray, iterations: int = 16) -> np.ndarray:
    """Grow the filled texels of `texture` ``[S, S, C]`` (any dtype) into the empty ones
    (`filled` ``[S, S] bool``): every empty texel within `iterations` texels of a filled one
    takes the colour of the nearest filled texel (one pass of ``cv2.distanceTransformWithLabels``,
    5x5 Euclidean approximation); the rest takes the mean colour of the filled texels."""
    import cv2

    out = texture.copy()
    if not filled.any() or filled.all():
        return out
    src = np.where(filled, 0, 255).astype(np.uint8)
    dist, labels = cv2.distanceTransformWithLabels(
        src, cv2.DIST_L2, cv2.DIST_MASK_5, labelType=cv2.DIST_LABEL_PIXEL
    )
    flat = out.reshape(-1, out.shape[-1])
    labels = labels.reshape(-1)
    inside = np.flatnonzero(filled.reshape(-1))
    source = np.zeros(int(labels.max()) + 1, np.int64)
    source[labels[inside]] = inside  # each filled texel is its own label
    near = np.flatnonzero(~filled.reshape(-1) & (dist.reshape(-1) <= iterations))
    far = ~filled.reshape(-1) & (dist.reshape(-1) > iterations)
    flat[near] = flat[source[labels[near]]]
    mean = flat[inside].mean(axis=0)
    flat[far] = np.round(mean) if np.issubdtype(out.dtype, np.integer) else mean
    return out


def bake_texture(
    splats: Splats,
    vertices: np.ndarray,
    faces: np.ndarray,
    uvs: np.ndarray,
    *,
    size: int = 4096,
    views: int = 12,
    resolution: int = 1024,
    device: str = "auto",
    events=None,
    renders: ViewRenders | None = None,
    workers: int = 0,
) -> tuple[np.ndarray, dict]:
    """Bake the splat's rendered appearance into a texture for a UV-mapped mesh.

    Args:
        splats: the gaussians (metres, z-up frame such as ENU).
        vertices: ``[V, 3]`` mesh positions, same frame.
        faces: ``[F, 3]`` vertex indices.
        uvs: ``[V, 2]`` texture coordinates in ``[0, 1]``, ``(0, 0)`` top-left.
        size: texture side, pixels.
        views: virtual cameras rendered (:func:`render_ring`) when `renders` is None.
        resolution: side of each rendered ring view, pixels.
        renders: the views to bake from (any cameras, e.g. the capture's), or None to
            render the ring here.
        workers: threads projecting the texels into the views (0: one per CPU core, at
            most 4).

    A texel is taken from a view where the view's expected depth is within
    ``0.02 * depth + 2 * median edge length`` of the texel's depth and the render's alpha
    exceeds 0.5.

    Returns:
        ``(texture [size, size, 3] uint8, stats)`` with stats ``texels`` (covered by the
        mesh), ``seen_fraction`` (of those, seen by at least one view), ``render_s``.
    """
    import time

    from scipy.spatial import cKDTree

    t0 = time.perf_counter()
    if renders is None:
        renders = render_ring(splats, views, resolution, device, events)
    render_s = time.perf_counter() - t0
    vm, eyes = renders.viewmats, renders.eyes
    rgb, depth, alpha = renders.rgb, renders.depth, renders.alpha
    edges = vertices[faces[:, [1, 2, 0]]] - vertices[faces]
    edge = float(np.median(np.linalg.norm(edges.reshape(-1, 3), axis=1))) if len(faces) else 0.0

    texels, face, bary = rasterize_uv(uvs[faces], size)
    tri_f = vertices[faces].astype(np.float32)  # [F, 3, 3]
    # texel surface points, one array per coordinate (1-D gathers are the cheapest)
    p_xyz = [np.einsum("tk,tk->t", bary, tri_f[face, :, d]) for d in range(3)]
    fn = np.cross(tri_f[:, 1] - tri_f[:, 0], tri_f[:, 2] - tri_f[:, 0])  # per face
    fn /= np.maximum(np.linalg.norm(fn, axis=1, keepdims=True), 1e-20)
    centre_f = tri_f.mean(axis=1)
    plane_f = np.einsum("ij,ij->i", fn, centre_f)  # n . p for every point p of the face

    def project(views_of_worker: list[int]) -> tuple[np.ndarray, np.ndarray]:
        acc = np.zeros((texels.size, 3), np.float32)
        wsum = np.zeros(texels.size, np.float32)
        tol = np.float32(2.0 * edge)
        for c in views_of_worker:
            if events is not None:
                events.check_cancelled()
            eye = eyes[c].astype(np.float32)
            # n . (p - eye) is constant over a face: the cosine's numerator, per face
            dot_f = plane_f - fn @ eye
            # faces seen edge-on (or not at all) from this camera are skipped as a whole
            cos_f = np.abs(dot_f) / np.maximum(np.linalg.norm(centre_f - eye, axis=1), 1e-12)
            idx = np.flatnonzero((cos_f > 0.1)[face])
            R, tv = vm[c, :3, :3].astype(np.float32), vm[c, :3, 3].astype(np.float32)
            K = renders.Ks[c]
            hc, wc = depth[c].shape
            px, py, pz = (q[idx] for q in p_xyz)
            x = px * R[0, 0] + py * R[0, 1] + pz * R[0, 2] + tv[0]
            y = px * R[1, 0] + py * R[1, 1] + pz * R[1, 2] + tv[1]
            z = px * R[2, 0] + py * R[2, 1] + pz * R[2, 2] + tv[2]
            del px, py, pz
            front = z > 1e-6
            zs = np.where(front, z, np.float32(1.0))
            u = x / zs * np.float32(K[0, 0]) + np.float32(K[0, 2])
            v = y / zs * np.float32(K[1, 1]) + np.float32(K[1, 2])
            inb = front & (u >= 0) & (u < wc) & (v >= 0) & (v < hc)
            idx, u, v, x, y, z = idx[inb], u[inb], v[inb], x[inb], y[inb], z[inb]
            pix = v.astype(np.int64) * wc + u.astype(np.int64)
            a = alpha[c].reshape(-1)[pix]
            ok = (a > 0.5) & (np.abs(depth[c].reshape(-1)[pix] - z) < tol + np.float32(0.02) * z)
            idx, u, v, a = idx[ok], u[ok], v[ok], a[ok]
            if idx.size == 0:
                continue
            dist2 = np.maximum(x[ok] ** 2 + y[ok] ** 2 + z[ok] ** 2, np.float32(1e-24))
            dot = dot_f[face[idx]]
            w = dot * dot / dist2 * a / dist2  # = cos^2 * alpha / distance^2
            acc[idx] += _sample(flat_rgb[c], u, v) * w[:, None]
            wsum[idx] += w
        return acc, wsum

    # the renders are composited on black: divide by alpha for the surface's own colour
    # (alpha > 0.5 where sampled; the weights carry alpha)
    flat_rgb = [np.ascontiguousarray(np.clip(im / np.maximum(a, 1e-6)[..., None], 0, 1),
                                     dtype=np.float32) for im, a in zip(rgb, alpha, strict=True)]  # fmt: skip
    # numpy releases the GIL in these loops: views are split over threads, each with its own
    # accumulators (70 MB each for a 4096^2 texture)
    n_workers = max(1, min(workers if workers > 0 else (os.cpu_count() or 1), len(vm), 4))
    if n_workers == 1:
        acc, wsum = project(list(range(len(vm))))
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(n_workers) as ex:
            parts = list(ex.map(project, [list(range(k, len(vm), n_workers))
                                          for k in range(n_workers)]))  # fmt: skip
        acc, wsum = parts[0]
        for a2, w2 in parts[1:]:
            acc += a2
            wsum += w2
        del parts
    seen = wsum > 0
    colors = np.zeros((texels.size, 3), np.float32)
    colors[seen] = (acc[seen] / wsum[seen, None]).astype(np.float32)
    if (~seen).any():  # never seen: the nearest opaque gaussian's base colour
        from ..splats.model import sigmoid

        op = sigmoid(splats.opacities) >= 0.3
        src = splats.subset(op) if op.sum() > 0 else splats
        base = np.clip(0.5 + SH_C0 * src.sh0[:, 0], 0, 1)
        unseen = np.stack([q[~seen] for q in p_xyz], axis=1)
        _, nn = cKDTree(src.means).query(unseen, k=1, workers=-1)
        colors[~seen] = base[nn]
    tex = np.zeros((size * size, 3), np.uint8)
    tex[texels] = np.clip(np.round(colors * 255.0), 0, 255).astype(np.uint8)
    filled = np.zeros(size * size, bool)
    filled[texels] = True
    out = dilate(tex.reshape(size, size, 3), filled.reshape(size, size))
    stats = {"texels": int(texels.size), "seen_fraction": float(seen.mean()) if seen.size else 0.0,
             "render_s": render_s}  # fmt: skip
    return out, stats
