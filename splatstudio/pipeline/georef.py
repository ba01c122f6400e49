"""Geo-registration: a robust similarity from the SfM frame to local ENU metres (Z up).

Reads ``sfm/sparse`` (the model), ``sfm/sfm.json``, ``reproject/frames.json`` (GPS ENU per frame)
and ``reproject/rig.json``; writes into ``georef/``::

    sparse/            the model in ENU metres (COLMAP binary; ``pycolmap.Reconstruction``)
    sparse_text/       the same as COLMAP text (option export_text)
    transforms.json    nerfstudio cameras (option export_transforms), see :func:`write_transforms`
    georef.json        the Sim3 (enu_from_sfm), per frame its GPS residual and inlier flag,
                       RMS residuals, the ENU origin (WGS84) and a status line

Alignment (``GeorefConfig.mode``):

- ``gravity`` (default): the model is levelled first with the cameras' up direction
  (panoramas are exported level, so a panorama's -y axis is up; photos are held roughly level),
  then scale, heading and translation (4 DoF) are fitted to the frame centres vs their GPS ENU
  positions by RANSAC over pairs of frames and a least-squares refit on the inliers. A walk is
  nearly a straight line, which leaves a full Sim3 free to roll about it; gravity removes that.
- ``sim3``: ``pycolmap.estimate_sim3d_robust`` (LO-RANSAC, 7 DoF) on the same points.

Without enough GPS positions the model keeps its own frame, with a warning, and georef.json's
status says so.
"""

from __future__ import annotations

import itertools
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from ..config import AlignMode, GeorefConfig
from ..errors import StageError
from ..events import Emitter
from ..project import Project, read_json, write_json_atomic
from .artifacts import PHOTOS, SFM_REPORT, VIEWS, Frames, read_frames, sfm_model
from .reproject import view_keep_mask
from .sfm import PHOTO_DIR, frame_centres, frame_of_image


# ---------------------------------------------------------------------------------------------
# Alignment math (numpy only)
# ---------------------------------------------------------------------------------------------
def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation [3, 3] taking unit vector `a` [3] onto unit vector `b` [3]."""
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    v = np.cross(a, b)
    c = float(np.dot(a, b))
    if np.linalg.norm(v) < 1e-12:
        if c > 0:
            return np.eye(3)
        # 180 deg about any axis perpendicular to a
        p = np.array([1.0, 0, 0]) if abs(a[0]) < 0.9 else np.array([0, 1.0, 0])
        axis = np.cross(a, p)
        axis /= np.linalg.norm(axis)
        return 2 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx * (1.0 / (1.0 + c))


def _fit_4dof(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares s, Rz [3, 3] (about Z), t [3] with dst ~ s Rz src + t (Umeyama in XY; Z
    shares the scale). src, dst: [N, 3], N >= 2 with distinct XY."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    # complex form: b_xy ~ s e^{i th} a_xy
    za = a[:, 0] + 1j * a[:, 1]
    zb = b[:, 0] + 1j * b[:, 1]
    num = np.sum(np.conj(za) * zb)
    th = math.atan2(num.imag, num.real)
    den = float(np.sum(np.abs(za) ** 2) + np.sum(a[:, 2] ** 2))
    rz = np.array([[math.cos(th), -math.sin(th), 0], [math.sin(th), math.cos(th), 0], [0, 0, 1]])
    s = float(np.sum((b * (a @ rz.T)).sum(1))) / den if den > 0 else 1.0
    t = md - s * rz @ ms
    return s, rz, t


def fit_gravity_sim3(
    src: np.ndarray, dst: np.ndarray, up: np.ndarray, max_error: float
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Robust 4-DoF similarity after levelling: dst ~ s R src + t with R = Rz(heading) @ Rg,
    where Rg takes the model's `up` [3] onto +Z.

    Args:
        src: [N, 3] positions in the model frame; dst: [N, 3] ENU metres; N >= 2.
        up: up direction in the model frame (unit or not).
        max_error: inlier threshold on the 3D residual, metres.

    Returns:
        (s, R [3, 3], t [3], inlier mask [N] bool). RANSAC over every pair of points (a random
        2,000 of them above 64 points), then a least-squares refit on the inliers.
    """
    rg = rotation_between(np.asarray(up, float), np.array([0.0, 0.0, 1.0]))
    lev = src @ rg.T
    n = len(src)
    combos = list(itertools.combinations(range(n), 2))
    if len(combos) > 2000:
        rng = np.random.default_rng(0)
        combos = [combos[i] for i in rng.choice(len(combos), 2000, replace=False)]
    best = None
    for i, j in combos:
        if np.linalg.norm(lev[i, :2] - lev[j, :2]) < 1e-9:
            continue
        s, rz, t = _fit_4dof(lev[[i, j]], dst[[i, j]])
        if not (s > 0 and np.isfinite(s)):
            continue
        res = np.linalg.norm(s * lev @ rz.T + t - dst, axis=1)
        inl = res < max_error
        score = (int(inl.sum()), -float(np.sum(np.minimum(res, max_error) ** 2)))
        if best is None or score > best[0]:
            best = (score, inl)
    if best is None:
        raise StageError("georef: GPS positions coincide; cannot fit a scale")
    inl = best[1]
    for _ in range(3):  # refit, re-select
        if inl.sum() < 2:
            break
        s, rz, t = _fit_4dof(lev[inl], dst[inl])
        res = np.linalg.norm(s * lev @ rz.T + t - dst, axis=1)
        new = res < max_error
        if new.sum() < 2 or np.array_equal(new, inl):
            break
        inl = new
    s, rz, t = _fit_4dof(lev[inl], dst[inl])
    return s, rz @ rg, t, inl


def model_up(centres: dict[str, dict[str, Any]]) -> np.ndarray:
    """Mean up direction [3] of the frames in the model's world frame (unit).

    Each frame's rotation R is ``pano_from_world`` or ``cam_from_world`` (OpenCV axes, y down),
    so its up is ``R^T @ (0, -1, 0)``.
    """
    ups = np.array([c["R"].T @ np.array([0.0, -1.0, 0.0]) for c in centres.values()])
    u = ups.sum(0)
    return u / np.linalg.norm(u)


def up_candidates(centres: dict[str, dict[str, Any]], ids: list[str]) -> list[tuple[str, np.ndarray]]:
    """Directions [3] that may be "up" in the model frame, each with a label.

    Always the cameras' own up (:func:`model_up`: panoramas are exported level, ground photos
    are held roughly level). When the photos among `ids` mostly look one way (the norm of
    their mean viewing direction above 0.7, as in a drone survey looking down), also the
    opposite of that direction: nadir cameras' -y axis is horizontal, so levelling them by it
    turns the survey plane on its side (measured on a real 57-photo drone survey: 9 of 57 frames
    within 5 m of GPS, RMS 62.6 m, where a plain similarity gave 2.4 m).
    """
    out = [("the cameras' up axis", model_up(centres))]
    photos = [i for i in ids if centres[i].get("kind") == "photo"]
    if photos:
        fwd = np.array([centres[i]["R"].T @ np.array([0.0, 0.0, 1.0]) for i in photos]).mean(0)
        if np.linalg.norm(fwd) > 0.7:
            out.append(("against the cameras' common viewing direction (looking down)",
                        -fwd / np.linalg.norm(fwd)))
    return out


def align_gravity(
    centres: dict[str, dict[str, Any]], ids: list[str], src: np.ndarray, dst: np.ndarray,
    max_error: float,
) -> tuple[str, float, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`fit_gravity_sim3` with each of :func:`up_candidates`; the fit with the most
    inliers (then the lowest RMS residual) wins: "fit both and keep the one the GPS agrees
    with".

    Args:
        centres: :func:`splatstudio.pipeline.sfm.frame_centres` of the model.
        ids: frame ids of `src`/`dst` rows; src: [N, 3] model centres; dst: [N, 3] ENU metres.

    Returns:
        (label of the up direction used, s, R [3, 3], t [3], inlier mask [N]).
    """
    best = None
    for label, up in up_candidates(centres, ids):
        s, r, t, inl = fit_gravity_sim3(src, dst, up, max_error)
        res = np.linalg.norm(s * src @ r.T + t - dst, axis=1)
        score = (int(inl.sum()), -float(np.sqrt(np.mean(res**2))))
        if best is None or score > best[0]:
            best = (score, (label, s, r, t, inl))
    assert best is not None
    return best[1]


COLLAPSE_MIN_GPS_M = 2.0
"""GPS check: pairs of frames at least this far apart by GPS count for the collapse test."""
COLLAPSE_RATIO = 0.2
"""GPS check: such a pair is collapsed when the model has it under this share of its GPS
distance apart (measured on glued models of the dashboard walk: 0.002-0.13; on the clean walk
and Lund no pair under 0.5)."""
COLLAPSE_WINDOW = 50
"""GPS check: pairs of frames at most this many frames apart in capture order are compared."""
COLLAPSE_MAX_SHARE = 0.1
"""GPS check: the model is rejected when more than this share of those pairs are collapsed
(the dashboard walk's glued models: 0.11-0.67, one pair of 9 in the mildest; the clean walk and
Lund: 0)."""


def gps_jumps(gps: np.ndarray) -> np.ndarray:
    """Fixes [N] bool that jump away from their neighbours in capture order: an interior fix
    farther from the midpoint of the fixes before and after it than max(
    :data:`COLLAPSE_MIN_GPS_M`, 1.5 x the distance between those two). `gps`: [N, 3] ENU metres
    in capture order."""
    n = len(gps)
    out = np.zeros(n, bool)
    if n < 3:
        return out
    mid = (gps[:-2] + gps[2:]) / 2
    span = np.linalg.norm(gps[2:] - gps[:-2], axis=1)
    out[1:-1] = np.linalg.norm(gps[1:-1] - mid, axis=1) > np.maximum(COLLAPSE_MIN_GPS_M,
                                                                    1.5 * span)
    return out


def gps_check(aligned: np.ndarray, gps: np.ndarray, config: GeorefConfig) -> dict[str, Any]:
    """Does the aligned model agree with its GPS track? (ODM/Metashape-style GPS residual
    report, turned into a verdict.)

    Args:
        aligned: [N, 3] frame centres after the fit, ENU metres, in capture order.
        gps: [N, 3] their GPS positions, ENU metres.

    Returns:
        {"verdict": "pass" | "noisy-gps" | "reject" | "no-check", "within": [N] bool (within
        ``check_tolerance_m``), "fraction": share within, "extent_model_m", "extent_gps_m"
        (horizontal bounding-box diagonals of the frames whose fix does not jump,
        :func:`gps_jumps`), "extent_ratio" (model / GPS, None when the GPS
        extent is under twice the tolerance: too small to judge), "path_model_m",
        "path_gps_m" (3D lengths in capture order), "path_ratio" (model / GPS, None when the
        GPS path is shorter than the tolerance), "reason": words}.

    The rule (README, "Platform mask and GPS check"): reject when fewer than
    ``check_min_fraction`` of the frames lie within the tolerance, when the extents differ by
    more than ``check_max_extent_ratio`` either way, when the model's path is more than that
    ratio longer than the GPS track's (a frame thrown far away; noisy GPS makes the GPS path
    the longer one, so only this side counts), or when more than :data:`COLLAPSE_MAX_SHARE` of
    the pairs of steady frames (:func:`gps_jumps`) the GPS has over :data:`COLLAPSE_MIN_GPS_M`
    apart sit close together in the model (under :data:`COLLAPSE_RATIO` of that distance:
    frames glued together); pass
    with a GPS warning ("noisy-gps") when fewer than 80 % lie within the tolerance.

    Calibrated on real captures. Rejected: a car drive whose cabin glued the panoramas
    together (9 of 100 within 5 m, extent 0.35x); the shared walk with a dashboard pasted into
    every panorama and no platform mask, in five runs (one panorama thrown 22 m away, path
    5.1x; four panoramas on one spot, 6 of 9 pairs collapsed; four within 0.7 m of each other,
    4 of 9; three within 0.3 m, 2 of 9, every frame within 2.5 m of its fix; two 0.23 m apart
    that the GPS has 3.1 m apart, 1 of 9, every frame within 3 m of its fix, RMS 2.1 m).
    Passed: the shared walk (5 of 5 within 1.1 m, path 1.0x), Lund's phone GPS (19 of 29,
    path and extent 1.1x), an indoor walk with GPS jumps (7 of 11) and a drone survey (57 of
    57 after nadir levelling).
    """
    tol = float(config.check_tolerance_m)
    res = np.linalg.norm(aligned - gps, axis=1)
    within = res <= tol
    n = len(res)

    def diag(p: np.ndarray) -> float:
        return float(np.linalg.norm(p[:, :2].max(0) - p[:, :2].min(0))) if len(p) else 0.0

    def path(p: np.ndarray) -> float:
        return float(np.linalg.norm(np.diff(p, axis=0), axis=1).sum()) if len(p) > 1 else 0.0

    # fixes that jump away from their neighbours would make the GPS track look larger than
    # the model, or frames look glued together: the extent and the collapse leave them out
    steady = ~gps_jumps(gps)
    ext_m, ext_g = diag(aligned[steady]), diag(gps[steady])
    ratio = ext_m / ext_g if ext_g >= 2 * tol and ext_g > 0 else None
    path_m, path_g = path(aligned), path(gps)
    path_ratio = path_m / path_g if path_g >= tol else None
    # pairs up to COLLAPSE_WINDOW frames apart in capture order (all of them in a short
    # capture): glued frames are neighbours, and n x n distances would not fit a long drive
    steps = range(1, min(n, COLLAPSE_WINDOW + 1))
    i = np.concatenate([np.arange(n - k) for k in steps] or [np.zeros(0, int)])
    j = np.concatenate([np.arange(k, n) for k in steps] or [np.zeros(0, int)])
    dg = np.linalg.norm(gps[i] - gps[j], axis=-1)
    dm = np.linalg.norm(aligned[i] - aligned[j], axis=-1)
    apart = (dg >= COLLAPSE_MIN_GPS_M) & steady[i] & steady[j]
    collapsed = float(np.mean(dm[apart] < COLLAPSE_RATIO * dg[apart])) if apart.any() else 0.0
    frac = float(within.mean()) if n else 0.0
    out: dict[str, Any] = {"within": within, "fraction": frac, "extent_model_m": ext_m,
                           "extent_gps_m": ext_g, "extent_ratio": ratio,
                           "path_model_m": path_m, "path_gps_m": path_g,
                           "path_ratio": path_ratio, "collapsed_pairs": collapsed,
                           "tolerance_m": tol}
    r = float(config.check_max_extent_ratio)
    if n < 3:
        out.update(verdict="no-check", reason=f"only {n} frames with GPS: nothing to check")
    elif frac < config.check_min_fraction:
        out.update(verdict="reject", reason=f"only {int(within.sum())} of {n} frames lie within "
                   f"{tol:g} m of their GPS fix after the best fit")
    elif ratio is not None and not (1 / r <= ratio <= r):
        out.update(verdict="reject", reason=f"the model spans {ext_m:.0f} m where the GPS track "
                   f"spans {ext_g:.0f} m ({ratio:.2f}x)")
    elif collapsed > COLLAPSE_MAX_SHARE:
        out.update(verdict="reject", reason=f"the model puts frames on one spot that the GPS has "
                   f"metres apart ({100 * collapsed:.0f} % of the pairs of frames over "
                   f"{COLLAPSE_MIN_GPS_M:g} m apart by GPS are under "
                   f"{100 * COLLAPSE_RATIO:g} % of that apart in the model)")
    elif path_ratio is not None and path_ratio > r:
        worst = int(np.argmax(res))
        out.update(verdict="reject", reason=f"the model's path is {path_m:.0f} m long where the "
                   f"GPS track's is {path_g:.0f} m ({path_ratio:.1f}x; frame {worst + 1} of "
                   f"{n} lies {res[worst]:.0f} m from its fix)")
    elif frac < 0.8:
        out.update(verdict="noisy-gps", reason=f"{n - int(within.sum())} of {n} GPS fixes are "
                   f"more than {tol:g} m from the model: the GPS is noisy there (the model "
                   "agrees with the rest)")
    else:
        out.update(verdict="pass", reason=f"{int(within.sum())} of {n} frames within {tol:g} m "
                   "of their GPS fix")
    return out


# ---------------------------------------------------------------------------------------------
# Exports
# ---------------------------------------------------------------------------------------------
def image_source(name: str) -> str:
    """Path of the original image of COLMAP image `name`, relative to the project folder
    (``reproject/views/<pano>/<view>.jpg`` or ``reproject/photos/<file>``)."""
    head, tail = name.split("/", 1)
    if head == PHOTO_DIR:
        return f"{PHOTOS.rel}/{tail}"
    return f"{VIEWS.rel}/{Path(tail).stem}/{head}.jpg"


def write_transforms(rec: Any, path: str | Path, project_root: str | Path | None = None,
                     nadir_masks: bool = True) -> dict[str, Any]:
    """Write a nerfstudio ``transforms.json`` of the registered images of `rec`.

    Poses: ``transform_matrix`` is camera-to-world [4, 4] in the model's world frame (ENU metres
    after georef), camera axes in the OpenGL/nerfstudio convention (x right, y up, z back): the
    COLMAP world-to-camera pose inverted, with its y and z columns negated (nerfstudio's
    ``colmap_utils.colmap_to_json``, without its axis swap since ENU is already Z up).
    Intrinsics per frame in pixels: fl_x, fl_y, cx, cy, w, h (k1 for SIMPLE_RADIAL /
    RADIAL, camera_model OPENCV). ``file_path`` and ``mask_path`` (the view's keep mask:
    nadir and platform, 0 = ignore) are relative to the folder of `path` when `project_root`
    is given.

    Returns:
        the JSON dict written.
    """
    path = Path(path)
    root = Path(project_root) if project_root else None
    frames = []
    for im in sorted(rec.images.values(), key=lambda im: im.name):
        if not im.has_pose:
            continue
        cam = rec.cameras[im.camera_id]
        w2c = np.eye(4)
        w2c[:3, :] = np.asarray(im.cam_from_world().matrix())
        c2w = np.linalg.inv(w2c)
        c2w[:3, 1:3] *= -1
        fx, fy = cam.focal_length_x, cam.focal_length_y
        e: dict[str, Any] = {
            "file_path": image_source(im.name),
            "transform_matrix": c2w.tolist(),
            "colmap_im_id": int(im.image_id),
            "fl_x": float(fx), "fl_y": float(fy),
            "cx": float(cam.principal_point_x), "cy": float(cam.principal_point_y),
            "w": int(cam.width), "h": int(cam.height),
            "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0,
        }
        if cam.model_name in ("SIMPLE_RADIAL", "RADIAL"):
            e["k1"] = float(cam.params[3])
            if cam.model_name == "RADIAL":
                e["k2"] = float(cam.params[4])
        head = im.name.split("/", 1)[0]
        if nadir_masks and head != PHOTO_DIR:
            e["mask_path"] = view_keep_mask(root, head)
        if root is not None:
            for key in ("file_path", "mask_path"):
                if key in e:
                    e[key] = os.path.relpath(root / e[key], path.parent).replace(os.sep, "/")
        frames.append(e)
    data = {"camera_model": "OPENCV", "frames": frames}
    write_json_atomic(path, data)
    return data


def write_text_model(rec: Any, folder: str | Path) -> None:
    """Write `rec` as a COLMAP text model (cameras.txt, images.txt, points3D.txt, rigs.txt,
    frames.txt) into `folder`, replacing it atomically."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    rec.write_text(str(tmp))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


# ---------------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------------
def _list(ids: list[str], n: int = 20) -> str:
    return ", ".join(ids[:n]) + (f" and {len(ids) - n} more" if len(ids) > n else "") or "none"


def run_georef(project: Project, config: GeorefConfig, events: Emitter) -> dict[str, Any]:
    """Geo-registration stage (see the module docstring for the outputs): read the SfM model
    and the frames' GPS, fit ``enu_from_sfm`` and check it against the GPS, move the model
    into ENU, write it and ``georef.json``.

    Metrics: gps_frames (registered frames with GPS), inliers, rms_residual_m (inliers),
    rms_residual_all_m, rms_horizontal_m and rms_vertical_m (inliers), max_residual_m, scale
    (metres per SfM unit), georeferenced (1/0).

    Raises:
        InputError: no SfM model, or no frames (reproject has not run).
        StageError: the alignment failed (positions coincide), or the model contradicts its
            GPS (:func:`gps_check` rejects it) while ``georef.check`` is on.
        Cancelled: the user cancelled before the model was written.
    """
    rec, inputs = read_sfm_inputs(project)
    out = project.stage_dir("georef")
    events.progress(0.1, "aligning the model to GPS")
    pairs = gps_pairs(rec, inputs)
    report = new_report(inputs.origin, config)
    if len(pairs.ids) >= max(2, config.min_positions):
        fit = align_to_gps(pairs, config, events)
        rec.transform(fit.sim)
        report.update(fit_report(fit, pairs))
        per = frame_fits(fit, pairs)
        emit_fit_metrics(fit, pairs, events)
        if fit.check["verdict"] == "reject" and config.check:
            reject_model(project, out, report, per, fit, config, events)
        warn_about_fit(fit, pairs, per, config, events)
    else:
        report.update(unaligned_report(pairs, config, events))
        per = {}
    report["frames"] = frame_report(inputs.frames, pairs.centres, per)
    events.check_cancelled()
    events.progress(0.5, "writing the model")
    write_georef_model(rec, out, project.root, config, events)
    report["images"] = registered_images(rec)
    write_json_atomic(out / "georef.json", report)
    events.artifact("georef/georef.json")
    events.progress(1.0, report["status"])
    return report


@dataclass(eq=False)
class GpsPairs:
    """The registered frames that have a GPS position, as pairs of points for the fit.

    Attributes:
        centres: :func:`splatstudio.pipeline.sfm.frame_centres` of the model (every registered
            frame: centre [3] and rotation R [3, 3] in the SfM frame, kind).
        ids: frame ids of the rows below, in capture order (``frames.json``), for the path
            lengths of the GPS check.
        src: [N, 3] their centres in the SfM frame.
        dst: [N, 3] their GPS positions, ENU metres.
    """

    centres: dict[str, dict[str, Any]]
    ids: list[str]
    src: np.ndarray
    dst: np.ndarray


@dataclass(eq=False)
class GpsFit:
    """``enu_from_sfm`` fitted to the GPS and how well the frames agree with it.

    Attributes:
        sim: the similarity as a ``pycolmap.Sim3d`` (ENU metres from the SfM frame).
        scale: metres per SfM unit; rotation: [3, 3]; translation: [3] metres.
        levelled_by: the up direction used (``gravity`` mode, :func:`align_gravity`), None in
            ``sim3`` mode.
        aligned: [N, 3] the frame centres after the fit, ENU metres (rows of :class:`GpsPairs`).
        residuals: [N] their distances to their GPS positions, metres.
        inliers: [N] bool, residual under ``max_error_m``.
        rms_inliers: RMS residual of the inliers (NaN without any); rms_all: of all frames;
            rms_horizontal, rms_vertical: its horizontal and vertical parts over the inliers
            (all frames without any), metres.
        check: :func:`gps_check` of the aligned centres.
    """

    sim: Any
    scale: float
    rotation: np.ndarray
    translation: np.ndarray
    levelled_by: str | None
    aligned: np.ndarray
    residuals: np.ndarray
    inliers: np.ndarray
    rms_inliers: float
    rms_all: float
    rms_horizontal: float
    rms_vertical: float
    check: dict[str, Any]


def read_sfm_inputs(project: Project) -> tuple[Any, Frames]:
    """The SfM model (``sfm/sparse``, a ``pycolmap.Reconstruction`` in the SfM frame) and the
    frames, rig and origin of ``reproject/frames.json``; writes nothing.

    Raises:
        ImportError: pycolmap is missing.
        InputError: no SfM model; reproject has not run or left no frames, or its rig is
            missing.
    """
    import pycolmap

    model = sfm_model(project.root).require()
    inputs = read_frames(project.root)
    return pycolmap.Reconstruction(str(model.path)), inputs


def gps_pairs(rec: Any, inputs: Frames) -> GpsPairs:
    """The frames of `inputs` that `rec` registered and that have GPS (``enu_m``), with their
    model centres and GPS positions, in capture order. In memory only; raises nothing."""
    centres = frame_centres(rec, inputs.rig)
    by_id = {f["id"]: f for f in inputs.frames}
    # in capture order (frames.json), for the path lengths of the GPS check
    ids = [f["id"] for f in inputs.frames if f["id"] in centres and f.get("enu_m") is not None]
    src = np.array([centres[i]["centre"] for i in ids]).reshape(-1, 3)
    dst = np.array([by_id[i]["enu_m"] for i in ids], dtype=np.float64).reshape(-1, 3)
    return GpsPairs(centres, ids, src, dst)


def new_report(origin: dict[str, float] | None, config: GeorefConfig) -> dict[str, Any]:
    """The head of ``georef.json``: schema version, origin (WGS84), frame, mode (a new dict;
    writes nothing)."""
    return {
        "schema_version": 1,
        "origin": origin,
        "frame": "ENU metres about origin (x east, y north, z up); poses cam_from_world",
        "mode": str(config.mode),
    }


def fit_similarity(
    pairs: GpsPairs, config: GeorefConfig, events: Emitter
) -> tuple[Any, float, np.ndarray, np.ndarray, str | None]:
    """Fit ``enu_from_sfm`` to `pairs` in ``config.mode``: ``gravity`` (:func:`align_gravity`;
    logs the up direction chosen when there was a choice) or ``sim3``
    (``pycolmap.estimate_sim3d_robust``, LO-RANSAC, seed 0).

    Returns:
        (``pycolmap.Sim3d``, scale, rotation [3, 3], translation [3], up label or None).

    Raises:
        StageError: no similarity fits (positions coincide, or RANSAC found none).
    """
    import pycolmap

    centres, ids, src, dst = pairs.centres, pairs.ids, pairs.src, pairs.dst
    if config.mode == AlignMode.GRAVITY:
        label, s, r, t, _ = align_gravity(centres, ids, src, dst, config.max_error_m)
        if len(up_candidates(centres, ids)) > 1:
            events.log(f"levelled {label} (the alignment the GPS agrees with best)")
        return pycolmap.Sim3d(s, pycolmap.Rotation3d(r), t.reshape(3, 1)), s, r, t, label
    ro = pycolmap.RANSACOptions()
    ro.max_error = config.max_error_m
    ro.random_seed = 0
    found = pycolmap.estimate_sim3d_robust(src, dst, ro)
    sim = found.get("tgt_from_src") if isinstance(found, dict) else found
    if sim is None:
        raise StageError(
            "georef: no similarity fits the GPS positions (try sim3 -> gravity mode, "
            "or a larger georef.max_error_m)"
        )
    s = float(sim.scale)
    return sim, s, np.asarray(sim.rotation.matrix()), np.asarray(sim.translation).reshape(3), None


def align_to_gps(pairs: GpsPairs, config: GeorefConfig, events: Emitter) -> GpsFit:
    """Fit ``enu_from_sfm`` (:func:`fit_similarity`), measure the residuals of every frame
    and run the GPS check (:func:`gps_check`) on the aligned centres. In memory; the model
    is not moved (the caller applies ``fit.sim``).

    Raises:
        StageError: from :func:`fit_similarity`.
    """
    sim, s, r, t, label = fit_similarity(pairs, config, events)
    aligned = s * pairs.src @ r.T + t
    res = np.linalg.norm(aligned - pairs.dst, axis=1)
    inl = res < config.max_error_m
    rms_in = float(np.sqrt(np.mean(res[inl] ** 2))) if inl.any() else float("nan")
    rms_all = float(np.sqrt(np.mean(res**2)))
    # Horizontal and vertical parts over the inliers: consumer GPS altitude is usually the
    # worse one, and a gravity-levelled model does not tilt to follow it.
    d = (aligned - pairs.dst)[inl] if inl.any() else aligned - pairs.dst
    rms_h = float(np.sqrt(np.mean(np.sum(d[:, :2] ** 2, axis=1))))
    rms_v = float(np.sqrt(np.mean(d[:, 2] ** 2)))
    check = gps_check(aligned, pairs.dst, config)
    return GpsFit(sim, s, r, t, label, aligned, res, inl, rms_in, rms_all, rms_h, rms_v, check)


def fit_report(fit: GpsFit, pairs: GpsPairs) -> dict[str, Any]:
    """The keys of ``georef.json`` for a georeferenced model: levelled_by (gravity mode),
    status, the Sim3, the RMS residuals, inliers, gps_frames and the GPS check, in the file's
    key order (a new dict; writes nothing)."""
    s, r, t, res = fit.scale, fit.rotation, fit.translation, fit.residuals
    out: dict[str, Any] = {} if fit.levelled_by is None else {"levelled_by": fit.levelled_by}
    out.update(
        {
            "status": "georeferenced",
            "sim3_enu_from_sfm": {
                "scale": s,
                "rotation_matrix": r.tolist(),
                "translation_m": t.tolist(),
                "matrix_3x4": np.hstack([s * r, t.reshape(3, 1)]).tolist(),
            },
            "rms_residual_m": fit.rms_inliers,
            "rms_residual_all_m": fit.rms_all,
            "rms_horizontal_m": fit.rms_horizontal,
            "rms_vertical_m": fit.rms_vertical,
            "max_residual_m": float(res.max()),
            "inliers": int(fit.inliers.sum()),
            "gps_frames": len(pairs.ids),
            "check": {k: v for k, v in fit.check.items() if k != "within"},
        }
    )
    return out


def frame_fits(fit: GpsFit, pairs: GpsPairs) -> dict[str, dict[str, Any]]:
    """Per frame of `pairs` (capture order): its GPS and aligned positions (ENU metres),
    residual, inlier flag and whether it agrees with the GPS check's tolerance (a new dict;
    writes nothing)."""
    per = {}
    for k, fid in enumerate(pairs.ids):
        per[fid] = {
            "registered": True,
            "gps_enu_m": pairs.dst[k].tolist(),
            "sfm_enu_m": fit.aligned[k].tolist(),
            "residual_m": float(fit.residuals[k]),
            "inlier": bool(fit.inliers[k]),
            "agrees": bool(fit.check["within"][k]),
        }
    return per


def emit_fit_metrics(fit: GpsFit, pairs: GpsPairs, events: Emitter) -> None:
    """Emit the fit's metrics: scale, gps_frames, inliers, the RMS residuals, max_residual_m,
    gps_agree_fraction and extent_ratio (when the GPS check could judge it); writes
    nothing."""
    events.metric("scale", fit.scale)
    events.metric("gps_frames", len(pairs.ids))
    events.metric("inliers", int(fit.inliers.sum()))
    events.metric("rms_residual_m", fit.rms_inliers)
    events.metric("rms_residual_all_m", fit.rms_all)
    events.metric("rms_horizontal_m", fit.rms_horizontal)
    events.metric("rms_vertical_m", fit.rms_vertical)
    events.metric("max_residual_m", float(fit.residuals.max()))
    events.metric("gps_agree_fraction", fit.check["fraction"])
    if fit.check["extent_ratio"] is not None:
        events.metric("extent_ratio", fit.check["extent_ratio"])


def _disagreeing(per: dict[str, dict[str, Any]]) -> list[str]:
    return [fid for fid, p in per.items() if not p["agrees"]]


def reject_model(project: Project, out: Path, report: dict[str, Any],
                 per: dict[str, dict[str, Any]], fit: GpsFit, config: GeorefConfig,
                 events: Emitter) -> NoReturn:
    """The GPS check rejected the model: write ``georef/georef.json`` with status
    ``rejected: <reason>`` and the frames of `per` (the model itself is not written), then
    raise. Reads ``sfm/sfm.json`` for the mappers the sfm stage tried.

    Raises:
        StageError: always; the message gives the reason, the RMS, the scale, the frames off
            and what to try.
    """
    check = fit.check
    sfm_json = SFM_REPORT.path(project.root)
    tried = [t.get("mapper") for t in
             (read_json(sfm_json).get("gps_check") or [] if sfm_json.exists() else [])]
    mappers = (f" (the sfm stage tried the {' and the '.join(tried)} mapper)"
               if len(tried) > 1 else "")
    report["status"] = f"rejected: {check['reason']}"
    report["frames"] = per
    write_json_atomic(out / "georef.json", report)
    events.artifact("georef/georef.json")
    raise StageError(
        f"georef: the SfM model contradicts its GPS: {check['reason']} (RMS over all "
        f"{fit.rms_all:.1f} m, scale {fit.scale:.3f} m/unit){mappers}; frames off by more than "
        f"{check['tolerance_m']:g} m: {_list(_disagreeing(per))}. This happens when something "
        "fixed to the camera (a vehicle, a helmet, a pole, the operator) is matched across "
        "frames, or when a stretch of the capture does not overlap. Try masking it "
        "(your own mask: reproject.platform_mask_file; a larger nadir mask: "
        "reproject.nadir_deg), removing that stretch from the input folder, the other "
        "mapper (sfm.mapper=incremental), or, if you trust the model more than the "
        "GPS, georef.check=false (details per frame in georef/georef.json)"
    )


def warn_about_fit(fit: GpsFit, pairs: GpsPairs, per: dict[str, dict[str, Any]],
                   config: GeorefConfig, events: Emitter) -> None:
    """Warn about what the GPS check found (a rejection while ``georef.check`` is off, noisy
    GPS, nothing to check) and about GPS outliers; emit ``georeferenced`` = 1 and log the
    fit. Writes nothing; raises nothing."""
    check, n_in = fit.check, int(fit.inliers.sum())
    if check["verdict"] == "reject":
        events.warning(f"GPS check failed but georef.check is off: {check['reason']}")
    elif check["verdict"] == "noisy-gps":
        events.warning(f"GPS check: {check['reason']} ({_list(_disagreeing(per))})")
    elif check["verdict"] == "no-check":
        events.warning(f"GPS check: {check['reason']}")
    events.metric("georeferenced", 1)
    outl = [fid for fid, p in per.items() if not p["inlier"]]
    if outl:
        events.warning(f"GPS outliers (residual > {config.max_error_m:g} m): {', '.join(outl)}")
    events.log(f"aligned {len(pairs.ids)} frames to GPS: RMS {fit.rms_inliers:.2f} m over "
               f"{n_in} inliers (horizontal {fit.rms_horizontal:.2f} m, vertical "
               f"{fit.rms_vertical:.2f} m), scale {fit.scale:.3f} m/unit")  # fmt: skip


def unaligned_report(pairs: GpsPairs, config: GeorefConfig, events: Emitter) -> dict[str, Any]:
    """Too few registered frames have GPS: the keys of ``georef.json`` for a model that keeps
    its SfM frame (check, status, no Sim3); emits ``georeferenced`` = 0, ``gps_frames`` and a
    warning. Writes nothing."""
    n = len(pairs.ids)
    events.metric("georeferenced", 0)
    events.metric("gps_frames", n)
    events.warning(
        f"not georeferenced: only {n} registered frames have GPS; the model keeps its "
        "own frame (arbitrary scale and orientation)"
    )
    return {
        "check": {"verdict": "no-check", "reason": "no GPS to check the model against"},
        "status": f"not georeferenced: {n} registered frames with GPS, "
        f"{max(2, config.min_positions)} needed; the model keeps its SfM frame",
        "sim3_enu_from_sfm": None,
        "rms_residual_m": None,
        "gps_frames": n,
    }


def frame_report(frames: list[dict[str, Any]], centres: dict[str, Any],
                 per: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``georef.json``'s ``frames``: every frame of ``frames.json`` in its order, from `per`
    (:func:`frame_fits`) where the fit placed it, else whether the model registered it and
    its GPS (no residual). A new dict; writes nothing."""
    out = {}
    for f in frames:
        out[f["id"]] = per.get(f["id"]) or {
            "registered": f["id"] in centres,
            "gps_enu_m": f.get("enu_m"),
            "residual_m": None,
            "inlier": None,
        }
    return out


def write_georef_model(rec: Any, out: Path, project_root: Path, config: GeorefConfig,
                       events: Emitter) -> None:
    """Write the model (in ENU after the fit) to ``georef/sparse`` (COLMAP binary, replaced
    atomically) and, as the options ask, ``sparse_text/`` (:func:`write_text_model`) and
    ``transforms.json`` (:func:`write_transforms`); one artifact each.

    Raises:
        OSError: a file cannot be written.
    """
    tmp = out / "sparse.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    rec.write(str(tmp))
    shutil.rmtree(out / "sparse", ignore_errors=True)
    os.replace(tmp, out / "sparse")
    events.artifact("georef/sparse")
    if config.export_text:
        write_text_model(rec, out / "sparse_text")
        events.artifact("georef/sparse_text")
    if config.export_transforms:
        write_transforms(rec, out / "transforms.json", project_root)
        events.artifact("georef/transforms.json")


def registered_images(rec: Any) -> dict[str, Any]:
    """``georef.json``'s ``images``: how many images the model registered and which frames
    they belong to (sorted ids); reads only `rec`."""
    return {
        "registered": int(rec.num_reg_images()),
        "frames_registered": sorted({frame_of_image(im.name) for im in rec.images.values()
                                     if im.has_pose}),
    }
