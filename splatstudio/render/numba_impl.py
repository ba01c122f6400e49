"""Compiled (numba) tile compositing for the CPU rasterizer: the per-tile loops in parallel.

The profile of a CPU training step (``benchmarks/results/vs_opensplat.json``, 100k Gaussians,
512 x 512) put ~55 % of the step in the tile compositing forward (0.12 s) and backward
(0.16 s) of :mod:`splatstudio.render.torch_impl`, whose batched-tensor form runs as a
Python loop over blocks that keeps ~0.85 of the two cores busy. This module runs the same
image formation as per-pixel loops compiled by numba (LLVM; PyPI wheels, no compiler on the
user's machine), ``prange`` over tiles, so every core composites its own tiles:

* **binning** (:func:`bin_tiles`): each visible Gaussian's opacity-aware bounding box in
  tiles, culled by the exact ellipse-tile test of :func:`torch_impl._tile_hits` (gsplat 1.5
  ``IntersectTile.cu``); a stable counting sort by tile of the (Gaussian, tile) pairs keeps
  each tile's list in the Gaussians' front-to-back order (the input is sorted by depth,
  ties by index), which is gsplat's order.
* **forward** (:func:`_forward_kernel`): per pixel, front-to-back compositing at the pixel
  centre, ``sigma = 0.5 (a dx^2 + c dy^2) + b dx dy``, skip ``sigma < 0``,
  ``alpha = min(0.999, o exp(-sigma))``, skip ``alpha < 1/255``, stop (exclusive) when
  ``T (1 - alpha) <= 1e-4``; it saves the final transmittance and the end of the pixel's
  list walk (gsplat ``RasterizeToPixels3DGSFwd.cu``).
* **backward** (:func:`_backward_kernel`): per pixel, back to front from that end,
  recovering ``T_i = T_{i+1} / (1 - alpha_i)`` and the colour behind each entry
  (gsplat ``RasterizeToPixels3DGSBwd.cu``); the gradient of ``alpha`` is chained through
  ``o exp(-sigma)`` (zero where the 0.999 clamp is active, as the torch twin). Each thread
  accumulates its tiles' per-Gaussian gradients in its own buffer, summed at the end, so the
  result does not depend on scheduling (only on the thread count, through float summation
  order).

Arithmetic is float64 inside the kernels whatever the tensor dtype (the saved
transmittances too), so the float32 results agree with the float64 brute-force reference
as well as the torch twin does. :class:`RasterizeToPixelsNumba` has the signature and
outputs of ``torch_impl._RasterizeToPixels``; the torch version stays the reference twin
(``RasterConfig.kernel = "torch"``) and is what runs when numba is not installed or the
tensors are not on the CPU. ``tests/unit/test_render_numba.py`` checks images and all
gradients against it and against the brute-force renderer, on random and real scenes.

Memory: O(I) for the I tile/Gaussian intersections of one image (12 bytes each while
binning, 4 after), O(H W) for the saved transmittances and list ends, and one
``[V, 6 + D]`` float64 gradient buffer per thread in the backward pass.

Start-up: the kernels are compiled on first use (``cache=True`` keeps the machine code in
numba's cache, ``__pycache__`` beside this file or numba's user cache directory, so only the
first run on a machine pays it; measured by ``benchmarks/bench_vs_opensplat.py``).
"""

from __future__ import annotations

import importlib
import math
import sys

import numpy as np
import torch
from torch import Tensor

try:  # optional: the torch twin runs without it
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover - exercised on machines without numba
    numba = None


def _threadsafe_layer() -> bool:
    """Select a thread-safe numba threading layer (TBB, else OpenMP): the GUI may render a
    preview while training runs in another thread, which numba's fallback "workqueue"
    layer does not allow (it aborts the process). False when neither loads (then the torch
    twin is used) or when the user forced another layer with ``NUMBA_THREADING_LAYER``."""
    if numba is None:
        return False
    if getattr(sys, "frozen", False):
        # a PyInstaller bundle has no .py sources for numba's cache locator (cache=True
        # fails there); untested, so the bundle keeps the torch twin
        return False
    layer = numba.config.THREADING_LAYER
    if layer not in ("default", "threadsafe", "safe", "tbb", "omp"):
        return False
    for mod in ("tbbpool", "omppool"):
        try:
            importlib.import_module(f"numba.np.ufunc.{mod}")
        except (ImportError, OSError):
            continue
        if layer == "default":
            numba.config.THREADING_LAYER = "threadsafe"
        return True
    return False


_USABLE = _threadsafe_layer()

__all__ = ["FusedSSIMNumba", "RasterizeToPixelsNumba", "bin_tiles", "numba_available"]

# the same constants as torch_impl (not imported: torch_impl imports this module lazily)
_ALPHA_THRESHOLD = 1.0 / 255.0
_MAX_ALPHA = 0.999
_T_THRESHOLD = 1e-4
_EXTEND = 3.33


def numba_available() -> bool:
    """True when numba imports with a thread-safe threading layer (TBB or OpenMP), so the
    compiled CPU kernels can be used."""
    return numba is not None and _USABLE


if numba is not None:

    @njit(cache=True, inline="always")
    def _tile_hit(mx, my, A, B, Cq, o, tx, ty, ts, width, height):  # pragma: no cover - jit
        """The ellipse-tile test of ``torch_impl._tile_hits`` for one pair (float64)."""
        x0 = tx * ts + 0.5
        y0 = ty * ts + 0.5
        x1 = min(float(tx * ts + ts), float(width)) - 0.5
        y1 = min(float(ty * ts + ts), float(height)) - 0.5
        dxl = mx - x1
        dxh = mx - x0
        dyl = my - y1
        dyh = my - y0
        if dxl <= 0.0 and dxh >= 0.0 and dyl <= 0.0 and dyh >= 0.0:
            return True
        A_ = max(A, 1e-30)
        C_ = max(Cq, 1e-30)
        best = math.inf
        for e in range(2):
            dy = dyl if e == 0 else dyh
            dx = min(max(-B * dy / (2.0 * A_), dxl), dxh)
            best = min(best, A * dx * dx + B * dx * dy + Cq * dy * dy)
        for e in range(2):
            dx = dxl if e == 0 else dxh
            dy = min(max(-B * dx / (2.0 * C_), dyl), dyh)
            best = min(best, A * dx * dx + B * dx * dy + Cq * dy * dy)
        tau = math.log(max(o, _ALPHA_THRESHOLD) / _ALPHA_THRESHOLD)
        return best <= tau * (1.0 + 1e-3) + 1e-3

    @njit(cache=True, inline="always")
    def _tile_box(mx, my, rx, ry, ts, tw, th):  # pragma: no cover - jit
        """Tile-index bounding box ``[x0, x1) x [y0, y1)`` as ``torch_impl._tile_batches``."""
        fts = float(ts)
        x0 = min(max(math.floor(mx / fts - rx / fts), 0.0), float(tw))
        x1 = min(max(math.ceil(mx / fts + rx / fts), 0.0), float(tw))
        y0 = min(max(math.floor(my / fts - ry / fts), 0.0), float(th))
        y1 = min(max(math.ceil(my / fts + ry / fts), 0.0), float(th))
        return int(x0), int(x1), int(y0), int(y1)

    @njit(parallel=True, cache=True)
    def _count_hits(params, radii, ts, tw, th, width, height):  # pragma: no cover - jit
        V = params.shape[1]
        n_hit = np.zeros(V, np.int64)
        n_box = np.zeros(V, np.int64)
        for i in prange(V):
            mx = float(params[0, i])
            my = float(params[1, i])
            x0, x1, y0, y1 = _tile_box(mx, my, float(radii[i, 0]), float(radii[i, 1]),
                                       ts, tw, th)
            if x1 <= x0 or y1 <= y0:
                continue
            n_box[i] = (x1 - x0) * (y1 - y0)
            A = float(params[2, i])
            B = float(params[3, i])
            Cq = float(params[4, i])
            o = float(params[5, i])
            c = 0
            for ty in range(y0, y1):
                for tx in range(x0, x1):
                    if _tile_hit(mx, my, A, B, Cq, o, tx, ty, ts, width, height):
                        c += 1
            n_hit[i] = c
        return n_hit, n_box

    @njit(parallel=True, cache=True)
    def _fill_hits(params, radii, ts, tw, th, width, height, start, tiles):  # pragma: no cover
        V = params.shape[1]
        for i in prange(V):
            mx = float(params[0, i])
            my = float(params[1, i])
            x0, x1, y0, y1 = _tile_box(mx, my, float(radii[i, 0]), float(radii[i, 1]),
                                       ts, tw, th)
            A = float(params[2, i])
            B = float(params[3, i])
            Cq = float(params[4, i])
            o = float(params[5, i])
            k = start[i]
            for ty in range(y0, y1):
                for tx in range(x0, x1):
                    if _tile_hit(mx, my, A, B, Cq, o, tx, ty, ts, width, height):
                        tiles[k] = ty * tw + tx
                        k += 1

    @njit(cache=True)
    def _sort_by_tile(tiles, start, n_hit, n_tiles):  # pragma: no cover - jit
        """Stable counting sort of the pairs (Gaussian order) by tile: CSR offsets, ids."""
        offsets = np.zeros(n_tiles + 1, np.int64)
        for k in range(tiles.shape[0]):
            offsets[tiles[k] + 1] += 1
        for t in range(n_tiles):
            offsets[t + 1] += offsets[t]
        fill = offsets[:-1].copy()
        ids = np.empty(tiles.shape[0], np.int32)
        for i in range(n_hit.shape[0]):
            for k in range(start[i], start[i] + n_hit[i]):
                t = tiles[k]
                ids[fill[t]] = i
                fill[t] += 1
        return offsets, ids

    @njit(cache=True, inline="always")
    def _gather(loc, s, e, ids, params, colors):  # pragma: no cover - jit
        """Copy a tile's Gaussians into ``loc [>= e - s, 9 + D]`` rows (mx, my, a/2, b,
        c/2, o, tau = ln(255 o), x extent, y extent, colours): contiguous reads in the
        per-pixel loops (the role of gsplat's shared-memory batches).

        The extents bound the ``alpha >= 1/255`` ellipse ``sigma <= tau``: minimised over
        dx, ``sigma = dy^2 (4AC - B^2) / (4A)`` (A, B, C = a/2, b, c/2), so rows with
        ``|dy| > sqrt(4 A tau / (4AC - B^2))`` (and likewise columns) hold no pair that
        counts; widened by a relative 1e-6 + 1e-6 px against rounding, infinite for a
        degenerate conic, negative when ``o < 1/255`` (nothing counts)."""
        D = colors.shape[1]
        for k in range(s, e):
            g = ids[k]
            r = k - s
            for f in range(6):
                loc[r, f] = params[f, g]
            tau = math.log(max(params[5, g], 1e-30) * 255.0)
            loc[r, 6] = tau
            A = params[2, g]
            B = params[3, g]
            Cq = params[4, g]
            det4 = 4.0 * A * Cq - B * B
            if tau < 0.0:
                xe = -1.0
                ye = -1.0
            elif det4 <= 0.0 or A <= 0.0 or Cq <= 0.0:
                xe = math.inf
                ye = math.inf
            else:
                xe = math.sqrt(4.0 * Cq * tau / det4) * (1.0 + 1e-6) + 1e-6
                ye = math.sqrt(4.0 * A * tau / det4) * (1.0 + 1e-6) + 1e-6
            loc[r, 7] = xe
            loc[r, 8] = ye
            for d in range(D):
                loc[r, 9 + d] = colors[g, d]

    @njit(cache=True, inline="always")
    def _row_list(loc, n, py, rows):  # pragma: no cover - jit
        """Entries (in order) of the tile's n whose y extent reaches pixel row py; their
        count, the entries in ``rows[:count]``."""
        m = 0
        for r in range(n):
            if abs(loc[r, 1] - py) <= loc[r, 8]:
                rows[m] = r
                m += 1
        return m

    @njit(cache=True, inline="always")
    def _alpha(loc, r, px, py):  # pragma: no cover - jit
        """``(alpha, vis, dx, dy)`` of tile entry r at pixel centre (px, py); alpha = 0
        where gsplat skips the pair (sigma < 0 or alpha < 1/255). The same float64
        arithmetic in the forward and backward. ``sigma > tau (1 + 1e-9) + 1e-12`` means
        ``o exp(-sigma) < 1/255`` with a margin far above the rounding of either side, so
        the exp is skipped there without changing which pairs count."""
        dx = loc[r, 0] - px
        dy = loc[r, 1] - py
        if abs(dx) > loc[r, 7]:
            return 0.0, 0.0, dx, dy
        sigma = loc[r, 2] * dx * dx + loc[r, 4] * dy * dy + loc[r, 3] * dx * dy
        if sigma < 0.0:
            return 0.0, 0.0, dx, dy
        tau = loc[r, 6]
        if sigma > tau + abs(tau) * 1e-9 + 1e-12:
            return 0.0, 0.0, dx, dy
        vis = math.exp(-sigma)
        a = min(_MAX_ALPHA, loc[r, 5] * vis)
        if a < _ALPHA_THRESHOLD:
            return 0.0, vis, dx, dy
        return a, vis, dx, dy

    @njit(parallel=True, cache=True)
    def _forward_kernel(offsets, ids, params, colors, width, height, ts, tw, n_chunks,
                        img, T_out, end_out):  # pragma: no cover - jit
        """Composite every tile; img ``[H, W, D]`` float64, T_out ``[H, W]`` float64
        final transmittance, end_out ``[H, W]`` int64 end of the list walk (absolute
        index into ids)."""
        n_tiles = offsets.shape[0] - 1
        D = colors.shape[1]
        kmax = 0
        for t in range(n_tiles):
            kmax = max(kmax, offsets[t + 1] - offsets[t])
        for j in prange(n_chunks):
            acc = np.zeros(D, np.float64)
            loc = np.empty((kmax, 9 + D), np.float64)
            rows = np.empty(kmax, np.int64)
            for t in range(j, n_tiles, n_chunks):
                s = offsets[t]
                n = offsets[t + 1] - s
                _gather(loc, s, s + n, ids, params, colors)
                tx0 = (t % tw) * ts
                ty0 = (t // tw) * ts
                for y in range(ty0, min(ty0 + ts, height)):
                    py = y + 0.5
                    m = _row_list(loc, n, py, rows)
                    for x in range(tx0, min(tx0 + ts, width)):
                        px = x + 0.5
                        T = 1.0
                        for d in range(D):
                            acc[d] = 0.0
                        end = 0
                        for q in range(m):
                            r = rows[q]
                            a, vis, dx, dy = _alpha(loc, r, px, py)
                            if a == 0.0:
                                continue
                            nT = T * (1.0 - a)
                            if nT <= _T_THRESHOLD:
                                break
                            w = a * T
                            for d in range(D):
                                acc[d] += w * loc[r, 9 + d]
                            T = nT
                            end = r + 1
                        for d in range(D):
                            img[y, x, d] = acc[d]
                        T_out[y, x] = T
                        end_out[y, x] = s + end

    @njit(parallel=True, cache=True)
    def _backward_kernel(offsets, ids, params, colors, width, height, ts, tw, T_fin, ends,
                         gC, gA, grads):  # pragma: no cover - jit
        """Accumulate d loss / d (mx, my, a, b, c, o, colours) into grads
        ``[n_chunks, V, 6 + D]`` float64, one slice per parallel chunk of tiles."""
        n_tiles = offsets.shape[0] - 1
        D = colors.shape[1]
        n_chunks = grads.shape[0]
        kmax = 0
        for t in range(n_tiles):
            kmax = max(kmax, offsets[t + 1] - offsets[t])
        for j in prange(n_chunks):
            behind = np.zeros(D, np.float64)
            gc = np.zeros(D, np.float64)
            loc = np.empty((kmax, 9 + D), np.float64)
            rows = np.empty(kmax, np.int64)
            gl = np.zeros((kmax, 6 + D), np.float64)  # the tile's gradients, then added
            for t in range(j, n_tiles, n_chunks):
                s = offsets[t]
                n = offsets[t + 1] - s
                _gather(loc, s, s + n, ids, params, colors)
                tx0 = (t % tw) * ts
                ty0 = (t // tw) * ts
                for y in range(ty0, min(ty0 + ts, height)):
                    py = y + 0.5
                    m = _row_list(loc, n, py, rows)
                    for x in range(tx0, min(tx0 + ts, width)):
                        px = x + 0.5
                        Tf = T_fin[y, x]
                        T = Tf
                        ga = float(gA[y, x])
                        for d in range(D):
                            behind[d] = 0.0
                            gc[d] = float(gC[y, x, d])
                        last = ends[y, x] - s  # entries r < last were composited
                        q = m - 1
                        while q >= 0 and rows[q] >= last:
                            q -= 1
                        for qq in range(q, -1, -1):
                            r = rows[qq]
                            a, vis, dx, dy = _alpha(loc, r, px, py)
                            if a == 0.0:
                                continue
                            ra = 1.0 / (1.0 - a)
                            T *= ra  # transmittance before this entry
                            w = a * T
                            v_a = Tf * ra * ga
                            for d in range(D):
                                c = loc[r, 9 + d]
                                gl[r, 6 + d] += w * gc[d]
                                v_a += (c * T - behind[d] * ra) * gc[d]
                                behind[d] += c * w
                            if a < _MAX_ALPHA:
                                # alpha = o vis, vis = exp(-sigma): d alpha / d sigma = -alpha
                                v_s = -a * v_a
                                gl[r, 0] += v_s * (2.0 * loc[r, 2] * dx + loc[r, 3] * dy)
                                gl[r, 1] += v_s * (loc[r, 3] * dx + 2.0 * loc[r, 4] * dy)
                                gl[r, 2] += v_s * 0.5 * dx * dx
                                gl[r, 3] += v_s * dx * dy
                                gl[r, 4] += v_s * 0.5 * dy * dy
                                gl[r, 5] += vis * v_a
                for r in range(n):
                    g = ids[s + r]
                    for f in range(6 + D):
                        grads[j, g, f] += gl[r, f]
                        gl[r, f] = 0.0


    @njit(parallel=True, cache=True)
    def _blur_v(src, w, dst):  # pragma: no cover - jit
        """Vertical pass of the separable window w ``[K]`` over planes ``[P, H, W]``, zero
        padded (one row per task; single-store inner loops that LLVM vectorises)."""
        P, H, W = src.shape
        K = w.shape[0]
        r = K // 2
        for i in prange(P * H):
            p = i // H
            yy = i - p * H
            d = dst[p, yy]
            d[:] = 0.0
            for k in range(K):
                sy = yy + k - r
                if sy < 0 or sy >= H:
                    continue
                wk = w[k]
                sr = src[p, sy]
                for xx in range(W):
                    d[xx] += wk * sr[xx]

    @njit(parallel=True, cache=True)
    def _blur_h(src, w, dst):  # pragma: no cover - jit
        """Horizontal pass of the separable window (see :func:`_blur_v`)."""
        P, H, W = src.shape
        K = w.shape[0]
        r = K // 2
        for i in prange(P * H):
            p = i // H
            yy = i - p * H
            d = dst[p, yy]
            sr = src[p, yy]
            d[:] = 0.0
            for k in range(K):
                wk = w[k]
                off = k - r
                lo = max(0, -off)
                hi = min(W, W - off)
                for xx in range(lo, hi):
                    d[xx] += wk * sr[xx + off]

    @njit(parallel=True, cache=True)
    def _ssim_map_kernel(mom, C, c1, c2, out):  # pragma: no cover - jit
        """SSIM from the blurred moments ``[5, P, H, W]`` (mu_x, mu_y, E[x^2], E[y^2],
        E[xy]), averaged over each group of C planes into out ``[B, H, W]``."""
        _, P, H, W = mom.shape
        B = P // C
        for i in prange(B * H):
            bi = i // H
            yy = i - bi * H
            o = out[bi, yy]
            o[:] = 0.0
            for p in range(bi * C, bi * C + C):
                for xx in range(W):
                    mx = mom[0, p, yy, xx]
                    my = mom[1, p, yy, xx]
                    mxy = mx * my
                    mx2 = mx * mx
                    my2 = my * my
                    a1 = 2.0 * mxy + c1
                    a2 = 2.0 * (mom[4, p, yy, xx] - mxy) + c2
                    b1 = mx2 + my2 + c1
                    b2 = (mom[2, p, yy, xx] - mx2) + (mom[3, p, yy, xx] - my2) + c2
                    o[xx] += (a1 * a2) / (b1 * b2) / C

    @njit(parallel=True, cache=True)
    def _ssim_grad_maps(mom, C, c1, c2, G, gm):  # pragma: no cover - jit
        """d loss / d (mu_x, E[x^2], E[xy]) per pixel into gm ``[3, P, H, W]``, from the
        moments and G ``[B, H, W]`` = d loss / d ssim map (as ``losses._FusedSSIM``)."""
        _, P, H, W = mom.shape
        for i in prange(P * H):
            p = i // H
            yy = i - p * H
            bi = p // C
            for xx in range(W):
                g = G[bi, yy, xx] / C
                mx = mom[0, p, yy, xx]
                my = mom[1, p, yy, xx]
                mxy = mx * my
                mx2 = mx * mx
                my2 = my * my
                a1 = 2.0 * mxy + c1
                a2 = 2.0 * (mom[4, p, yy, xx] - mxy) + c2
                b1 = mx2 + my2 + c1
                b2 = (mom[2, p, yy, xx] - mx2) + (mom[3, p, yy, xx] - my2) + c2
                inv = g / (b1 * b2)
                gs = g * ((a1 * a2) / (b1 * b2))
                gm[0, p, yy, xx] = (2.0 * my * (a2 - a1) * inv
                                    - 2.0 * mx * gs * (1.0 / b1 - 1.0 / b2))
                gm[1, p, yy, xx] = -gs / b2
                gm[2, p, yy, xx] = 2.0 * a1 * inv


def _n_threads() -> int:
    """Threads for the kernels: torch's intra-op thread count, capped by numba's pool."""
    n = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    return n


def _params(means2d: Tensor, conics: Tensor, opacities: Tensor) -> np.ndarray:
    """``[6, V]`` float64 rows (mx, my, a/2, b, c/2, opacity) as ``torch_impl._pack_params``
    (without the padding column)."""
    p = torch.stack([means2d[:, 0], means2d[:, 1], 0.5 * conics[:, 0], conics[:, 1],
                     0.5 * conics[:, 2], opacities]).detach()
    return p.to(torch.float64).contiguous().numpy()


def bin_tiles(params: np.ndarray, radii: np.ndarray, width: int, height: int,
              tile_size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-tile front-to-back Gaussian lists (CSR) with the exact ellipse-tile test.

    Args:
        params: ``[6, V]`` float64 (mx, my, a/2, b, c/2, opacity) of the visible Gaussians,
            sorted front to back (camera z, ties by index); means in px.
        radii: ``[V, 2]`` int32 pixel radii (opacity-aware, as ``torch_impl``).
        width, height: image size in px; tile_size: tile edge in px.

    Returns:
        ``(offsets [n_tiles + 1] int64, ids [I] int32, n_box)``: the Gaussians of tile t
        (row-major over tiles) are ``ids[offsets[t]:offsets[t + 1]]``, front to back;
        ``n_box`` is the number of bounding-box intersections before the ellipse test.

    Source: gsplat 1.5 ``IntersectTile.cu`` (tile ranges, exact ellipse test) with a
    counting sort in place of its radix sort of (tile, depth) keys.
    """
    ts = int(tile_size)
    tw = (width + ts - 1) // ts
    th = (height + ts - 1) // ts
    n_hit, n_box = _count_hits(params, radii, ts, tw, th, width, height)
    start = np.zeros(n_hit.shape[0] + 1, np.int64)
    np.cumsum(n_hit, out=start[1:])
    tiles = np.empty(int(start[-1]), np.int32)
    _fill_hits(params, radii, ts, tw, th, width, height, start, tiles)
    offsets, ids = _sort_by_tile(tiles, start, n_hit, tw * th)
    return offsets, ids, int(n_box.sum())


class RasterizeToPixelsNumba(torch.autograd.Function):
    """Tile compositing of one image with the compiled kernels (CPU tensors).

    ``forward(ctx, means2d [V, 2] px, conics [V, 3], colors [V, D], opacities [V],
    radii [V, 2] int32, width, height, cfg)`` with the Gaussians sorted front to back,
    returns ``(img [H, W, D], alpha [H, W, 1])`` in the dtype of ``means2d``, exactly the
    contract of ``torch_impl._RasterizeToPixels`` (which is the reference twin); the
    backward returns gradients for means2d, conics, colors and opacities. ``cfg`` is a
    ``torch_impl.RasterConfig``: ``tile_size`` is used and ``cfg.stats`` gets ``n_isects``
    and ``n_isects_bbox``; its memory knobs do not apply (see the module docstring).
    """

    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, radii, width, height, cfg):
        V, D = colors.shape
        dtype = means2d.dtype
        ts = cfg.tile_size
        tw = (width + ts - 1) // ts
        params = _params(means2d, conics, opacities)
        radii_np = radii.detach().to(torch.int32).contiguous().numpy()
        offsets, ids, n_box = bin_tiles(params, radii_np, width, height, ts)
        st = cfg.stats
        st["n_isects"] = st.get("n_isects", 0) + int(ids.shape[0])
        st["n_isects_bbox"] = st.get("n_isects_bbox", 0) + n_box
        cols = colors.detach().to(torch.float64).contiguous().numpy()
        img = np.empty((height, width, D), np.float64)
        T = np.empty((height, width), np.float64)
        ends = np.empty((height, width), np.int64)
        n_chunks = 4 * _n_threads()  # interleaved tiles: a balanced share per thread
        _forward_kernel(offsets, ids, params, cols, width, height, ts, tw, n_chunks, img, T,
                        ends)
        img_t = torch.from_numpy(img).to(dtype)
        alpha_t = torch.from_numpy(1.0 - T)[:, :, None].to(dtype)
        ctx.save_for_backward(means2d, conics, colors, opacities)
        ctx.state = (offsets, ids, params, cols, T, ends)
        ctx.meta = (width, height, ts)
        return img_t, alpha_t

    @staticmethod
    def backward(ctx, g_img, g_alpha):
        means2d, conics, colors, opacities = ctx.saved_tensors
        offsets, ids, params, cols, T, ends = ctx.state
        width, height, ts = ctx.meta
        V, D = colors.shape
        tw = (width + ts - 1) // ts
        gC = g_img.detach().to(torch.float64).contiguous().numpy()
        gA = g_alpha.detach()[:, :, 0].to(torch.float64).contiguous().numpy()
        grads = np.zeros((_n_threads(), V, 6 + D), np.float64)
        _backward_kernel(offsets, ids, params, cols, width, height, ts, tw, T, ends, gC, gA,
                         grads)
        g = torch.from_numpy(grads.sum(0)).to(means2d.dtype)
        return g[:, 0:2], g[:, 2:5], g[:, 6:], g[:, 5], None, None, None, None


class FusedSSIMNumba(torch.autograd.Function):
    """The fused SSIM of ``splatstudio.train.losses._FusedSSIM`` (its reference twin) as
    compiled, row-parallel loops (CPU tensors, float32 or float64).

    ``forward(ctx, x [B, C, H, W], y [B, C, H, W], g [K])`` returns the SSIM map averaged
    over channels ``[B, H, W]`` (Wang et al. 2004; separable Gaussian window g, zero
    padding, C1 = 0.01^2, C2 = 0.03^2); the backward gives d loss / d x only (y is data).
    Arithmetic in the input dtype; the blurred moments are saved for the backward
    (``5 B C H W`` values).
    """

    @staticmethod
    def forward(ctx, x, y, g):
        B, C, H, W = x.shape
        P = B * C
        dt = x.dtype
        xp = x.detach().contiguous().reshape(P, H, W).numpy()
        yp = y.detach().to(dt).contiguous().reshape(P, H, W).numpy()
        w = g.detach().to(dt).contiguous().numpy()
        np_dt = xp.dtype.type
        _n_threads()
        m = np.empty((5, P, H, W), xp.dtype)
        m[0] = xp
        m[1] = yp
        np.multiply(xp, xp, out=m[2])
        np.multiply(yp, yp, out=m[3])
        np.multiply(xp, yp, out=m[4])
        m = m.reshape(5 * P, H, W)
        v = np.empty_like(m)
        _blur_v(m, w, v)
        _blur_h(v, w, m)  # m now holds the blurred moments
        mom = m.reshape(5, P, H, W)
        out = np.empty((B, H, W), xp.dtype)
        _ssim_map_kernel(mom, C, np_dt(0.01**2), np_dt(0.03**2), out)
        ctx.state = (xp, yp, w, C, mom)
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad):
        xp, yp, w, C, mom = ctx.state
        P, H, W = xp.shape
        np_dt = xp.dtype.type
        G = grad.detach().to(torch.from_numpy(xp[:1, :1, :1]).dtype).contiguous().numpy()
        _n_threads()
        gm = np.empty((3, P, H, W), xp.dtype)
        _ssim_grad_maps(mom, C, np_dt(0.01**2), np_dt(0.03**2), G, gm)
        gm = gm.reshape(3 * P, H, W)
        v = np.empty_like(gm)
        _blur_v(gm, w, v)
        _blur_h(v, w, gm)
        b = gm.reshape(3, P, H, W)
        gx = b[0] + 2.0 * xp * b[1] + yp * b[2]
        return torch.from_numpy(gx.astype(xp.dtype, copy=False)).reshape(P // C, C, H, W), \
            None, None
