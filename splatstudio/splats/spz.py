"""Niantic SPZ (``.spz``) files, versions 1-4 (format of nianticlabs/spz).

Layout
------
All integers are little endian. A header (magic ``0x5053474e`` = ``"NGSP"``, version,
``numPoints``, ``shDegree``, ``fractionalBits``, ``flags``) is followed by per-attribute
arrays, each covering all gaussians, in this order:

=============  ===========================  =============================================
stream         bytes per gaussian           encoding
=============  ===========================  =============================================
positions      9 (v2+), 6 (v1)              x, y, z as 24-bit two's-complement fixed point
                                            with ``fractionalBits`` fraction bits (v1:
                                            float16)
alphas         1                            ``round(sigmoid(opacity) * 255)``
colors         3                            ``round(sh0 * 0.15 * 255 + 127.5)``; 0.15 (not
                                            SH_C0) leaves headroom outside [0, 1]
scales         3                            ``round((log_scale + 10) * 16)``
rotations      4 (v3+), 3 (v1, v2)          v3+: "smallest three": the index of the
                                            largest-magnitude component of the unit xyzw
                                            quaternion in the top 2 bits, then for the
                                            other three (ascending index, first in the
                                            highest bits) a sign bit and a 9-bit magnitude
                                            of ``|q_i| / sqrt(1/2)``; the largest is made
                                            positive and rebuilt from the unit norm.
                                            v1/v2: ``x, y, z`` of the unit quaternion with
                                            ``w >= 0`` as ``round(q * 127.5 + 127.5)``.
sh             3K (K = 3, 8, 15, 24)        coefficient-major, RGB innermost (the same
                                            order as :attr:`Splats.shN` flattened);
                                            ``round(x * 128) + 128`` rounded to buckets of
                                            ``2 ** (8 - bits)`` (5 bits for band 1, 4 bits
                                            for bands 2+ by default), decoded as
                                            ``(b - 128) / 128``
=============  ===========================  =============================================

* Versions 1-3: the whole file is one gzip stream holding the 16-byte header
  (``magic u32, version u32, numPoints u32, shDegree u8, fractionalBits u8, flags u8,
  reserved u8``), optional extension records (flag ``0x2``), then the six arrays.
* Version 4 (current): a plain 32-byte header (``magic u32, version u32, numPoints u32,
  shDegree u8, fractionalBits u8, flags u8, numStreams u8, tocByteOffset u32,
  reserved[12]``), optional extension records in ``[32, tocByteOffset)`` (``u32 type,
  u32 byteLength, payload``), a table of contents at ``tocByteOffset`` with
  ``numStreams`` entries ``(u64 compressedSize, u64 uncompressedSize)``, then the streams,
  each compressed independently with ZSTD, contiguous, in the order of the table above
  (5 streams for SH degree 0, 6 otherwise). SplatStudio writes ZSTD frames with content
  checksums, so corruption is detected on read.
* ``flags``: ``0x1`` antialiased (kept in :attr:`Splats.antialiased`), ``0x2`` extensions
  present (skipped on read; never written).

Coordinate frames
-----------------
The SPZ specification stores data in the RUB frame (x right, y up, z back: OpenGL /
three.js). :class:`Splats` carry no frame tag, so the caller states the frame of the
in-memory arrays with ``coordinate_system`` (a three-letter axis code such as ``"RDF"``,
``"RUB"``, ``"RFU"``; ``"ENU"`` is accepted for east-north-up, i.e. RFU). The default is
``"RDF"``, the convention of the standard PLY (and of .splat and compressed PLY, which
SplatStudio writes unconverted): loading a PLY and saving it as SPZ then stores the same
values as the nianticlabs/spz library converting with ``from = RDF``, and viewers that
follow the spec (three.js/Spark) show it the same way up as PLY viewers show the PLY. For
SplatStudio's own ENU scenes pass ``coordinate_system="ENU"`` to get a y-up SPZ. Writing
converts from ``coordinate_system`` to RUB; reading converts from RUB to
``coordinate_system``, so a write/read round trip with the same setting leaves the
in-memory frame unchanged. ``coordinate_system=None`` stores the arrays without conversion
(as PlayCanvas splat-transform does; some tools read SPZ that way).

Only the :class:`Splats` attributes are stored: gaussian order is preserved, SH beyond
degree 3 in a file is dropped with a warning.
"""

from __future__ import annotations

import gzip
import os
import struct
import warnings
import zlib
from dataclasses import dataclass

import numpy as np

from .model import ALPHA_DECODE_MAX, ALPHA_DECODE_MIN, SplatFormatError, Splats, sigmoid

__all__ = [
    "SPZ_MAGIC",
    "SpzHeader",
    "axis_matrix",
    "read_spz",
    "write_spz",
    "read_spz_header",
    "encode_spz",
    "decode_spz",
]

SPZ_MAGIC = 0x5053474E
_COLOR_SCALE = 0.15
_SQRT1_2 = np.float32(0.7071067811865476)
_FLAG_ANTIALIASED = 0x1
_FLAG_EXTENSIONS = 0x2
_K_BY_DEGREE = (0, 3, 8, 15, 24)

_AXES = {"R": (0, 1.0), "L": (0, -1.0), "U": (1, 1.0), "D": (1, -1.0), "B": (2, 1.0),
         "F": (2, -1.0)}  # fmt: skip
_ALIASES = {"ENU": "RFU", "OPENGL": "RUB", "THREEJS": "RUB", "PLY": "RDF", "COLMAP": "RDF",
            "OPENCV": "RDF"}  # fmt: skip


def axis_matrix(src: str | None, dst: str | None) -> np.ndarray:
    """Signed permutation ``M`` with ``p_dst = M @ p_src`` between two axis conventions.

    Args:
        src: three-letter code of the source axes, one letter per axis from each of the
            pairs R/L (right/left), U/D (up/down), F/B (front/back), e.g. ``"RDF"`` (PLY,
            OpenCV/COLMAP), ``"RUB"`` (SPZ, OpenGL, three.js), ``"RFU"`` (= ``"ENU"``).
            Aliases: ``ENU``, ``PLY``, ``COLMAP``, ``OPENCV``, ``OPENGL``, ``THREEJS``.
            ``None`` or ``"UNSPECIFIED"`` means no conversion.
        dst: code of the destination axes.

    Returns:
        ``[3, 3]`` float64 orthogonal matrix (identity when either side is unspecified).

    Raises:
        ValueError: for an invalid code.
    """

    def basis(code: str) -> np.ndarray:
        c = _ALIASES.get(code.upper(), code.upper())
        if len(c) != 3 or any(ch not in _AXES for ch in c):
            raise ValueError(f"invalid coordinate system {code!r}: expected e.g. 'RDF', 'RUB'")
        m = np.zeros((3, 3))
        for col, ch in enumerate(c):
            row, sign = _AXES[ch]
            m[row, col] = sign
        if sorted(_AXES[ch][0] for ch in c) != [0, 1, 2]:
            raise ValueError(f"invalid coordinate system {code!r}: an axis is repeated")
        return m  # columns: canonical (RUB) direction of each axis

    if src is None or dst is None or "UNSPECIFIED" in (src.upper(), dst.upper()):
        return np.eye(3)
    return basis(dst).T @ basis(src)


@dataclass(frozen=True)
class SpzHeader:
    """Header fields of an SPZ file.

    Attributes:
        version: format version 1..4.
        num_points: number of gaussians.
        sh_degree: SH degree stored (0..4).
        fractional_bits: fraction bits of the 24-bit fixed-point positions.
        flags: bit field (``0x1`` antialiased, ``0x2`` extensions).
        num_streams: v4 only: number of ZSTD streams (0 for v1-3).
        toc_offset: v4 only: byte offset of the table of contents (0 for v1-3).
    """

    version: int
    num_points: int
    sh_degree: int
    fractional_bits: int
    flags: int
    num_streams: int = 0
    toc_offset: int = 0

    @property
    def antialiased(self) -> bool:
        """Whether the antialiased flag is set."""
        return bool(self.flags & _FLAG_ANTIALIASED)


def _stream_sizes(n: int, sh_degree: int, version: int) -> list[int]:
    sizes = [n * (6 if version == 1 else 9), n, 3 * n, 3 * n, n * (4 if version >= 3 else 3)]
    if sh_degree > 0:
        sizes.append(n * 3 * _K_BY_DEGREE[sh_degree])
    return sizes


def _check_common(path, magic, version, sh_degree, fractional_bits) -> None:
    if magic != SPZ_MAGIC:
        raise SplatFormatError(
            path, f"not an SPZ file: wrong magic 0x{magic:08x} (expected 0x{SPZ_MAGIC:08x} 'NGSP')"
        )
    if version not in (1, 2, 3, 4):
        raise SplatFormatError(path, f"unsupported SPZ version {version} (supported: 1-4)")
    if sh_degree > 4:
        raise SplatFormatError(path, f"unsupported SH degree {sh_degree} in SPZ header")
    if fractional_bits > 23:
        raise SplatFormatError(path, f"invalid fractionalBits {fractional_bits} in SPZ header")


def _parse_legacy_header(path, raw: bytes) -> SpzHeader:
    if len(raw) < 16:
        raise SplatFormatError(path, f"truncated SPZ: {len(raw)} bytes, header needs 16")
    magic, version, n, deg, fb, flags, _ = struct.unpack_from("<IIIBBBB", raw, 0)
    _check_common(path, magic, version, deg, fb)
    if version == 4:
        raise SplatFormatError(path, "SPZ version 4 data inside a gzip stream is not valid")
    return SpzHeader(version, n, deg, fb, flags)


def _parse_v4_header(path, raw: bytes) -> SpzHeader:
    if len(raw) < 32:
        raise SplatFormatError(path, f"truncated SPZ: {len(raw)} bytes, v4 header needs 32")
    magic, version, n, deg, fb, flags, nstreams, toc = struct.unpack_from("<IIIBBBBI", raw, 0)
    _check_common(path, magic, version, deg, fb)
    if version != 4:
        raise SplatFormatError(
            path, f"SPZ version {version} must be gzip-compressed, found a plain header"
        )
    if toc < 32:
        raise SplatFormatError(path, f"invalid SPZ v4 tocByteOffset {toc} (< 32)")
    return SpzHeader(version, n, deg, fb, flags, nstreams, toc)


def read_spz_header(path: str | os.PathLike) -> SpzHeader:
    """Read only the header of an SPZ file (decompressing the start of a v1-3 file).

    Raises:
        SplatFormatError (a ValueError): naming the file, for a wrong magic, an unsupported
            version or a truncated header.
    """
    with open(path, "rb") as f:
        head = f.read(64)
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as g:
                raw = g.read(16)
        except (OSError, EOFError, zlib.error) as exc:
            raise SplatFormatError(path, f"corrupt SPZ gzip stream: {exc}") from exc
        return _parse_legacy_header(path, raw)
    return _parse_v4_header(path, head)


# ---------------------------------------------------------------------------- decoding
def _round_half_away(x: np.ndarray) -> np.ndarray:
    return np.trunc(x + np.copysign(0.5, x))


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


def _decode_streams(
    path, h: SpzHeader, streams: list[np.ndarray], coordinate_system: str | None
) -> Splats:
    n = h.num_points
    pos, alpha, color, scale, rot = streams[:5]
    # positions
    if h.version == 1:
        means = pos.view("<f2").reshape(n, 3).astype(np.float32)
    else:
        b = pos.reshape(n * 3, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = v - ((v & 0x800000) << 1)
        means = (v.astype(np.float32) * np.float32(2.0**-h.fractional_bits)).reshape(n, 3)
    # alphas
    a = np.clip(alpha.astype(np.float64) / 255.0, ALPHA_DECODE_MIN, ALPHA_DECODE_MAX)
    opacities = np.log(a / (1.0 - a)).astype(np.float32)
    # colours (SH DC)
    sh0 = ((color.astype(np.float32) / 255.0 - 0.5) / np.float32(_COLOR_SCALE)).reshape(n, 1, 3)
    # scales
    scales = (scale.astype(np.float32) / 16.0 - 10.0).reshape(n, 3)
    # rotations -> xyzw
    if h.version >= 3:
        xyzw = _unpack_smallest_three(rot.view("<u4"))
    else:
        xyz = rot.reshape(n, 3).astype(np.float32) / np.float32(127.5) - 1.0
        w = np.sqrt(np.maximum(0.0, 1.0 - np.sum(xyz * xyz, axis=1)))
        xyzw = np.concatenate([xyz, w[:, None]], axis=1)
    quats = np.ascontiguousarray(xyzw[:, [3, 0, 1, 2]], dtype=np.float32)
    # SH
    k_file = _K_BY_DEGREE[h.sh_degree]
    if k_file:
        shn = streams[5].reshape(n, k_file, 3)
        if k_file > 15:
            warnings.warn(f"{path}: SH degree 4 is not supported; keeping degree 3", stacklevel=3)
            shn = shn[:, :15]
        shn = (shn.astype(np.float32) - 128.0) / 128.0
    else:
        shn = np.zeros((n, 0, 3), np.float32)
    splats = Splats(
        means=means, quats=quats, scales=scales, opacities=opacities, sh0=sh0, shN=shn,
        antialiased=h.antialiased,
    )  # fmt: skip
    m = axis_matrix("RUB", coordinate_system)
    if not np.array_equal(m, np.eye(3)):
        splats = splats.transformed(m)
    return splats


def _unpack_smallest_three(comp: np.ndarray) -> np.ndarray:
    comp = comp.astype(np.uint32)
    n = comp.shape[0]
    largest = (comp >> 30).astype(np.intp)
    others = np.array([[j for j in range(4) if j != i] for i in range(4)])  # [4, 3]
    out = np.zeros((n, 4), np.float32)
    rows = np.arange(n)
    sumsq = np.zeros(n, np.float32)
    for slot in range(3):  # slot 0 sits in bits 20..29 (first non-largest index)
        bits = (comp >> np.uint32(10 * (2 - slot))) & np.uint32(0x3FF)
        mag = (bits & np.uint32(0x1FF)).astype(np.float32) * (_SQRT1_2 / np.float32(511.0))
        val = np.where(bits & np.uint32(0x200), -mag, mag)
        out[rows, others[largest, slot]] = val
        sumsq += val * val
    out[rows, largest] = np.sqrt(np.maximum(0.0, 1.0 - sumsq))
    return out


def _pack_smallest_three(xyzw: np.ndarray) -> np.ndarray:
    q = xyzw.astype(np.float32)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    n = q.shape[0]
    largest = np.argmax(np.abs(q), axis=1)
    rows = np.arange(n)
    negate = q[rows, largest] < 0
    others = np.array([[j for j in range(4) if j != i] for i in range(4)])
    comp = largest.astype(np.uint32)
    for slot in range(3):
        v = q[rows, others[largest, slot]]
        negbit = ((v < 0) ^ negate).astype(np.uint32)
        mag = np.floor(np.float32(511.0) * (np.abs(v) / _SQRT1_2) + np.float32(0.5))
        mag = np.minimum(mag, 511).astype(np.uint32)
        comp = (comp << np.uint32(10)) | (negbit << np.uint32(9)) | mag
    return comp.astype("<u4")


def _read_file(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def decode_spz(data: bytes, *, coordinate_system: str | None = "RDF", name: str = "<bytes>"):
    """Decode SPZ file contents (any version 1-4) to :class:`Splats`.

    Args:
        data: the file's bytes.
        coordinate_system: axis convention of the returned arrays (see the module
            docstring); ``None`` returns the stored (RUB by spec) values unconverted.
        name: file name used in error messages.

    Returns:
        ``(splats, header)``: the decoded :class:`Splats` and the :class:`SpzHeader`.

    Raises:
        SplatFormatError (a ValueError): naming ``name``, if the magic or version is wrong,
            the gzip/ZSTD data is corrupt, or the data is shorter than the header implies.
    """
    if data[:2] == b"\x1f\x8b":
        try:
            raw = zlib.decompress(data, 16 + zlib.MAX_WBITS)
        except zlib.error as exc:
            raise SplatFormatError(name, f"corrupt or truncated SPZ gzip stream ({exc})") from exc
        h = _parse_legacy_header(name, raw)
        sizes = _stream_sizes(h.num_points, h.sh_degree, h.version)
        need = 16 + sum(sizes)
        if len(raw) < need:
            raise SplatFormatError(
                name,
                f"truncated SPZ payload: {h.num_points} gaussians (version {h.version}, SH "
                f"degree {h.sh_degree}) need {need} bytes, the gzip stream holds {len(raw)}",
            )
        offset = 16 + (len(raw) - need if h.flags & _FLAG_EXTENSIONS else 0)
        buf = np.frombuffer(raw, dtype=np.uint8)
        streams = []
        for size in sizes:
            streams.append(buf[offset : offset + size])
            offset += size
        return _decode_streams(name, h, streams, coordinate_system), h
    h = _parse_v4_header(name, data)
    sizes = _stream_sizes(h.num_points, h.sh_degree, 4)
    if h.num_points == 0:
        return Splats.empty(0, min(h.sh_degree, 3)), h
    if h.num_streams != len(sizes):
        raise SplatFormatError(
            name, f"SPZ v4 header has {h.num_streams} streams, expected {len(sizes)}"
        )
    toc_end = h.toc_offset + 16 * h.num_streams
    if len(data) < toc_end:
        raise SplatFormatError(
            name, f"truncated SPZ: file has {len(data)} bytes, table of contents ends at {toc_end}"
        )
    toc = np.frombuffer(data, dtype="<u8", count=2 * h.num_streams, offset=h.toc_offset)
    import zstandard  # lazy: only needed for v4

    dctx = zstandard.ZstdDecompressor()
    offset = toc_end
    streams = []
    for i, size in enumerate(sizes):
        csize, usize = int(toc[2 * i]), int(toc[2 * i + 1])
        if usize != size:
            raise SplatFormatError(
                name, f"SPZ v4 stream {i} is {usize} bytes uncompressed, expected {size}"
            )
        if offset + csize > len(data):
            raise SplatFormatError(
                name,
                f"truncated SPZ: stream {i} needs bytes {offset}..{offset + csize}, "
                f"file has {len(data)}",
            )
        try:
            out = dctx.decompress(data[offset : offset + csize], max_output_size=max(size, 1))
        except zstandard.ZstdError as exc:
            raise SplatFormatError(name, f"corrupt ZSTD data in SPZ stream {i} ({exc})") from exc
        if len(out) != size:
            raise SplatFormatError(
                name, f"SPZ stream {i} decompressed to {len(out)} bytes, expected {size}"
            )
        streams.append(np.frombuffer(out, dtype=np.uint8))
        offset += csize
    return _decode_streams(name, h, streams, coordinate_system), h


def read_spz(path: str | os.PathLike, *, coordinate_system: str | None = "RDF") -> Splats:
    """Read an SPZ file (versions 1-4).

    Args:
        path: ``.spz`` file.
        coordinate_system: axis convention of the returned arrays; the file's RUB data is
            converted to it (default ``"RDF"``, the PLY convention; ``None``: no conversion).

    Returns:
        :class:`Splats` (SH degree as stored, capped at 3; ``antialiased`` from the flags).

    Raises:
        SplatFormatError (a ValueError): naming the file, for a wrong magic, unsupported
            version, corrupt compression or truncated data.
        OSError: if the file cannot be read.
    """
    splats, _ = decode_spz(_read_file(path), coordinate_system=coordinate_system, name=str(path))
    return splats


# ---------------------------------------------------------------------------- encoding
def _quantize_sh(x: np.ndarray, bits: int) -> np.ndarray:
    """8-bit SH codes in float32 like the reference: round(x * 128) + 128 (half away from
    zero), snapped to the centre of buckets of 2 ** (8 - bits) codes, clamped to 0..255."""
    bucket = np.float32(1 << (8 - bits))
    q = np.multiply(x, np.float32(128.0), dtype=np.float32)
    a = np.abs(q)
    a += np.float32(0.5)
    np.floor(a, out=a)
    np.copysign(a, q, out=a)
    a += np.float32(128.0 + bucket // 2)
    a /= bucket
    np.floor(a, out=a)
    a *= bucket
    np.clip(a, 0, 255, out=a)
    return a.astype(np.uint8)


def encode_spz(
    splats: Splats,
    *,
    version: int = 4,
    coordinate_system: str | None = "RDF",
    fractional_bits: int | None = None,
    sh1_bits: int = 5,
    sh_rest_bits: int = 4,
    compression_level: int | None = None,
) -> bytes:
    """Encode :class:`Splats` as SPZ bytes (see :func:`write_spz` for the arguments).

    Raises:
        ValueError: for invalid splats or options, or positions too large for 24-bit
            fixed point even with 0 fraction bits (|coordinate| >= 8,388,608 m).
    """
    splats.validate()
    if version not in (2, 3, 4):
        raise ValueError(f"SPZ version must be 2, 3 or 4 for writing, got {version}")
    for nm, bits in (("sh1_bits", sh1_bits), ("sh_rest_bits", sh_rest_bits)):
        if not 1 <= bits <= 8:
            raise ValueError(f"{nm} must be in 1..8, got {bits}")
    m = axis_matrix(coordinate_system, "RUB")
    s = splats if np.array_equal(m, np.eye(3)) else splats.transformed(m)
    n, k = s.n, s.shN.shape[1]

    # positions: choose the fraction bits so that all coordinates fit in 24 bits
    max_abs = float(np.abs(s.means).max()) if n else 0.0
    fb = 12 if fractional_bits is None else int(fractional_bits)
    if not 0 <= fb <= 23:
        raise ValueError(f"fractional_bits must be in 0..23, got {fb}")
    limit = float(2**23 - 1)
    while fb > 0 and max_abs * 2.0**fb > limit:
        if fractional_bits is not None:
            raise ValueError(
                f"positions up to {max_abs:.1f} m do not fit 24-bit fixed point with "
                f"{fractional_bits} fraction bits"
            )
        fb -= 1
    if max_abs * 2.0**fb > limit:
        raise ValueError(f"positions up to {max_abs:.1f} m are too large for SPZ (max 8.4e6 m)")
    fixed = _round_half_away(s.means.astype(np.float64) * 2.0**fb).astype(np.int64)
    pos = (fixed.reshape(-1) & 0xFFFFFF).astype("<u4").view(np.uint8).reshape(-1, 4)[:, :3]
    pos = np.ascontiguousarray(pos).reshape(-1)

    alpha = _to_u8(sigmoid(s.opacities).astype(np.float64) * 255.0)
    color = _to_u8(s.sh0.reshape(-1).astype(np.float64) * (_COLOR_SCALE * 255.0) + 127.5)
    scale = _to_u8((s.scales.reshape(-1).astype(np.float64) + 10.0) * 16.0)
    if version >= 3:
        rot = _pack_smallest_three(s.quats[:, [1, 2, 3, 0]]).view(np.uint8)
    else:  # v2: x, y, z of the unit quaternion with w >= 0, 8 bits each
        q = s.quats.astype(np.float64)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        q = np.where(q[:, :1] < 0, -q, q)
        rot = _to_u8(q[:, 1:].reshape(-1) * 127.5 + 127.5)
    streams = [pos, alpha, color, scale, rot]
    if k:
        sh = np.empty((n, k, 3), np.uint8)
        sh[:, :3] = _quantize_sh(s.shN[:, :3], sh1_bits)
        if k > 3:
            sh[:, 3:] = _quantize_sh(s.shN[:, 3:], sh_rest_bits)
        streams.append(sh.reshape(-1))

    flags = _FLAG_ANTIALIASED if s.antialiased else 0
    deg = s.sh_degree
    if version in (2, 3):
        header = struct.pack("<IIIBBBB", SPZ_MAGIC, version, n, deg, fb, flags, 0)
        payload = header + b"".join(a.tobytes() for a in streams)
        level = 6 if compression_level is None else min(max(compression_level, 1), 9)
        return gzip.compress(payload, compresslevel=level, mtime=0)

    import zstandard  # lazy: only needed for v4

    level = 12 if compression_level is None else compression_level
    cctx = zstandard.ZstdCompressor(level=level, write_checksum=True)
    comp = [cctx.compress(a.tobytes()) for a in streams]
    header = struct.pack("<IIIBBBBI12x", SPZ_MAGIC, 4, n, deg, fb, flags, len(comp), 32)
    toc = b"".join(struct.pack("<QQ", len(c), a.size) for c, a in zip(comp, streams, strict=True))
    return header + toc + b"".join(comp)


def write_spz(
    splats: Splats,
    path: str | os.PathLike,
    *,
    version: int = 4,
    coordinate_system: str | None = "RDF",
    fractional_bits: int | None = None,
    sh1_bits: int = 5,
    sh_rest_bits: int = 4,
    compression_level: int | None = None,
) -> int:
    """Write an SPZ file.

    Quantisation (per gaussian; decoded value vs. input, inside the representable ranges):
    positions ``2 ** -(fractional_bits + 1)`` m (1.2e-4 m with the default 12 bits),
    log-scales ``1/32`` (range ``[-10, 5.94]``), sigmoid(opacity) ``0.5/255``, ``sh0``
    ``0.5 / (0.15 * 255) = 0.0131`` (range ``[-3.33, 3.33]``), quaternion components
    ``~7e-4`` after normalisation, SH band 1 ``(0.5 + 2 ** (7 - sh1_bits)) / 128`` and bands
    2-3 ``(0.5 + 2 ** (7 - sh_rest_bits)) / 128`` (range ``[-1, 1]``). Values outside the
    ranges are clamped.

    Args:
        splats: gaussians (validated first).
        path: output file.
        version: 4 (ZSTD streams, current), 3 (single gzip stream, for older readers) or
            2 (gzip, rotations as three bytes ``x, y, z`` with ``w >= 0``: median ~0.5
            degree, up to ~12 degrees where ``w ~ 0``).
        coordinate_system: axis convention of ``splats`` (converted to the spec's RUB);
            default ``"RDF"``; ``None`` stores the arrays unconverted.
        fractional_bits: fraction bits of the fixed-point positions; default: 12, lowered
            automatically when coordinates exceed +-2048 m (scenes up to 8,388 km fit with
            coarser precision). An explicit value that does not fit raises.
        sh1_bits: precision (bits) for SH band 1 (the reference default 5; 8 = lossless
            within the 8-bit encoding).
        sh_rest_bits: precision (bits) for SH bands 2 and 3 (reference default 4).
        compression_level: ZSTD level for v4 (default 12: about 2% smaller than level 3 and
            ~5 s per million SH-3 gaussians on one core) or gzip level for v3 (default 6,
            capped at 9).

    Returns:
        Number of bytes written.

    Raises:
        ValueError: for invalid splats or options (see :func:`encode_spz`).
        OSError: on write errors.
    """
    data = encode_spz(
        splats,
        version=version,
        coordinate_system=coordinate_system,
        fractional_bits=fractional_bits,
        sh1_bits=sh1_bits,
        sh_rest_bits=sh_rest_bits,
        compression_level=compression_level,
    )
    with open(path, "wb") as f:
        f.write(data)
    return len(data)
