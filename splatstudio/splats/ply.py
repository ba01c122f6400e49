"""Standard 3DGS PLY files (format of the INRIA "3D Gaussian Splatting" reference code).

One ``vertex`` element, binary little endian, all properties ``float``::

    x y z                   centre, metres (file's frame; no conversion is applied)
    nx ny nz                normals (unused by 3DGS, written as zeros; optional on read)
    f_dc_0 f_dc_1 f_dc_2    DC SH coefficient per RGB channel  -> Splats.sh0[:, 0, :]
    f_rest_0 .. f_rest_{3K-1}
                            higher-order SH, *channel-major*: all K coefficients of R,
                            then of G, then of B, i.e. f_rest_{c*K + k} = shN[:, k, c]
    opacity                 opacity logit                     -> Splats.opacities
    scale_0 scale_1 scale_2 log standard deviations           -> Splats.scales
    rot_0 rot_1 rot_2 rot_3 quaternion w, x, y, z             -> Splats.quats

The reader accepts any SH degree 0..3 (a degree-4 file is truncated to degree 3 with a
warning), files without normals, any scalar property type, big-endian and ASCII files, and
ignores extra properties (e.g. ``transform``) and extra elements. The writer emits the layout
above (with zero normals by default) by filling one float32 table and writing header +
bytes; it runs at disk speed (hundreds of MB/s, see ``benchmarks/bench_splat_formats.py``).

The header parser here is shared with :mod:`splatstudio.splats.compressed_ply`.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .model import SplatFormatError, Splats, num_sh_coeffs

__all__ = [
    "PlyElement",
    "PlyHeader",
    "read_ply_header",
    "read_ply_elements",
    "read_ply",
    "write_ply",
    "write_ply_elements",
    "ply_property_names",
]

_PLY_TYPES = {
    "char": "i1", "int8": "i1",
    "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4",
    "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4",
    "double": "f8", "float64": "f8",
}  # fmt: skip
_FORMATS = {"binary_little_endian": "<", "binary_big_endian": ">", "ascii": "ascii"}
_MAX_HEADER = 1 << 20


@dataclass(frozen=True)
class PlyElement:
    """One element of a PLY header.

    Attributes:
        name: element name (e.g. ``"vertex"``, ``"chunk"``).
        count: number of rows.
        properties: ``(name, numpy type code)`` per scalar property, in file order; list
            properties have the code ``"list"``.
    """

    name: str
    count: int
    properties: tuple[tuple[str, str], ...]

    @property
    def names(self) -> list[str]:
        """Property names in file order."""
        return [p for p, _ in self.properties]

    @property
    def has_lists(self) -> bool:
        """Whether any property is a list (variable-size rows)."""
        return any(t == "list" for _, t in self.properties)

    def dtype(self, byte_order: str) -> np.dtype:
        """Packed structured dtype of one row (scalar properties only).

        Raises:
            ValueError: for elements with list properties.
        """
        if self.has_lists:
            raise ValueError(f"element {self.name!r} has list properties")
        return np.dtype([(p, byte_order + t) for p, t in self.properties])


@dataclass(frozen=True)
class PlyHeader:
    """A parsed PLY header.

    Attributes:
        format: ``"binary_little_endian"``, ``"binary_big_endian"`` or ``"ascii"``.
        elements: elements in file order.
        comments: ``comment`` lines (without the keyword).
        header_size: bytes from the start of the file to the first data byte.
    """

    format: str
    elements: tuple[PlyElement, ...]
    comments: tuple[str, ...]
    header_size: int

    def element(self, name: str) -> PlyElement | None:
        """The element called ``name``, or ``None``."""
        for e in self.elements:
            if e.name == name:
                return e
        return None

    @property
    def byte_order(self) -> str:
        """``"<"`` or ``">"`` for binary files (``"<"`` for ASCII, unused)."""
        return ">" if self.format == "binary_big_endian" else "<"


def read_ply_header(path: str | os.PathLike) -> PlyHeader:
    """Parse the header of a PLY file.

    Args:
        path: file path.

    Returns:
        The parsed :class:`PlyHeader`.

    Raises:
        SplatFormatError (a ValueError): if the file does not start with ``ply``, the
            header has no ``end_header`` within 1 MiB, or a line is malformed (unknown
            format or property type, bad counts).
        OSError: if the file cannot be opened.
    """
    marker = re.compile(rb"(?:^|\n)end_header[ \t]*\r?\n")  # the line, not a comment
    with open(path, "rb") as f:
        head = f.read(4096)
        if not head.startswith(b"ply"):
            raise SplatFormatError(path, "not a PLY file (does not start with 'ply')")
        while (found := marker.search(head)) is None:
            more = f.read(65536)
            if not more or len(head) > _MAX_HEADER:
                raise SplatFormatError(path, "PLY header has no 'end_header' line")
            head += more
    end = found.start() + (1 if head[found.start() : found.start() + 1] == b"\n" else 0)
    nl = found.end() - 1
    text = head[:end].decode("ascii", errors="replace")
    lines = [ln.strip() for ln in text.replace("\r", "").split("\n")]
    if lines[0] != "ply":
        raise SplatFormatError(path, "not a PLY file (first line is not 'ply')")
    fmt = None
    comments: list[str] = []
    elements: list[tuple[str, int, list[tuple[str, str]]]] = []
    for ln in lines[1:]:
        if not ln:
            continue
        words = ln.split()
        key = words[0]
        if key == "format":
            if len(words) < 2 or words[1] not in _FORMATS:
                raise SplatFormatError(path, f"unsupported PLY format line {ln!r}")
            fmt = words[1]
        elif key in ("comment", "obj_info"):
            comments.append(ln[len(key) :].strip())
        elif key == "element":
            if len(words) != 3 or not words[2].isdigit():
                raise SplatFormatError(path, f"malformed PLY element line {ln!r}")
            elements.append((words[1], int(words[2]), []))
        elif key == "property":
            if not elements:
                raise SplatFormatError(path, f"PLY property before any element: {ln!r}")
            if len(words) == 5 and words[1] == "list":
                elements[-1][2].append((words[4], "list"))
            elif len(words) == 3 and words[1] in _PLY_TYPES:
                elements[-1][2].append((words[2], _PLY_TYPES[words[1]]))
            else:
                raise SplatFormatError(path, f"malformed PLY property line {ln!r}")
        else:
            raise SplatFormatError(path, f"unexpected PLY header line {ln!r}")
    if fmt is None:
        raise SplatFormatError(path, "PLY header has no 'format' line")
    return PlyHeader(
        format=fmt,
        elements=tuple(PlyElement(n, c, tuple(p)) for n, c, p in elements),
        comments=tuple(comments),
        header_size=nl + 1,
    )


def read_ply_elements(
    path: str | os.PathLike, names: list[str] | None = None, header: PlyHeader | None = None
) -> dict[str, np.ndarray]:
    """Read PLY elements as numpy structured arrays (one field per property).

    Binary files with scalar-only elements are read with one buffer read and zero-copy
    views; ASCII files or files with list properties before the wanted elements are read
    through ``plyfile``.

    Args:
        path: file path.
        names: element names to return (default: all).
        header: an already parsed header (read again if omitted).

    Returns:
        ``{element name: structured array [count]}`` for the requested elements present
        in the file (missing names are simply absent).

    Raises:
        SplatFormatError (a ValueError): if the header is invalid or the data is shorter
            than the header announces (the message gives expected and actual byte counts).
    """
    header = header or read_ply_header(path)
    wanted = [e.name for e in header.elements] if names is None else list(names)
    last = max((i for i, e in enumerate(header.elements) if e.name in wanted), default=-1)
    if last < 0:
        return {}
    if header.format == "ascii" or any(e.has_lists for e in header.elements[: last + 1]):
        return _read_with_plyfile(path, wanted)
    bo = header.byte_order
    sizes = [e.count * e.dtype(bo).itemsize for e in header.elements[: last + 1]]
    need = sum(sizes)
    file_size = os.path.getsize(path)
    have = file_size - header.header_size
    if have < need:
        raise SplatFormatError(
            path,
            f"truncated PLY: header announces {need} bytes of element data "
            f"({', '.join(f'{e.name} x{e.count}' for e in header.elements[: last + 1])}) "
            f"but only {max(have, 0)} bytes follow the header",
        )
    buf = bytearray(need)
    with open(path, "rb") as f:
        f.seek(header.header_size)
        got = f.readinto(buf)
    if got != need:
        raise SplatFormatError(path, f"truncated PLY: read {got} of {need} data bytes")
    out: dict[str, np.ndarray] = {}
    offset = 0
    for e, size in zip(header.elements[: last + 1], sizes, strict=True):
        if e.name in wanted:
            out[e.name] = np.frombuffer(buf, dtype=e.dtype(bo), count=e.count, offset=offset)
        offset += size
    return out


def _read_with_plyfile(path: str | os.PathLike, wanted: list[str]) -> dict[str, np.ndarray]:
    try:
        from plyfile import PlyData  # lazy: only for ASCII / list-property files
    except ImportError as exc:  # pragma: no cover - plyfile is a core dependency
        raise SplatFormatError(path, "ASCII PLY files need the 'plyfile' package") from exc
    try:
        ply = PlyData.read(str(path))
    except Exception as exc:  # plyfile raises a variety of exception types
        raise SplatFormatError(path, f"could not parse PLY data: {exc}") from exc
    out = {}
    for el in ply.elements:
        if el.name in wanted:
            out[el.name] = np.asarray(el.data)
    return out


def _columns(arr: np.ndarray, names: list[str]) -> np.ndarray:
    """Gather fields of a structured array into a ``[N, len(names)] float32`` array."""
    n = arr.shape[0]
    out = np.empty((n, len(names)), dtype=np.float32)
    fields = arr.dtype.fields
    all_f4 = all(fields[f][0] == np.dtype("<f4") for f in arr.dtype.names)
    if all_f4 and arr.dtype.itemsize == 4 * len(arr.dtype.names):
        flat = arr.view(np.dtype("<f4")).reshape(n, len(arr.dtype.names))
        idx = [arr.dtype.names.index(f) for f in names]
        # contiguous runs of columns are copied with one slice each
        start = 0
        while start < len(idx):
            stop = start + 1
            while stop < len(idx) and idx[stop] == idx[stop - 1] + 1:
                stop += 1
            out[:, start:stop] = flat[:, idx[start] : idx[stop - 1] + 1]
            start = stop
    else:
        for j, f in enumerate(names):
            out[:, j] = arr[f]
    return out


def read_ply(path: str | os.PathLike) -> Splats:
    """Read a standard (INRIA) 3DGS PLY file.

    Args:
        path: ``.ply`` file path.

    Returns:
        :class:`Splats` with arrays exactly as stored (float32; wider types are cast). The
        coordinate frame is the file's; no conversion is applied.

    Raises:
        SplatFormatError (a ValueError): naming the file, if it is not a PLY, is truncated,
            has no ``vertex`` element, lacks required properties (listed in the message),
            has a ``chunk`` element (a compressed PLY: use
            :func:`splatstudio.splats.compressed_ply.read_compressed_ply`) or has an
            ``f_rest`` count that is not 0, 9, 24, 45 (or 72, truncated to 45).
        OSError: if the file cannot be opened.
    """
    header = read_ply_header(path)
    if header.element("chunk") is not None:
        raise SplatFormatError(
            path, "this is a compressed (SuperSplat) PLY: it has a 'chunk' element"
        )
    vertex_el = header.element("vertex")
    if vertex_el is None:
        raise SplatFormatError(path, "PLY has no 'vertex' element")
    props = set(vertex_el.names)
    required = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
                "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]  # fmt: skip
    missing = [p for p in required if p not in props]
    if missing:
        raise SplatFormatError(
            path,
            f"not a gaussian-splat PLY: vertex element lacks {', '.join(missing)}",
        )
    n_rest = 0
    while f"f_rest_{n_rest}" in props:
        n_rest += 1
    if n_rest % 3 or n_rest // 3 not in (0, 3, 8, 15, 24):
        raise SplatFormatError(
            path, f"unsupported number of f_rest properties: {n_rest} (expected 0, 9, 24 or 45)"
        )
    k_file = n_rest // 3
    k = min(k_file, 15)
    if k_file == 24:
        warnings.warn(f"{path}: SH degree 4 is not supported; keeping degree 3", stacklevel=2)
    vertex = read_ply_elements(path, ["vertex"], header)["vertex"]
    rest_names = [f"f_rest_{c * k_file + j}" for c in range(3) for j in range(k)]
    cols = _columns(vertex, required + rest_names)
    n = vertex.shape[0]
    return Splats(
        means=cols[:, 0:3],
        sh0=cols[:, 3:6].reshape(n, 1, 3),
        opacities=cols[:, 6],
        scales=cols[:, 7:10],
        quats=cols[:, 10:14],
        shN=cols[:, 14:].reshape(n, 3, k).transpose(0, 2, 1),
    )


def ply_property_names(sh_degree: int, include_normals: bool = True) -> list[str]:
    """Vertex property names :func:`write_ply` emits, in order, for an SH degree.

    Raises:
        ValueError: if ``sh_degree`` is not 0..3.
    """
    k = num_sh_coeffs(sh_degree)
    names = ["x", "y", "z"]
    if include_normals:
        names += ["nx", "ny", "nz"]
    names += ["f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * k)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    return names


def write_ply(
    splats: Splats,
    path: str | os.PathLike,
    *,
    include_normals: bool = True,
    comments: tuple[str, ...] | list[str] = ("Generated by SplatStudio",),
) -> int:
    """Write a standard (INRIA) 3DGS PLY, binary little endian, float32 properties.

    Args:
        splats: the gaussians (validated first).
        path: output path (written in place; see :func:`splatstudio.splats.io.save_splats`
            for an atomic write).
        include_normals: write ``nx ny nz`` (zeros) like the reference implementation
            (12 bytes per gaussian more; some viewers require them).
        comments: header comment lines.

    Returns:
        Number of bytes written.

    Raises:
        ValueError: if ``splats`` fails :meth:`Splats.validate`.
        OSError: on write errors.
    """
    splats.validate()
    n, k = splats.n, splats.shN.shape[1]
    names = ply_property_names(splats.sh_degree, include_normals)
    table = np.empty((n, len(names)), dtype="<f4")
    c = 0
    table[:, c : c + 3] = splats.means
    c += 3
    if include_normals:
        table[:, c : c + 3] = 0.0
        c += 3
    table[:, c : c + 3] = splats.sh0[:, 0, :]
    c += 3
    if k:  # channel-major f_rest: one strided copy into a [N, 3, K] view of the table
        table[:, c : c + 3 * k].reshape(n, 3, k)[...] = splats.shN.transpose(0, 2, 1)
        c += 3 * k
    table[:, c] = splats.opacities
    table[:, c + 1 : c + 4] = splats.scales
    table[:, c + 4 : c + 8] = splats.quats
    header = _header_text([("vertex", n, [(name, "float") for name in names])], comments)
    return write_ply_elements(path, header, [table])


def _header_text(elements: list[tuple[str, int, list[tuple[str, str]]]], comments=()) -> bytes:
    lines = ["ply", "format binary_little_endian 1.0"]
    lines += [f"comment {c}" for c in comments]
    for name, count, props in elements:
        lines.append(f"element {name} {count}")
        lines += [f"property {t} {p}" for p, t in props]
    lines.append("end_header")
    return ("\n".join(lines) + "\n").encode("ascii")


def write_ply_elements(path: str | os.PathLike, header: bytes, arrays: list[np.ndarray]) -> int:
    """Write a PLY header followed by the raw bytes of each (little-endian) array.

    Args:
        path: output path.
        header: the complete header including ``end_header\\n``.
        arrays: C-contiguous arrays in element order, already in little-endian layout.

    Returns:
        Number of bytes written.
    """
    total = len(header)
    with open(Path(path), "wb") as f:
        f.write(header)
        for a in arrays:
            a = np.ascontiguousarray(a)
            if sys.byteorder != "little" and a.dtype.byteorder == "=":  # pragma: no cover
                a = a.astype(a.dtype.newbyteorder("<"))
            f.write(a.reshape(-1).view(np.uint8).data)
            total += a.nbytes
    return total
