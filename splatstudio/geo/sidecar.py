"""Georeferencing sidecars: ``<file>.geo.json`` next to every exported file.

A sidecar tells a GIS tool (or a viewer) where the file's coordinates are on Earth:

* ``origin``: the project's ENU origin, WGS84 latitude/longitude in degrees and ellipsoidal
  height in metres (``crs`` EPSG:4979, the 3D geographic WGS84 CRS);
* ``enu_to_ecef``: the 4x4 rigid transform from local ENU metres (x east, y north, z up) to
  ECEF (EPSG:4978) metres, row-major nested lists (``p_ecef = M @ [e, n, u, 1]``);
* ``axes``: the axis convention of the file's own coordinates (``"ENU"`` or, e.g. for SPZ and
  glTF, ``"RUB"`` = x east, y up, z south) and ``file_to_enu``: the 4x4 matrix taking the
  file's coordinates to ENU; ``file_to_ecef = enu_to_ecef @ file_to_enu`` is given too, so a
  reader needs one matrix product per point;
* ``units``: ``"metre"``.

Importing this module imports numpy only (pyproj is imported by
:func:`~splatstudio.geo.enu.enu_to_ecef_matrix` when a sidecar is built).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .enu import GeoOrigin, enu_to_ecef_matrix

__all__ = ["AXES", "SIDECAR_SUFFIX", "axes_to_enu", "build_sidecar", "file_up", "read_axes",
           "sidecar_path", "write_sidecar"]  # fmt: skip

SIDECAR_SUFFIX = ".geo.json"
SCHEMA = "splatstudio.geo-sidecar/1"

#: Axis conventions a file may use, as the direction of the file's +x, +y, +z in ENU.
AXES: dict[str, tuple[str, str]] = {
    "ENU": ("x east, y north, z up (right-handed, z up)", "east,north,up"),
    "RUB": ("x east, y up, z south (right-handed, y up: glTF, three.js, SPZ)", "east,up,south"),
    "EDN": ("x east, y down, z north (right-handed, y down: the 3DGS/COLMAP PLY convention, "
            "shown upright by SuperSplat and PlayCanvas)", "east,down,north"),
}
_DIRS = {"east": (0, 1.0), "west": (0, -1.0), "north": (1, 1.0), "south": (1, -1.0),
         "up": (2, 1.0), "down": (2, -1.0)}  # fmt: skip


def axes_to_enu(axes: str) -> np.ndarray:
    """The 3x3 signed permutation ``A`` with ``p_enu = A @ p_file`` for axis convention
    `axes` (a key of :data:`AXES`).

    Raises:
        ValueError: for an unknown convention.
    """
    if axes not in AXES:
        raise ValueError(f"unknown axis convention {axes!r}; known: {', '.join(AXES)}")
    a = np.zeros((3, 3))
    for col, name in enumerate(AXES[axes][1].split(",")):
        row, sign = _DIRS[name]
        a[row, col] = sign
    return a


def file_up(axes: str) -> tuple[float, float, float]:
    """ENU up (+z) in the coordinates of a file in convention `axes`, e.g. ``(0, -1, 0)`` for
    ``EDN``.

    Raises:
        ValueError: for an unknown convention.
    """
    return tuple(float(v) for v in axes_to_enu(axes).T @ np.array([0.0, 0.0, 1.0]))


def read_axes(path: str | os.PathLike) -> str | None:
    """The axis convention stated by the sidecar of the file `path` (``<path>.geo.json``), or
    None when there is no readable sidecar or it names no known convention."""
    try:
        data = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    axes = data.get("axes") if isinstance(data, dict) else None
    return axes if axes in AXES else None


def sidecar_path(path: str | os.PathLike) -> Path:
    """``<path>.geo.json`` (the suffix is appended to the full file name)."""
    p = Path(path)
    return p.with_name(p.name + SIDECAR_SUFFIX)


def build_sidecar(
    origin: GeoOrigin, *, axes: str = "ENU", file: str | None = None, **extra: Any
) -> dict[str, Any]:
    """The sidecar dictionary of a file whose coordinates are metres in convention `axes`
    about `origin`.

    Args:
        origin: ENU origin (WGS84 degrees, ellipsoidal metres).
        axes: axis convention of the file's coordinates (a key of :data:`AXES`).
        file: the file's name, stored for reference.
        **extra: more keys stored as they are (JSON-serialisable), e.g. ``format``.

    Returns:
        A JSON-ready dict (see the module docstring for the keys). Matrices are float64
        nested lists ``[4][4]``, row-major.

    Raises:
        ValueError: for an unknown axis convention or a non-finite origin.
    """
    vals = (origin.lat_deg, origin.lon_deg, origin.h_m)
    if not all(np.isfinite(v) for v in vals):
        raise ValueError(f"origin must be finite, got {origin}")
    enu_to_ecef = enu_to_ecef_matrix(origin)
    file_to_enu = np.eye(4)
    file_to_enu[:3, :3] = axes_to_enu(axes)
    return {
        "schema": SCHEMA,
        **({"file": file} if file else {}),
        "origin": {
            "lat_deg": float(origin.lat_deg),
            "lon_deg": float(origin.lon_deg),
            "h_m": float(origin.h_m),
        },  # fmt: skip
        "crs": "EPSG:4979",
        "crs_note": "origin: WGS84 geodetic latitude, longitude (degrees), ellipsoidal height "
        "(metres); enu_to_ecef maps to ECEF EPSG:4978 (metres)",
        "units": "metre",
        "axes": axes,
        "axes_description": AXES[axes][0],
        "file_to_enu": file_to_enu.tolist(),
        "enu_to_ecef": enu_to_ecef.tolist(),
        "file_to_ecef": (enu_to_ecef @ file_to_enu).tolist(),
        **extra,
    }


def write_sidecar(
    path: str | os.PathLike, origin: GeoOrigin, *, axes: str = "ENU", **extra: Any
) -> Path:
    """Write ``<path>.geo.json`` for the exported file `path` (see :func:`build_sidecar`).

    Returns:
        The sidecar's path.
    """
    out = sidecar_path(path)
    data = build_sidecar(origin, axes=axes, file=Path(path).name, **extra)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    return out
