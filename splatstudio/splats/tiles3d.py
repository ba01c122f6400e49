"""3D Tiles 1.1 tilesets of Gaussian splats, georeferenced on the WGS84 globe.

Specifications: OGC 3D Tiles 1.1 (``tileset.json``: ``asset``, ``geometricError``, ``root``
tile with ``transform``, ``boundingVolume.box``, ``geometricError``, ``refine``,
``content.uri``, ``children``), with glTF content declared by the ``3DTILES_content_gltf``
extension, whose ``extensionsUsed``/``extensionsRequired`` list ``KHR_gaussian_splatting``
and ``KHR_gaussian_splatting_compression_spz_2`` (CesiumJS 1.140 loads a splat tile only
then: ``GaussianSplat3DTileContent.js``, ``Cesium3DTileContentFactory.js``). Tile content is
the SPZ-compressed GLB of :mod:`.gltf`.

Layout written by :func:`write_tileset`::

    <folder>/tileset.json
    <folder>/tiles/<address>.glb     address "r" (root), "r-3", "r-3-0", ... (child index path)

* Frames: the root ``transform`` is the ENU -> ECEF (EPSG:4978) 4x4 matrix of the project
  origin (float64, column-major as 3D Tiles stores it), so tile content and bounding boxes
  are in the project's ENU metres (x east, y north, z up). The GLBs hold glTF axes
  (x east, y up, z south), which 3D Tiles turns back into ENU with its y-up -> z-up rotation.
  No other tile has a transform (CesiumJS renders splats of child-transformed tiles with
  precision loss, CesiumGS/cesium#12925).
* Tree: an octree over the gaussian centres, splitting a node at its centre along each axis
  at least half as long as its longest one (so a flat capture gives a quadtree) until a
  node holds at most ``max_per_tile`` gaussians. Leaves hold the full-resolution gaussians
  (each exactly once); ``refine`` is ``"REPLACE"``.
* Levels of detail: every inner tile holds a **merged** version of all gaussians below it,
  at most ``max_per_tile`` and at most a quarter of them: the gaussians are binned on a regular grid whose cell size is
  chosen (bisection) so that the occupied cells number at most ``max_per_tile``, and the
  gaussians of a cell are replaced by one moment-matched gaussian (weights ``w = opacity *
  area``, ``area = pi * s_a * s_b`` of the two largest standard deviations): weighted mean
  centre and SH, covariance ``sum w (Sigma_i + d_i d_i^T) / sum w``, opacity ``min(0.99,
  sum(opacity * area) / merged area)`` (the covered area is kept). Merging rather than
  subsampling: a subsample of a surface keeps the small gaussians and leaves holes when seen
  from afar, and its colour follows whichever gaussians survived; the merged gaussians
  cover the same area with the average colour (the approach of hierarchical 3DGS, Kerbl et
  al. 2024, simplified to one merge per level).
* Geometric error (metres): 0 for leaves; for an inner tile, the cell size of its merge
  grid (the size of the detail it drops), at least 1.5x its children's; the tileset's (the
  error of drawing nothing) is the diagonal of the root's bounding box.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..quaternion import quat_to_rotmat
from .gltf import EXT_SPLAT, EXT_SPZ, encode_glb_splat
from .model import Splats, logit, sigmoid

__all__ = ["TileNode", "merge_gaussians", "read_tileset", "tileset_leaves", "write_tileset"]

EXT_CONTENT_GLTF = "3DTILES_content_gltf"


@dataclass
class TileNode:
    """One tile of the tree built by :func:`write_tileset`.

    Attributes:
        address: ``"r"``, ``"r-3"``, ...; the content file is ``tiles/<address>.glb``.
        index: ``[M]`` indices into the written splats (leaves: the gaussians of the tile;
            inner tiles: all gaussians below it).
        box: ``[12]`` 3D Tiles box (centre, then three half-axis vectors), ENU metres.
        geometric_error: metres.
        content_count: gaussians in the tile's own content.
        children: sub-tiles.
    """

    address: str
    index: np.ndarray
    box: list[float] = field(default_factory=list)
    geometric_error: float = 0.0
    content_count: int = 0
    bytes: int = 0
    children: list[TileNode] = field(default_factory=list)


# ---------------------------------------------------------------------------- merging
def _cell_keys(means: np.ndarray, lo: np.ndarray, cell: float) -> np.ndarray:
    q = np.floor((means - lo) / cell).astype(np.int64)
    q = np.clip(q, 0, 2**20 - 1)
    return (q[:, 0] << 40) | (q[:, 1] << 20) | q[:, 2]


def merge_gaussians(splats: Splats, target: int) -> tuple[Splats, float]:
    """Merge gaussians cell by cell on a regular grid until at most `target` remain.

    See the module docstring for the moment matching. A set already at most `target`
    gaussians is returned unchanged (cell size 0).

    Args:
        splats: gaussians (any frame, metres).
        target: maximum number of gaussians wanted (>= 1).

    Returns:
        ``(merged, cell_size_m)``.

    Raises:
        ValueError: if `target` < 1.
    """
    from scipy.spatial.transform import Rotation

    if target < 1:
        raise ValueError(f"target must be >= 1, got {target}")
    n = splats.n
    if n <= target:
        return splats, 0.0
    means = splats.means.astype(np.float64)
    lo = means.min(axis=0)
    extent = float(np.max(means.max(axis=0) - lo)) or 1.0
    a, b = extent / 2**20, extent  # cell sizes: a gives too many cells, b gives one
    for _ in range(40):
        mid = np.sqrt(a * b)
        if np.unique(_cell_keys(means, lo, mid)).size > target:
            a = mid
        else:
            b = mid
        if b / a < 1.02:
            break
    cell = b
    _, inv = np.unique(_cell_keys(means, lo, cell), return_inverse=True)
    inv = inv.reshape(-1)
    m = int(inv.max()) + 1

    s = np.exp(splats.scales.astype(np.float64))
    s_sorted = np.sort(s, axis=1)
    area = np.pi * s_sorted[:, 2] * s_sorted[:, 1]
    op = sigmoid(splats.opacities).astype(np.float64)
    w = np.maximum(op * area, 1e-30)
    wsum = np.bincount(inv, w, m)

    def wmean(v: np.ndarray) -> np.ndarray:
        flat = v.reshape(n, -1)
        out = np.stack([np.bincount(inv, w * flat[:, j], m) for j in range(flat.shape[1])], 1)
        return (out / wsum[:, None]).reshape((m, *v.shape[1:]))

    centre = lo + (np.floor((means - lo) / cell) + 0.5) * cell  # local coordinates: precision
    d = means - centre
    mu_d = wmean(d)
    r = quat_to_rotmat(splats.quats)
    cov = np.einsum("nij,nj,nkj->nik", r, s * s, r) + d[:, :, None] * d[:, None, :]
    cov_m = wmean(cov) - mu_d[:, :, None] * mu_d[:, None, :]
    cov_m = 0.5 * (cov_m + np.swapaxes(cov_m, 1, 2))
    evals, evecs = np.linalg.eigh(cov_m)
    evals = np.maximum(evals, (1e-4 * np.sqrt(np.maximum(evals[:, 2:], 0.0))) ** 2 + 1e-18)
    evecs[np.linalg.det(evecs) < 0, :, 0] *= -1.0
    xyzw = Rotation.from_matrix(evecs).as_quat()
    scales_m = np.sqrt(evals)
    area_m = np.pi * scales_m[:, 2] * scales_m[:, 1]
    cover = np.bincount(inv, op * area, m)
    opacity = np.clip(cover / area_m, 1e-4, 0.99)
    cell_centre = np.zeros((m, 3))
    cell_centre[inv] = centre
    merged = Splats(
        means=(cell_centre + mu_d).astype(np.float32),
        quats=xyzw[:, [3, 0, 1, 2]].astype(np.float32),
        scales=np.log(scales_m).astype(np.float32),
        opacities=logit(opacity),
        sh0=wmean(splats.sh0.astype(np.float64)).astype(np.float32),
        shN=wmean(splats.shN.astype(np.float64)).astype(np.float32),
        antialiased=splats.antialiased,
    )  # fmt: skip
    return merged, float(cell)


# ---------------------------------------------------------------------------- tree
def _box(splats: Splats) -> list[float]:
    """Axis-aligned 3D Tiles box around the gaussians' 3-sigma ellipsoids (ENU metres)."""
    if splats.n == 0:
        return [0.0] * 3 + [1e-3, 0, 0, 0, 1e-3, 0, 0, 0, 1e-3]
    r = quat_to_rotmat(splats.quats)
    s = np.exp(splats.scales.astype(np.float64))
    half = 3.0 * np.sqrt(np.einsum("nij,nj->ni", r * r, s * s))  # 3-sigma extent per axis
    half = np.minimum(half, 3.0 * s.max(axis=1, keepdims=True))
    lo = (splats.means - half).min(axis=0)
    hi = (splats.means + half).max(axis=0)
    c, h = (lo + hi) / 2, np.maximum((hi - lo) / 2, 1e-3)
    return [float(c[0]), float(c[1]), float(c[2]), float(h[0]), 0.0, 0.0, 0.0, float(h[1]),
            0.0, 0.0, 0.0, float(h[2])]  # fmt: skip


def _union(a: list[float], b: list[float]) -> list[float]:
    ca, ha = np.asarray(a[:3]), np.asarray([a[3], a[7], a[11]])
    cb, hb = np.asarray(b[:3]), np.asarray([b[3], b[7], b[11]])
    lo, hi = np.minimum(ca - ha, cb - hb), np.maximum(ca + ha, cb + hb)
    c, h = (lo + hi) / 2, (hi - lo) / 2
    return [float(c[0]), float(c[1]), float(c[2]), float(h[0]), 0.0, 0.0, 0.0, float(h[1]),
            0.0, 0.0, 0.0, float(h[2])]  # fmt: skip


def _split(means: np.ndarray, index: np.ndarray) -> list[np.ndarray]:
    p = means[index]
    lo, hi = p.min(axis=0), p.max(axis=0)
    ext = hi - lo
    if ext.max() <= 0:
        return [index]
    axes = [k for k in range(3) if ext[k] >= 0.5 * ext.max()]
    code = np.zeros(index.size, np.int64)
    for bit, k in enumerate(axes):
        code |= (p[:, k] > (lo[k] + hi[k]) / 2).astype(np.int64) << bit
    return [index[code == c] for c in range(1 << len(axes)) if np.any(code == c)]


def _build(means: np.ndarray, index: np.ndarray, address: str, max_per_tile: int,
           depth: int, max_depth: int) -> TileNode:  # fmt: skip
    node = TileNode(address=address, index=index)
    if index.size > max_per_tile and depth < max_depth:
        parts = _split(means, index)
        if len(parts) > 1:
            node.children = [_build(means, part, f"{address}-{i}", max_per_tile, depth + 1,
                                    max_depth) for i, part in enumerate(parts)]  # fmt: skip
    return node


def _leaves(node: TileNode) -> list[TileNode]:
    if not node.children:
        return [node]
    return [leaf for c in node.children for leaf in _leaves(c)]


# ---------------------------------------------------------------------------- writing
def write_tileset(
    splats: Splats,
    folder: str | os.PathLike,
    enu_to_ecef: np.ndarray,
    *,
    max_per_tile: int = 65536,
    sh_degree: int | None = None,
    min_opacity: float = 0.0,
    spz_version: int = 3,
    max_depth: int = 12,
    generator: str = "SplatStudio",
) -> dict[str, Any]:
    """Write splats in ENU metres as a 3D Tiles 1.1 tileset of SPZ-compressed splat GLBs.

    Args:
        splats: gaussians in the project's ENU frame (x east, y north, z up, metres).
        folder: output folder (created; an existing ``tileset.json`` and ``tiles/`` in it
            are replaced).
        enu_to_ecef: ``[4, 4]`` float64 ENU -> ECEF (EPSG:4978) matrix of the origin
            (:func:`splatstudio.geo.enu.enu_to_ecef_matrix`), the root ``transform``.
        max_per_tile: most gaussians in one tile's content (leaves and merged parents).
        sh_degree: cap the SH degree (0..3; default: keep the splats' degree).
        min_opacity: drop gaussians with ``sigmoid(opacity)`` below this first (0..1).
        spz_version: SPZ format version of the payloads (3 or 2).
        max_depth: deepest level of the tree (a leaf at this depth may exceed
            ``max_per_tile``).

    Returns:
        ``{"path" (tileset.json), "tiles", "leaves", "depth", "gaussians" (full
        resolution), "content_gaussians" (all tiles), "bytes" (all files), "seconds",
        "geometric_error", "order" ([N] index of the written splats in leaf order),
        "root": TileNode, "splats": the written (filtered) Splats}``.

    Raises:
        ValueError: bad options, a non-finite or non-rigid `enu_to_ecef`, or no gaussians
            left after the filters.
        OSError: on write errors.
    """
    t0 = time.perf_counter()
    mat = np.asarray(enu_to_ecef, dtype=np.float64)
    if (
        mat.shape != (4, 4)
        or not np.all(np.isfinite(mat))
        or not np.allclose(mat[:3, :3] @ mat[:3, :3].T, np.eye(3), atol=1e-9)
    ):
        raise ValueError("enu_to_ecef must be a finite rigid 4x4 matrix")
    if max_per_tile < 1:
        raise ValueError(f"max_per_tile must be >= 1, got {max_per_tile}")
    if not 0.0 <= min_opacity <= 1.0:
        raise ValueError(f"min_opacity must be in [0, 1], got {min_opacity}")
    if spz_version not in (2, 3):
        raise ValueError(f"spz_version must be 2 or 3 (CesiumJS reads gzip SPZ), got {spz_version}")
    s = splats
    if sh_degree is not None:
        if sh_degree not in (0, 1, 2, 3):
            raise ValueError(f"sh_degree must be 0..3, got {sh_degree}")
        s = s.with_sh_degree(min(int(sh_degree), s.sh_degree))
    if min_opacity > 0:
        s = s.subset(sigmoid(s.opacities) >= min_opacity)
    if s.n == 0:
        raise ValueError("no gaussians left to write (min_opacity removed them all)")
    s.validate()

    out = Path(folder)
    tiles_dir = out / "tiles"
    tiles_dir.mkdir(parents=True, exist_ok=True)
    for old in tiles_dir.glob("*.glb"):
        old.unlink()
    root = _build(s.means.astype(np.float64), np.arange(s.n), "r", max_per_tile, 0, max_depth)
    total = {"bytes": 0, "content": 0, "tiles": 0}

    def emit(node: TileNode, depth: int) -> tuple[dict, int]:
        if node.children:
            kids = [emit(c, depth + 1) for c in node.children]
            target = min(max_per_tile, max(1, node.index.size // 4))
            content, cell = merge_gaussians(s.subset(node.index), target)
            node.geometric_error = max(cell, max(c.geometric_error for c in node.children) * 1.5,
                                       1e-3)  # fmt: skip
            box = _box(content)
            for c in node.children:
                box = _union(box, c.box)
            deepest = max(k[1] for k in kids)
        else:
            content = s.subset(node.index)
            box = _box(content)
            deepest = depth
        node.box = box
        node.content_count = content.n
        glb = encode_glb_splat(content, coordinate_system="ENU", spz=True,
                               spz_version=spz_version, generator=generator)  # fmt: skip
        path = tiles_dir / f"{node.address}.glb"
        path.write_bytes(glb)
        node.bytes = len(glb)
        total["bytes"] += len(glb)
        total["content"] += content.n
        total["tiles"] += 1
        tile: dict[str, Any] = {
            "boundingVolume": {"box": box},
            "geometricError": node.geometric_error,
            "refine": "REPLACE",
            "content": {"uri": f"tiles/{node.address}.glb"},
        }
        if node.children:
            tile["children"] = [k[0] for k in kids]
        return tile, deepest

    root_tile, depth = emit(root, 0)
    root_tile["transform"] = [float(v) for v in mat.T.reshape(-1)]  # column-major
    tileset = {
        "asset": {"version": "1.1", "generator": generator},
        "extensionsUsed": [EXT_CONTENT_GLTF],
        "extensionsRequired": [EXT_CONTENT_GLTF],
        "extensions": {EXT_CONTENT_GLTF: {"extensionsUsed": [EXT_SPLAT, EXT_SPZ],
                                          "extensionsRequired": [EXT_SPLAT, EXT_SPZ]}},
        # not drawing the tileset at all misses the whole splat: its size is that error
        "geometricError": max(2.0 * root.geometric_error,
                              2.0 * float(np.linalg.norm(np.asarray(root.box)[[3, 7, 11]])), 1.0),
        "root": root_tile,
    }  # fmt: skip
    path = out / "tileset.json"
    tmp = path.with_name(f".tileset.json.tmp{os.getpid()}")
    tmp.write_text(json.dumps(tileset, indent=1))
    os.replace(tmp, path)
    leaves = _leaves(root)
    return {
        "path": str(path),
        "tiles": total["tiles"],
        "leaves": len(leaves),
        "depth": depth,
        "gaussians": s.n,
        "content_gaussians": total["content"],
        "bytes": total["bytes"] + path.stat().st_size,
        "seconds": time.perf_counter() - t0,
        "geometric_error": tileset["geometricError"],
        "order": np.concatenate([leaf.index for leaf in leaves]),
        "root": root,
        "splats": s,
    }


# ---------------------------------------------------------------------------- reading
def read_tileset(path: str | os.PathLike) -> dict:
    """Read and check a splat ``tileset.json`` (the structure :func:`write_tileset` writes).

    Returns:
        The parsed JSON, plus ``"root_transform"``: ``[4, 4]`` float64 (row-major, i.e. the
        transpose of the stored column-major list).

    Raises:
        ValueError: naming the file, when it is not 3D Tiles 1.x, lacks the content
            extensions CesiumJS needs for splats, or has no root transform.
    """
    p = Path(path)
    try:
        ts = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{p}: cannot read the tileset ({e})") from None
    if not str(ts.get("asset", {}).get("version", "")).startswith("1."):
        raise ValueError(f"{p}: not a 3D Tiles 1.x tileset (asset.version)")
    ext = ts.get("extensions", {}).get(EXT_CONTENT_GLTF, {})
    for name in (EXT_SPLAT, EXT_SPZ):
        if name not in ext.get("extensionsRequired", []):
            raise ValueError(f"{p}: {EXT_CONTENT_GLTF} does not require {name}")
    tr = ts.get("root", {}).get("transform")
    if tr is None or len(tr) != 16:
        raise ValueError(f"{p}: root has no 4x4 transform")
    ts["root_transform"] = np.asarray(tr, dtype=np.float64).reshape(4, 4).T
    return ts


def tileset_leaves(path: str | os.PathLike) -> list[tuple[dict, Path]]:
    """The leaf tiles of a tileset (depth first, children in order) and their content files.

    Raises:
        ValueError: as :func:`read_tileset`; a tile without content.
    """
    p = Path(path)
    ts = read_tileset(p)
    out: list[tuple[dict, Path]] = []

    def walk(tile: dict) -> None:
        kids = tile.get("children") or []
        if not kids:
            uri = tile.get("content", {}).get("uri")
            if uri is None:
                raise ValueError(f"{p}: a leaf tile has no content")
            out.append((tile, p.parent / uri))
        for k in kids:
            walk(k)

    walk(ts["root"])
    return out
