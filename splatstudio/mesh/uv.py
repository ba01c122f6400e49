"""UV atlas with xatlas, in spatial blocks.

xatlas is slow on big meshes (about 5 s for 40k faces in one chart set on this machine) and
crashed on 360k faces, so the mesh is split into spatial blocks of at most
``block_faces`` faces (median cuts of the face centroids along the longest axis), each block
is parametrised by xatlas at one common texel density, and the blocks' atlases are packed
onto one square by a shelf packer.
"""

from __future__ import annotations

import os

import numpy as np

from ..lifeline import tie_to_parent


def _split(centroids: np.ndarray, idx: np.ndarray, limit: int, out: list[np.ndarray]) -> None:
    if idx.size <= limit:
        out.append(idx)
        return
    c = centroids[idx]
    axis = int(np.argmax(c.max(axis=0) - c.min(axis=0)))
    order = np.argsort(c[:, axis], kind="stable")
    half = idx.size // 2
    _split(centroids, idx[order[:half]], limit, out)
    _split(centroids, idx[order[half:]], limit, out)


def _atlas_block(args: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """xatlas on one block: ``(positions [n, 3] float32, faces [m, 3] uint32, max chart
    area, texels per unit, padding)`` -> ``(vertex map, faces, uv in [0, 1], width,
    height)``."""
    import xatlas

    pos, ind, max_area, tpu, padding = args
    atlas = xatlas.Atlas()
    atlas.add_mesh(pos, ind)
    co, po = xatlas.ChartOptions(), xatlas.PackOptions()
    co.max_iterations = 1
    co.max_chart_area = max_area
    po.texels_per_unit = tpu
    po.padding = padding
    po.bilinear = True
    po.bruteForce = False
    atlas.generate(co, po)
    vmap, faces, uv = atlas.get_mesh(0)
    return vmap, faces, uv, int(atlas.width), int(atlas.height)


def _shelf_pack(sizes: np.ndarray) -> tuple[np.ndarray, float]:
    """Place rectangles ``sizes [B, 2]`` (width, height) on shelves, tallest first.

    Returns:
        ``(offsets [B, 2], extent)``: top-left corners and the side of the square holding
        them all, the smallest over 24 shelf widths from the widest rectangle to the sum of
        the widths.
    """
    order = np.argsort(-sizes[:, 1], kind="stable")
    area = float((sizes[:, 0] * sizes[:, 1]).sum())
    lo = max(float(sizes[:, 0].max()), np.sqrt(area))
    hi = max(lo, float(sizes[:, 0].sum()))
    best: tuple[float, np.ndarray] | None = None
    for side in np.unique(np.concatenate([np.linspace(lo, hi, 24), [np.sqrt(area) * 1.08]])):
        if side < sizes[:, 0].max():
            continue
        offsets = np.zeros((len(sizes), 2))
        x = y = shelf_h = width = 0.0
        for i in order:
            w, h = sizes[i]
            if x + w > side:
                x, y, shelf_h = 0.0, y + shelf_h, 0.0
            offsets[i] = (x, y)
            x += w
            width = max(width, x)
            shelf_h = max(shelf_h, h)
        extent = max(width, y + shelf_h)
        if best is None or extent < best[0]:
            best = (extent, offsets)
    assert best is not None
    return best[1], best[0]


def unwrap(
    vertices: np.ndarray,
    faces: np.ndarray,
    *,
    texture_size: int = 4096,
    block_faces: int = 5_000,
    padding: int = 2,
    chart_split: float = 100.0,
    workers: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """UV-unwrap a triangle mesh.

    Args:
        vertices: ``[V, 3]`` positions (metres).
        faces: ``[F, 3]`` vertex indices.
        texture_size: the texture side in pixels the atlas is laid out for.
        block_faces: most faces given to one xatlas call.
        padding: texels between charts.
        chart_split: a chart may cover at most 1/chart_split of its block's area.
        workers: processes running xatlas on the blocks (0: one per CPU core; 1: in this
            process).

    Returns:
        ``(vertices [V', 3] float64, faces [F, 3] int64, uvs [V', 2] float32)``: vertices
        are duplicated along chart seams; uvs in ``[0, 1]``, ``(0, 0)`` at the top-left of
        the texture; the faces keep their order.
    """
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    tri = v[f]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    total = float(area.sum())
    # texels per metre so the charts would fill ~55% of the texture
    tpu = float(np.sqrt(0.55 * texture_size**2 / max(total, 1e-12)))
    blocks: list[np.ndarray] = []
    _split(tri.mean(axis=1), np.arange(f.shape[0]), block_faces, blocks)

    jobs = []
    for b in blocks:
        used, local = np.unique(f[b], return_inverse=True)
        jobs.append((b, used, v[used].astype(np.float32), local.reshape(-1, 3).astype(np.uint32),
                     max(float(area[b].sum()) / chart_split, 1e-12)))  # fmt: skip
    n_workers = min(workers if workers > 0 else (os.cpu_count() or 1), len(jobs))
    args = [(pos, ind, max_area, tpu, padding) for _, _, pos, ind, max_area in jobs]
    results = None
    if n_workers > 1 and len(jobs) >= 4:
        # xatlas holds the GIL: blocks go to worker processes. fork, not spawn/forkserver:
        # those re-import the caller's __main__ in every child (running a script without a
        # main guard again); the children only run xatlas and numpy, none of the thread
        # pools (torch, open3d) this process may hold
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        try:
            with ProcessPoolExecutor(n_workers, mp_context=mp.get_context("fork"),
                                     initializer=tie_to_parent) as ex:
                chunk = max(1, len(args) // (4 * n_workers))
                results = list(ex.map(_atlas_block, args, chunksize=chunk))
        except (BrokenProcessPool, OSError, ValueError):
            # no fork on this platform, or a worker died: the same blocks in this process
            # give the same atlas
            results = None
    if results is None:
        results = [_atlas_block(a) for a in args]
    parts = []
    for (b, used, *_), (vmap, ind, uv, w, h) in zip(jobs, results, strict=True):
        parts.append((b, used[vmap], ind.astype(np.int64), uv.astype(np.float64) * [w, h], w, h))

    # shelf-pack the block rectangles (sizes in texels) into a square: the shelf width that
    # gives the smallest square is searched (a fixed width leaves half the texture empty
    # when there are only a few blocks)
    sizes = np.array([(p[4] + padding, p[5] + padding) for p in parts], np.float64)
    offsets, extent = _shelf_pack(sizes)

    out_v, out_uv = [], []
    out_f = np.empty_like(f)
    base = 0
    for (b, vsrc, ind, uv, _, _), off in zip(parts, offsets, strict=True):
        out_v.append(v[vsrc])
        out_uv.append((uv + off) / extent)
        out_f[b] = ind + base
        base += vsrc.size
    uvs = np.concatenate(out_uv).astype(np.float32)
    return np.concatenate(out_v), out_f, uvs
