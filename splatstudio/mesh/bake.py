"""Bake a splat's appearance into a mesh texture.

The splat is rendered (colour and expected depth, :func:`splatstudio.render.rasterize` with
``render_mode="RGB+ED"``) from a ring of virtual cameras around it; every texel's surface
point is projected into each view, kept where the view's depth agrees with the point's depth
(it is not hidden) and the splat is opaque there, and the views' colours are averaged with
weights ``cos(angle between normal and view ray)^2 * alpha / distance^2``. Texels no view
sees take the colour of the nearest opaque gaussian; finally the charts are dilated into the
empty texels so bilinear filtering and mip-maps do not bleed background into the seams.
"""

from __future__ import annotations

import math

import numpy as np

from ..splats.model import SH_C0, Splats

#: :class:`~splatstudio.render.torch_impl.RasterConfig` knobs of the bake's CPU renders
CPU_RENDER_KNOBS = {"tile_size": 4, "max_pairs": 1 << 20, "max_isects": 1 << 22}


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
    import torch

    from ..render.image import resolve_device
    from ..render.rasterize import rasterize

    dev = resolve_device(device)

    def t(a):
        return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=dev)

    # CPU rasterizer knobs for a forward-only render of many small gaussians: 4 px tiles and
    # bigger blocks; the same image (tiling does not change the values), measured 4x faster
    # than the training defaults (16 px tiles) for 1M gaussians at 640^2
    knobs = CPU_RENDER_KNOBS if dev.type == "cpu" else {}
    sh = np.concatenate([splats.sh0, splats.shN], axis=1) if splats.shN.shape[1] else splats.sh0
    args = (t(splats.means), t(splats.quats), torch.exp(t(splats.scales)),
            torch.sigmoid(t(splats.opacities)), t(sh))  # fmt: skip
    width, height = (size, size) if isinstance(size, int | np.integer) else size
    Ks = np.broadcast_to(np.asarray(K, np.float64), (viewmats.shape[0], 3, 3))
    rgbs, depths, alphas = [], [], []
    for c in range(viewmats.shape[0]):
        if events is not None:
            events.check_cancelled()
        with torch.no_grad():
            img, alpha, _ = rasterize(
                *args, t(viewmats[c])[None], t(Ks[c])[None], int(width), int(height),
                sh_degree=splats.sh_degree, render_mode="RGB+ED",
                backgrounds=t(np.zeros(3, np.float32))[None], **knobs,
            )  # fmt: skip
        img = img[0].cpu().numpy()
        rgbs.append(np.clip(img[..., :3], 0, 1))
        depths.append(img[..., 3])
        alphas.append(alpha[0, ..., 0].cpu().numpy())
    return np.stack(rgbs), np.stack(depths), np.stack(alphas)


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
    """Grow the filled texels of `texture` ``[S, S, C] float32`` into the empty ones
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
    flat[far] = flat[inside].mean(axis=0)
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
    renders: tuple | None = None,
) -> tuple[np.ndarray, dict]:
    """Bake the splat's rendered appearance into a texture for a UV-mapped mesh.

    Args:
        splats: the gaussians (metres, z-up frame such as ENU).
        vertices: ``[V, 3]`` mesh positions, same frame.
        faces: ``[F, 3]`` vertex indices.
        uvs: ``[V, 2]`` texture coordinates in ``[0, 1]``, ``(0, 0)`` top-left.
        size: texture side, pixels.
        views: virtual cameras rendered (:func:`ring_cameras`).
        resolution: side of each rendered view, pixels.
        renders: ``(rgb, depth, alpha)`` of :func:`render_views` for exactly these cameras
            (:func:`ring_cameras` with `views`, 60 degree field of view, `resolution`), when
            they were rendered already (e.g. for TSDF fusion); None renders them here.

    Returns:
        ``(texture [size, size, 3] uint8, stats)`` with stats ``texels`` (covered by the
        mesh), ``seen_fraction`` (of those, seen by at least one view), ``render_s``.
    """
    import time

    from scipy.spatial import cKDTree

    from ..render.camera import intrinsics_from_fov

    fov = 60.0
    vm, eyes, _, radius = ring_cameras(splats.means.astype(np.float64), views, fov_deg=fov)
    K = np.asarray(intrinsics_from_fov(fov, resolution, resolution), np.float64)
    t0 = time.perf_counter()
    if renders is None:
        renders = render_views(splats, vm, K, resolution, device, events)
    rgb, depth, alpha = renders
    render_s = time.perf_counter() - t0

    texels, face, bary = rasterize_uv(uvs[faces], size)
    tri_f = vertices[faces].astype(np.float32)  # [F, 3, 3]
    pts = np.zeros((texels.size, 3), np.float32)
    for k in range(3):
        pts += bary[:, k : k + 1] * tri_f[face, k]
    fn = np.cross(tri_f[:, 1] - tri_f[:, 0], tri_f[:, 2] - tri_f[:, 0])  # per face
    fn /= np.maximum(np.linalg.norm(fn, axis=1, keepdims=True), 1e-20)
    centre_f = tri_f.mean(axis=1)

    acc = np.zeros((texels.size, 3), np.float32)
    wsum = np.zeros(texels.size, np.float32)
    tol = np.float32(0.02 * radius)
    flat_rgb = [np.ascontiguousarray(im, dtype=np.float32) for im in rgb]
    for c in range(vm.shape[0]):
        if events is not None:
            events.check_cancelled()
        eye = eyes[c].astype(np.float32)
        # faces seen edge-on (or not at all) from this camera are skipped as a whole
        ray_f = centre_f - eye
        cos_f = np.abs(np.einsum("ij,ij->i", fn, ray_f)) / np.maximum(
            np.linalg.norm(ray_f, axis=1), 1e-12
        )
        idx = np.flatnonzero((cos_f > 0.1)[face])
        R, tvec = vm[c, :3, :3].astype(np.float32), vm[c, :3, 3].astype(np.float32)
        pc = np.einsum("nj,ij->ni", pts[idx], R)  # (numpy's matmul is ~5x slower here)
        pc += tvec
        z = pc[:, 2]
        front = z > 1e-6
        zs = np.where(front, z, np.float32(1.0))
        u = pc[:, 0] / zs
        u *= np.float32(K[0, 0])
        u += np.float32(K[0, 2])
        v = pc[:, 1] / zs
        v *= np.float32(K[1, 1])
        v += np.float32(K[1, 2])
        inb = front & (u >= 0) & (u < resolution) & (v >= 0) & (v < resolution)
        idx, u, v, z = idx[inb], u[inb], v[inb], z[inb]
        pix = v.astype(np.int64) * resolution + u.astype(np.int64)
        a = alpha[c].reshape(-1)[pix]
        ok = (a > 0.5) & (np.abs(depth[c].reshape(-1)[pix] - z) < tol + np.float32(0.01) * z)
        idx, u, v, a, z = idx[ok], u[ok], v[ok], a[ok], z[ok]
        if idx.size == 0:
            continue
        ray = pts[idx] - eye
        dist2 = np.maximum(np.einsum("ij,ij->i", ray, ray), np.float32(1e-24))
        dot = np.einsum("ij,ij->i", fn[face[idx]], ray)
        w = dot * dot / dist2 * a / dist2  # = cos^2 * alpha / distance^2
        acc[idx] += _sample(flat_rgb[c], u, v) * w[:, None]
        wsum[idx] += w
    seen = wsum > 0
    colors = np.zeros((texels.size, 3), np.float32)
    colors[seen] = (acc[seen] / wsum[seen, None]).astype(np.float32)
    if (~seen).any():  # never seen: the nearest opaque gaussian's base colour
        from ..splats.model import sigmoid

        op = sigmoid(splats.opacities) >= 0.3
        src = splats.subset(op) if op.sum() > 0 else splats
        base = np.clip(0.5 + SH_C0 * src.sh0[:, 0], 0, 1)
        _, nn = cKDTree(src.means).query(pts[~seen], k=1, workers=-1)
        colors[~seen] = base[nn]
    tex = np.zeros((size * size, 3), np.float32)
    tex[texels] = colors
    filled = np.zeros(size * size, bool)
    filled[texels] = True
    tex = dilate(tex.reshape(size, size, 3), filled.reshape(size, size))
    out = np.clip(np.round(tex * 255.0), 0, 255).astype(np.uint8)
    stats = {"texels": int(texels.size), "seen_fraction": float(seen.mean()) if seen.size else 0.0,
             "render_s": render_s}  # fmt: skip
    return out, stats
