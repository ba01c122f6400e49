"""Binary glTF (``.glb``) with Khronos ``KHR_gaussian_splatting``, optionally compressed with
``KHR_gaussian_splatting_compression_spz_2``.

Specifications (KhronosGroup/glTF, ``extensions/2.0/Khronos/``):

* ``KHR_gaussian_splatting/README.md`` (release candidate, 2026): a ``POINTS`` (mode 0) mesh
  primitive whose ``extensions.KHR_gaussian_splatting`` object names the ``kernel``
  (``"ellipse"``), the ``colorSpace`` (``"srgb_rec709_display"`` or ``"lin_rec709_display"``),
  ``projection`` (``"perspective"``) and ``sortingMethod`` (``"cameraDistance"``); the splats
  are vertex attributes:

  ===========================================  ======  ========================================
  semantic                                     type    value (as SplatStudio writes it: float)
  ===========================================  ======  ========================================
  ``POSITION``                                 VEC3    centre, metres, glTF axes
  ``KHR_gaussian_splatting:ROTATION``          VEC4    unit quaternion, glTF order **xyzw**
  ``KHR_gaussian_splatting:SCALE``             VEC3    **linear** standard deviations (exp of
                                                       :attr:`Splats.scales`), never negative
  ``KHR_gaussian_splatting:OPACITY``           SCALAR  **post-sigmoid** opacity in [0, 1]
  ``KHR_gaussian_splatting:SH_DEGREE_0_COEF_0``  VEC3  raw DC coefficient (:attr:`Splats.sh0`)
  ``KHR_gaussian_splatting:SH_DEGREE_l_COEF_n``  VEC3  band ``l`` (1..3), order ``m = -l..l``
                                                       (``n = m + l``), the INRIA order of
                                                       :attr:`Splats.shN`; RGB per accessor
  ``COLOR_0`` (fallback, optional)             VEC4    unsigned byte normalised: linear RGB of
                                                       ``clamp(0.5 + SH_C0 * sh0)`` decoded
                                                       from sRGB, alpha = opacity
  ===========================================  ======  ========================================

  The spec's SH basis (its Appendix A, with the Condon-Shortley phase) is the one of
  :func:`splatstudio.splats.model.sh_basis`, so coefficients are stored as trained.
  The reader also accepts the quantised component types the spec allows (normalised signed
  byte/short rotations, unsigned byte/short scales and opacities).
* ``KHR_gaussian_splatting_compression_spz_2/README.md`` (draft): the attributes are kept in
  the primitive as accessors **without** ``bufferView`` (``count`` = number of splats) and
  the data come from an SPZ blob in the ``bufferView`` named by
  ``extensions.KHR_gaussian_splatting.extensions.KHR_gaussian_splatting_compression_spz_2``;
  SPZ ``positions`` -> ``POSITION``, ``colors`` + ``alphas`` -> ``COLOR_0``, ``scales`` (log)
  -> ``SCALE``, ``rotations`` -> ``ROTATION``, ``sh`` -> ``SH_DEGREE_l_COEF_n`` in order.
  SplatStudio writes SPZ format version 3 (gzip, smallest-three quaternions) by default, or 2
  (gzip, three-byte quaternions): the versions CesiumJS 1.140 (``@spz-loader/core`` 0.3)
  renders; never SPZ v4 (ZSTD streams), which it cannot read.

Axes
----
glTF is right-handed, +Y up, the asset's front facing +Z: ``"LUF"`` (x left, y up, z front)
in the axis codes of :func:`splatstudio.splats.spz.axis_matrix`, the name the SPZ
compression extension gives it. The writer converts from the in-memory frame named by
``coordinate_system``; the reader converts back (positions, rotations and higher SH exactly,
:meth:`Splats.transformed`):

* ``"RDF"`` (default; PLY, COLMAP): ``(x, y, z) -> (-x, -y, z)``, the mapping PlayCanvas
  splat-transform and SuperSplat use for a PLY, so a GLB of a third-party PLY opens the same
  way up and facing the same way as the PLY does there;
* ``"ENU"`` (SplatStudio scenes: x east, y north, z up): ``(e, n, u) -> (e, u, -n)`` (x east,
  y up, z south), the axes 3D Tiles assumes for glTF content: its y-up -> z-up rotation
  ``(x, y, z) -> (x, -z, y)`` yields east, north, up again under an ENU -> ECEF tile
  transform. (In the letter codes east is glTF's "left" and north its "back": ``"LBU"``.)
* ``None``: the arrays are glTF values already.

SPZ payload axes: the compression extension asks for the SPZ library's ``LUF`` option, under
which the blob would hold ``(-x, y, -z)`` of the glTF values; CesiumJS 1.140, the
implementation the extension lists, decodes the blob with ``coordinateSystem:
"UNSPECIFIED"`` (``GltfSpzLoader.js``) and uses the stored values as glTF values. SplatStudio
follows the renderer (the blob holds the glTF values as they are), so a tile stands on the
globe where it belongs and faces the right way (checked in CesiumJS by
``tests/interop/test_cesium.py`` with a splat placed east of the origin); the reader decodes
it the same way. ``spz_axes="LUF"`` writes the letter of the extension instead.

Only ``nodes[0]`` / ``meshes[0].primitives[0]`` of a scene are read (the one splat primitive
SplatStudio writes; CesiumJS reads only that one too); node transforms are not applied and
must be absent or identity.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

import numpy as np

from .model import SH_C0, SplatFormatError, Splats, logit, sigmoid
from .spz import axis_matrix, decode_spz, encode_spz

__all__ = [
    "ENU_AS_GLTF_LETTERS",
    "EXT_SPLAT",
    "EXT_SPZ",
    "GLTF_AXES",
    "build_glb",
    "decode_glb_splat",
    "encode_glb_splat",
    "gltf_matrix",
    "parse_glb",
    "read_glb_info",
    "read_glb_splat",
    "write_glb_splat",
]

EXT_SPLAT = "KHR_gaussian_splatting"
EXT_SPZ = "KHR_gaussian_splatting_compression_spz_2"
#: glTF's axes in the codes of :func:`~splatstudio.splats.spz.axis_matrix`.
GLTF_AXES = "LUF"
#: The letter code of ENU (x east, y north, z up) that maps it to glTF as 3D Tiles expects.
ENU_AS_GLTF_LETTERS = "LBU"
_GLB_MAGIC = 0x46546C67  # "glTF"
_CHUNK_JSON = 0x4E4F534A
_CHUNK_BIN = 0x004E4942
_FLOAT, _UBYTE, _BYTE, _USHORT, _SHORT = 5126, 5121, 5120, 5123, 5122
_ARRAY_BUFFER = 34962
_NCOMP = {"SCALAR": 1, "VEC3": 3, "VEC4": 4}
_DTYPE = {_FLOAT: "<f4", _UBYTE: "u1", _BYTE: "i1", _USHORT: "<u2", _SHORT: "<i2"}
_COEFS = (1, 3, 5, 7)  # coefficients per SH band 0..3


def gltf_matrix(coordinate_system: str | None) -> np.ndarray:
    """``[3, 3]`` signed permutation taking arrays in `coordinate_system` to glTF axes (see
    the module docstring; ``"ENU"`` gives x east, y up, z south, ``None`` the identity)."""
    if coordinate_system is not None and coordinate_system.upper() == "ENU":
        coordinate_system = ENU_AS_GLTF_LETTERS
    return axis_matrix(coordinate_system, GLTF_AXES)


def _sh_semantic(band: int, n: int) -> str:
    return f"{EXT_SPLAT}:SH_DEGREE_{band}_COEF_{n}"


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


# ---------------------------------------------------------------------------- GLB container
def build_glb(gltf: dict, binary: bytes) -> bytes:
    """Assemble a GLB 2.0 container: 12-byte header, JSON chunk (space padded), BIN chunk
    (zero padded), each 4-byte aligned (glTF 2.0 spec, "Binary glTF Layout")."""
    js = json.dumps(gltf, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    binary = binary + b"\0" * (-len(binary) % 4)
    total = 12 + 8 + len(js) + (8 + len(binary) if binary else 0)
    out = [struct.pack("<III", _GLB_MAGIC, 2, total), struct.pack("<II", len(js), _CHUNK_JSON), js]
    if binary:
        out += [struct.pack("<II", len(binary), _CHUNK_BIN), binary]
    return b"".join(out)


def parse_glb(data: bytes, name: str = "<bytes>") -> tuple[dict, bytes]:
    """Split a GLB 2.0 file into its JSON document and BIN chunk.

    Raises:
        SplatFormatError: naming `name`, for a wrong magic or version, or truncated chunks.
    """
    if len(data) < 20:
        raise SplatFormatError(name, f"truncated GLB: {len(data)} bytes")
    magic, version, length = struct.unpack_from("<III", data, 0)
    if magic != _GLB_MAGIC:
        raise SplatFormatError(name, "not a binary glTF file (magic is not 'glTF')")
    if version != 2:
        raise SplatFormatError(name, f"unsupported GLB version {version} (expected 2)")
    if length > len(data):
        raise SplatFormatError(name, f"truncated GLB: header says {length} bytes, file has "
                                     f"{len(data)}")  # fmt: skip
    off, gltf, binary = 12, None, b""
    while off + 8 <= length:
        clen, ctype = struct.unpack_from("<II", data, off)
        chunk = data[off + 8 : off + 8 + clen]
        if len(chunk) != clen:
            raise SplatFormatError(name, f"truncated GLB chunk at byte {off}")
        if ctype == _CHUNK_JSON and gltf is None:
            try:
                gltf = json.loads(chunk.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise SplatFormatError(name, f"malformed glTF JSON chunk ({e})") from None
        elif ctype == _CHUNK_BIN and not binary:
            binary = chunk
        off += 8 + clen + (-clen % 4 if ctype != _CHUNK_JSON else 0)
    if gltf is None:
        raise SplatFormatError(name, "GLB has no JSON chunk")
    return gltf, binary


# ---------------------------------------------------------------------------- writing
class _Builder:
    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def view(self, payload: bytes, target: int | None = _ARRAY_BUFFER) -> int:
        pad = -self.size % 4
        if pad:
            self.parts.append(b"\0" * pad)
            self.size += pad
        v: dict[str, Any] = {"buffer": 0, "byteOffset": self.size, "byteLength": len(payload)}
        if target is not None:
            v["target"] = target
        self.parts.append(payload)
        self.size += len(payload)
        self.views.append(v)
        return len(self.views) - 1

    def accessor(self, array: np.ndarray | None, type_: str, component: int, count: int,
                 normalized: bool = False, minmax: np.ndarray | None = None) -> int:  # fmt: skip
        acc: dict[str, Any] = {"componentType": component, "count": int(count), "type": type_}
        if array is not None:
            acc["bufferView"] = self.view(np.ascontiguousarray(array).tobytes())
        if normalized:
            acc["normalized"] = True
        if minmax is not None:
            acc["min"] = [float(v) for v in minmax[0]]
            acc["max"] = [float(v) for v in minmax[1]]
        self.accessors.append(acc)
        return len(self.accessors) - 1


def _minmax(means: np.ndarray) -> np.ndarray:
    if means.shape[0] == 0:
        return np.zeros((2, 3), np.float32)
    return np.stack([means.min(axis=0), means.max(axis=0)]).astype(np.float32)


def _color0(s: Splats) -> np.ndarray:
    rgb = np.clip(0.5 + SH_C0 * s.sh0[:, 0].astype(np.float64), 0.0, 1.0)
    rgba = np.concatenate([_srgb_to_linear(rgb), sigmoid(s.opacities)[:, None]], axis=1)
    return np.clip(np.floor(rgba * 255.0 + 0.5), 0, 255).astype(np.uint8)


def encode_glb_splat(
    splats: Splats,
    *,
    coordinate_system: str | None = "RDF",
    spz: bool = False,
    spz_version: int = 3,
    spz_axes: str = "GLTF",
    color_space: str = "srgb_rec709_display",
    fractional_bits: int | None = None,
    generator: str = "SplatStudio",
    extras: dict | None = None,
) -> bytes:
    """Encode :class:`Splats` as GLB bytes (see :func:`write_glb_splat` for the arguments).

    Returns:
        The GLB file's bytes.

    Raises:
        ValueError: invalid splats or options.
    """
    splats.validate()
    if color_space not in ("srgb_rec709_display", "lin_rec709_display"):
        raise ValueError(f"color_space must be srgb_rec709_display or lin_rec709_display, "
                         f"got {color_space!r}")  # fmt: skip
    if spz_axes not in ("GLTF", "LUF"):
        raise ValueError(f"spz_axes must be 'GLTF' or 'LUF', got {spz_axes!r}")
    m = gltf_matrix(coordinate_system)
    s = splats if np.array_equal(m, np.eye(3)) else splats.transformed(m)
    n, deg = s.n, s.sh_degree
    b = _Builder()
    attrs: dict[str, int] = {}
    ext: dict[str, Any] = {"kernel": "ellipse", "colorSpace": color_space,
                           "projection": "perspective", "sortingMethod": "cameraDistance"}  # fmt: skip
    used = [EXT_SPLAT]
    required: list[str] = []
    if spz:
        if spz_version not in (2, 3):
            raise ValueError(
                f"spz_version must be 2 or 3 inside glTF (gzip SPZ), got {spz_version}"
            )
        blob_cs = None if spz_axes == "GLTF" else "LUF"  # LUF -> RUB negates x and z
        blob = encode_spz(s, version=spz_version, coordinate_system=blob_cs,
                          fractional_bits=fractional_bits)  # fmt: skip
        view = b.view(blob, target=None)  # CesiumJS reads the blob from bufferView 0
        back, _ = decode_spz(blob, coordinate_system=None if spz_axes == "GLTF" else "LUF")
        attrs["POSITION"] = b.accessor(None, "VEC3", _FLOAT, n, minmax=_minmax(back.means))
        attrs["COLOR_0"] = b.accessor(None, "VEC4", _UBYTE, n, normalized=True)
        attrs[f"{EXT_SPLAT}:SCALE"] = b.accessor(None, "VEC3", _FLOAT, n)
        attrs[f"{EXT_SPLAT}:ROTATION"] = b.accessor(None, "VEC4", _FLOAT, n)
        for band in range(1, deg + 1):
            for c in range(_COEFS[band]):
                attrs[_sh_semantic(band, c)] = b.accessor(None, "VEC3", _FLOAT, n)
        ext["extensions"] = {EXT_SPZ: {"bufferView": view}}
        used.append(EXT_SPZ)
        required = [EXT_SPLAT, EXT_SPZ]
    else:
        q = s.quats.astype(np.float64)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        xyzw = q[:, [1, 2, 3, 0]].astype(np.float32)
        attrs["POSITION"] = b.accessor(s.means.astype(np.float32), "VEC3", _FLOAT, n,
                                       minmax=_minmax(s.means))  # fmt: skip
        attrs["COLOR_0"] = b.accessor(_color0(s), "VEC4", _UBYTE, n, normalized=True)
        attrs[f"{EXT_SPLAT}:SCALE"] = b.accessor(np.exp(s.scales.astype(np.float64)).astype(
            np.float32), "VEC3", _FLOAT, n)  # fmt: skip
        attrs[f"{EXT_SPLAT}:ROTATION"] = b.accessor(xyzw, "VEC4", _FLOAT, n)
        attrs[f"{EXT_SPLAT}:OPACITY"] = b.accessor(sigmoid(s.opacities), "SCALAR", _FLOAT, n)
        attrs[_sh_semantic(0, 0)] = b.accessor(s.sh0[:, 0].astype(np.float32), "VEC3", _FLOAT, n)
        k = 0
        for band in range(1, deg + 1):
            for c in range(_COEFS[band]):
                attrs[_sh_semantic(band, c)] = b.accessor(
                    s.shN[:, k].astype(np.float32), "VEC3", _FLOAT, n
                )
                k += 1
    gltf: dict[str, Any] = {
        "asset": {"version": "2.0", "generator": generator},
        "extensionsUsed": used,
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": "splats"}],
        "meshes": [
            {"primitives": [{"attributes": attrs, "mode": 0, "extensions": {EXT_SPLAT: ext}}]}
        ],  # fmt: skip
        "accessors": b.accessors,
        "bufferViews": b.views,
        "buffers": [{"byteLength": b.size}],
    }
    if required:
        gltf["extensionsRequired"] = required
    if extras:
        gltf["asset"]["extras"] = extras
    return build_glb(gltf, b"".join(b.parts))


def write_glb_splat(
    splats: Splats,
    path: str | os.PathLike,
    *,
    coordinate_system: str | None = "RDF",
    spz: bool = False,
    spz_version: int = 3,
    spz_axes: str = "GLTF",
    color_space: str = "srgb_rec709_display",
    fractional_bits: int | None = None,
) -> int:
    """Write splats as a ``KHR_gaussian_splatting`` GLB (see the module docstring).

    Uncompressed: float32 attributes, lossless for positions, SH and opacity (up to the
    float32 rounding of ``exp``/``sigmoid``), about ``4 * (3 + 4 + 3 + 1 + 3 + 3K) + 4`` bytes
    per gaussian. With ``spz=True`` the SPZ quantisation applies (see
    :func:`splatstudio.splats.spz.write_spz`; v2 rotations are 3 bytes ``x, y, z`` with
    ``w >= 0`` and ``w`` rebuilt from the unit norm: median error ~0.5 degree, up to ~12
    degrees for rotations near 180 degrees (``w ~ 0``), why v3 is the default).

    Args:
        splats: gaussians (validated first).
        path: output ``.glb`` file.
        coordinate_system: axis convention of ``splats`` (``"RDF"`` default, ``"ENU"`` for
            SplatStudio scenes; converted to glTF's); ``None``: the arrays are already in
            glTF axes.
        spz: compress with ``KHR_gaussian_splatting_compression_spz_2`` (required for
            CesiumJS).
        spz_version: SPZ format version of the payload, 3 (default) or 2.
        spz_axes: ``"GLTF"`` (default): the payload holds glTF-axis values, as CesiumJS
            reads them; ``"LUF"``: converted as the extension text prescribes (x and z
            negated).
        color_space: ``"srgb_rec709_display"`` (SplatStudio trains on sRGB photographs) or
            ``"lin_rec709_display"``.
        fractional_bits: SPZ position fraction bits (default 12, lowered automatically for
            large coordinates).

    Returns:
        Number of bytes written.

    Raises:
        ValueError: invalid splats or options.
        OSError: on write errors.
    """
    data = encode_glb_splat(splats, coordinate_system=coordinate_system, spz=spz,
                            spz_version=spz_version, spz_axes=spz_axes, color_space=color_space,
                            fractional_bits=fractional_bits)  # fmt: skip
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


# ---------------------------------------------------------------------------- reading
def _read_accessor(gltf: dict, binary: bytes, index: int, name: str) -> np.ndarray:
    try:
        acc = gltf["accessors"][index]
        comp, type_, count = acc["componentType"], acc["type"], int(acc["count"])
        ncomp = _NCOMP[type_]
        dtype = np.dtype(_DTYPE[comp])
    except (KeyError, IndexError, TypeError) as e:
        raise SplatFormatError(name, f"malformed accessor {index} ({e!r})") from None
    if "bufferView" not in acc:
        raise SplatFormatError(name, f"accessor {index} has no bufferView and no compression "
                                     "extension provides its data")  # fmt: skip
    view = gltf["bufferViews"][acc["bufferView"]]
    if view.get("buffer", 0) != 0 or "uri" in gltf["buffers"][view.get("buffer", 0)]:
        raise SplatFormatError(name, "only the GLB's own binary chunk is supported as buffer")
    start = int(view.get("byteOffset", 0)) + int(acc.get("byteOffset", 0))
    stride = int(view.get("byteStride", 0)) or dtype.itemsize * ncomp
    need = start + stride * max(count - 1, 0) + dtype.itemsize * ncomp
    if count and need > len(binary):
        raise SplatFormatError(name, f"accessor {index} reads past the end of the binary chunk")
    raw = np.lib.stride_tricks.as_strided(
        np.frombuffer(binary, np.uint8, offset=start, count=max(need - start, 0)),
        shape=(count, ncomp * dtype.itemsize), strides=(stride, 1),
    ).copy()  # fmt: skip
    vals = raw.view(dtype).reshape(count, ncomp).astype(np.float32)
    if acc.get("normalized"):
        vals = vals / np.float32(np.iinfo(dtype).max)
        if dtype.kind == "i":
            vals = np.maximum(vals, -1.0)
    return vals


def decode_glb_splat(data: bytes, *, coordinate_system: str | None = "RDF", spz_axes: str = "GLTF",
                     name: str = "<bytes>") -> tuple[Splats, dict]:  # fmt: skip
    """Decode GLB bytes holding a ``KHR_gaussian_splatting`` primitive (``spz_axes``: how an
    SPZ payload's axes are read, see :func:`write_glb_splat`).

    Returns:
        ``(splats, info)``: :class:`Splats` in ``coordinate_system`` and ``{"compression":
        None or "spz", "spz_version", "fractional_bits", "color_space", "extensions_used"}``.

    Raises:
        SplatFormatError: naming `name`, when the file is not a splat GLB or is malformed.
    """
    gltf, binary = parse_glb(data, name)
    try:
        node = gltf["nodes"][gltf["scenes"][gltf.get("scene", 0)]["nodes"][0]]
        prim = gltf["meshes"][node["mesh"]]["primitives"][0]
        attrs = prim["attributes"]
    except (KeyError, IndexError, TypeError) as e:
        raise SplatFormatError(name, f"no mesh primitive in the first scene node ({e!r})") from None
    if any(k in node for k in ("matrix", "translation", "rotation", "scale")):
        mat = np.asarray(node.get("matrix", np.eye(4).reshape(-1)), np.float64)
        if not np.allclose(mat, np.eye(4).reshape(-1)) or any(
            k in node for k in ("translation", "rotation", "scale")
        ):
            raise SplatFormatError(name, "the splat node has a transform; not supported")
    ext = (prim.get("extensions") or {}).get(EXT_SPLAT)
    if ext is None:
        raise SplatFormatError(name, f"the first primitive has no {EXT_SPLAT} extension")
    if prim.get("mode", 4) != 0:
        raise SplatFormatError(name, f"{EXT_SPLAT} primitive mode must be POINTS (0), got "
                                     f"{prim.get('mode', 4)}")  # fmt: skip
    info: dict[str, Any] = {"compression": None, "spz_version": None, "fractional_bits": None,
                            "color_space": ext.get("colorSpace"),
                            "extensions_used": gltf.get("extensionsUsed", [])}  # fmt: skip
    spz = (ext.get("extensions") or {}).get(EXT_SPZ)
    if spz is not None:
        try:
            view = gltf["bufferViews"][int(spz["bufferView"])]
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise SplatFormatError(name, f"{EXT_SPZ}: bad bufferView ({e!r})") from None
        start = int(view.get("byteOffset", 0))
        blob = binary[start : start + int(view["byteLength"])]
        if spz_axes not in ("GLTF", "LUF"):
            raise ValueError(f"spz_axes must be 'GLTF' or 'LUF', got {spz_axes!r}")
        s, header = decode_spz(blob, coordinate_system=None if spz_axes == "GLTF" else "LUF",
                               name=f"{name} (SPZ payload)")  # fmt: skip
        info.update(compression="spz", spz_version=header.version,
                    fractional_bits=header.fractional_bits)  # fmt: skip
        count = gltf["accessors"][attrs["POSITION"]]["count"]
        if count != s.n:
            raise SplatFormatError(name, f"POSITION count {count} differs from the SPZ payload's "
                                         f"{s.n} splats")  # fmt: skip
    else:

        def get(sem: str) -> np.ndarray:
            if sem not in attrs:
                raise SplatFormatError(name, f"missing required attribute {sem}")
            return _read_accessor(gltf, binary, attrs[sem], name)

        means = get("POSITION")
        xyzw = get(f"{EXT_SPLAT}:ROTATION")
        scale = get(f"{EXT_SPLAT}:SCALE")
        opac = get(f"{EXT_SPLAT}:OPACITY")[:, 0].astype(np.float64)
        sh0 = get(_sh_semantic(0, 0))
        if np.any(scale < 0):
            raise SplatFormatError(name, "negative SCALE values (the spec forbids them)")
        if np.any((opac < 0) | (opac > 1)):
            raise SplatFormatError(name, "OPACITY outside [0, 1]")
        deg = 0
        while deg < 3 and _sh_semantic(deg + 1, 0) in attrs:
            deg += 1
        bands = [get(_sh_semantic(band, c)) for band in range(1, deg + 1)
                 for c in range(_COEFS[band])]  # fmt: skip
        shn = np.stack(bands, axis=1) if bands else np.zeros((means.shape[0], 0, 3), np.float32)
        with np.errstate(divide="ignore"):
            log_scale = np.log(np.maximum(scale.astype(np.float64), 1e-30)).astype(np.float32)
        s = Splats(
            means=means, quats=xyzw[:, [3, 0, 1, 2]], scales=log_scale, opacities=logit(opac), sh0=sh0[:, None, :], shN=shn,
        )  # fmt: skip
    m = gltf_matrix(coordinate_system).T
    if not np.array_equal(m, np.eye(3)):
        s = s.transformed(m)
    return s, info


def read_glb_splat(
    path: str | os.PathLike, *, coordinate_system: str | None = "RDF", spz_axes: str = "GLTF"
) -> Splats:
    """Read a ``KHR_gaussian_splatting`` GLB (uncompressed or SPZ-compressed).

    Args:
        path: ``.glb`` file.
        coordinate_system: axis convention wanted for the returned arrays (default ``"RDF"``;
            ``"ENU"`` for SplatStudio scenes; ``None``: glTF axes as stored).
        spz_axes: axes of an SPZ payload, ``"GLTF"`` (default; as CesiumJS reads it) or
            ``"LUF"`` (x and z negated, the extension text's option); the file does not say.

    Returns:
        :class:`Splats` (log scales, opacity logits, wxyz quaternions).

    Raises:
        SplatFormatError (a ValueError): naming the file, if it is not a splat GLB or is
            malformed.
        OSError: if the file cannot be read.
    """
    with open(path, "rb") as f:
        data = f.read()
    return decode_glb_splat(data, coordinate_system=coordinate_system, spz_axes=spz_axes,
                            name=str(path))[0]  # fmt: skip


def read_glb_info(path: str | os.PathLike) -> dict:
    """The compression, SPZ version, colour space and extensions of a splat GLB (decodes it).

    Raises:
        SplatFormatError: as :func:`read_glb_splat`.
    """
    with open(path, "rb") as f:
        data = f.read()
    return decode_glb_splat(data, coordinate_system=None, name=str(path))[1]
