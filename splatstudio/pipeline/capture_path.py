"""Where the capture was: the registered capture positions of a project, in its splat's frame.

The viewer starts inside the capture (at the first position, looking along the path) and
jumps between positions; the fly-through video follows the same path. Everything here reads
the georef stage's outputs:

* ``georef/sparse`` -- the registered model in the splat's world frame (local ENU metres when
  georeferenced, the SfM frame otherwise), read with ``pycolmap``;
* ``reproject/frames.json`` -- the capture order of the frames (optional: without it frames go
  in name order) -- and ``reproject/rig.json`` (optional: the panorama rig, for the heading of
  a lone frame);
* ``georef/georef.json`` -- whether the model is georeferenced and its WGS84 origin.

No Qt, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..geo.enu import GeoOrigin
from ..project import read_json

__all__ = ["CapturePose", "GeorefState", "capture_poses", "georef_state"]


@dataclass(frozen=True)
class CapturePose:
    """One registered capture position.

    Attributes:
        frame_id: the frame's id (``reproject/frames.json``; the image stem).
        centre: ``[3]`` camera (panorama) centre in the splat's world frame (ENU metres when
            georeferenced).
        forward: ``[3]`` unit direction "along the path" at this position: towards the next
            position (the previous one for the last), horizontal (z = 0) unless the path is
            vertical; for a lone position the camera's (panorama's) optical axis.
        kind: ``"pano"`` or ``"photo"``.
    """

    frame_id: str
    centre: np.ndarray
    forward: np.ndarray
    kind: str


@dataclass(frozen=True)
class GeorefState:
    """Whether a project's splat coordinates are metric ENU.

    Attributes:
        georeferenced: True when ``georef/georef.json`` says ``status == "georeferenced"``
            (metres, x east, y north, z up about `origin`).
        origin: the WGS84 origin (EPSG:4979 latitude, longitude degrees, ellipsoidal height
            metres) or None.
        status: the georef status line (or why there is none).
    """

    georeferenced: bool
    origin: GeoOrigin | None
    status: str


def georef_state(project_root: str | Path) -> GeorefState:
    """Read ``georef/georef.json`` of the project at `project_root`.

    A missing file gives ``georeferenced=False`` (status says so); a malformed one raises.

    Raises:
        InputError: georef.json exists but cannot be read or has a malformed origin.
    """
    path = Path(project_root) / "georef" / "georef.json"
    if not path.is_file():
        return GeorefState(False, None, "no georef/georef.json (georef stage not run)")
    try:
        data = read_json(path)
        o = data.get("origin")
        origin = None if o is None else GeoOrigin(float(o["lat_deg"]), float(o["lon_deg"]),
                                                   float(o["h_m"]))
    except Exception as e:  # ProjectError, KeyError, TypeError, ValueError
        raise InputError(path, f"malformed georef report ({e})") from None
    status = str(data.get("status", ""))
    return GeorefState(status == "georeferenced" and origin is not None, origin, status)


def _frame_order(root: Path) -> tuple[list[str], dict[str, Any] | None]:
    fj = root / "reproject" / "frames.json"
    if not fj.is_file():
        return [], None
    data = read_json(fj)
    order = [str(f["id"]) for f in data.get("frames") or []]
    rig = None
    rj = root / "reproject" / (data.get("rig") or "rig.json")
    if rj.is_file():
        rig = read_json(rj)
    return order, rig


def _horizontal(v: np.ndarray) -> np.ndarray | None:
    h = np.array([v[0], v[1], 0.0])
    n = float(np.linalg.norm(h))
    if n > 1e-9:
        return h / n
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-12 else None


def capture_poses(project_root: str | Path) -> list[CapturePose]:
    """The project's registered capture positions in capture order.

    Frame centres and rotations come from ``georef/sparse`` (see
    :func:`splatstudio.pipeline.sfm.frame_centres`; panoramas through the rig of
    ``reproject/rig.json`` when present); the order is that of ``reproject/frames.json``
    (frames it does not list follow in name order). ``forward`` points to the next position
    (see :class:`CapturePose`); consecutive positions closer than 1 mm are skipped over for it.

    Returns:
        ``[]`` when the project has no registered model (georef not run).

    Raises:
        InputError: ``georef/sparse`` exists but pycolmap cannot read it.
    """
    root = Path(project_root)
    sparse = root / "georef" / "sparse"
    if not ((sparse / "images.bin").is_file() or (sparse / "images.txt").is_file()):
        return []
    import pycolmap

    from .sfm import frame_centres

    try:
        rec = pycolmap.Reconstruction(str(sparse))
    except Exception as e:  # pycolmap raises its own runtime errors
        raise InputError(sparse, f"cannot read the registered model ({e})") from None
    order, rig = _frame_order(root)
    try:
        centres = frame_centres(rec, rig)
    except (KeyError, TypeError) as e:  # a rig.json of another layout than the model
        raise InputError(root / "reproject" / "rig.json", f"does not fit the model ({e})") from None
    rank = {fid: i for i, fid in enumerate(order)}
    ids = sorted(centres, key=lambda f: (rank.get(f, len(rank)), f))
    pts = np.array([centres[f]["centre"] for f in ids], dtype=np.float64).reshape(-1, 3)
    out = []
    for i, fid in enumerate(ids):
        fwd = None
        for j in (*range(i + 1, len(ids)), *range(i - 1, -1, -1)):  # next, else previous
            d = pts[j] - pts[i]
            if np.linalg.norm(d) > 1e-3:
                fwd = _horizontal(d if j > i else -d)
                break
        if fwd is None:  # a lone position: the optical axis (row 2 of cam_from_world)
            fwd = _horizontal(np.asarray(centres[fid]["R"], dtype=np.float64)[2])
        if fwd is None:
            fwd = np.array([0.0, 1.0, 0.0])
        out.append(CapturePose(fid, pts[i].copy(), fwd, str(centres[fid].get("kind", "pano"))))
    return out
