"""The splat file formats, in one registry: name, file suffixes, label, axes, reader, writer and
read-back tolerance.

The export stage, ``splatstudio convert``, the Export dialog and the viewer's open dialog all
take their list of splat formats from :data:`REGISTRY` (in the order the export writes them);
:func:`verify_readback` is the read-back check every written file goes through.

Read-back tolerances follow each format's documented quantisation (the writers' module
docstrings): e.g. SPZ positions within ``2 ** -(fractional_bits + 1)`` m, 8-bit opacities
within ``0.5 / 255``, compressed-PLY centres within ``chunk extent / 2046``. Sorted formats
(``splat``: by importance, ``compressed_ply`` and ``sog``: Morton order) are compared in the
writer's order. SOG's codebook attributes (log-scales, DC colour) must decode to the codebook
level nearest to what was written, and its SH palette must keep the relative RMS error of the
higher SH under 0.25.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .compressed_ply import morton_order, read_compressed_ply, write_compressed_ply
from .gltf import read_glb_splat, write_glb_splat
from .model import SH_C0, Splats, sigmoid
from .ply import read_ply, write_ply
from .sog import read_sog, write_sog
from .splat import importance_order, read_splat, write_splat
from .spz import read_spz, read_spz_header, write_spz

Check = tuple[str, np.ndarray, Any]
"""(attribute, error ``[N, ...]``, tolerance: a scalar or an array broadcastable to it)."""


class ReadBackError(ValueError):
    """A written splat file does not read back as what was written (names the file, the
    attribute, the error and the format)."""


@dataclass(frozen=True)
class SplatFormat:
    """One splat file format.

    Attributes:
        name: the name used everywhere (``ExportConfig.formats``, ``format=``, manifests).
        suffix: what the export stage appends to the base name (``scene.compressed.ply``).
        read_suffixes: file-name endings the readers recognise, lower case (the viewer's open
            dialog, :func:`~splatstudio.splats.io.format_from_name`).
        label: one line for the GUI.
        axes: the axes of the coordinates the export stage writes (``ENU``: x east, y north,
            z up; ``RUB``: x right = east, y up, z back = south; see
            :data:`splatstudio.geo.sidecar.AXES`).
        reader: ``reader(path, **options) -> Splats``.
        writer: ``writer(splats, path, **options) -> bytes written``.
        tolerance: ``tolerance(src, back, path, info) -> [Check]``: the read-back checks of
            this format (`src` as written, in the file's axes and order; `back` as read;
            `info`: what the driver learned from the file, e.g. SPZ's fractional bits).
        order: the writer's gaussian order for the comparison (sorted formats), or None.
        lossless: every attribute reads back exactly.
    """

    name: str
    suffix: str
    read_suffixes: tuple[str, ...]
    label: str
    axes: str
    reader: Callable[..., Splats]
    writer: Callable[..., int]
    tolerance: Callable[[Splats, Splats, Path, dict[str, Any]], list[Check]]
    order: Callable[[Splats], np.ndarray] | None = None
    lossless: bool = False


# -- tolerances --------------------------------------------------------------------------------
def _quat_angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    d = np.clip(np.abs(np.sum(a * b, axis=1)), 0.0, 1.0)
    return np.degrees(2.0 * np.arccos(d))


def _chunk_range(v: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Per-row extent of its 256-row chunk, ``[N, C]``."""
    n = v.shape[0]
    idx = np.arange(n) // chunk
    nc = int(idx[-1]) + 1 if n else 0
    lo = np.full((nc, v.shape[1]), np.inf)
    hi = np.full((nc, v.shape[1]), -np.inf)
    np.minimum.at(lo, idx, v)
    np.maximum.at(hi, idx, v)
    return (hi - lo)[idx]


def _f32(src: Splats) -> np.ndarray:
    """float32 rounding of a coordinate, metres ``[N, 3]``."""
    return np.abs(src.means.astype(np.float64)) * 1.2e-7 + 1e-7


def _opacity(src: Splats, back: Splats) -> np.ndarray:
    return np.abs(sigmoid(src.opacities).astype(np.float64) - sigmoid(back.opacities))


def _means(src: Splats, back: Splats) -> np.ndarray:
    return np.abs(src.means.astype(np.float64) - back.means.astype(np.float64))


def _ply_checks(src: Splats, back: Splats, path: Path, info: dict[str, Any]) -> list[Check]:
    return [(name, np.abs(getattr(src, name) - getattr(back, name)), 0.0)
            for name in ("means", "quats", "scales", "opacities", "sh0", "shN")]


def _splat_checks(src: Splats, back: Splats, path: Path, info: dict[str, Any]) -> list[Check]:
    return [
        ("means", _means(src, back), _f32(src)),
        ("scales", np.abs(src.scales - back.scales), 1e-4),
        ("opacity", _opacity(src, back), 0.5 / 255 + 1e-6),
        (
            "color",
            np.abs(np.clip(0.5 + SH_C0 * src.sh0, 0, 1) - (0.5 + SH_C0 * back.sh0)),
            0.5 / 255 + 1e-5,
        ),
        ("rotation_deg", _quat_angle_deg(src.quats, back.quats), 1.0),
        ("sh_degree", np.asarray([back.sh_degree]), 0),
    ]


def _spz_payload_checks(src: Splats, back: Splats, fbits: int, version: int) -> list[Check]:
    shn_src = np.clip(src.shN, -1.0, 127.0 / 128.0)
    k = src.shN.shape[1]
    sh_tol = np.full((1, k, 1), (0.5 + 2 ** (7 - 4)) / 128 + 1e-6)
    sh_tol[:, :3] = (0.5 + 2 ** (7 - 5)) / 128 + 1e-6
    return [
        ("means", _means(src, back), 2.0 ** -(fbits + 1) + _f32(src)),
        ("scales", np.abs(np.clip(src.scales, -10, 5.9375) - back.scales), 1 / 32 + 1e-5),
        ("opacity", _opacity(src, back), 0.5 / 255 + 1e-6),
        ("sh0", np.abs(np.clip(src.sh0, -3.33, 3.33) - back.sh0), 0.5 / (0.15 * 255) + 1e-5),
        ("rotation_deg", _quat_angle_deg(src.quats, back.quats), 0.25 if version >= 3 else 15.0),
        ("shN", np.abs(shn_src - back.shN), sh_tol),
    ]


def _spz_checks(src: Splats, back: Splats, path: Path, info: dict[str, Any]) -> list[Check]:
    h = read_spz_header(path)
    return _spz_payload_checks(src, back, h.fractional_bits, h.version)


def _glb_checks(src: Splats, back: Splats, path: Path, info: dict[str, Any]) -> list[Check]:
    if info["compression"] is not None:  # an SPZ payload
        return _spz_payload_checks(src, back, info["fractional_bits"], info["spz_version"])
    return [  # float32 attributes
        ("means", _means(src, back), 0.0),
        ("scales", np.abs(src.scales - back.scales), 1e-5 * (1 + np.abs(src.scales))),
        ("opacity", _opacity(src, back), 1e-6),
        ("sh0", np.abs(src.sh0 - back.sh0), 0.0),
        ("rotation_deg", _quat_angle_deg(src.quats.astype(np.float64),
                                         back.quats.astype(np.float64)), 0.01),
        ("shN", np.abs(src.shN - back.shN), 0.0),
    ]


def _compressed_ply_checks(src: Splats, back: Splats, path: Path,
                           info: dict[str, Any]) -> list[Check]:
    m64 = src.means.astype(np.float64)
    col = 0.5 + SH_C0 * src.sh0[:, 0].astype(np.float64)
    s64 = np.clip(src.scales.astype(np.float64), -20, 20)
    return [
        ("means", _means(src, back), _chunk_range(m64) / 2046 + _f32(src) + 1e-6),
        ("scales", np.abs(s64 - back.scales), _chunk_range(s64) / 2046 + 1e-5),
        ("opacity", _opacity(src, back), 0.5 / 255 + 1e-6),
        ("color", np.abs(col - (0.5 + SH_C0 * back.sh0[:, 0])), _chunk_range(col) / 510 + 1e-5),
        ("rotation_deg", _quat_angle_deg(src.quats, back.quats), 0.25),
        ("shN", np.abs(np.clip(src.shN, -4, 4) - back.shN), 1 / 32 + 1e-6),
    ]


def _sog_checks(src: Splats, back: Splats, path: Path, info: dict[str, Any]) -> list[Check]:
    from .sog import read_sog_meta

    meta = read_sog_meta(path)
    span = np.asarray(meta["means"]["maxs"], np.float64) - meta["means"]["mins"]
    m64 = src.means.astype(np.float64)

    def nearest(v: np.ndarray, book: list) -> np.ndarray:
        b = np.asarray(book, np.float64)
        flat = v.reshape(-1).astype(np.float64)
        i = np.clip(np.searchsorted(b, flat), 1, b.size - 1)
        return np.minimum(np.abs(flat - b[i - 1]), np.abs(flat - b[i])).reshape(v.shape)

    checks: list[Check] = [
        ("means", _means(src, back), (np.abs(m64) + 1) * span / 131070 * 1.001 + _f32(src)),
        ("scales", np.abs(src.scales - back.scales.astype(np.float64)),
         nearest(src.scales, meta["scales"]["codebook"]) + 1e-6),
        ("opacity", _opacity(src, back), 0.5 / 255 + 1e-6),
        ("sh0", np.abs(src.sh0 - back.sh0.astype(np.float64)),
         nearest(src.sh0, meta["sh0"]["codebook"]) + 1e-6),
        ("rotation_deg", _quat_angle_deg(src.quats, back.quats), 1.2),
    ]  # fmt: skip
    if src.shN.size:
        rel = np.sqrt(((src.shN - back.shN) ** 2).mean() / max((src.shN**2).mean(), 1e-30))
        checks.append(("shN_relative_rms", np.asarray([rel]), 0.25))
    return checks


def _morton(s: Splats) -> np.ndarray:
    return morton_order(s.means)


# -- the registry ------------------------------------------------------------------------------
REGISTRY: dict[str, SplatFormat] = {f.name: f for f in (
    SplatFormat("ply", ".ply", (".ply",), "PLY: standard 3DGS (INRIA)", "ENU", read_ply,
                write_ply, _ply_checks, lossless=True),
    SplatFormat("splat", ".splat", (".splat",), ".splat: web viewers (antimatter15)", "ENU",
                read_splat, write_splat, _splat_checks, order=importance_order),
    SplatFormat("spz", ".spz", (".spz",), "SPZ: Niantic, compact", "RUB", read_spz, write_spz,
                _spz_checks),
    SplatFormat("compressed_ply", ".compressed.ply", (".compressed.ply",),
                "Compressed PLY: SuperSplat", "ENU", read_compressed_ply, write_compressed_ply,
                _compressed_ply_checks, order=_morton),
    SplatFormat("sog", ".sog", (".sog", "meta.json"), "SOG: PlayCanvas v2 (WebP)", "ENU",
                read_sog, write_sog, _sog_checks, order=_morton),
    SplatFormat("glb_splat", ".splat.glb", (".glb",), "GLB splat: glTF KHR_gaussian_splatting",
                "RUB", read_glb_splat, write_glb_splat, _glb_checks),
)}
"""Every splat format, in the order the export stage writes them."""

FORMATS: tuple[str, ...] = tuple(REGISTRY)
"""The splat format names."""

READ_SUFFIXES: tuple[str, ...] = tuple(dict.fromkeys(
    s for f in REGISTRY.values() for s in f.read_suffixes if s.startswith(".")))
"""File-name suffixes of splat files (``meta.json`` of a SOG folder aside), for file
dialogs and drop targets."""


def splat_format(name: str) -> SplatFormat:
    """The format called `name`.

    Raises:
        ValueError: no such format (naming the choices).
    """
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown splat format {name!r}; expected one of {FORMATS}") from None


def file_dialog_filter() -> str:
    """A Qt file-dialog filter of every splat file, then all files."""
    pats = " ".join(f"*{s}" for s in READ_SUFFIXES if s != ".compressed.ply")
    return f"Splat files ({pats});;All files (*)"


# -- the read-back check -----------------------------------------------------------------------
def verify_readback(path: Path, fmt: str, written: Splats, *,
                    coordinate_system: str | None = "ENU") -> dict[str, Any]:
    """Read `path` back and compare it with the splats that were written, within the
    format's tolerance (:attr:`SplatFormat.tolerance`; see the module docstring).

    Args:
        path: the written file.
        fmt: its format (a name of :data:`REGISTRY`).
        written: the :class:`~splatstudio.splats.Splats` given to the writer.
        coordinate_system: the ``coordinate_system`` SPZ or glb_splat was written with
            (compared in their stored RUB / glTF axes; None: stored unconverted; glb_splat:
            float32 attributes exactly, or the SPZ payload's quantisation).

    Returns:
        ``{"ok": True, "gaussians": N, "max_error": {attribute: value}}``; angles in degrees,
        positions in metres.

    Raises:
        ReadBackError: the count differs or an attribute exceeds its tolerance (the message
            names the file, the attribute, the error and the format).
        ValueError: `fmt` is not a splat format.
    """
    spec = splat_format(fmt)
    src = written
    info: dict[str, Any] = {}
    if fmt == "spz":  # compare in the file's own RUB axes, where the quantisation happened
        from .spz import axis_matrix

        m = axis_matrix(coordinate_system, "RUB")
        src = src if np.array_equal(m, np.eye(3)) else src.transformed(m)
        back = spec.reader(path, coordinate_system="RUB")
    elif fmt == "glb_splat":  # compare in the file's glTF axes
        from .gltf import decode_glb_splat, gltf_matrix

        m = gltf_matrix(coordinate_system)
        src = src if np.array_equal(m, np.eye(3)) else src.transformed(m)
        back, info = decode_glb_splat(path.read_bytes(), coordinate_system=None,
                                      name=str(path))  # fmt: skip
    else:
        back = spec.reader(path)
    if back.n != src.n:
        raise ReadBackError(f"{path}: read back {back.n} gaussians, wrote {src.n}")
    if spec.order is not None and src.n:
        src = src.subset(spec.order(src))
    if src.n == 0:
        return {"ok": True, "gaussians": 0, "max_error": {}}
    report: dict[str, float] = {}
    for name, err, tol in spec.tolerance(src, back, path, info):
        err = np.asarray(err, dtype=np.float64)
        if err.size == 0:
            continue
        report[name] = float(err.max())
        over = err > np.broadcast_to(np.asarray(tol, dtype=np.float64), err.shape)
        if over.any():
            i = int(np.argmax(np.reshape(over, (over.shape[0], -1)).any(axis=1)))
            raise ReadBackError(
                f"{path}: {name} read back differs from what was written beyond the "
                f"{fmt} quantisation (gaussian {i}: max error {report[name]:.3g})"
            )
    return {"ok": True, "gaussians": back.n, "max_error": report}
