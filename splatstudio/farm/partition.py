"""Spatial blocks for training a large capture in parts (VastGaussian-style partition and merge).

Cells are made on the ENU ground plane (x east, y north, metres) from the registered frame
centres; each cell is the power (weighted Voronoi) cell of its site, ``argmin_k |p - c_k|^2 -
w_k``, so *ownership* (:func:`owner`) is an exact partition: every point, camera or gaussian belongs to exactly one block, and the merge of
the blocks keeps each gaussian once (no duplicates at seams). A block trains on the frames and
points of its *expanded* cell (:func:`in_expanded_cell`: within a margin of its Voronoi cell, 20 %
of the cell radius by default as in VastGaussian), then keeps only the gaussians it owns.

Sources: VastGaussian, Lin et al., CVPR 2024 (arXiv 2402.17427): cells from camera positions,
position-based selection within boundaries expanded 20 %, merge by deleting gaussians outside
the original region; the partition here is a power diagram (not axis-aligned) so ownership is
exact, and its weights balance the blocks' frame counts (capacity-constrained power diagrams,
Aurenhammer, Hoffmann and Aronov 1998).
Design: ``../shared/docs/FARM.md`` section 3.3. Pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Partition", "in_expanded_cell", "make_partition", "owner"]


@dataclass(frozen=True)
class Partition:
    """Blocks on the ground plane.

    Attributes:
        centroids: ``[K, 2]`` ENU (east, north) metres, the sites.
        weights: ``[K]`` power weights, square metres (0: plain Voronoi).
        margin_m: how far (metres) a block's expanded cell reaches past its cell.
        frames: ``[N]`` block of each frame given to :func:`make_partition`.
    """

    centroids: np.ndarray
    weights: np.ndarray
    margin_m: float
    frames: np.ndarray

    def owner(self, points: np.ndarray) -> np.ndarray:
        """:func:`owner` with this partition's sites and weights."""
        return owner(points, self.centroids, self.weights)

    def expanded(self, points: np.ndarray, block: int) -> np.ndarray:
        """:func:`in_expanded_cell` of `block` with this partition's margin."""
        return in_expanded_cell(points, self.centroids, block, self.margin_m, self.weights)

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])


def owner(points: np.ndarray, centroids: np.ndarray,
          weights: np.ndarray | None = None) -> np.ndarray:
    """Block of each point: ``argmin_k |p - c_k|^2 - w_k`` on the ground plane (ties: lowest
    index; no weights: the nearest site).

    Args:
        points: ``[N, 2]`` or ``[N, 3]`` ENU metres (z ignored).
        centroids: ``[K, 2]``.
        weights: ``[K]`` square metres, or None.

    Returns:
        ``[N]`` int64 in ``0..K-1``.
    """
    p = np.asarray(points, np.float64)[:, :2]
    c = np.asarray(centroids, np.float64)
    d = ((p[:, None, :] - c[None, :, :]) ** 2).sum(-1)
    if weights is not None:
        d = d - np.asarray(weights, np.float64)[None, :]
    return np.argmin(d, axis=1)


def in_expanded_cell(points: np.ndarray, centroids: np.ndarray, block: int,
                     margin_m: float, weights: np.ndarray | None = None) -> np.ndarray:
    """Whether each point lies within `margin_m` of the cell of `block`.

    A point p is in cell k grown by m iff for every other site j its signed distance to the
    (power) bisector of k and j, ``(|p - c_k|^2 - w_k - |p - c_j|^2 + w_j) / (2 |c_k - c_j|)``,
    is at most m.

    Returns:
        ``[N]`` bool (every point the block owns is True).
    """
    p = np.asarray(points, np.float64)[:, :2]
    c = np.asarray(centroids, np.float64)
    w = np.zeros(len(c)) if weights is None else np.asarray(weights, np.float64)
    ck = c[block]
    dk = ((p - ck) ** 2).sum(-1) - w[block]
    ok = np.ones(len(p), bool)
    for j in range(len(c)):
        if j == block:
            continue
        sep = float(np.linalg.norm(c[j] - ck))
        if sep == 0.0:
            continue
        dj = ((p - c[j]) ** 2).sum(-1) - w[j]
        ok &= (dk - dj) / (2.0 * sep) <= margin_m
    return ok


def _kmeans(xy: np.ndarray, k: int, seed: int, iters: int = 50) -> np.ndarray:
    """k-means++ (Arthur and Vassilvitskii 2007) then Lloyd iterations; ``[k, 2]`` centres."""
    rng = np.random.default_rng(seed)
    c = [xy[rng.integers(len(xy))]]
    for _ in range(1, k):
        d = np.min(((xy[:, None] - np.asarray(c)[None]) ** 2).sum(-1), axis=1)
        c.append(xy[rng.choice(len(xy), p=d / d.sum())] if d.sum() > 0 else xy[rng.integers(len(xy))])
    c = np.asarray(c, np.float64)
    for _ in range(iters):
        lab = owner(xy, c)
        new = np.array([xy[lab == i].mean(0) if np.any(lab == i) else c[i] for i in range(k)])
        if np.allclose(new, c):
            break
        c = new
    return c


def _segments(xy: np.ndarray, k: int) -> np.ndarray:
    """Sites that cut a near-linear track into `k` runs of equal frame count along its principal
    axis: the midpoints of each run's projected extent, placed on the axis."""
    mean = xy.mean(0)
    _, _, vt = np.linalg.svd(xy - mean, full_matrices=False)
    axis = vt[0]
    t = (xy - mean) @ axis
    order = np.sort(t)
    cuts = [order[int(round(i * (len(t) - 1) / k))] for i in range(k + 1)]
    mids = [(cuts[i] + cuts[i + 1]) / 2.0 for i in range(k)]
    return mean[None, :] + np.asarray(mids)[:, None] * axis[None, :]


def make_partition(frame_xy: np.ndarray, k: int, *, margin_m: float = 0.0, seed: int = 0,
                   linear_threshold: float = 0.9) -> Partition:
    """Cut the frames into `k` blocks on the ground plane.

    Sites: for a near-linear capture (a walk or a drive: the first principal component holds
    more than `linear_threshold` of the variance) the middles of `k` runs of equal frame counts
    along its axis, otherwise k-means++ on the frame centres; then the power weights are raised
    for small blocks and lowered for large ones until the counts are within 15 % of equal (at
    most 500 rounds).

    Args:
        frame_xy: ``[N, 2]`` (or ``[N, 3]``) ENU frame centres, metres.
        k: number of blocks (>= 1, <= N).
        margin_m: expanded-cell margin; 0: 20 % of the mean cell radius, at least 2 m.
        seed: k-means++ seed.

    Raises:
        ValueError: `k` out of range.
    """
    xy = np.asarray(frame_xy, np.float64)[:, :2]
    n = len(xy)
    if not 1 <= k <= max(1, n):
        raise ValueError(f"blocks must be in 1..{n} (the frames), got {k}")
    w = np.zeros(k)
    if k == 1:
        c = xy.mean(0, keepdims=True)
    else:
        var = np.linalg.svd(xy - xy.mean(0), compute_uv=False) ** 2
        linear = var.sum() > 0 and var[0] / var.sum() > linear_threshold
        c = _segments(xy, k) if linear else _kmeans(xy, k, seed)
        target = n / k
        scale = float(np.mean(((xy - xy.mean(0)) ** 2).sum(-1))) / k
        for _ in range(500):
            counts = np.bincount(owner(xy, c, w), minlength=k)
            if counts.max() <= 1.15 * target and counts.min() >= 0.85 * target - 1:
                break
            w += 0.05 * scale * (target - counts) / target
    lab = owner(xy, c, w)
    if margin_m <= 0:
        radius = np.mean([np.sqrt(((xy[lab == i] - c[i]) ** 2).sum(-1)).max()
                          for i in range(len(c)) if np.any(lab == i)]) if n else 0.0
        margin_m = max(2.0, 0.2 * float(radius))
    return Partition(centroids=c, weights=w, margin_m=float(margin_m), frames=lab)
