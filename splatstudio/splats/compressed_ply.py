"""SuperSplat / PlayCanvas "compressed PLY" files (format of the PlayCanvas engine and
SuperSplat / splat-transform; conventionally named ``*.compressed.ply``).

A binary little-endian PLY with these elements:

* ``chunk`` (one row per 256 consecutive gaussians), float properties ``min_x min_y min_z
  max_x max_y max_z`` (centre bounds), ``min_scale_x .. max_scale_z`` (log-scale bounds,
  clamped to [-20, 20]) and, in newer files, ``min_r min_g min_b max_r max_g max_b``
  (bounds of the base colour ``0.5 + SH_C0 * sh0``).
* ``vertex``, uint properties:

  - ``packed_position``: x, y, z normalised to the chunk's bounds, 11/10/11 bits
    (x in bits 21-31, y in 11-20, z in 0-10).
  - ``packed_rotation``: "smallest three" of the unit wxyz quaternion (in the PLY's
    ``rot_0..rot_3`` order) made positive in its largest component: the index of the
    largest component in bits 30-31, then the other three (ascending index, first in the
    highest bits) as 10-bit unorms of ``q_i * sqrt(1/2) + 0.5``.
  - ``packed_scale``: log-scales normalised to the chunk's bounds, 11/10/11 bits.
  - ``packed_color``: R, G, B normalised to the chunk's colour bounds (absolute ``[0, 1]``
    colour in files without them) and ``sigmoid(opacity)``, 8 bits each (R in the top byte).

* ``sh`` (optional), uchar properties ``f_rest_0 .. f_rest_{3K-1}`` in the standard PLY's
  channel-major order, ``trunc((v / 8 + 0.5) * 256)`` clamped to 0..255, decoded as
  ``((b + 0.5) / 256 - 0.5) * 8`` (bytes 0 and 255 decode to -4 and 4).

Positions, scales and colours are quantised relative to each chunk's range, so gaussians
are written in Morton (Z-order) order of their centres by default to keep chunks compact;
the reader returns file order. Centres are stored in the file's frame (no conversion).

Per-gaussian decode error (half a quantisation step, inside the representable ranges):
centres ``range / 4094`` (x, z) and ``range / 2046`` (y) of the chunk's extent, log-scales
likewise, base colour ``range / 510`` (``sh0`` that divided by ``SH_C0``), sigmoid(opacity)
``0.5/255``, quaternion components ``sqrt(2)/2046 = 6.9e-4``, higher SH ``1/64`` (``1/32``
in the end buckets), SH clamped to ``[-4, 4]``.
"""

from __future__ import annotations

import os

import numpy as np

from .model import (
    ALPHA_DECODE_MAX,
    ALPHA_DECODE_MIN,
    QUAT_OTHERS,
    SH_C0,
    SplatFormatError,
    Splats,
    sigmoid,
)
from .ply import _header_text, read_ply_elements, read_ply_header, write_ply_elements

__all__ = ["CHUNK_SIZE", "morton_order", "read_compressed_ply", "write_compressed_ply"]

CHUNK_SIZE = 256
_CHUNK_PROPS = ["min_x", "min_y", "min_z", "max_x", "max_y", "max_z",
                "min_scale_x", "min_scale_y", "min_scale_z",
                "max_scale_x", "max_scale_y", "max_scale_z"]  # fmt: skip
_COLOR_PROPS = ["min_r", "min_g", "min_b", "max_r", "max_g", "max_b"]
_VERTEX_PROPS = ["packed_position", "packed_rotation", "packed_scale", "packed_color"]


def _spread_bits_10(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.uint64) & np.uint64(0x3FF)
    v = (v | (v << np.uint64(16))) & np.uint64(0x030000FF)
    v = (v | (v << np.uint64(8))) & np.uint64(0x0300F00F)
    v = (v | (v << np.uint64(4))) & np.uint64(0x030C30C3)
    v = (v | (v << np.uint64(2))) & np.uint64(0x09249249)
    return v


def morton_order(means: np.ndarray) -> np.ndarray:
    """Indices sorting centres along a 3D Morton (Z-order) curve over their bounding box
    (10 bits per axis); ties keep input order.

    Args:
        means: ``[N, 3]`` centres.

    Returns:
        ``[N] int64`` permutation.
    """
    means = np.asarray(means, dtype=np.float64)
    if means.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    lo, hi = means.min(axis=0), means.max(axis=0)
    extent = np.where(hi > lo, hi - lo, 1.0)
    q = np.clip(np.floor((means - lo) / extent * 1024.0), 0, 1023)
    code = (
        (_spread_bits_10(q[:, 0]) << np.uint64(2))
        | (_spread_bits_10(q[:, 1]) << np.uint64(1))
        | _spread_bits_10(q[:, 2])
    )
    return np.argsort(code, kind="stable")


def _pack_unorm(v: np.ndarray, bits: int) -> np.ndarray:
    t = (1 << bits) - 1
    return np.clip(np.floor(v * t + 0.5), 0, t).astype(np.uint32)


def _unpack_unorm(v: np.ndarray, bits: int) -> np.ndarray:
    t = (1 << bits) - 1
    return (v & np.uint32(t)).astype(np.float64) / t


def _normalize(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    rng = hi - lo
    out = np.divide(x - lo, rng, out=np.zeros_like(x), where=rng >= 1e-5)
    out = np.where(x >= hi, 1.0, out)
    return np.where(x <= lo, 0.0, out)


def _chunk_min_max(v: np.ndarray, n_chunks: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-chunk min/max of ``v [N, C]``; the last, partial chunk uses its own rows."""
    n, c = v.shape
    pad = n_chunks * CHUNK_SIZE - n
    if pad:
        v = np.concatenate([v, np.repeat(v[-1:], pad, axis=0)])
    v = v.reshape(n_chunks, CHUNK_SIZE, c)
    return v.min(axis=1), v.max(axis=1)


def write_compressed_ply(splats: Splats, path: str | os.PathLike, *, sort: bool = True) -> int:
    """Write a SuperSplat/PlayCanvas compressed PLY (16 bytes per gaussian plus 72 bytes per
    256-gaussian chunk, plus ``3K`` bytes of SH per gaussian).

    Args:
        splats: gaussians (validated first).
        path: output file.
        sort: write gaussians in Morton order of their centres (see :func:`morton_order`),
            which keeps the per-chunk ranges small; ``False`` keeps the input order.

    Returns:
        Number of bytes written.

    Raises:
        ValueError: if ``splats`` fails :meth:`Splats.validate`.
        OSError: on write errors.
    """
    splats.validate()
    s = splats.subset(morton_order(splats.means)) if sort and splats.n else splats
    n, k = s.n, s.shN.shape[1]
    n_chunks = (n + CHUNK_SIZE - 1) // CHUNK_SIZE
    chunk_of = np.arange(n) // CHUNK_SIZE

    pos = s.means.astype(np.float64)
    scl = s.scales.astype(np.float64)
    col = (s.sh0[:, 0, :] * np.float32(SH_C0) + np.float32(0.5)).astype(np.float64)
    chunk = np.zeros((n_chunks, 18), dtype="<f4")
    if n:
        pmin, pmax = _chunk_min_max(pos, n_chunks)
        smin, smax = _chunk_min_max(scl, n_chunks)
        smin, smax = np.clip(smin, -20, 20), np.clip(smax, -20, 20)
        cmin, cmax = _chunk_min_max(col, n_chunks)
        # store the bounds as float32 and quantise against the stored values
        chunk[:] = np.concatenate([pmin, pmax, smin, smax, cmin, cmax], axis=1)
        c64 = chunk.astype(np.float64)
        pmin, pmax, smin, smax, cmin, cmax = (c64[:, i : i + 3] for i in range(0, 18, 3))

    def pack_111011(v, lo, hi):
        t = _normalize(v, lo[chunk_of], hi[chunk_of])
        return (
            (_pack_unorm(t[:, 0], 11) << np.uint32(21))
            | (_pack_unorm(t[:, 1], 10) << np.uint32(11))
            | _pack_unorm(t[:, 2], 11)
        )

    vertex = np.zeros((n, 4), dtype="<u4")
    if n:
        vertex[:, 0] = pack_111011(pos, pmin, pmax)
        vertex[:, 2] = pack_111011(scl, smin, smax)
        tc = _normalize(col, cmin[chunk_of], cmax[chunk_of])
        alpha = sigmoid(s.opacities).astype(np.float64)
        vertex[:, 3] = (
            (_pack_unorm(tc[:, 0], 8) << np.uint32(24))
            | (_pack_unorm(tc[:, 1], 8) << np.uint32(16))
            | (_pack_unorm(tc[:, 2], 8) << np.uint32(8))
            | _pack_unorm(alpha, 8)
        )
        q = s.normalized_quats().astype(np.float64)
        rows = np.arange(n)
        largest = np.argmax(np.abs(q), axis=1)
        q = np.where((q[rows, largest] < 0)[:, None], -q, q)
        rot = largest.astype(np.uint32)
        for slot in range(3):
            v = q[rows, QUAT_OTHERS[largest, slot]]
            rot = (rot << np.uint32(10)) | _pack_unorm(v * np.sqrt(0.5) + 0.5, 10)
        vertex[:, 1] = rot

    elements = [
        ("chunk", n_chunks, [(p, "float") for p in _CHUNK_PROPS + _COLOR_PROPS]),
        ("vertex", n, [(p, "uint") for p in _VERTEX_PROPS]),
    ]
    arrays = [chunk, vertex]
    if k:
        rest = s.shN.transpose(0, 2, 1).reshape(n, 3 * k).astype(np.float64)
        rest *= 32.0  # (v / 8 + 0.5) * 256, truncated, in place
        rest += 128.0
        np.trunc(rest, out=rest)
        np.clip(rest, 0, 255, out=rest)
        sh = rest.astype(np.uint8)
        elements.append(("sh", n, [(f"f_rest_{i}", "uchar") for i in range(3 * k)]))
        arrays.append(sh)
    header = _header_text(elements, ("Generated by SplatStudio",))
    return write_ply_elements(path, header, arrays)


def read_compressed_ply(path: str | os.PathLike) -> Splats:
    """Read a SuperSplat/PlayCanvas compressed PLY.

    Args:
        path: file path (any name; the ``chunk`` element identifies the format).

    Returns:
        :class:`Splats` in file order; SH degree from the ``sh`` element (0 without one).
        Alpha bytes 0 and 255 decode to opacities 0.25/255 and 254.75/255 (finite logits).

    Raises:
        SplatFormatError (a ValueError): naming the file, if it is not a PLY, lacks the
            ``chunk``/``vertex`` elements or their properties, has a chunk count that does
            not match ``ceil(N / 256)``, an ``sh`` element with a row count different from
            the vertices or a coefficient count other than 9, 24, 45, or is truncated.
        OSError: if the file cannot be read.
    """
    header = read_ply_header(path)
    chunk_el, vertex_el, sh_el = (header.element(e) for e in ("chunk", "vertex", "sh"))
    if chunk_el is None or vertex_el is None:
        raise SplatFormatError(path, "not a compressed PLY: needs 'chunk' and 'vertex' elements")
    missing = [p for p in _CHUNK_PROPS if p not in chunk_el.names]
    missing += [p for p in _VERTEX_PROPS if p not in vertex_el.names]
    if missing:
        raise SplatFormatError(path, f"compressed PLY lacks properties: {', '.join(missing)}")
    n = vertex_el.count
    n_chunks = (n + CHUNK_SIZE - 1) // CHUNK_SIZE
    if chunk_el.count != n_chunks:
        raise SplatFormatError(
            path,
            f"compressed PLY has {chunk_el.count} chunks for {n} gaussians "
            f"(expected {n_chunks} = ceil({n} / {CHUNK_SIZE}))",
        )
    k = 0
    if sh_el is not None:
        n_rest = sum(1 for p in sh_el.names if p.startswith("f_rest_"))
        if n_rest not in (9, 24, 45):
            raise SplatFormatError(
                path, f"compressed PLY 'sh' element has {n_rest} coefficients (9, 24 or 45)"
            )
        if sh_el.count != n:
            raise SplatFormatError(
                path, f"compressed PLY 'sh' element has {sh_el.count} rows for {n} gaussians"
            )
        k = n_rest // 3
    els = read_ply_elements(path, ["chunk", "vertex", "sh"], header)
    ch, vx = els["chunk"], els["vertex"]
    ci = np.arange(n) // CHUNK_SIZE

    def get(names):
        return np.stack([ch[p].astype(np.float64) for p in names], axis=1)[ci]

    def lerp(lo, hi, t):
        return lo * (1.0 - t) + hi * t

    def unpack_111011(v):
        v = v.astype(np.uint32)
        return np.stack(
            [_unpack_unorm(v >> np.uint32(21), 11), _unpack_unorm(v >> np.uint32(11), 10),
             _unpack_unorm(v, 11)], axis=1,
        )  # fmt: skip

    means = lerp(
        get(_CHUNK_PROPS[0:3]), get(_CHUNK_PROPS[3:6]), unpack_111011(vx["packed_position"])
    )
    scales = lerp(
        get(_CHUNK_PROPS[6:9]), get(_CHUNK_PROPS[9:12]), unpack_111011(vx["packed_scale"])
    )

    pc = vx["packed_color"].astype(np.uint32)
    c = np.stack([_unpack_unorm(pc >> np.uint32(s), 8) for s in (24, 16, 8, 0)], axis=1)
    if all(p in chunk_el.names for p in _COLOR_PROPS):
        rgb = lerp(get(_COLOR_PROPS[0:3]), get(_COLOR_PROPS[3:6]), c[:, :3])
    else:
        rgb = c[:, :3]
    sh0 = ((rgb - 0.5) / SH_C0).reshape(n, 1, 3)
    a = np.clip(c[:, 3], ALPHA_DECODE_MIN, ALPHA_DECODE_MAX)
    opacities = np.log(a / (1.0 - a))

    pr = vx["packed_rotation"].astype(np.uint32)
    largest = (pr >> np.uint32(30)).astype(np.intp)
    q = np.zeros((n, 4))
    rows = np.arange(n)
    sumsq = np.zeros(n)
    for slot in range(3):
        v = (_unpack_unorm(pr >> np.uint32(10 * (2 - slot)), 10) - 0.5) / np.sqrt(0.5)
        q[rows, QUAT_OTHERS[largest, slot]] = v
        sumsq += v * v
    q[rows, largest] = np.sqrt(np.maximum(0.0, 1.0 - sumsq))

    shn = np.zeros((n, 0, 3), np.float32)
    if k:
        lut = ((np.arange(256) + 0.5) / 256.0 - 0.5) * 8.0
        lut[0], lut[255] = -4.0, 4.0
        lut = lut.astype(np.float32)
        b = np.stack([els["sh"][f"f_rest_{i}"] for i in range(3 * k)], axis=1)
        shn = lut[b].reshape(n, 3, k).transpose(0, 2, 1)
    return Splats(means=means, quats=q, scales=scales, opacities=opacities, sh0=sh0, shN=shn)
