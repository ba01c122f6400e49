"""The export stage: splat files for every common viewer, a textured mesh, georeferencing.

Reads ``train/splat.ply`` (a standard INRIA 3DGS PLY, centres in local ENU metres about the
project origin: x east, y north, z up) -- or, with ``ExportConfig.source``, an edited version
of it saved from the viewer (``edits/<name>.ply``, :mod:`splatstudio.pipeline.versions`) -- and ``ingest/manifest.json`` (the origin), and writes
into ``exports/`` (or ``ExportConfig.output_dir``):

* ``<name>.ply`` (INRIA PLY), ``<name>.splat`` (antimatter15), ``<name>.spz`` (Niantic SPZ,
  v4 by default), ``<name>.compressed.ply`` (SuperSplat/PlayCanvas) and ``<name>.sog``
  (PlayCanvas SOG v2 bundle, needs Pillow). With ``axes = viewer`` (default) all five hold
  x east, y down, z north, the y-down convention that SuperSplat and PlayCanvas show upright
  (:data:`EXPORT_AXES`); with ``axes = enu`` the first four keep ENU and the SPZ is stored in
  its specification's RUB axes (x east, y up, z south). Every
  file is read back and compared with what was written, within that format's quantisation
  (:func:`verify_splat_file`); a mismatch fails the stage.
* ``<name>.splat.glb`` (``glb_splat``): binary glTF with Khronos ``KHR_gaussian_splatting``
  (float attributes; with ``glb_splat_spz`` an SPZ v3 payload,
  ``KHR_gaussian_splatting_compression_spz_2``), in glTF's y-up axes (x east, y up, z south);
  read back and compared like the other splat files (:mod:`splatstudio.splats.gltf`).
* ``<name>-3dtiles/`` (``3dtiles``, georeferenced projects only): a 3D Tiles 1.1 tileset for
  CesiumJS, ``tileset.json`` whose root transform is ENU -> ECEF of the origin, SPZ-compressed
  splat GLB tiles in an octree with merged levels of detail
  (:mod:`splatstudio.splats.tiles3d`); read back and checked by :func:`verify_tileset`.
* ``<name>.glb`` (binary glTF, texture embedded) and ``<name>.obj`` + ``.mtl`` + ``.png``: a
  textured surface of the splat (:mod:`splatstudio.mesh`), in glTF's y-up axes (x east, y up,
  z south); its surface and texture come from renders of the splat from the capture's
  registered cameras (``georef/sparse``) when there are any, else from virtual views.
* ``<file>.geo.json`` next to every file (:mod:`splatstudio.geo.sidecar`): origin (EPSG:4979),
  the ENU->ECEF 4x4 transform, the axes of the file's coordinates, units.
* ``manifest.json``: per file its format, path and sidecar (relative to the manifest's
  folder), gaussians or faces, bytes, seconds and the verification, plus the filters applied
  and the external converter's run.

Filters (crop box, opacity threshold, floaters, SH cap; :func:`splatstudio.splats.apply_filters`)
apply to every output, the mesh included.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ExportConfig
from ..errors import ConfigError, InputError, StageError
from ..events import Emitter
from ..geo.enu import GeoOrigin
from ..geo.sidecar import axes_to_enu, write_sidecar
from ..project import Project, now_iso, read_json, write_json_atomic

SPLAT_FORMATS = ("ply", "splat", "spz", "compressed_ply", "sog", "glb_splat")
TILES_FORMATS = ("3dtiles",)
MESH_FORMATS = ("glb", "obj")
ALL_FORMATS = SPLAT_FORMATS + TILES_FORMATS + MESH_FORMATS
_SUFFIX = {"ply": ".ply", "splat": ".splat", "spz": ".spz", "compressed_ply": ".compressed.ply",
           "sog": ".sog", "glb_splat": ".splat.glb", "3dtiles": "-3dtiles", "glb": ".glb",
           "obj": ".obj"}  # fmt: skip
#: Axis convention of each format's coordinates (see :data:`splatstudio.geo.sidecar.AXES`);
#: a 3D Tiles tileset's coordinates are ENU under its root transform (ENU -> ECEF).
FILE_AXES = {"ply": "ENU", "splat": "ENU", "compressed_ply": "ENU", "sog": "ENU", "spz": "RUB",
             "glb_splat": "RUB", "3dtiles": "ENU", "glb": "RUB", "obj": "RUB"}  # fmt: skip
#: ``ExportConfig.axes`` choices. ``viewer``: the PLY-family files and SPZ hold x east, y down,
#: z north (``EDN``): the y-down convention of 3DGS/COLMAP PLY files, which SuperSplat and the
#: PlayCanvas viewer turn 180 degrees about z to show upright (their ``Transform.PLY``), and
#: which splat-transform also assumes for SPZ (it reads SPZ arrays unconverted, as Open3D and
#: nianticlabs/spz's ``UNSPECIFIED`` do), so the SPZ stores those arrays as they are.
#: ``enu``: :data:`FILE_AXES` (ENU; SPZ in its specification's RUB).
EXPORT_AXES = ("viewer", "enu")
VIEWER_FORMATS = ("ply", "splat", "compressed_ply", "sog", "spz")
CONVERTER_TIMEOUT_S = 3600.0


def file_axes(fmt: str, axes: str = "enu") -> str:
    """Axis convention (a key of :data:`splatstudio.geo.sidecar.AXES`) of format `fmt`'s
    coordinates under ``ExportConfig.axes`` = `axes` (see :data:`EXPORT_AXES`)."""
    return "EDN" if axes == "viewer" and fmt in VIEWER_FORMATS else FILE_AXES[fmt]


# ---------------------------------------------------------------------------- options
def parse_formats(text: str) -> list[str]:
    """``"ply, spz"`` -> ``["ply", "spz"]`` (order kept, duplicates dropped; ``all`` = every
    format; ``compressed`` is accepted for ``compressed_ply``, ``-`` for ``_`` as in
    ``glb-splat``).

    Raises:
        ConfigError: an unknown format or an empty list.
    """
    out: list[str] = []
    for tok in (t.strip().lower().replace("-", "_") for t in text.replace(";", ",").split(",")):
        if not tok:
            continue
        names = (
            ALL_FORMATS if tok == "all" else ("compressed_ply",) if tok == "compressed" else (tok,)
        )
        for name in names:
            if name not in ALL_FORMATS:
                raise ConfigError(
                    f"ExportConfig.formats: unknown format {tok!r}; choose from "
                    f"{', '.join(ALL_FORMATS)} or all"
                )
            if name not in out:
                out.append(name)
    if not out:
        raise ConfigError("ExportConfig.formats is empty; name at least one format")
    return out


def parse_corner(name: str, text: str) -> list[float] | None:
    """``"x,y,z"`` (ENU metres; ``;`` also separates) -> ``[x, y, z]``; an empty text -> None.

    Raises:
        ConfigError: naming option `name`, if the text is not three numbers.
    """
    if not text.strip():
        return None
    try:
        vals = [float(v) for v in text.replace(";", ",").split(",")]
    except ValueError:
        vals = []
    if len(vals) != 3:
        raise ConfigError(f"ExportConfig.{name}: expected 'x,y,z' in ENU metres, got {text!r}")
    return vals


def filter_options(config: ExportConfig) -> dict[str, Any]:
    """The :func:`~splatstudio.splats.apply_filters` keyword options of `config`.

    Raises:
        ConfigError: a malformed crop corner, or values out of range.
    """
    opts: dict[str, Any] = {}
    lo, hi = parse_corner("crop_min", config.crop_min), parse_corner("crop_max", config.crop_max)
    if lo is not None or hi is not None:
        opts["crop_min"] = lo if lo is not None else [-np.inf] * 3
        opts["crop_max"] = hi if hi is not None else [np.inf] * 3
        if np.any(np.asarray(opts["crop_min"]) > np.asarray(opts["crop_max"])):
            raise ConfigError(f"crop_min {lo} exceeds crop_max {hi} on some axis")
    if not 0.0 <= config.min_opacity <= 1.0:
        raise ConfigError(f"ExportConfig.min_opacity must be in [0, 1], got {config.min_opacity}")
    if config.min_opacity > 0:
        opts["min_opacity"] = config.min_opacity
    if config.remove_floaters:
        opts.update(remove_floaters=True, floater_k=config.floater_k,
                    floater_std_ratio=config.floater_std_ratio)  # fmt: skip
    if config.max_sh_degree not in (0, 1, 2, 3):
        raise ConfigError(f"ExportConfig.max_sh_degree must be 0..3, got {config.max_sh_degree}")
    opts["max_sh_degree"] = config.max_sh_degree
    return opts


def read_origin(project: Project) -> GeoOrigin | None:
    """The ENU origin stored by ingest (``ingest/manifest.json`` ``origin``), or None when the
    input had no GPS.

    Raises:
        InputError: the manifest is missing or malformed (naming it).
    """
    path = project.root / "ingest" / "manifest.json"
    if not path.is_file():
        raise InputError(path, "no ingest manifest; run ingest first")
    try:
        o = read_json(path).get("origin")
        if o is None:
            return None
        return GeoOrigin(float(o["lat_deg"]), float(o["lon_deg"]), float(o["h_m"]))
    except Exception as e:  # ProjectError, KeyError, TypeError, ValueError
        raise InputError(path, f"malformed origin ({e})") from None


# ---------------------------------------------------------------------------- verification
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


def verify_splat_file(path: Path, fmt: str, written: Any, *,
                      spz_coordinates: str | None = "ENU") -> dict:
    """Read `path` back and compare it with the splats that were written.

    The comparison follows each format's documented quantisation (``splatstudio.splats``
    module docstrings): e.g. SPZ positions within ``2 ** -(fractional_bits + 1)`` m, 8-bit
    opacities within ``0.5 / 255``, compressed-PLY centres within ``chunk extent / 2046``.
    Sorted formats (``splat``: by importance, ``compressed_ply`` and ``sog``: Morton order)
    are compared in the writer's order. SOG's codebook attributes (log-scales, DC colour)
    must decode to the codebook level nearest to what was written, and its SH palette must
    keep the relative RMS error of the higher SH under 0.25.

    Args:
        path: the written file.
        fmt: its format (one of :data:`SPLAT_FORMATS`).
        written: the :class:`~splatstudio.splats.Splats` given to the writer (metres).
        spz_coordinates: the ``coordinate_system`` the SPZ or glb_splat was written with
            (compared in their stored axes; ``None``: stored unconverted; glb_splat: float32
            attributes exactly, or the SPZ payload's quantisation).

    Returns:
        ``{"ok": True, "gaussians": N, "max_error": {attribute: value}}``; angles in degrees,
        positions in metres.

    Raises:
        StageError: the count differs or an attribute exceeds its tolerance (message names
            the file, the attribute, the error and the tolerance).
    """
    from ..splats import load_splats
    from ..splats.compressed_ply import morton_order
    from ..splats.model import SH_C0, sigmoid
    from ..splats.splat import importance_order
    from ..splats.spz import read_spz_header

    src = written
    opts: dict[str, Any] = {}
    glb_info: dict[str, Any] = {}
    if fmt == "spz":  # compare in the file's own RUB axes, where the quantisation happened
        from ..splats.spz import axis_matrix

        opts = {"coordinate_system": "RUB"}
        m = axis_matrix(spz_coordinates, "RUB")
        src = src if np.array_equal(m, np.eye(3)) else src.transformed(m)
    if fmt == "glb_splat":  # compare in the file's glTF axes
        from ..splats.gltf import decode_glb_splat, gltf_matrix

        m = gltf_matrix(spz_coordinates)
        src = src if np.array_equal(m, np.eye(3)) else src.transformed(m)
        back, glb_info = decode_glb_splat(path.read_bytes(), coordinate_system=None,
                                          name=str(path))  # fmt: skip
    else:
        back = load_splats(path, format=fmt, **opts)
    if back.n != src.n:
        raise StageError(f"{path}: read back {back.n} gaussians, wrote {src.n}")
    if fmt == "splat":
        src = src.subset(importance_order(src))
    elif fmt in ("compressed_ply", "sog") and src.n:
        src = src.subset(morton_order(src.means))
    if src.n == 0:
        return {"ok": True, "gaussians": 0, "max_error": {}}

    m64, b64 = src.means.astype(np.float64), back.means.astype(np.float64)
    a_src, a_back = sigmoid(src.opacities).astype(np.float64), sigmoid(back.opacities)
    checks: list[tuple[str, np.ndarray, Any]] = []  # (name, error, tolerance: scalar or [N, ...])
    f32 = np.abs(m64) * 1.2e-7 + 1e-7  # float32 rounding of a coordinate
    if fmt == "ply":
        for name in ("means", "quats", "scales", "opacities", "sh0", "shN"):
            checks.append((name, np.abs(getattr(src, name) - getattr(back, name)), 0.0))
    elif fmt == "splat":
        checks += [
            ("means", np.abs(m64 - b64), f32),
            ("scales", np.abs(src.scales - back.scales), 1e-4),
            ("opacity", np.abs(a_src - a_back), 0.5 / 255 + 1e-6),
            (
                "color",
                np.abs(np.clip(0.5 + SH_C0 * src.sh0, 0, 1) - (0.5 + SH_C0 * back.sh0)),
                0.5 / 255 + 1e-5,
            ),
            ("rotation_deg", _quat_angle_deg(src.quats, back.quats), 1.0),
            ("sh_degree", np.asarray([back.sh_degree]), 0),
        ]
    elif fmt == "glb_splat" and glb_info["compression"] is None:  # float32 attributes
        checks += [
            ("means", np.abs(m64 - b64), 0.0),
            ("scales", np.abs(src.scales - back.scales), 1e-5 * (1 + np.abs(src.scales))),
            ("opacity", np.abs(a_src - a_back), 1e-6),
            ("sh0", np.abs(src.sh0 - back.sh0), 0.0),
            ("rotation_deg", _quat_angle_deg(src.quats.astype(np.float64),
                                             back.quats.astype(np.float64)), 0.01),
            ("shN", np.abs(src.shN - back.shN), 0.0),
        ]
    elif fmt in ("spz", "glb_splat"):
        if fmt == "spz":
            h = read_spz_header(path)
            fbits, version = h.fractional_bits, h.version
        else:
            fbits, version = glb_info["fractional_bits"], glb_info["spz_version"]
        shn_src = np.clip(src.shN, -1.0, 127.0 / 128.0)
        k = src.shN.shape[1]
        sh_tol = np.full((1, k, 1), (0.5 + 2 ** (7 - 4)) / 128 + 1e-6)
        sh_tol[:, :3] = (0.5 + 2 ** (7 - 5)) / 128 + 1e-6
        checks += [
            ("means", np.abs(m64 - b64), 2.0 ** -(fbits + 1) + f32),
            ("scales", np.abs(np.clip(src.scales, -10, 5.9375) - back.scales), 1 / 32 + 1e-5),
            ("opacity", np.abs(a_src - a_back), 0.5 / 255 + 1e-6),
            ("sh0", np.abs(np.clip(src.sh0, -3.33, 3.33) - back.sh0), 0.5 / (0.15 * 255) + 1e-5),
            ("rotation_deg", _quat_angle_deg(src.quats, back.quats), 0.25 if version >= 3 else 15.0),
            ("shN", np.abs(shn_src - back.shN), sh_tol),
        ]
    elif fmt == "compressed_ply":
        col = 0.5 + SH_C0 * src.sh0[:, 0].astype(np.float64)
        s64 = np.clip(src.scales.astype(np.float64), -20, 20)
        checks += [
            ("means", np.abs(m64 - b64), _chunk_range(m64) / 2046 + f32 + 1e-6),
            ("scales", np.abs(s64 - back.scales), _chunk_range(s64) / 2046 + 1e-5),
            ("opacity", np.abs(a_src - a_back), 0.5 / 255 + 1e-6),
            ("color", np.abs(col - (0.5 + SH_C0 * back.sh0[:, 0])), _chunk_range(col) / 510 + 1e-5),
            ("rotation_deg", _quat_angle_deg(src.quats, back.quats), 0.25),
            ("shN", np.abs(np.clip(src.shN, -4, 4) - back.shN), 1 / 32 + 1e-6),
        ]
    elif fmt == "sog":
        from ..splats.sog import read_sog_meta

        meta = read_sog_meta(path)
        span = np.asarray(meta["means"]["maxs"], np.float64) - meta["means"]["mins"]

        def nearest(v: np.ndarray, book: list) -> np.ndarray:
            b = np.asarray(book, np.float64)
            flat = v.reshape(-1).astype(np.float64)
            i = np.clip(np.searchsorted(b, flat), 1, b.size - 1)
            return np.minimum(np.abs(flat - b[i - 1]), np.abs(flat - b[i])).reshape(v.shape)

        checks += [
            ("means", np.abs(m64 - b64), (np.abs(m64) + 1) * span / 131070 * 1.001 + f32),
            ("scales", np.abs(src.scales - back.scales.astype(np.float64)),
             nearest(src.scales, meta["scales"]["codebook"]) + 1e-6),
            ("opacity", np.abs(a_src - a_back), 0.5 / 255 + 1e-6),
            ("sh0", np.abs(src.sh0 - back.sh0.astype(np.float64)),
             nearest(src.sh0, meta["sh0"]["codebook"]) + 1e-6),
            ("rotation_deg", _quat_angle_deg(src.quats, back.quats), 1.2),
        ]  # fmt: skip
        if src.shN.size:
            rel = np.sqrt(((src.shN - back.shN) ** 2).mean() / max((src.shN**2).mean(), 1e-30))
            checks.append(("shN_relative_rms", np.asarray([rel]), 0.25))
    else:
        raise ValueError(f"not a splat format: {fmt!r}")
    report: dict[str, float] = {}
    for name, err, tol in checks:
        err = np.asarray(err, dtype=np.float64)
        if err.size == 0:
            continue
        report[name] = float(err.max())
        over = err > np.broadcast_to(np.asarray(tol, dtype=np.float64), err.shape)
        if over.any():
            i = int(np.argmax(np.reshape(over, (over.shape[0], -1)).any(axis=1)))
            raise StageError(
                f"{path}: {name} read back differs from what was written beyond the "
                f"{fmt} quantisation (gaussian {i}: max error {report[name]:.3g})"
            )
    return {"ok": True, "gaussians": back.n, "max_error": report}


def verify_tileset(folder: Path, written: Any, origin: GeoOrigin, *, max_per_tile: int) -> dict:
    """Read a tileset written by :func:`splatstudio.splats.tiles3d.write_tileset` back and
    check it against the splats that were written and the project origin.

    Checks: the root transform is ENU -> ECEF of `origin` (its translation, taken back to
    WGS84 by pyproj, must be within 1 mm of the origin); the leaves hold every written
    gaussian once, each within the SPZ quantisation (:func:`verify_splat_file`); no tile's
    content exceeds `max_per_tile`; every tile's content lies in its bounding box, and every
    child's box in its parent's.

    Args:
        folder: the tileset folder (``tileset.json`` + ``tiles/``).
        written: the :class:`~splatstudio.splats.Splats` the tileset was written from (after
            its own filters; ENU metres), in the writer's order.
        origin: the project origin.
        max_per_tile: the writer's limit.

    Returns:
        ``{"ok": True, "tiles", "leaves", "gaussians", "position_error_m", "max_error"}``.

    Raises:
        StageError: naming the file, for any failed check.
    """
    from pyproj import Transformer

    from ..geo.enu import enu_to_ecef_matrix
    from ..splats.gltf import read_glb_splat
    from ..splats.tiles3d import read_tileset

    path = folder / "tileset.json"
    try:
        ts = read_tileset(path)
    except ValueError as e:
        raise StageError(str(e)) from None
    root_m = ts["root_transform"]
    want = enu_to_ecef_matrix(origin)
    to_geo = Transformer.from_crs("EPSG:4978", "EPSG:4979", always_xy=True)
    lon, lat, h = to_geo.transform(*root_m[:3, 3])
    back_ecef = enu_to_ecef_matrix(GeoOrigin(lat, lon, h))[:3, 3]
    pos_err = float(np.linalg.norm(back_ecef - want[:3, 3]))
    if pos_err > 1e-3 or not np.allclose(root_m[:3, :3], want[:3, :3], atol=1e-9):
        raise StageError(f"{path}: the root transform is not ENU -> ECEF of the origin "
                         f"(position error {pos_err:.3g} m)")  # fmt: skip
    leaves: list[tuple[dict, Path]] = []
    count = {"tiles": 0}
    errors: dict[str, float] = {}
    offset = 0

    def box_of(tile: dict) -> tuple[np.ndarray, np.ndarray]:
        b = np.asarray(tile["boundingVolume"]["box"], np.float64)
        half = np.abs(b[3:].reshape(3, 3)).sum(axis=0)
        return b[:3] - half, b[:3] + half

    def walk(tile: dict, parent: tuple[np.ndarray, np.ndarray] | None) -> None:
        nonlocal offset
        count["tiles"] += 1
        lo, hi = box_of(tile)
        content = folder / tile["content"]["uri"]
        if parent is not None and (np.any(lo < parent[0] - 1e-3) or np.any(hi > parent[1] + 1e-3)):
            raise StageError(f"{path}: the box of {content.name} is not inside its parent's")
        kids = tile.get("children") or []
        if kids:
            try:
                back = read_glb_splat(content, coordinate_system="ENU")
            except (ValueError, OSError) as e:
                raise StageError(f"{content}: cannot read the tile back ({e})") from None
            if back.n > max_per_tile:
                raise StageError(f"{content}: {back.n} gaussians, more than {max_per_tile}")
            if np.any(back.means < lo - 1e-3) or np.any(back.means > hi + 1e-3):
                raise StageError(f"{content}: gaussians outside the tile's bounding box")
            for k in kids:
                walk(k, (lo, hi))
            return
        n = read_glb_splat(content, coordinate_system="ENU").n
        part = written.subset(np.arange(offset, offset + n)) if offset + n <= written.n else None
        if part is None:
            raise StageError(f"{path}: the leaves hold more gaussians than were written")
        check = verify_splat_file(content, "glb_splat", part, spz_coordinates="ENU")
        for k, v in check["max_error"].items():
            errors[k] = max(errors.get(k, 0.0), v)
        if np.any(part.means < lo - 1e-3) or np.any(part.means > hi + 1e-3):
            raise StageError(f"{content}: gaussians outside the tile's bounding box")
        leaves.append((tile, content))
        offset += n

    walk(ts["root"], None)
    if offset != written.n:
        raise StageError(f"{path}: the leaves hold {offset} gaussians, {written.n} were written")
    return {"ok": True, "tiles": count["tiles"], "leaves": len(leaves), "gaussians": offset,
            "position_error_m": pos_err, "max_error": errors}  # fmt: skip


# ---------------------------------------------------------------------------- converter
def converter_command(template: str, formats: list[str], out_dir: Path, name: str) -> list[str]:
    """The converter's argument list for `template`, checked before anything is exported.

    `template` is split like a shell command line (:func:`shlex.split`; no shell runs it);
    in each word ``{obj}``, ``{glb}``, ``{ply}``, ``{spz}``, ``{splat}``, ``{compressed_ply}``
    (paths of the files this run writes), ``{out}`` (the output folder) and ``{name}`` (the
    base name) are substituted. The first word is resolved on ``PATH`` (or as a file).

    Raises:
        ConfigError: the template is malformed or names a format that is not exported.
        StageError: the executable does not exist.
    """
    try:
        words = shlex.split(template)
    except ValueError as e:
        raise ConfigError(f"ExportConfig.converter: cannot parse {template!r} ({e})") from None
    if not words:
        raise ConfigError("ExportConfig.converter is empty")
    subs = {f: str(out_dir / f"{name}{_SUFFIX[f]}") for f in formats}
    subs |= {"out": str(out_dir), "name": name}
    try:
        cmd = [w.format(**subs) for w in words]
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(
            f"ExportConfig.converter: placeholder {e} is not available; this run offers "
            f"{', '.join('{' + k + '}' for k in subs)} (add the format to formats)"
        ) from None
    exe = shutil.which(cmd[0])
    if exe is None:
        raise StageError(
            f"converter executable {cmd[0]!r} not found (not on PATH and not an executable "
            "file); install it or fix ExportConfig.converter; nothing was exported"
        )
    return [exe, *cmd[1:]]


def run_converter(cmd: list[str], out_dir: Path, events: Emitter) -> dict[str, Any]:
    """Run the converter `cmd` (from :func:`converter_command`) in `out_dir`, without a shell,
    in its own session; its output lines become log events.

    Returns:
        ``{"command": [...], "returncode", "stdout", "stderr", "seconds", "new_files":
        [names]}`` (stdout/stderr: at most the last 20,000 characters each).

    Raises:
        StageError: the converter ran past :data:`CONVERTER_TIMEOUT_S` or cannot be started.
    """
    before = {p.name for p in out_dir.iterdir()}
    events.log(f"converter: {shlex.join(cmd)}")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=out_dir, capture_output=True, text=True, timeout=CONVERTER_TIMEOUT_S,
            start_new_session=True,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise StageError(f"converter {cmd[0]!r} ran past {CONVERTER_TIMEOUT_S:.0f} s") from None
    except OSError as e:
        raise StageError(f"converter {cmd[0]!r} could not start: {e}") from None
    seconds = time.perf_counter() - t0
    new = sorted(p.name for p in out_dir.iterdir() if p.name not in before)
    result = {
        "command": cmd,
        "returncode": proc.returncode,
        "stdout": proc.stdout[-20000:],
        "stderr": proc.stderr[-20000:],
        "seconds": round(seconds, 3),
        "new_files": new,
    }
    for stream in ("stdout", "stderr"):
        for line in result[stream].splitlines()[-50:]:
            events.log(f"converter {stream}: {line}", "info" if stream == "stdout" else "warning")
    events.metric("converter_returncode", proc.returncode)
    return result


# ---------------------------------------------------------------------------- mesh cameras
def capture_cameras(project: Project, events: Emitter | None = None) -> Any:
    """The capture's registered cameras (``georef/sparse``, ENU metres) as
    :class:`~splatstudio.mesh.MeshCameras`, for the mesh's TSDF renders, texture bake and
    Poisson normals; None when there is no georeferenced model or pycolmap is missing (the
    mesh then uses a ring of virtual views around the splat)."""
    from ..mesh import MeshCameras

    sparse = project.root / "georef" / "sparse"
    if not sparse.is_dir():
        return None
    try:
        import pycolmap

        from .train import load_cameras

        cams = load_cameras(pycolmap.Reconstruction(str(sparse)))
    except Exception as e:  # ImportError, pycolmap errors, StageError (camera model)
        if events is not None:
            events.warning(f"mesh: the capture's cameras in {sparse} are not usable ({e}); "
                           "baking from virtual views around the splat")  # fmt: skip
        return None
    if not cams:
        return None
    return MeshCameras(viewmats=np.stack([c.viewmat for c in cams]),
                       Ks=np.stack([c.K for c in cams]),
                       sizes=np.array([(c.width, c.height) for c in cams]))  # fmt: skip


# ---------------------------------------------------------------------------- the stage
def _rel(path: Path, project: Project) -> str:
    try:
        return path.resolve().relative_to(project.root).as_posix()
    except ValueError:
        return str(path)


def run_export(project: Project, config: ExportConfig, events: Emitter) -> dict[str, Any]:
    """Export the trained splat (see the module docstring for what is written where).

    Args:
        project: the project; reads ``train/splat.ply`` (ENU metres; or the edited version
            ``config.source`` names) and
            ``ingest/manifest.json``.
        config: export options (formats, filters, mesh and converter settings).
        events: progress, logs, metrics (``gaussians``, ``faces``, ``<format>_bytes``) and one
            artifact per file written.

    Returns:
        The manifest written to ``manifest.json`` (``files``: one entry per exported file).

    Raises:
        InputError: ``train/splat.ply`` is missing or unreadable ("run train first"), the
            edited version ``config.source`` does not exist, or the
            ingest manifest is missing.
        ConfigError: invalid options (unknown format, malformed crop box, converter
            template naming a format that is not exported).
        StageError: the converter's executable is missing (checked before any work); a
            file does not read back within its format's quantisation; the mesh cannot be
            built; or the converter exits non-zero (after the files and the manifest, which
            records its output, are written).
        Cancelled: the user cancelled (files already written stay).
    """
    from ..splats import apply_filters, load_splats, save_splats

    formats = parse_formats(config.formats)
    fopts = filter_options(config)
    if "3dtiles" in formats:
        if config.tiles_sh_degree not in (0, 1, 2, 3) or config.tiles_max_gaussians < 1:
            raise ConfigError("ExportConfig: tiles_sh_degree must be 0..3 and "
                              "tiles_max_gaussians >= 1")  # fmt: skip
        if not 0.0 <= config.tiles_min_opacity <= 1.0:
            raise ConfigError(f"ExportConfig.tiles_min_opacity must be in [0, 1], got "
                              f"{config.tiles_min_opacity}")  # fmt: skip
    if config.axes not in EXPORT_AXES:
        raise ConfigError(f"ExportConfig.axes must be one of {', '.join(EXPORT_AXES)}, got "
                          f"{config.axes!r}")
    if config.spz_version not in (3, 4):
        raise ConfigError(f"ExportConfig.spz_version must be 3 or 4, got {config.spz_version}")
    if any(f in MESH_FORMATS for f in formats):
        from ..mesh.pipeline import METHODS

        if config.mesh_method not in METHODS:
            raise ConfigError(
                f"ExportConfig.mesh_method: unknown {config.mesh_method!r}; choose "
                f"{', '.join(METHODS)}"
            )
        if not 64 <= config.texture_size <= 16384 or config.mesh_faces < 100:
            raise ConfigError(
                "ExportConfig: texture_size must be in 64..16384 and mesh_faces >= 100, got "
                f"{config.texture_size} and {config.mesh_faces}"
            )
        if config.bake_views < 1 or not 0.0 <= config.mesh_min_opacity <= 1.0:
            raise ConfigError("ExportConfig: bake_views must be >= 1, mesh_min_opacity in [0, 1]")
    name = config.name.strip() or "scene"
    if os.sep in name or (os.altsep and os.altsep in name) or name in (".", ".."):
        raise ConfigError(f"ExportConfig.name must be a plain file name, got {name!r}")

    from .versions import resolve_source

    src = resolve_source(project.root, config.source)  # train/splat.ply or an edited version
    if not src.is_file():
        raise InputError(src, "no trained splat; run train first")
    if config.source.strip():
        events.log(f"exporting the edited version {_rel(src, project)}")
    origin = read_origin(project)
    named = [t.strip().lower() for t in config.formats.replace(";", ",").split(",")]
    if origin is None and "3dtiles" in formats and "3dtiles" not in named:  # from "all"
        formats.remove("3dtiles")
        events.warning("3dtiles skipped: the project has no GPS origin (not georeferenced)")
    if origin is None and "3dtiles" in formats:
        raise ConfigError(
            "format 3dtiles needs a georeferenced project (a GPS origin in "
            "ingest/manifest.json), and this project's input had no GPS; choose other formats"
        )
    if origin is None:
        events.warning("the input has no GPS origin: exports are not georeferenced (no sidecars)")
    out_dir = (
        Path(config.output_dir).expanduser() if config.output_dir else project.stage_dir("export")
    )
    out_dir = out_dir.resolve()
    converter = None
    if config.converter.strip():  # checked first: a missing converter fails before any work
        converter = converter_command(config.converter, formats, out_dir, name)
    out_dir.mkdir(parents=True, exist_ok=True)

    events.progress(0.0, "reading splat")
    try:
        splats = load_splats(src, format="ply")
    except (ValueError, OSError) as e:
        raise InputError(src, f"cannot read the trained splat ({e}); run train again") from None
    t0 = time.perf_counter()
    filtered, report = apply_filters(splats, **fopts)
    events.log(f"filters: {report} ({time.perf_counter() - t0:.2f} s)")
    events.metric("gaussians", filtered.n)
    if filtered.n == 0:
        raise StageError("no gaussians left after the filters (crop box / opacity threshold)")

    entries: list[dict[str, Any]] = []
    n_steps = len(formats) + (1 if config.converter.strip() else 0)

    def record(fmt: str, path: Path, seconds: float, **info: Any) -> None:
        side = None
        if origin is not None:
            side = write_sidecar(path, origin, axes=file_axes(fmt, config.axes), format=fmt)
        nbytes = info.pop("total_bytes", None)
        entry = {
            "format": fmt,
            "path": path.relative_to(out_dir).as_posix(),  # relative to the manifest's folder
            **info,
            "bytes": path.stat().st_size if nbytes is None else nbytes,
            "seconds": round(seconds, 4),
            "axes": file_axes(fmt, config.axes),
            "sidecar": None if side is None else side.relative_to(out_dir).as_posix(),
        }
        entries.append(entry)
        events.metric(f"{fmt}_bytes", entry["bytes"])
        events.artifact(_rel(path, project))
        if side is not None:
            events.artifact(_rel(side, project))

    viewer = None  # the scene in the viewer axes, made on first use
    for i, fmt in enumerate(f for f in formats if f in SPLAT_FORMATS):
        events.check_cancelled()
        events.progress(i / n_steps, f"writing {fmt}")
        path = out_dir / f"{name}{_SUFFIX[fmt]}"
        opts: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        content, coords = filtered, "ENU"
        if file_axes(fmt, config.axes) == "EDN":
            if viewer is None:
                viewer = filtered.transformed(axes_to_enu("EDN").T)  # ENU -> EDN, SH rotated
            content, coords = viewer, None  # stored as they are (SPZ too, see EXPORT_AXES)
        if fmt == "spz":
            opts = {"version": config.spz_version, "coordinate_system": coords}
            extra = {"spz_version": config.spz_version}
        elif fmt == "glb_splat":
            opts = {"coordinate_system": "ENU", "spz": config.glb_splat_spz}
            extra = {"compression": "spz" if config.glb_splat_spz else None}
        t = time.perf_counter()
        save_splats(content, path, format=fmt, **opts)
        seconds = time.perf_counter() - t
        check = verify_splat_file(path, fmt, content, spz_coordinates=coords)
        record(fmt, path, seconds, gaussians=filtered.n, verified=check, **extra)
        events.log(f"{path.name}: {entries[-1]['bytes']} bytes, verified ({check['max_error']})")

    if "3dtiles" in formats and origin is not None:
        from ..geo.enu import enu_to_ecef_matrix
        from ..splats.tiles3d import write_tileset

        events.check_cancelled()
        done = len([f for f in formats if f in SPLAT_FORMATS])
        events.progress(done / n_steps, "writing 3dtiles")
        folder = out_dir / f"{name}{_SUFFIX['3dtiles']}"
        t = time.perf_counter()
        try:
            tiles = write_tileset(
                filtered, folder, enu_to_ecef_matrix(origin),
                max_per_tile=config.tiles_max_gaussians,
                sh_degree=min(config.tiles_sh_degree, config.max_sh_degree),
                min_opacity=config.tiles_min_opacity,
            )  # fmt: skip
        except ValueError as e:
            raise StageError(f"3dtiles export failed: {e}") from None
        seconds = time.perf_counter() - t
        written = tiles["splats"].subset(tiles["order"])
        check = verify_tileset(folder, written, origin, max_per_tile=config.tiles_max_gaussians)
        record("3dtiles", folder / "tileset.json", seconds, gaussians=tiles["gaussians"],
               tiles=tiles["tiles"], leaves=tiles["leaves"], depth=tiles["depth"],
               content_gaussians=tiles["content_gaussians"], total_bytes=tiles["bytes"],
               geometric_error=tiles["geometric_error"], verified=check)  # fmt: skip
        events.metric("3dtiles_tiles", tiles["tiles"])
        events.log(f"{folder.name}: {tiles['tiles']} tiles ({tiles['leaves']} leaves), "
                   f"{tiles['bytes']} bytes, root {check['position_error_m']:.2g} m from the "
                   f"origin, verified ({check['max_error']})")  # fmt: skip

    mesh_formats = [f for f in formats if f in MESH_FORMATS]
    if mesh_formats:
        from ..mesh import MeshOptions, build_textured_mesh, write_glb, write_obj

        events.check_cancelled()
        done = len([f for f in formats if f in SPLAT_FORMATS or f in TILES_FORMATS])
        events.progress(done / n_steps, "building the mesh")
        mopts = MeshOptions(
            method=config.mesh_method,
            target_faces=config.mesh_faces,
            min_opacity=config.mesh_min_opacity,
            texture_size=config.texture_size,
            bake_views=config.bake_views,
        )
        cameras = capture_cameras(project, events)
        t = time.perf_counter()
        try:
            mesh = build_textured_mesh(filtered, mopts, events=events, cameras=cameras)
        except ValueError as e:
            raise StageError(f"mesh export failed: {e}") from None
        build_s = time.perf_counter() - t
        events.metric("faces", mesh.faces.shape[0])
        for timing, sec in mesh.timings.items():
            events.metric(f"mesh_{timing}_s", sec)
        for fmt in mesh_formats:
            events.check_cancelled()
            path = out_dir / f"{name}{_SUFFIX[fmt]}"
            t = time.perf_counter()
            extra_files = (write_glb if fmt == "glb" else write_obj)(mesh, path)
            seconds = time.perf_counter() - t
            info: dict[str, Any] = {
                "faces": int(mesh.faces.shape[0]),
                "vertices": int(mesh.vertices.shape[0]),
                "texture_size": int(mesh.texture.shape[0]),
                "mesh_seconds": round(build_s, 3),
                "mesh_timings": {k: round(v, 3) for k, v in mesh.timings.items()},
                "mesh_method": mesh.method,
            }
            if extra_files:
                info["files"] = [
                    {"path": p.name, "bytes": p.stat().st_size} for p in extra_files
                ]  # fmt: skip
                for p in extra_files:
                    events.artifact(_rel(p, project))
            record(fmt, path, seconds, **info)

    manifest: dict[str, Any] = {
        "created": now_iso(),
        "source": _rel(src, project),
        "source_gaussians": splats.n,
        "filters": {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in fopts.items()},
        "filter_report": report,
        "origin": origin.to_dict() if origin else None,
        "output_dir": str(out_dir),
        "files": entries,
        "converter": None,
    }
    manifest = _json_ready(manifest)
    failure: StageError | None = None
    if converter is not None:
        events.check_cancelled()
        events.progress((n_steps - 1) / n_steps, "external converter")
        try:
            result = run_converter(converter, out_dir, events)
            manifest["converter"] = result
            if result["returncode"] != 0:
                tail = result["stderr"].strip().splitlines()[-3:]
                failure = StageError(
                    f"converter {Path(converter[0]).name!r} exited with code "
                    f"{result['returncode']}" + (f": {' | '.join(tail)}" if tail else "")
                )
        except StageError as e:
            manifest["converter"] = {"command": converter, "error": str(e), "returncode": None}
            failure = e
    mpath = out_dir / "manifest.json"
    write_json_atomic(mpath, manifest)
    events.artifact(_rel(mpath, project))
    if failure is not None:
        events.log(str(failure), "error")
        raise failure
    events.progress(1.0, "done")
    return manifest


def _json_ready(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _json_ready(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_ready(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return None if np.isnan(v) else ("inf" if v > 0 else "-inf")
    return v
