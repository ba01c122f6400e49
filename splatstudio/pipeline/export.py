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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ExportConfig, ExportFormat, check_config
from ..config import parse_formats as config_formats
from ..errors import ConfigError, InputError, ProjectError, StageError
from ..events import Emitter
from ..geo.enu import GeoOrigin
from ..geo.sidecar import axes_to_enu, write_sidecar
from ..project import Project, now_iso, write_json_atomic
from ..splats.formats import REGISTRY as SPLAT_REGISTRY
from .artifacts import EXPORT_MANIFEST_NAME, export_dir, georef_model, read_manifest, trained_splat

SPLAT_FORMATS = tuple(SPLAT_REGISTRY)
TILES_FORMATS = ("3dtiles",)
MESH_FORMATS = ("glb", "obj")
ALL_FORMATS = SPLAT_FORMATS + TILES_FORMATS + MESH_FORMATS
_SUFFIX = {**{f.name: f.suffix for f in SPLAT_REGISTRY.values()},
           "3dtiles": "-3dtiles", "glb": ".glb", "obj": ".obj"}  # fmt: skip
#: Axis convention of each format's coordinates (see :data:`splatstudio.geo.sidecar.AXES`);
#: a 3D Tiles tileset's coordinates are ENU under its root transform (ENU -> ECEF).
FILE_AXES = {**{f.name: f.axes for f in SPLAT_REGISTRY.values()},
             "3dtiles": "ENU", "glb": "RUB", "obj": "RUB"}  # fmt: skip
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
def parse_formats(value: Any) -> list[str]:
    """The formats to write, ``all`` expanded: ``"ply, spz"``, ``["ply", "spz"]`` or
    ``ExportConfig.formats`` -> ``["ply", "spz"]`` (order kept, duplicates dropped; see
    :func:`splatstudio.config.parse_formats` for the spellings accepted).

    Raises:
        ConfigError: an unknown format or an empty list.
    """
    out: list[str] = []
    for f in config_formats(value):
        for name in ALL_FORMATS if f == ExportFormat.ALL else (str(f),):
            if name not in out:
                out.append(name)
    return out


def filter_options(config: ExportConfig) -> dict[str, Any]:
    """The :func:`~splatstudio.splats.apply_filters` keyword options of `config`.

    Raises:
        ConfigError: a malformed crop corner, or values out of range.
    """
    opts: dict[str, Any] = {}
    lo = None if config.crop_min is None else list(config.crop_min)
    hi = None if config.crop_max is None else list(config.crop_max)
    if lo is not None or hi is not None:
        opts["crop_min"] = lo if lo is not None else [-np.inf] * 3
        opts["crop_max"] = hi if hi is not None else [np.inf] * 3
        if np.any(np.asarray(opts["crop_min"]) > np.asarray(opts["crop_max"])):
            raise ConfigError(f"crop_min {lo} exceeds crop_max {hi} on some axis")
    check_config(config)
    if config.min_opacity > 0:
        opts["min_opacity"] = config.min_opacity
    if config.remove_floaters:
        opts.update(remove_floaters=True, floater_k=config.floater_k,
                    floater_std_ratio=config.floater_std_ratio)  # fmt: skip
    opts["max_sh_degree"] = config.max_sh_degree
    return opts


def read_origin(project: Project) -> GeoOrigin | None:
    """The ENU origin stored by ingest (:attr:`~.artifacts.Manifest.origin`), or None when
    the input had no GPS.

    Raises:
        InputError: the manifest is missing or malformed (naming it).
    """
    try:
        return read_manifest(project.root).origin
    except ProjectError as e:  # not valid JSON
        raise InputError(None, f"malformed origin ({e})") from None


# ---------------------------------------------------------------------------- verification
def verify_splat_file(path: Path, fmt: str, written: Any, *,
                      spz_coordinates: str | None = "ENU") -> dict:
    """Read `path` back and compare it with the splats that were written, within the
    format's tolerance (:func:`splatstudio.splats.formats.verify_readback`; `spz_coordinates`:
    the ``coordinate_system`` an SPZ or glb_splat was written with, None: stored unconverted).

    Raises:
        StageError: the count differs or an attribute exceeds its tolerance (message names
            the file, the attribute, the error and the tolerance).
    """
    from ..splats.formats import ReadBackError, verify_readback

    try:
        return verify_readback(path, fmt, written, coordinate_system=spz_coordinates)
    except ReadBackError as e:
        raise StageError(str(e)) from None


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
    :class:`~splatstudio.render.camera.Cameras`, for the mesh's TSDF renders, texture bake and
    Poisson normals; None when there is no georeferenced model or pycolmap is missing (the
    mesh then uses a ring of virtual views around the splat)."""
    from ..render.camera import Cameras

    model = georef_model(project.root)
    sparse = model.path
    if not sparse.is_dir():
        return None
    try:
        cams = model.cameras()
    except Exception as e:  # ImportError, pycolmap errors, StageError (camera model)
        if events is not None:
            events.warning(f"mesh: the capture's cameras in {sparse} are not usable ({e}); "
                           "baking from virtual views around the splat")  # fmt: skip
        return None
    if not cams:
        return None
    return Cameras.stack([c.camera for c in cams])


# ---------------------------------------------------------------------------- the stage
def _rel(path: Path, project: Project) -> str:
    try:
        return path.resolve().relative_to(project.root).as_posix()
    except ValueError:
        return str(path)


def run_export(project: Project, config: ExportConfig, events: Emitter) -> dict[str, Any]:
    """Export the trained splat (see the module docstring for what is written where): plan
    the run, read and filter the splat, write the splat files, the tileset and the mesh, run
    the converter, write the manifest.

    Args:
        project: the project; reads ``train/splat.ply`` (ENU metres; or the edited version
            ``config.source`` names) and ``ingest/manifest.json``.
        config: export options (formats, filters, mesh and converter settings).
        events: progress, logs, metrics (``gaussians``, ``faces``, ``<format>_bytes``) and one
            artifact per file written.

    Returns:
        The manifest written to ``manifest.json`` (``files``: one entry per exported file).

    Raises:
        InputError: ``train/splat.ply`` is missing or unreadable ("run the train stage first"),
            the edited version ``config.source`` does not exist, or the
            ingest manifest is missing.
        ConfigError: invalid options (unknown format, malformed crop box, converter
            template naming a format that is not exported).
        StageError: the converter's executable is missing (checked before any work); a
            file does not read back within its format's quantisation; the mesh cannot be
            built; or the converter exits non-zero (after the files and the manifest, which
            records its output, are written).
        Cancelled: the user cancelled (files already written stay).
    """
    run = plan_export(project, config, events)
    splats, filtered, report = read_filtered_splat(run)
    write_splat_files(run, filtered)
    write_tiles(run, filtered)
    write_meshes(run, filtered)
    manifest = export_manifest(run, splats, report)
    failure = convert(run, manifest)
    return finish_export(run, manifest, failure)


@dataclass(eq=False)
class ExportRun:
    """What one export run writes, settled by :func:`plan_export` before any work, and the
    manifest entries of the files written so far (the state the export phases share).

    Attributes:
        project: the project.
        config: the export options.
        events: where progress, logs, metrics and artifacts go.
        formats: the formats to write (``all`` expanded, ``3dtiles`` dropped from ``all``
            without a GPS origin), in :data:`ALL_FORMATS` spelling.
        filters: the :func:`~splatstudio.splats.apply_filters` options (:func:`filter_options`).
        name: base name of the files (``ExportConfig.name``, default ``scene``).
        source: the splat file exported (``train/splat.ply`` or an edited version).
        origin: the project's ENU origin, None when the input had no GPS.
        out_dir: the output folder (absolute).
        converter: the converter's argument list (:func:`converter_command`) or None.
        entries: one manifest entry per file written (:meth:`record`).
    """

    project: Project
    config: ExportConfig
    events: Emitter
    formats: list[str]
    filters: dict[str, Any]
    name: str
    source: Path
    origin: GeoOrigin | None
    out_dir: Path
    converter: list[str] | None
    entries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def n_steps(self) -> int:
        """Progress steps: one per format, one for the converter."""
        return len(self.formats) + (1 if self.config.converter.strip() else 0)

    def path(self, fmt: str) -> Path:
        """The file (a folder for ``3dtiles``) format `fmt` is written to."""
        return self.out_dir / f"{self.name}{_SUFFIX[fmt]}"

    def record(self, fmt: str, path: Path, seconds: float, **info: Any) -> None:
        """Write the GPS sidecar of `path` (when there is an origin), append its manifest
        entry (`info`: format-specific keys; ``total_bytes`` replaces the file's size) and
        emit its ``<fmt>_bytes`` metric and artifacts.

        Raises:
            OSError: the sidecar cannot be written or `path` does not exist.
        """
        config, events = self.config, self.events
        side = None
        if self.origin is not None:
            side = write_sidecar(path, self.origin, axes=file_axes(fmt, config.axes), format=fmt)
        nbytes = info.pop("total_bytes", None)
        entry = {
            "format": fmt,
            "path": path.relative_to(self.out_dir).as_posix(),  # relative to the manifest's folder
            **info,
            "bytes": path.stat().st_size if nbytes is None else nbytes,
            "seconds": round(seconds, 4),
            "axes": file_axes(fmt, config.axes),
            "sidecar": None if side is None else side.relative_to(self.out_dir).as_posix(),
        }
        self.entries.append(entry)
        events.metric(f"{fmt}_bytes", entry["bytes"])
        events.artifact(_rel(path, self.project))
        if side is not None:
            events.artifact(_rel(side, self.project))


def check_export_options(config: ExportConfig) -> tuple[list[str], dict[str, Any], str]:
    """The formats (:func:`parse_formats`), the filter options (:func:`filter_options`) and
    the base name of `config`; reads and writes no file.

    Raises:
        ConfigError: an unknown format or mesh method, a malformed crop box, a value out of
            range, or a name that is not a plain file name.
    """
    formats = parse_formats(config.formats)
    fopts = filter_options(config)  # checks every option's range and choices too
    if any(f in MESH_FORMATS for f in formats):
        from ..mesh.pipeline import METHODS

        if config.mesh_method not in METHODS:
            raise ConfigError(
                f"ExportConfig.mesh_method: unknown {config.mesh_method!r}; choose "
                f"{', '.join(METHODS)}"
            )
    name = config.name.strip() or "scene"
    if os.sep in name or (os.altsep and os.altsep in name) or name in (".", ".."):
        raise ConfigError(f"ExportConfig.name must be a plain file name, got {name!r}")
    return formats, fopts, name


def export_source(project: Project, config: ExportConfig, events: Emitter) -> Path:
    """The splat file to export: the edited version ``config.source`` names (logged), else
    ``train/splat.ply``; reads ``edits/versions.json`` for an edited version, writes nothing.

    Raises:
        InputError: that file does not exist (for the trained splat: "run the train stage
            first").
    """
    if config.source.strip():  # an edited version saved from the viewer
        from .versions import resolve_source

        src = resolve_source(project.root, config.source)
        events.log(f"exporting the edited version {_rel(src, project)}")
        return src
    return trained_splat(project.root)


def georeferenced_formats(formats: list[str], config: ExportConfig, origin: GeoOrigin | None,
                          events: Emitter) -> list[str]:
    """`formats` without ``3dtiles`` when it came from ``all`` and there is no GPS `origin`
    (with a warning); warns that the exports are not georeferenced without an origin. Reads
    and writes no file.

    Raises:
        ConfigError: ``3dtiles`` was named explicitly and there is no origin.
    """
    named = [str(f) for f in config.formats]
    if origin is None and "3dtiles" in formats and "3dtiles" not in named:  # from "all"
        formats = [f for f in formats if f != "3dtiles"]
        events.warning("3dtiles skipped: the project has no GPS origin (not georeferenced)")
    if origin is None and "3dtiles" in formats:
        raise ConfigError(
            "format 3dtiles needs a georeferenced project (a GPS origin in "
            "ingest/manifest.json), and this project's input had no GPS; choose other formats"
        )
    if origin is None:
        events.warning("the input has no GPS origin: exports are not georeferenced (no sidecars)")
    return formats


def plan_export(project: Project, config: ExportConfig, events: Emitter) -> ExportRun:
    """Check everything that can fail before any work: the options, the source splat, the
    origin (``ingest/manifest.json``), the converter; creates the output folder (nothing
    else is written).

    Raises:
        ConfigError: invalid options (:func:`check_export_options`, :func:`converter_command`,
            ``3dtiles`` without an origin).
        InputError: the source splat or the ingest manifest is missing or malformed.
        StageError: the converter's executable does not exist.
    """
    formats, fopts, name = check_export_options(config)
    src = export_source(project, config, events)
    origin = read_origin(project)
    formats = georeferenced_formats(formats, config, origin, events)
    if not config.output_dir:
        project.stage_dir("export")
    out_dir = export_dir(project.root, config.output_dir).resolve()
    converter = None
    if config.converter.strip():  # checked first: a missing converter fails before any work
        converter = converter_command(config.converter, formats, out_dir, name)
    out_dir.mkdir(parents=True, exist_ok=True)
    return ExportRun(project, config, events, formats, fopts, name, src, origin, out_dir,
                     converter)  # fmt: skip


def read_filtered_splat(run: ExportRun) -> tuple[Any, Any, dict[str, Any]]:
    """Read ``run.source`` (PLY) and apply the filters; emits the ``gaussians`` metric;
    writes nothing.

    Returns:
        (the splats read, the filtered :class:`~splatstudio.splats.Splats`, the filter
        report of :func:`~splatstudio.splats.apply_filters`).

    Raises:
        InputError: the splat does not read ("run train again").
        StageError: no gaussian is left after the filters.
    """
    from ..splats import apply_filters, load_splats

    events = run.events
    events.progress(0.0, "reading splat")
    try:
        splats = load_splats(run.source, format="ply")
    except (ValueError, OSError) as e:
        raise InputError(
            run.source, f"cannot read the trained splat ({e}); run train again"
        ) from None
    t0 = time.perf_counter()
    filtered, report = apply_filters(splats, **run.filters)
    events.log(f"filters: {report} ({time.perf_counter() - t0:.2f} s)")
    events.metric("gaussians", filtered.n)
    if filtered.n == 0:
        raise StageError("no gaussians left after the filters (crop box / opacity threshold)")
    return splats, filtered, report


def write_splat_files(run: ExportRun, filtered: Any) -> None:
    """Write each splat format of ``run.formats`` (:data:`SPLAT_FORMATS`) from `filtered`
    (ENU; turned into the viewer axes first where :func:`file_axes` says ``EDN``), read each
    back (:func:`verify_splat_file`) and record it (:meth:`ExportRun.record`: a sidecar next
    to each file, its manifest entry).

    Raises:
        StageError: a file does not read back within its format's quantisation.
        Cancelled: the user cancelled.
    """
    from ..splats import save_splats

    config, events = run.config, run.events
    viewer = None  # the scene in the viewer axes, made on first use
    for i, fmt in enumerate(f for f in run.formats if f in SPLAT_FORMATS):
        events.check_cancelled()
        events.progress(i / run.n_steps, f"writing {fmt}")
        path = run.path(fmt)
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
        run.record(fmt, path, seconds, gaussians=filtered.n, verified=check, **extra)
        events.log(f"{path.name}: {run.entries[-1]['bytes']} bytes, verified "
                   f"({check['max_error']})")  # fmt: skip


def write_tiles(run: ExportRun, filtered: Any) -> None:
    """Write the 3D Tiles tileset of `filtered` when ``3dtiles`` is asked for (and there is
    an origin) into ``<name>-3dtiles/``, check it (:func:`verify_tileset`) and record its
    ``tileset.json``.

    Raises:
        StageError: the writer refused the splats or a check failed.
        Cancelled: the user cancelled.
    """
    if "3dtiles" not in run.formats or run.origin is None:
        return
    from ..geo.enu import enu_to_ecef_matrix
    from ..splats.tiles3d import write_tileset

    config, events, origin = run.config, run.events, run.origin
    events.check_cancelled()
    done = len([f for f in run.formats if f in SPLAT_FORMATS])
    events.progress(done / run.n_steps, "writing 3dtiles")
    folder = run.path("3dtiles")
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
    run.record("3dtiles", folder / "tileset.json", seconds, gaussians=tiles["gaussians"],
               tiles=tiles["tiles"], leaves=tiles["leaves"], depth=tiles["depth"],
               content_gaussians=tiles["content_gaussians"], total_bytes=tiles["bytes"],
               geometric_error=tiles["geometric_error"], verified=check)  # fmt: skip
    events.metric("3dtiles_tiles", tiles["tiles"])
    events.log(f"{folder.name}: {tiles['tiles']} tiles ({tiles['leaves']} leaves), "
               f"{tiles['bytes']} bytes, root {check['position_error_m']:.2g} m from the "
               f"origin, verified ({check['max_error']})")  # fmt: skip


def write_meshes(run: ExportRun, filtered: Any) -> None:
    """Build one textured mesh of `filtered` (:func:`splatstudio.mesh.build_textured_mesh`,
    from the capture's cameras when there are any: :func:`capture_cameras`) when ``glb`` or
    ``obj`` is asked for, write it in each and record them; emits ``faces`` and the
    ``mesh_<phase>_s`` timings. Reads ``georef/sparse`` for the cameras.

    Raises:
        StageError: the mesh cannot be built.
        Cancelled: the user cancelled.
    """
    mesh_formats = [f for f in run.formats if f in MESH_FORMATS]
    if not mesh_formats:
        return
    from ..mesh import MeshOptions, build_textured_mesh, write_glb, write_obj

    config, events, project = run.config, run.events, run.project
    events.check_cancelled()
    done = len([f for f in run.formats if f in SPLAT_FORMATS or f in TILES_FORMATS])
    events.progress(done / run.n_steps, "building the mesh")
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
        path = run.path(fmt)
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
        run.record(fmt, path, seconds, **info)


def export_manifest(run: ExportRun, splats: Any, report: dict[str, Any]) -> dict[str, Any]:
    """The export manifest (module docstring) of the files recorded so far, JSON-ready;
    ``converter`` is None until :func:`convert` fills it in. Writes nothing.

    Args:
        splats: the splats read (before the filters); report: the filter report.
    """
    manifest: dict[str, Any] = {
        "created": now_iso(),
        "source": _rel(run.source, run.project),
        "source_gaussians": splats.n,
        "filters": {k: (list(v) if isinstance(v, (list, tuple)) else v)
                    for k, v in run.filters.items()},  # fmt: skip
        "filter_report": report,
        "origin": run.origin.to_dict() if run.origin else None,
        "output_dir": str(run.out_dir),
        "files": run.entries,
        "converter": None,
    }
    return _json_ready(manifest)


def convert(run: ExportRun, manifest: dict[str, Any]) -> StageError | None:
    """Run the external converter, if any (:func:`run_converter`), and put its run (or the
    error that kept it from running) into ``manifest["converter"]``. The converter may
    write files into the output folder (listed as ``new_files``).

    Returns:
        The :class:`StageError` to raise once the manifest is written (the converter exited
        non-zero, ran too long or could not start), else None.

    Raises:
        Cancelled: the user cancelled before the converter ran.
    """
    converter, events = run.converter, run.events
    if converter is None:
        return None
    events.check_cancelled()
    events.progress((run.n_steps - 1) / run.n_steps, "external converter")
    try:
        result = run_converter(converter, run.out_dir, events)
    except StageError as e:
        manifest["converter"] = {"command": converter, "error": str(e), "returncode": None}
        return e
    manifest["converter"] = result
    if result["returncode"] == 0:
        return None
    tail = result["stderr"].strip().splitlines()[-3:]
    return StageError(
        f"converter {Path(converter[0]).name!r} exited with code "
        f"{result['returncode']}" + (f": {' | '.join(tail)}" if tail else "")
    )


def finish_export(run: ExportRun, manifest: dict[str, Any],
                  failure: StageError | None) -> dict[str, Any]:
    """Write ``manifest.json`` into the output folder (atomically), then raise `failure`
    (logged as an error) or report the stage done; returns `manifest`.

    Raises:
        StageError: `failure`, from :func:`convert`.
    """
    mpath = run.out_dir / EXPORT_MANIFEST_NAME
    write_json_atomic(mpath, manifest)
    run.events.artifact(_rel(mpath, run.project))
    if failure is not None:
        run.events.log(str(failure), "error")
        raise failure
    run.events.progress(1.0, "done")
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
