"""Structure-from-motion: pycolmap SIFT on the reprojected views, GPS pairs, global/incremental.

Reads ``reproject/frames.json``, ``reproject/rig.json``, the masks and the images; writes into
``sfm/``::

    images/<view>/<pano id>.jpg   links to reproject/views/<pano id>/<view>.jpg (COLMAP rig
    images/photos/<file>          layout: the folder names the sensor, the file the frame)
    masks/<view>/<pano id>.jpg.png  ownership AND keep mask (nadir, platform) of the view
                                  (255 = keep)
    database.db                   the COLMAP database (features, matches, rigs, pose priors)
    pairs.txt                     the image pairs matched ("name1 name2" per line)
    sparse/                       the largest model, COLMAP binary (cameras, images, points3D,
                                  rigs, frames .bin), in the SfM frame (with GPS priors close
                                  to ENU metres, else arbitrary scale)
    sfm.json                      metrics, per frame registered or not, other models, timings
    state.json                    fingerprints of the feature and matching steps (resume)
    sparse_sfm_rig/               with SfM's own rig (``reproject.sfm_rig``): the model on its
                                  views as mapped; ``sparse/`` then holds the training views,
                                  posed from the panoramas (:func:`expand_to_rig`)

With SfM's own rig (``reproject/sfm_rig.json``, :func:`sfm_views`), everything above runs on
its views (``s00/<pano id>.jpg`` ... linked to ``reproject/sfm_views``) instead of the training
views, and the training views get their poses after mapping.

Every panorama is one *frame* of a rig whose sensors are the virtual views, with the known
``cam_from_rig`` rotations of ``rig.json`` and fixed PINHOLE intrinsics (COLMAP 4 rigs,
``pycolmap.RigConfig`` / ``apply_rig_config``; the same arrangement as
``pycolmap.panorama.reconstruct``). Perspective photos are single-sensor frames with EXIF
intrinsics that bundle adjustment refines.

Mapping: GLOMAP (``global_mapping``) by default, then, with GPS, a bundle adjustment with the
GPS pose priors (the global mapper takes none), then the matches triangulated again with the
poses fixed, two-view tracks included (more points to start training from); or COLMAP's
incremental mapper with the priors in its own bundle adjustments. See
:class:`splatstudio.config.Mapper` for why.

Pairs are chosen per *frame*, not per image: the k nearest frames by GPS within a radius plus
neighbours in capture order (all of them without GPS), expanded to every view pair between two
panoramas, never inside one frame (COLMAP's own spatial matcher picks neighbours per image, so a
view's nearest neighbours are its siblings at the same position).

Resume: the database survives a kill. Features are extracted only for images without them, and
pairs already matched are skipped (COLMAP checks the database); a changed feature option clears
the database, a changed matching option clears the matches. Long pycolmap calls run in a helper
thread and get a ``pycolmap.CancellationToken`` when the user cancels; the runner's process
kill remains the last resort (global mapping takes no token).

Sources: COLMAP 4 / pycolmap 4.2 API (``extract_features``, ``match_image_pairs``,
``apply_rig_config``, ``global_mapping``, ``incremental_mapping``), COLMAP's
``python/pycolmap/panorama.py`` for the rig arrangement.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Mapper, SfmConfig
from ..errors import Cancelled, InputError, StageError
from ..events import Emitter
from ..project import Project, read_json, write_json_atomic
from .artifacts import RIG, SFM_RIG_MODEL, Frames, read_frames

PHOTO_DIR = "photos"


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------
def image_names(frame: dict[str, Any], rig: dict[str, Any] | None) -> list[str]:
    """COLMAP image names of a frame, relative to ``sfm/images``: ``<view>/<pano id>.jpg`` for
    a panorama (one per rig view, in rig order), ``photos/<file>`` for a photo."""
    if frame["kind"] == "equirect":
        assert rig is not None
        return [f"{v['name']}/{frame['id']}.jpg" for v in rig["views"]]
    return [f"{PHOTO_DIR}/{Path(frame['images'][0]).name}"]


def _link(src: Path, dst: Path) -> None:
    """dst -> src as a relative symlink, else a hard link, else a copy."""
    if dst.is_symlink() or dst.exists():
        if dst.resolve() == src.resolve() and dst.stat().st_size == src.stat().st_size:
            return
        dst.unlink()
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(os.path.relpath(src, dst.parent), dst)
    except OSError:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)


def prepare_images(
    project: Project, frames: list[dict[str, Any]], rig: dict[str, Any] | None,
    ownership: bool = True,
) -> tuple[Path, Path | None]:
    """Lay out ``sfm/images`` (links) and ``sfm/masks`` (combined masks) for COLMAP.

    Returns:
        (image root, mask root or None without panoramas).

    Raises:
        InputError: an image or mask of reproject is missing.
    """
    import cv2

    rp = RIG.path(project.root).parent  # the rig's mask paths are relative to it
    out = project.stage_dir("sfm")
    images = out / "images"
    masks = out / "masks" if rig else None
    combined: dict[str, bytes] = {}
    if rig:
        for v in rig["views"]:
            m = None
            keep = "keep" if "keep" in v["masks"] else "nadir"  # projects before the platform mask
            for kind in ("ownership", keep) if ownership else (keep,):
                p = rp / v["masks"][kind]
                mk = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
                if mk is None:
                    raise InputError(p, "mask missing or unreadable; run reproject again")
                m = mk if m is None else np.minimum(m, mk)
            ok, buf = cv2.imencode(".png", np.where(m >= 128, 255, 0).astype(np.uint8))
            combined[v["name"]] = buf.tobytes()
    for f in frames:
        for rel, name in zip(f["images"], image_names(f, rig), strict=True):
            src = rp / rel
            if not src.exists():
                raise InputError(src, "image missing; run reproject again")
            _link(src, images / name)
            if f["kind"] == "equirect":
                view = name.split("/")[0]
                mp = masks / f"{name}.png"
                if not (mp.exists() and mp.read_bytes() == combined[view]):
                    mp.parent.mkdir(parents=True, exist_ok=True)
                    mp.write_bytes(combined[view])
    return images, masks


def sfm_views(inputs: Frames) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """(frames, rig) that SfM runs on: reproject's frames and training rig, or, with SfM's own
    rig (``reproject.sfm_rig``), that rig and the frames with each panorama's ``images``
    replaced by its ``sfm_images`` (the training views get their poses after mapping,
    :func:`expand_to_rig`)."""
    if inputs.sfm_rig is None:
        return inputs.frames, inputs.rig
    return ([{**f, "images": f["sfm_images"]} if f["kind"] == "equirect" else f
             for f in inputs.frames], inputs.sfm_rig)


# ---------------------------------------------------------------------------------------------
# Pairs
# ---------------------------------------------------------------------------------------------
def frame_pairs(
    frames: list[dict[str, Any]], k: int = 8, radius_m: float = 50.0, order_neighbours: int = 2
) -> list[tuple[int, int]]:
    """Frame-level pairs (i < j, indices into `frames`) to match.

    Each frame with ENU coordinates (``enu_m``, metres) is paired with its `k` nearest frames
    with coordinates within `radius_m`; every frame is also paired with the `order_neighbours`
    frames on each side in capture order (``time``, else the list order); a frame without
    coordinates is paired with ``max(k, 2 * order_neighbours)`` frames around it in capture
    order. Never a frame with itself.

    Returns:
        sorted unique (i, j) with i < j.
    """
    n = len(frames)
    order = sorted(range(n), key=lambda i: (frames[i].get("time") or "", i))
    rank = {idx: r for r, idx in enumerate(order)}
    pairs: set[tuple[int, int]] = set()

    def add(a: int, b: int) -> None:
        if a != b:
            pairs.add((min(a, b), max(a, b)))

    have = [i for i in range(n) if frames[i].get("enu_m") is not None]
    if have:
        xyz = np.array([frames[i]["enu_m"] for i in have], dtype=np.float64)
        d = np.linalg.norm(xyz[:, None, :] - xyz[None, :, :], axis=-1)
        for a in range(len(have)):
            nearest = [b for b in np.argsort(d[a], kind="stable") if b != a][:k]
            for b in nearest:
                if d[a, b] <= radius_m:
                    add(have[a], have[int(b)])
    for i in range(n):
        w = order_neighbours if frames[i].get("enu_m") is not None else max(k // 2, order_neighbours)
        r = rank[i]
        for s in range(max(0, r - w), min(n, r + w + 1)):
            add(i, order[s])
    return sorted(pairs)


def image_pairs(
    frames: list[dict[str, Any]], rig: dict[str, Any] | None, pairs: list[tuple[int, int]]
) -> list[tuple[str, str]]:
    """Expand frame pairs to image-name pairs: every view of one frame with every view of the
    other (18 x 18 for two panoramas of the default rig); never two images of one frame."""
    names = [image_names(f, rig) for f in frames]
    return [(a, b) for i, j in pairs for a in names[i] for b in names[j]]


def _view_axes(rig: dict[str, Any]) -> np.ndarray:
    """Optical axes [V, 3] of the rig's views in the rig frame (x right, y down, z forward)."""
    return np.array([np.asarray(v["cam_from_rig"]["rotation_matrix"], float)[2]
                     for v in rig["views"]])


def _yaw(deg: float) -> np.ndarray:
    y = np.radians(deg)
    return np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])


def panorama_features(db_path: Path, frames: list[dict[str, Any]], rig: dict[str, Any],
                      max_features: int = 2000, max_lat_deg: float = 35.0
                      ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per panorama frame id: (longitudes [N] in degrees, descriptors [N, 128] float32) of its
    SIFT keypoints near the horizon (|latitude| < `max_lat_deg`), pooled from every view of the
    database and turned into the panorama's rig frame (longitude 0 = the panorama's centre
    column, growing to the right). The `max_features` of largest scale are kept."""
    import pycolmap

    views = {v["name"]: v for v in rig["views"]}
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    with pycolmap.Database.open(db_path) as db:
        by_name = {im.name: im for im in db.read_all_images()}
        for f in frames:
            if f["kind"] != "equirect":
                continue
            lons, descs, scales = [], [], []
            for name in image_names(f, rig):
                im = by_name.get(name)
                if im is None:
                    continue
                v = views[name.split("/")[0]]
                kp = np.asarray(db.read_keypoints(im.image_id), np.float64)
                if len(kp) == 0:
                    continue
                d = np.asarray(db.read_descriptors(im.image_id).data, np.float32)
                fx, fy, cx, cy = (float(x) for x in v["camera"]["params"][:4])
                rays = np.stack([(kp[:, 0] - cx) / fx, (kp[:, 1] - cy) / fy,
                                 np.ones(len(kp))], 1)
                rig_from_cam = np.asarray(v["cam_from_rig"]["rotation_matrix"], float).T
                rays = rays @ rig_from_cam.T
                rays /= np.linalg.norm(rays, axis=1, keepdims=True)
                lat = np.degrees(-np.arcsin(np.clip(rays[:, 1], -1, 1)))
                keep = np.abs(lat) < max_lat_deg
                lons.append(np.degrees(np.arctan2(rays[keep, 0], rays[keep, 2])))
                descs.append(d[keep])
                scales.append(np.hypot(kp[keep, 2], kp[keep, 3]) if kp.shape[1] >= 4
                              else np.ones(int(keep.sum())))
            if not lons:
                continue
            lon, desc, sc = np.concatenate(lons), np.concatenate(descs), np.concatenate(scales)
            top = np.argsort(-sc, kind="stable")[:max_features]
            out[f["id"]] = (lon[top], desc[top])
    return out


def relative_heading(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray],
                     min_votes: int = 15) -> float | None:
    """Heading of panorama b relative to panorama a, degrees: a point at longitude L in a is
    near longitude L + heading in b. From SIFT matches (Lowe's ratio test, 0.8) of their
    horizon features (:func:`panorama_features`), the mode of the longitude differences in 5 deg
    bins (distant points move little between two nearby panoramas; near ones spread around it).

    Returns:
        the heading, or None with fewer than `min_votes` matches in the mode's +-10 deg or a
        mode that holds under a fifth of the matches (no reliable estimate).
    """
    import cv2

    if len(a[1]) < 2 or len(b[1]) < 2:
        return None
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(a[1], b[1], k=2)
    pairs = [(m.queryIdx, m.trainIdx) for m, *n in knn if n and m.distance < 0.8 * n[0].distance]
    if len(pairs) < min_votes:
        return None
    ia, ib = np.array(pairs).T
    diff = np.mod(b[0][ib] - a[0][ia] + 180.0, 360.0) - 180.0
    hist, edges = np.histogram(diff, bins=72, range=(-180, 180))
    smooth = hist + np.roll(hist, 1) + np.roll(hist, -1)
    centre = float(edges[int(np.argmax(smooth))] + 2.5)
    near = np.abs(np.mod(diff - centre + 180.0, 360.0) - 180.0) <= 10.0
    if near.sum() < min_votes or near.mean() < 0.2:
        return None
    d = diff[near]
    return float(np.degrees(np.arctan2(np.sin(np.radians(d)).mean(),
                                       np.cos(np.radians(d)).mean())))


def overlapping_view_pairs(rig: dict[str, Any], heading_deg: float,
                           max_angle_deg: float) -> list[tuple[int, int]]:
    """Index pairs (view of panorama a, view of panorama b) whose optical axes are within
    `max_angle_deg` once b's heading relative to a (:func:`relative_heading`) is applied."""
    axes = _view_axes(rig)
    in_b = axes @ _yaw(heading_deg).T  # a's view axes, expressed in b's rig frame
    cos = np.clip(in_b @ axes.T, -1, 1)
    ia, ib = np.nonzero(cos >= np.cos(np.radians(max_angle_deg)))
    return list(zip(ia.tolist(), ib.tolist(), strict=True))


def image_pairs_by_overlap(
    frames: list[dict[str, Any]], rig: dict[str, Any] | None, pairs: list[tuple[int, int]],
    features: dict[str, tuple[np.ndarray, np.ndarray]], max_angle_deg: float,
) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Like :func:`image_pairs`, but two panoramas match only their views that can see the same
    things (:func:`overlapping_view_pairs`); every view pair when their relative heading cannot
    be estimated, and always for photos.

    Returns:
        (image-name pairs, {"estimated": frame pairs with a heading, "fallback": without,
        "headings": {"a b": degrees}}).
    """
    names = [image_names(f, rig) for f in frames]
    out: list[tuple[str, str]] = []
    info: dict[str, Any] = {"estimated": 0, "fallback": 0, "headings": {}}
    for i, j in pairs:
        fi, fj = frames[i], frames[j]
        heading = None
        if rig and fi["kind"] == fj["kind"] == "equirect" and fi["id"] in features \
                and fj["id"] in features:
            heading = relative_heading(features[fi["id"]], features[fj["id"]])
        if heading is None:
            if fi["kind"] == fj["kind"] == "equirect":
                info["fallback"] += 1
            out.extend((a, b) for a in names[i] for b in names[j])
            continue
        info["estimated"] += 1
        info["headings"][f"{fi['id']} {fj['id']}"] = round(heading, 1)
        out.extend((names[i][a], names[j][b])
                   for a, b in overlapping_view_pairs(rig, heading, max_angle_deg))
    return out, info


# ---------------------------------------------------------------------------------------------
# Helpers around pycolmap
# ---------------------------------------------------------------------------------------------
def _run_cancellable(events: Emitter, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """Run pycolmap call `fn` in a helper thread; on cancel hand it a CancellationToken.

    `fn` must accept ``cancellation_token`` when ``kw`` holds one (the caller passes it).
    Raises Cancelled when the user cancelled, and re-raises the call's exception.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn(*args, **kw)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    token = kw.get("cancellation_token")
    while t.is_alive():
        t.join(0.2)
        if events.cancelled() and token is not None and not _token_cancelled(token):
            token.cancel()
    if events.cancelled():
        raise Cancelled("stage sfm cancelled (the database is kept; run again to resume)")
    if "error" in box:
        raise box["error"]
    return box.get("result")


def _token_cancelled(token: Any) -> bool:
    """``CancellationToken.is_cancelled`` is a property in pycolmap 4.2 (a method in some
    builds): read it either way."""
    value = token.is_cancelled
    return bool(value() if callable(value) else value)


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _quiet_glog() -> None:
    import pycolmap

    try:
        pycolmap.logging.minloglevel = 2  # warnings and errors only
    except Exception:
        pass


def _rig_config(rig: dict[str, Any], ref: int):
    """pycolmap.RigConfig of the virtual rig, sensor `ref` as reference (its cam_from_rig is
    the identity, so the COLMAP rig frame is that view's camera frame)."""
    import pycolmap

    rots = [np.asarray(v["cam_from_rig"]["rotation_matrix"], dtype=np.float64) for v in rig["views"]]
    cams = []
    for i, v in enumerate(rig["views"]):
        c = v["camera"]
        camera = pycolmap.Camera.create_from_model_name(
            0, c["model"], float(c["params"][0]), int(c["width"]), int(c["height"])
        )
        camera.params = np.asarray(c["params"], dtype=np.float64)
        camera.has_prior_focal_length = True
        cam_from_ref = None
        if i != ref:
            cam_from_ref = pycolmap.Rigid3d(
                pycolmap.Rotation3d(rots[i] @ rots[ref].T), np.zeros((3, 1))
            )
        cams.append(
            pycolmap.RigConfigCamera(
                ref_sensor=i == ref,
                image_prefix=f"{v['name']}/",
                cam_from_rig=cam_from_ref,
                camera=camera,
            )
        )
    cams.insert(0, cams.pop(ref))  # COLMAP adds the reference sensor first
    return pycolmap.RigConfig(cameras=cams)


def reference_view(rig: dict[str, Any]) -> int:
    """Index of the rig's reference sensor: the view nearest the horizon straight ahead."""
    return int(np.argmin([abs(v["pitch_deg"]) * 10 + min(v["yaw_deg"], 360 - v["yaw_deg"])
                          for v in rig["views"]]))


# ---------------------------------------------------------------------------------------------
# Database healing (resume after a cancel, a crash or a kill)
# ---------------------------------------------------------------------------------------------
MAX_IMAGE_ID = 2147483647
"""COLMAP's ``kMaxNumImages``: ``pair_id = MAX_IMAGE_ID * min(id1, id2) + max(id1, id2)``."""


def _delete_images(con: Any, ids: list[int]) -> None:
    """Delete images `ids` and every row that refers to them (features, frames, priors,
    matches, two-view geometries) from an open COLMAP database connection."""
    if not ids:
        return
    q = ",".join("?" * len(ids))
    for table, col in (("keypoints", "image_id"), ("descriptors", "image_id"),
                       ("frame_data", "data_id"), ("pose_priors", "corr_data_id"),
                       ("images", "image_id")):
        con.execute(f"DELETE FROM {table} WHERE {col} IN ({q})", ids)
    for table in ("matches", "two_view_geometries"):
        con.execute(
            f"DELETE FROM {table} WHERE (pair_id / {MAX_IMAGE_ID}) IN ({q}) "
            f"OR (pair_id % {MAX_IMAGE_ID}) IN ({q})", ids + ids)


def heal_database(db_path: Path, expected: set[str], events: Emitter) -> dict[str, int]:
    """Make a COLMAP database left by an interrupted run fit to resume feature extraction.

    A feature extraction cut short (cancel, kill, crash) leaves images whose keypoints or
    descriptors are missing, and on resume COLMAP's per-folder camera mode starts a *second*
    camera for the folder it was in (measured: ``01/1.jpg`` on camera 2, ``01/2.jpg``..
    ``01/5.jpg`` on camera 4), after which ``apply_rig_config`` fails for good with
    "Inconsistent cameras for images with prefix". This function, run before and after
    extraction:

    1. checks the file with SQLite's ``quick_check``; a damaged database is deleted (every
       feature is then extracted again, and the log says so);
    2. deletes images that are not among `expected` names or lack keypoints or descriptors (or
       whose two counts differ), with their rows in every other table: extraction redoes them;
    3. merges cameras that are the same camera split by a resume: images of one top folder
       (a rig view, or ``photos``) whose cameras have identical model, size and parameters go
       to the lowest camera id, and cameras no image uses are deleted, with the rigs and frames
       (rebuilt by :func:`setup_database`).

    Returns:
        counts of what was repaired: {"reset": 0/1, "images_removed": n, "cameras_merged": n}.
    """
    import sqlite3

    report = {"reset": 0, "images_removed": 0, "cameras_merged": 0}
    if not db_path.exists():
        return report
    try:
        con = sqlite3.connect(db_path)
        try:
            ok = con.execute("PRAGMA quick_check").fetchone()[0] == "ok"
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
            ok = ok and {"images", "cameras", "keypoints", "descriptors"} <= tables
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        ok, why = False, str(e)
    else:
        why = "failed SQLite's integrity check"
    if not ok:
        events.warning(f"{db_path}: the database is damaged ({why}); it is deleted and every "
                       "feature is extracted again")
        for p in (db_path, db_path.with_name(db_path.name + "-wal"),
                  db_path.with_name(db_path.name + "-shm"), db_path.with_name(db_path.name + "-journal")):
            p.unlink(missing_ok=True)
        report["reset"] = 1
        return report
    con = sqlite3.connect(db_path)
    try:
        with con:
            rows = con.execute(
                "SELECT i.image_id, i.name, i.camera_id, k.rows, d.rows FROM images i "
                "LEFT JOIN keypoints k ON k.image_id = i.image_id "
                "LEFT JOIN descriptors d ON d.image_id = i.image_id").fetchall()
            bad = [r for r in rows if r[1] not in expected or r[3] is None or r[4] is None
                   or r[3] != r[4]]
            if bad:
                names = ", ".join(r[1] for r in bad[:5]) + (" ..." if len(bad) > 5 else "")
                events.log(f"database: {len(bad)} images unfinished or not in this capture "
                           f"({names}): their features are extracted again")
                _delete_images(con, [int(r[0]) for r in bad])
                report["images_removed"] = len(bad)
            cams = {int(c[0]): (c[1], c[2], c[3], bytes(c[4] or b"")) for c in
                    con.execute("SELECT camera_id, model, width, height, params FROM cameras")}
            groups: dict[tuple[Any, ...], set[int]] = {}
            bad_ids = {r[0] for r in bad}
            for image_id, name, camera_id, *_ in rows:
                if image_id in bad_ids or camera_id not in cams:
                    continue
                groups.setdefault((name.split("/")[0], cams[camera_id]), set()).add(camera_id)
            merged = 0
            for (folder, _), ids in groups.items():
                if len(ids) < 2:
                    continue
                keep = min(ids)
                others = sorted(ids - {keep})
                q = ",".join("?" * len(others))
                con.execute(
                    f"UPDATE images SET camera_id = ? WHERE camera_id IN ({q}) AND name LIKE ?",
                    [keep, *others, f"{folder}/%"])
                merged += len(others)
            if merged:
                events.log(f"database: {merged} cameras split by an interrupted extraction "
                           "merged back (one camera per view folder)")
            used = {r[0] for r in con.execute("SELECT DISTINCT camera_id FROM images")}
            orphans = [c for c in cams if c not in used]
            if orphans or merged or bad:
                q = ",".join("?" * len(orphans))
                if orphans:
                    con.execute(f"DELETE FROM cameras WHERE camera_id IN ({q})", orphans)
                # rigs and frames are rebuilt by setup_database (apply_rig_config)
                for table in ("frame_data", "frames", "rig_sensors", "rigs"):
                    if table in tables:
                        con.execute(f"DELETE FROM {table}")
            report["cameras_merged"] = merged
    finally:
        con.close()
    return report


# ---------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------
def sift_first_octave(width: int, height: int, config: SfmConfig,
                      native: int | None = None) -> int:
    """COLMAP SIFT ``first_octave`` for images of this size (pixels, before
    ``max_image_size``): -1 (upsample x2) below ``upsample_below`` on the longest side, else 0.
    An image that ``max_image_size`` shrinks is never upsampled: the cap is there to cut the
    cost, and upsampling the shrunk image would bring it back (a 1440 px view capped at 1024
    would be searched at 2048). Nor is a view of SfM's own rig rendered smaller than the
    panorama supports (`native`, pixels: ``sfm_rig.json``'s ``native_size``), for the same
    reason (measured on a 5760 px GoPro MAX panorama: the 6 cube faces at 1024 px take 1.2 s of
    SIFT as they are, 5.5 s upsampled)."""
    side = max(width, height)
    if 0 < config.max_image_size < side:
        return 0
    if native is not None and side < native:
        return 0
    return -1 if side < config.upsample_below else 0


def extract(
    db_path: Path,
    images: Path,
    masks: Path | None,
    frames: list[dict[str, Any]],
    rig: dict[str, Any] | None,
    config: SfmConfig,
    events: Emitter,
) -> None:
    """SIFT features of every image into the database (images that have them are skipped).

    Views: one PINHOLE camera per view folder with the rig's intrinsics, masks applied.
    Photos: one camera per distinct EXIF intrinsics (SIMPLE_RADIAL, refined later).
    """
    import pycolmap

    ext = pycolmap.FeatureExtractionOptions()
    ext.max_image_size = config.max_image_size if config.max_image_size > 0 else -1
    ext.sift.max_num_features = config.max_num_features
    ext.sift.peak_threshold = config.peak_threshold
    # -1 ran one extraction thread here (pycolmap 4.2 CPU SIFT): ask for every core.
    ext.num_threads = config.num_threads if config.num_threads > 0 else (os.cpu_count() or 1)
    dev = sift_device(config)
    ext.use_gpu = dev == "cuda"

    for names, c, mode, mask_path, upright in _camera_groups(frames, rig, masks):
        # One extract_features call for images sharing camera `c` (model, params, size).
        events.check_cancelled()
        ext.sift.first_octave = sift_first_octave(
            int(c["width"]), int(c["height"]), config,
            (rig or {}).get("native_size") if upright else None)
        ext.sift.upright = config.upright and upright
        _run_cancellable(
            events,
            pycolmap.extract_features,
            db_path,
            images,
            image_names=names,
            camera_mode=mode,
            reader_options=_reader_options(c, mask_path),
            extraction_options=ext,
            device=pycolmap.Device.cuda if dev == "cuda" else pycolmap.Device.cpu,
            cancellation_token=pycolmap.CancellationToken(),
        )


def _reader_options(camera: dict[str, Any], mask_path: Path | None) -> Any:
    """COLMAP image reader options for images of `camera` (model, params), with masks."""
    import pycolmap

    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = camera["model"]
    reader.camera_params = ",".join(repr(float(p)) for p in camera["params"])
    if mask_path is not None:
        reader.mask_path = str(mask_path)
    return reader


def _camera_groups(frames: list[dict[str, Any]], rig: dict[str, Any] | None, masks: Path | None
                   ) -> list[tuple[list[str], dict[str, Any], Any, Path | None, bool]]:
    """The images of `frames` grouped as COLMAP creates their cameras: the rig's views one
    camera per view folder (``PER_FOLDER``, masks, upright SIFT allowed), photos one camera per
    distinct intrinsics (``SINGLE``). Returns ``(names, camera, mode, mask root, upright)``."""
    import pycolmap

    out: list[tuple[list[str], dict[str, Any], Any, Path | None, bool]] = []
    pano_names = [n for f in frames if f["kind"] == "equirect" for n in image_names(f, rig)]
    if pano_names:
        assert rig is not None
        out.append((pano_names, rig["views"][0]["camera"], pycolmap.CameraMode.PER_FOLDER, masks,
                    True))
    groups: dict[str, list[str]] = {}
    cams: dict[str, dict[str, Any]] = {}
    for f in frames:
        if f["kind"] != "equirect":
            key = _hash(f["camera"])
            groups.setdefault(key, []).extend(image_names(f, rig))
            cams[key] = f["camera"]
    out.extend((names, cams[k], pycolmap.CameraMode.SINGLE, None, False)
               for k, names in groups.items())
    return out


def sift_item(spec: dict[str, Any], in_dir: Path, out_dir: Path, events: Emitter) -> None:
    """Farm item (:mod:`splatstudio.farm`): SIFT of a chunk of frames, exactly as
    :func:`extract` computes it locally, into a database of the chunk's own.

    Args:
        spec: ``{"frames": [...], "rig": rig or None, "config": SfmConfig as a dict,
            "masks": bool}``.
        in_dir: the chunk's ``sfm/images/...`` (and ``sfm/masks/...``) at their project paths.
        out_dir: gets ``kp/<image name>.npy`` (float32 ``[N, 6]`` COLMAP keypoints) and
            ``desc/<image name>.npy`` (uint8 ``[N, 128]`` SIFT descriptors) per image.
    """
    import pycolmap

    from ..config import update_config

    config = update_config(SfmConfig(), spec["config"])
    masks = in_dir / "sfm" / "masks" if spec["masks"] else None
    db_path = out_dir.parent / "chunk.db"
    extract(db_path, in_dir / "sfm" / "images", masks, spec["frames"], spec["rig"], config, events)
    with pycolmap.Database.open(db_path) as db:
        for image in db.read_all_images():
            for kind, arr in (("kp", db.read_keypoints(image.image_id)),
                              ("desc", db.read_descriptors(image.image_id).data)):
                dst = out_dir / kind / f"{image.name}.npy"
                dst.parent.mkdir(parents=True, exist_ok=True)
                np.save(dst, np.ascontiguousarray(arr))


def farm_features(project: Project, db_path: Path, images: Path, masks: Path | None,
                  frames: list[dict[str, Any]], rig: dict[str, Any] | None, config: SfmConfig,
                  events: Emitter) -> None:
    """With a farm (``splatstudio run --farm``, :func:`splatstudio.farm.host.farm_from_env`):
    :func:`farm_extract`; without one nothing."""
    _on_farm(project, events, "SIFT", (0.02, 0.08), lambda d: farm_extract(
        db_path, images, masks, frames, rig, config, d, project.root, config.farm_chunk_images))


def farm_matches(project: Project, db_path: Path, pairs: list[tuple[str, str]],
                 config: SfmConfig, rig_verification: bool, events: Emitter) -> None:
    """With a farm: :func:`farm_match`; without one nothing."""
    _on_farm(project, events, "matching", (0.1, 0.5), lambda d: farm_match(
        db_path, pairs, config, rig_verification, d, project.root, config.farm_chunk_pairs))


def _on_farm(project: Project, events: Emitter, what: str, span: tuple[float, float],
             work: Callable[[Any], dict[str, int]]) -> None:
    from ..farm.host import farm_from_env

    farm = farm_from_env()
    if farm is None:
        return
    from ..farm.dispatch import Dispatcher
    from ..farm.host import check_versions, connect

    t0 = time.monotonic()
    client = connect(*farm)
    try:
        check_versions(client)
        kind = what.split()[0].lower()
        got = work(Dispatcher(client, project.root, events, progress_span=span,
                              record=project.stage_dir("sfm") / "farm" / f"{kind}.items.json"))
        workers = len(client.scheduler_info()["workers"])
    finally:
        client.close()
    events.metric(f"farm_{kind}_items", got["items"])
    events.log(f"farm: {what} in {got['items']} items on {workers} workers "
               f"({time.monotonic() - t0:.1f} s)")


def _item_config(config: SfmConfig) -> dict[str, Any]:
    """`config` for a farm item: the peer uses all its cores unless a thread count was set,
    and the device this machine resolved (a peer never picks another: GPU and CPU SIFT give
    different features)."""
    import dataclasses

    from ..config import config_to_dict

    return config_to_dict(dataclasses.replace(config, num_threads=max(0, config.num_threads),
                                              sift_device=sift_device(config)))


def _item_resources(config: SfmConfig) -> dict[str, float]:
    """dask resources of a SIFT or matching item: a machine slot, and a GPU slot when SIFT runs
    on CUDA."""
    return {"MACHINE": 1, **({"GPU": 1} if sift_device(config) == "cuda" else {})}


def sift_device(config: SfmConfig) -> str:
    """``"cuda"`` or ``"cpu"``: where SIFT extraction and matching run for
    ``config.sift_device`` (auto: CUDA when the installed pycolmap was built with it,
    ``pycolmap.has_cuda``).

    Raises:
        StageError: cuda asked for and this pycolmap has no CUDA.
    """
    import pycolmap

    has = bool(getattr(pycolmap, "has_cuda", False))
    if config.sift_device == "cuda" and not has:
        raise StageError("sfm: sfm.sift_device=cuda was asked for, but the installed pycolmap "
                         "has no CUDA (the PyPI wheels are CPU-only; build pycolmap with CUDA, "
                         "or use sfm.sift_device=auto or cpu)")
    want = config.sift_device
    return "cuda" if want == "cuda" or (want == "auto" and has) else "cpu"


def farm_extract(db_path: Path, images: Path, masks: Path | None, frames: list[dict[str, Any]],
                 rig: dict[str, Any] | None, config: SfmConfig, dispatcher: Any,
                 project_root: Path, chunk_images: int) -> dict[str, int]:
    """SIFT of the images that have no features yet, on the farm (FARM.md section 3.1).

    Every image is first registered in the database in one ``import_images`` call per camera
    group (so the cameras are exactly those :func:`extract` would create; never
    ``Database.merge``, which renumbers cameras); the chunks (whole frames, about
    `chunk_images` images each) run :func:`sift_item` on the workers, and their keypoints and
    descriptors are written under each image's id as they arrive. :func:`extract` afterwards
    fills any gap (it skips images that have features).

    Returns:
        ``{"items", "images"}``: chunks run and images whose features came from the farm.

    Raises:
        as :meth:`splatstudio.farm.dispatch.Dispatcher.run`.
    """
    import pycolmap

    from ..farm.items import WorkItem, sha256_file

    with pycolmap.Database.open(db_path):  # creates it
        pass
    for names, c, mode, mask_path, _ in _camera_groups(frames, rig, masks):
        pycolmap.import_images(db_path, images, camera_mode=mode, image_names=names,
                               options=_reader_options(c, mask_path))
    with pycolmap.Database.open(db_path) as db:
        ids = {im.name: im.image_id for im in db.read_all_images()}
        todo = [f for f in frames if any(not db.exists_keypoints(ids[n])
                                         for n in image_names(f, rig))]
    chunks: list[list[dict[str, Any]]] = []
    for f in todo:
        if not chunks or sum(len(g["images"]) for g in chunks[-1]) >= chunk_images:
            chunks.append([])
        chunks[-1].append(f)
    spec_cfg = _item_config(config)
    items = []
    for i, group in enumerate(chunks):
        inputs: dict[str, str] = {}
        for f in group:
            for n in image_names(f, rig):
                paths = [images / n] + ([masks / f"{n}.png"] if f["kind"] == "equirect" and masks
                                        else [])
                for p in paths:
                    inputs[p.relative_to(project_root).as_posix()] = sha256_file(p)
        items.append(WorkItem(kind="sift", item_id=f"sift-{i:03d}",
                              spec={"frames": group, "rig": rig, "config": spec_cfg,
                                    "masks": masks is not None},
                              inputs=inputs, resources=_item_resources(config),
                              cost=float(sum(len(g["images"]) for g in group))))  # fmt: skip
    written = 0

    def store(item: WorkItem, files: dict[str, bytes]) -> None:
        import io

        nonlocal written
        with pycolmap.Database.open(db_path) as db:
            for f in item.spec["frames"]:
                for n in image_names(f, rig):
                    kp = np.load(io.BytesIO(files[f"kp/{n}.npy"]))
                    desc = np.load(io.BytesIO(files[f"desc/{n}.npy"]))
                    db.write_keypoints(ids[n], kp)
                    db.write_descriptors(ids[n], pycolmap.FeatureDescriptors(
                        pycolmap.FeatureExtractorType.SIFT, desc))
                    written += 1

    dispatcher.run(items, store)
    return {"items": len(items), "images": written}


def setup_database(
    db_path: Path, frames: list[dict[str, Any]], rig: dict[str, Any] | None, gps_priors: bool
) -> dict[str, Any]:
    """Apply the rig config (panoramas become frames of the view rig) and write one GPS pose
    prior per frame (ENU metres, CARTESIAN, on the frame's reference image).

    Returns:
        {"images": number of images, "keypoints": per image name its keypoint count}.
    """
    import pycolmap

    with pycolmap.Database.open(db_path) as db:
        if rig:
            ref = reference_view(rig)
            pycolmap.apply_rig_config([_rig_config(rig, ref)], db)
        db.clear_pose_priors()
        by_name = {im.name: im for im in db.read_all_images()}
        if gps_priors:
            ref_name = rig["views"][reference_view(rig)]["name"] if rig else None
            for f in frames:
                if f.get("enu_m") is None:
                    continue
                names = image_names(f, rig)
                name = f"{ref_name}/{f['id']}.jpg" if f["kind"] == "equirect" else names[0]
                im = by_name.get(name)
                if im is None:
                    continue
                prior = pycolmap.PosePrior()
                prior.corr_data_id = im.data_id
                prior.position = np.asarray(f["enu_m"], dtype=np.float64)
                prior.position_covariance = np.eye(3) * 4.0  # 2 m standard deviation
                prior.coordinate_system = pycolmap.PosePriorCoordinateSystem.CARTESIAN
                db.write_pose_prior(prior)
        kp = {name: db.num_keypoints_for_image(im.image_id) for name, im in by_name.items()}
    return {"images": len(by_name), "keypoints": kp}


def match(db_path: Path, pairs_path: Path, config: SfmConfig, rig_verification: bool,
          events: Emitter) -> None:
    """Match the imported pairs and verify them geometrically (rig-aware for panoramas)."""
    import pycolmap

    mo = pycolmap.FeatureMatchingOptions()
    mo.num_threads = config.num_threads
    dev = sift_device(config)
    mo.use_gpu = dev == "cuda"
    mo.rig_verification = rig_verification
    mo.skip_image_pairs_in_same_frame = True
    po = pycolmap.ImportedPairingOptions()
    po.match_list_path = str(pairs_path)
    vo = pycolmap.TwoViewGeometryOptions()
    vo.min_num_inliers = config.min_num_inliers
    vo.ransac.random_seed = config.seed
    _run_cancellable(
        events,
        pycolmap.match_image_pairs,
        db_path,
        matching_options=mo,
        pairing_options=po,
        verification_options=vo,
        device=pycolmap.Device.cuda if dev == "cuda" else pycolmap.Device.cpu,
        cancellation_token=pycolmap.CancellationToken(),
    )


MATCH_TABLES = ("matches", "two_view_geometries")


def match_item(spec: dict[str, Any], in_dir: Path, out_dir: Path, events: Emitter) -> None:
    """Farm item: :func:`match` on a chunk's database (the chunk's images with their keypoints
    and descriptors, every camera and rig, the frames of those images, ids as in the project's
    database) and its pairs file; returns ``matches.db``, the same database holding only the
    matches and two-view geometries.

    Args:
        spec: ``{"db": project path of the chunk database, "pairs": of its pairs file,
            "config": SfmConfig as a dict, "rig_verification": bool}``.
    """
    import sqlite3

    from ..config import update_config

    config = update_config(SfmConfig(), spec["config"])
    db_path = out_dir / "matches.db"
    shutil.copyfile(in_dir / spec["db"], db_path)
    match(db_path, in_dir / spec["pairs"], config, bool(spec["rig_verification"]), events)
    con = sqlite3.connect(db_path)
    try:
        for table in ("keypoints", "descriptors", "images", "frames", "frame_data"):
            con.execute(f"DELETE FROM {table}")
        con.commit()
        con.execute("VACUUM")
    finally:
        con.close()


def _chunk_database(src: Path, dst: Path, names: set[str]) -> None:
    """A database at `dst` with `src`'s cameras and rigs, and of its images only `names` (ids,
    keypoints, descriptors kept) with their frames."""
    import pycolmap

    dst.unlink(missing_ok=True)
    with pycolmap.Database.open(src) as s, pycolmap.Database.open(dst) as d:
        for cam in s.read_all_cameras():
            d.write_camera(cam, use_camera_id=True)
        for rig in s.read_all_rigs():
            d.write_rig(rig, use_rig_id=True)
        chunk = [im for im in s.read_all_images() if im.name in names]
        ids = {im.image_id for im in chunk}
        for fr in s.read_all_frames():
            if {int(d.id) for d in fr.image_ids} <= ids:
                d.write_frame(fr, use_frame_id=True)
        for im in chunk:
            d.write_image(im, use_image_id=True)
            d.write_keypoints(im.image_id, s.read_keypoints(im.image_id))
            d.write_descriptors(im.image_id, s.read_descriptors(im.image_id))


def _merge_matches(db_path: Path, part: Path) -> int:
    """Copy the matches and two-view geometries of `part` (same image ids) into `db_path`;
    returns the pairs copied.

    Raises:
        StageError: the two databases' tables differ (another COLMAP version on the peer).
    """
    import sqlite3

    con = sqlite3.connect(db_path)
    try:
        con.execute("ATTACH DATABASE ? AS part", (str(part),))
        for t in MATCH_TABLES:
            mine = con.execute(f"PRAGMA main.table_info({t})").fetchall()
            theirs = con.execute(f"PRAGMA part.table_info({t})").fetchall()
            if mine != theirs:
                raise StageError(f"sfm: a farm peer's {t} table differs from this machine's "
                                 "(another COLMAP version?); run without --farm")
        n = con.execute("SELECT COUNT(*) FROM part.two_view_geometries").fetchone()[0]
        for t in MATCH_TABLES:
            con.execute(f"INSERT OR REPLACE INTO main.{t} SELECT * FROM part.{t}")
        con.commit()
        con.execute("DETACH DATABASE part")
    finally:
        con.close()
    return int(n)


def farm_match(db_path: Path, pairs: list[tuple[str, str]], config: SfmConfig,
               rig_verification: bool, dispatcher: Any, project_root: Path,
               chunk_pairs: int) -> dict[str, int]:
    """Matching and geometric verification of `pairs` on the farm (FARM.md section 3.2).

    The pairs are cut into chunks of about `chunk_pairs`, never splitting the pairs of one
    frame pair and in capture order (so an image is in few chunks); each chunk gets a database
    with its images' features and the project's ids (:func:`_chunk_database`, written under
    ``sfm/farm/``), the workers run :func:`match_item`, and the returned matches and two-view
    geometries are copied into the project's database under the same pair ids. :func:`match`
    afterwards matches any pair left (COLMAP skips pairs already matched).

    Returns:
        ``{"items", "pairs"}``: chunks run and verified-or-not pairs written.
    """
    from ..farm.items import WorkItem, sha256_file

    groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for a, b in pairs:
        groups.setdefault((frame_of_image(a), frame_of_image(b)), []).append((a, b))
    chunks: list[list[tuple[str, str]]] = []
    for group in groups.values():
        if not chunks or len(chunks[-1]) >= chunk_pairs:
            chunks.append([])
        chunks[-1].extend(group)
    work = project_root / "sfm" / "farm"
    work.mkdir(parents=True, exist_ok=True)
    spec_cfg = _item_config(config)
    items = []
    for i, chunk in enumerate(chunks):
        db = work / f"match-{i:03d}.db"
        txt = work / f"match-{i:03d}.txt"
        _chunk_database(db_path, db, {n for p in chunk for n in p})
        txt.write_text("".join(f"{a} {b}\n" for a, b in chunk))
        rel = {k: p.relative_to(project_root).as_posix() for k, p in (("db", db), ("pairs", txt))}
        items.append(WorkItem(kind="match", item_id=f"match-{i:03d}",
                              spec={**rel, "config": spec_cfg, "rig_verification": rig_verification},
                              inputs={r: sha256_file(project_root / r) for r in rel.values()},
                              resources=_item_resources(config), cost=float(len(chunk))))
    written = 0

    def store(item: WorkItem, files: dict[str, bytes]) -> None:
        nonlocal written
        part = work / f"{item.item_id}.result.db"
        part.write_bytes(files["matches.db"])
        try:
            written += _merge_matches(db_path, part)
        finally:
            part.unlink(missing_ok=True)
            for k in ("db", "pairs"):
                (project_root / item.spec[k]).unlink(missing_ok=True)

    dispatcher.run(items, store)
    return {"items": len(items), "pairs": written}


def mapper_for(mapper: Mapper, has_panos: bool) -> Mapper:
    """The mapper that runs: `mapper`, or global for ``auto`` (see
    :class:`splatstudio.config.Mapper` for the measurements behind that choice)."""
    if mapper != Mapper.AUTO:
        return Mapper(mapper)
    return Mapper.GLOBAL


def map_model(
    db_path: Path,
    images: Path,
    out_dir: Path,
    config: SfmConfig,
    has_panos: bool,
    has_photos: bool,
    n_images: int,
    events: Emitter,
) -> dict[int, Any]:
    """Run the mapper; returns {index: pycolmap.Reconstruction} (possibly several models).

    Rig views keep their intrinsics and rig rotations; photo intrinsics are refined.
    """
    import pycolmap

    out_dir.mkdir(parents=True, exist_ok=True)
    refine_intrinsics = has_photos
    if mapper_for(config.mapper, has_panos) == Mapper.INCREMENTAL:
        o = pycolmap.IncrementalPipelineOptions()
        o.num_threads = config.num_threads
        o.random_seed = config.seed
        o.ba_refine_sensor_from_rig = False
        o.ba_refine_focal_length = refine_intrinsics
        o.ba_refine_extra_params = refine_intrinsics
        o.ba_refine_principal_point = False
        o.min_num_matches = config.min_num_inliers
        o.min_model_size = 3
        o.use_prior_position = config.gps_priors
        o.use_robust_loss_on_prior_position = True
        # Short baselines (a walk: 1-3 m between panoramas, scene at 5-30 m) and few features
        # per small view: the defaults (16 deg, 100 inliers) never find an initial pair.
        o.mapper.init_min_tri_angle = 4.0
        o.mapper.init_min_num_inliers = 50
        o.mapper.abs_pose_min_num_inliers = 15
        o.mapper.max_reg_trials = 10
        # Each panorama direction has its features in one view only (ownership masks), so a
        # point seen by two panoramas is a two-view track: keep those.
        o.triangulation.ignore_two_view_tracks = False
        if has_panos and has_photos:
            with pycolmap.Database.open(db_path) as db:
                rig_cams = {
                    im.camera_id for im in db.read_all_images() if not im.name.startswith("photos/")
                }
            o.constant_cameras = rig_cams
        registered = [0]

        def on_image() -> None:
            registered[0] += 1
            events.progress(
                0.55 + 0.4 * min(1.0, registered[0] / max(1, n_images)),
                f"mapping: {registered[0]} registrations",
            )

        return _run_cancellable(
            events,
            pycolmap.incremental_mapping,
            db_path,
            images,
            out_dir,
            o,
            next_image_callback=on_image,
            cancellation_token=pycolmap.CancellationToken(),
        )
    o = pycolmap.GlobalPipelineOptions()
    o.num_threads = config.num_threads
    o.random_seed = config.seed
    o.min_num_matches = config.min_num_inliers
    o.min_model_size = 3
    o.mapper.num_threads = config.num_threads
    o.mapper.random_seed = config.seed
    o.mapper.refine_sensor_from_rig = False
    o.mapper.rotation_averaging.refine_sensor_from_rig = False
    o.mapper.global_positioning.refine_sensor_from_rig = False
    o.mapper.global_positioning.use_gpu = False
    o.mapper.bundle_adjustment.refine_sensor_from_rig = False
    o.mapper.bundle_adjustment.refine_focal_length = refine_intrinsics
    o.mapper.bundle_adjustment.refine_extra_params = refine_intrinsics
    o.mapper.bundle_adjustment.refine_principal_point = False
    o.mapper.bundle_adjustment.ceres.use_gpu = False
    o.mapper.retriangulation.ignore_two_view_tracks = False
    # GLOMAP's minimum of 3 views per track stays: with two-view tracks in bundle adjustment the
    # 2048 walk gave more points (868 vs 689) and a lower GPS RMS (0.83 vs 0.94 m) but steps
    # that change with small differences of the matches (the last one 1.48 or 1.96 m); with
    # them in global positioning too, panoramas 1 and 2 collapsed onto one spot.
    return _run_cancellable(events, pycolmap.global_mapping, db_path, images, out_dir, o)


def refine_with_pose_priors(
    rec: Any, db_path: Path, refine_intrinsics: bool, prior_std_m: float = 2.0
) -> dict[str, Any]:
    """Bundle adjustment of `rec` (in place) with the GPS pose priors of the database.

    The global mapper takes no priors, so after it the model is aligned to the priors and
    refined with them (COLMAP's ``PosePriorBundleAdjuster``: a robust Sim3 to the prior
    positions, then reprojection errors plus a Cauchy-robust position term per prior with
    standard deviation `prior_std_m`, metres). Afterwards the model is in the priors' frame
    (ENU metres), but positions alone leave it free to roll about a nearly straight walk
    (measured: the up axis turned 90 deg on the geovisio walk), so georef levels it again with
    the cameras' up axis. Rig geometry (sensor_from_rig) and rig intrinsics stay fixed; photo
    intrinsics are refined when `refine_intrinsics`.

    Returns:
        {"priors": number used, "termination": Ceres termination type}; {"priors": n} without
        refinement when fewer than 3 registered frames have a prior.
    """
    import pycolmap

    with pycolmap.Database.open(db_path) as db:
        priors = db.read_all_pose_priors()
    registered = {im.data_id for im in rec.images.values() if im.has_pose}
    priors = [p for p in priors if p.corr_data_id in registered]
    if len(priors) < 3:
        return {"priors": len(priors)}
    for p in priors:
        p.position_covariance = np.eye(3) * prior_std_m**2
    opts = pycolmap.BundleAdjustmentOptions()
    opts.refine_sensor_from_rig = False
    opts.refine_focal_length = refine_intrinsics
    opts.refine_extra_params = refine_intrinsics
    opts.refine_principal_point = False
    opts.ceres.solver_options.max_num_iterations = 200
    cfg = pycolmap.BundleAdjustmentConfig()
    for im in rec.images.values():
        if im.has_pose:
            cfg.add_image(im.image_id)
    po = pycolmap.PosePriorBundleAdjustmentOptions()
    po.alignment_ransac.max_error = 3.0 * prior_std_m
    po.ceres.prior_position_loss_function_type = pycolmap.LossFunctionType.CAUCHY
    summary = pycolmap.create_pose_prior_bundle_adjuster(opts, po, cfg, priors, rec).solve()
    return {"priors": len(priors), "termination": str(summary.termination_type).split(".")[-1]}


def complete_tracks(rec: Any, db_path: Path, images: Path, work: Path) -> Any:
    """`rec` with more 3D points: every verified match triangulated again with the poses held
    fixed (``pycolmap.triangulate_points``, COLMAP's point triangulator), two-view tracks
    included. GLOMAP keeps only tracks of 3+ views, but with ownership masks a point seen from
    two panoramas is a two-view track; on the 2048 walk this took 689 points to 887 in 0.6 s
    (those seed the Gaussians of training). Intrinsics stay as they are (the triangulator's
    ``refine_intrinsics`` is left False). Returns the new pycolmap.Reconstruction."""
    import pycolmap

    o = pycolmap.IncrementalPipelineOptions()
    o.triangulation.ignore_two_view_tracks = False
    o.ba_refine_sensor_from_rig = False
    work.mkdir(parents=True, exist_ok=True)
    return pycolmap.triangulate_points(rec, db_path, images, work, clear_points=False, options=o)


def build_model(mapper: Mapper, config: SfmConfig, db_path: Path, images: Path, work: Path,
                has_panos: bool, has_photos: bool, n_images: int, verified: int, n_frames: int,
                timings: dict[str, float], events: Emitter, label: str = ""
                ) -> tuple[dict[int, Any], int, Any]:
    """Map with `mapper` (a copy of `config` with that mapper), then for the global mapper the
    GPS pose-prior bundle adjustment and the two-view tracks. Seconds go into `timings` as
    ``mapping<label>`` etc.

    Returns:
        (models with registered images by index, index of the largest, that model).

    Raises:
        StageError: no model at all.
    """
    import dataclasses

    t0 = time.monotonic()
    events.progress(0.55, f"{mapper} mapping")
    cfg = dataclasses.replace(config, mapper=mapper)
    recs = map_model(db_path, images, work, cfg, has_panos, has_photos, n_images, events)
    timings[f"mapping{label}"] = time.monotonic() - t0
    recs = {k: r for k, r in (recs or {}).items() if r.num_reg_images() > 0}
    if not recs:
        shutil.rmtree(work, ignore_errors=True)
        raise StageError(
            f"sfm: no model could be built from {n_frames} frames ({verified} verified image "
            "pairs); check the images overlap, try more features (sfm.max_num_features) or more "
            "neighbours (sfm.neighbours), or the other mapper (sfm.mapper)"
        )
    best = max(recs, key=lambda k: (recs[k].num_reg_images(), recs[k].num_points3D()))
    rec = recs[best]
    if mapper == Mapper.GLOBAL and config.gps_priors:
        t1 = time.monotonic()
        events.progress(0.95, "bundle adjustment with the GPS pose priors")
        ba = _run_cancellable(events, refine_with_pose_priors, rec, db_path, has_photos)
        timings[f"prior_ba{label}"] = time.monotonic() - t1
        if "termination" in ba:
            events.log(f"GPS pose-prior bundle adjustment: {ba['priors']} priors, "
                       f"{ba['termination'].lower()} ({timings[f'prior_ba{label}']:.1f} s)")
        else:
            events.log(f"GPS pose priors: {ba['priors']} on registered frames, fewer than 3; "
                       "the model keeps the mapper's frame")
    if mapper == Mapper.GLOBAL:
        t1 = time.monotonic()
        events.progress(0.97, "triangulating two-view tracks")
        n0 = rec.num_points3D()
        rec = _run_cancellable(events, complete_tracks, rec, db_path, images, work / "tri")
        timings[f"triangulation{label}"] = time.monotonic() - t1
        events.log(f"two-view tracks: {n0} -> {rec.num_points3D()} points, poses unchanged "
                   f"({timings[f'triangulation{label}']:.1f} s)")
    return recs, best, rec


def gps_verdict(rec: Any, frames: list[dict[str, Any]], rig: dict[str, Any] | None,
                georef: Any) -> dict[str, Any] | None:
    """The georef stage's GPS check (:func:`splatstudio.pipeline.georef.gps_check`) on model
    `rec`, aligned as georef aligns it; None with fewer than 3 registered frames with GPS.

    Returns:
        {"verdict", "reason", "fraction"} of the check.
    """
    from .georef import align_gravity, gps_check  # georef imports this module

    centres = frame_centres(rec, rig)
    ids = [f["id"] for f in frames if f["id"] in centres and f.get("enu_m") is not None]
    if len(ids) < 3:
        return None
    by_id = {f["id"]: f for f in frames}
    src = np.array([centres[i]["centre"] for i in ids])
    dst = np.array([by_id[i]["enu_m"] for i in ids], dtype=np.float64)
    try:
        _, s, r, t, _ = align_gravity(centres, ids, src, dst, float(georef.max_error_m))
    except StageError:  # GPS positions coincide: georef says so
        return None
    c = gps_check(s * src @ r.T + t, dst, georef)
    return {"verdict": c["verdict"], "reason": c["reason"], "fraction": c["fraction"]}


# ---------------------------------------------------------------------------------------------
# Analysis of a model
# ---------------------------------------------------------------------------------------------
def frame_of_image(name: str) -> str:
    """Frame id of a COLMAP image name of this stage (``<view>/<id>.jpg`` or
    ``photos/<id>.<ext>``)."""
    return Path(name).stem


def model_frames(rec: Any) -> dict[str, int]:
    """Per frame id, the number of registered images of `rec` (a pycolmap.Reconstruction)."""
    out: dict[str, int] = {}
    for im in rec.images.values():
        if im.has_pose:
            fid = frame_of_image(im.name)
            out[fid] = out.get(fid, 0) + 1
    return out


def frame_centres(rec: Any, rig: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Per registered frame id: its centre [3] and ``pano_from_world`` / ``cam_from_world``
    rotation [3, 3] in the model's world frame.

    For a panorama the rotation is the panorama (rig.json rig frame, OpenCV axes) from world,
    ``cam_from_rig_v^T @ cam_from_world`` of any registered view v; for a photo, its camera's.
    """
    rots = {}
    if rig:
        rots = {v["name"]: np.asarray(v["cam_from_rig"]["rotation_matrix"]) for v in rig["views"]}
    out: dict[str, dict[str, Any]] = {}
    for im in sorted(rec.images.values(), key=lambda im: im.name):
        if not im.has_pose:
            continue
        fid = frame_of_image(im.name)
        if fid in out:
            continue
        cfw = im.cam_from_world()
        r = np.asarray(cfw.rotation.matrix())
        prefix = im.name.split("/")[0]
        if prefix != PHOTO_DIR and prefix in rots:
            r = rots[prefix].T @ r
        out[fid] = {"centre": np.asarray(im.projection_center(), dtype=np.float64), "R": r,
                    "kind": "photo" if prefix == PHOTO_DIR else "pano"}
    return out


# ---------------------------------------------------------------------------------------------
# SfM's own rig -> the training rig
# ---------------------------------------------------------------------------------------------
def expand_to_rig(rec: Any, sfm_rig: dict[str, Any], rig: dict[str, Any]) -> Any:
    """The model `rec`, mapped on SfM's own rig (``reproject/sfm_rig.json``), with the
    training rig's views (``reproject/rig.json``) in place of SfM's: a new
    ``pycolmap.Reconstruction``.

    Poses: every registered panorama frame keeps its pose. Its ``pano_from_world`` rotation and
    centre come from any of its SfM views (:func:`frame_centres`); training view v gets
    ``cam_from_world = cam_from_rig_v * pano_from_world`` (COLMAP rigs:
    ``cam_from_world = sensor_from_rig * rig_from_world``, the rig frame being the reference
    view's camera, :func:`reference_view`, with ``sensor_from_rig = cam_from_rig_v
    cam_from_rig_ref^T``). The views share the panorama's centre, so every relative pose of
    two training views of one frame is exactly the rig's. Cameras: one PINHOLE per training
    view with rig.json's intrinsics (pixels).

    Points: every 3D point keeps its position (world frame of `rec`), colour and error. Its
    observations by SfM views become observations by training views: for each panorama that
    saw it, the training view that owns the point's direction (nearest optical axis, as the
    ownership masks give SIFT) at the point's projection (pixels), when it falls inside that
    view; so a point reprojects exactly onto its observations (no detection error in them).
    A point of a panorama direction no training view covers (the 18-view rig leaves the
    poles' 10 deg caps out) loses that observation, and a point with none left is dropped.
    Photos (mixed captures) are copied as they are: camera, pose, keypoints, observations.

    Raises:
        StageError: `rec` has an image of a view that `sfm_rig` does not name.
    """
    import pycolmap

    sviews = {v["name"] for v in sfm_rig["views"]}
    for im in rec.images.values():
        head = im.name.split("/")[0]
        if head != PHOTO_DIR and head not in sviews:
            raise StageError(f"sfm: image {im.name} of the SfM model is not a view of "
                             "reproject/sfm_rig.json; run reproject and sfm again")
    centres = frame_centres(rec, sfm_rig)
    panos = sorted((fid for fid, c in centres.items() if c["kind"] == "pano"),
                   key=lambda f: (len(f), f))
    views = rig["views"]
    rots = np.array([np.asarray(v["cam_from_rig"]["rotation_matrix"], np.float64)
                     for v in views])
    axes = rots[:, 2, :]  # optical axes in the panorama frame
    Ks = np.array([[[v["camera"]["params"][0], 0, v["camera"]["params"][2]],
                    [0, v["camera"]["params"][1], v["camera"]["params"][3]], [0, 0, 1]]
                   for v in views], np.float64)
    sizes = np.array([[v["camera"]["width"], v["camera"]["height"]] for v in views], np.float64)
    ref = reference_view(rig)

    # Observations: per (panorama, training view) the points it sees and where.
    pano_of = {im.image_id: frame_of_image(im.name) for im in rec.images.values()
               if im.name.split("/")[0] != PHOTO_DIR}
    seen: dict[str, list[int]] = {fid: [] for fid in panos}
    for pid, p in rec.points3D.items():
        for fid in {pano_of[e.image_id] for e in p.track.elements if e.image_id in pano_of}:
            if fid in seen:
                seen[fid].append(pid)
    obs: dict[tuple[str, int], list[tuple[int, np.ndarray]]] = {}
    for fid in panos:
        pids = seen[fid]
        if not pids:
            continue
        xyz = np.array([rec.points3D[p].xyz for p in pids], np.float64)
        d = (xyz - centres[fid]["centre"]) @ centres[fid]["R"].T  # panorama frame
        owner = np.argmax(d @ axes.T, axis=1)
        cam = np.einsum("nij,nj->ni", rots[owner], d)
        uvw = np.einsum("nij,nj->ni", Ks[owner], cam)
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = uvw[:, :2] / uvw[:, 2:3]
        ok = (cam[:, 2] > 0) & np.all((uv >= 0) & (uv < sizes[owner]), axis=1)
        for k in np.nonzero(ok)[0]:
            obs.setdefault((fid, int(owner[k])), []).append((pids[k], uv[k]))

    out = pycolmap.Reconstruction()
    for i, v in enumerate(views):
        c = v["camera"]
        camera = pycolmap.Camera.create_from_model_name(
            i + 1, c["model"], float(c["params"][0]), int(c["width"]), int(c["height"]))
        camera.params = np.asarray(c["params"], np.float64)
        out.add_camera(camera)
    trig = pycolmap.Rig()
    trig.rig_id = 1
    trig.add_ref_sensor(pycolmap.sensor_t(pycolmap.SensorType.CAMERA, ref + 1))
    for i in range(len(views)):
        if i != ref:
            trig.add_sensor(pycolmap.sensor_t(pycolmap.SensorType.CAMERA, i + 1),
                            pycolmap.Rigid3d(pycolmap.Rotation3d(rots[i] @ rots[ref].T),
                                             np.zeros(3)))
    out.add_rig(trig)
    track_of: dict[int, list[tuple[int, int]]] = {}  # point id -> (new image id, point2D idx)
    image_id = 0
    for k, fid in enumerate(panos):
        r = rots[ref] @ centres[fid]["R"]
        frame = pycolmap.Frame()
        frame.frame_id = k + 1
        frame.rig_id = 1
        frame.rig_from_world = pycolmap.Rigid3d(pycolmap.Rotation3d(r),
                                                -r @ centres[fid]["centre"])
        images = []
        for i, v in enumerate(views):
            image_id += 1
            pts = obs.get((fid, i), [])
            kp = np.array([uv for _, uv in pts], np.float64).reshape(-1, 2)
            images.append(pycolmap.Image(name=f"{v['name']}/{fid}.jpg", keypoints=kp,
                                         camera_id=i + 1, image_id=image_id))
            frame.add_data_id(pycolmap.data_t(
                pycolmap.sensor_t(pycolmap.SensorType.CAMERA, i + 1), image_id))
            for j, (pid, _) in enumerate(pts):
                track_of.setdefault(pid, []).append((image_id, j))
        out.add_frame(frame)
        for im in images:
            im.frame_id = k + 1
            out.add_image(im)
        out.register_frame(k + 1)
    photo_ids: dict[int, int] = {}
    for im in sorted(rec.images.values(), key=lambda im: im.name):
        if im.name.split("/")[0] != PHOTO_DIR or not im.has_pose:
            continue
        image_id += 1
        cam = rec.cameras[im.camera_id]
        camera = pycolmap.Camera.create_from_model_name(
            len(views) + len(photo_ids) + 1, cam.model_name, 1.0, cam.width, cam.height)
        camera.params = np.asarray(cam.params, np.float64)
        out.add_camera_with_trivial_rig(camera)
        kp = np.array([p.xy for p in im.points2D], np.float64).reshape(-1, 2)
        out.add_image_with_trivial_frame(
            pycolmap.Image(name=im.name, keypoints=kp, camera_id=camera.camera_id,
                           image_id=image_id), im.cam_from_world())
        photo_ids[im.image_id] = image_id
    dropped = 0
    for pid, p in sorted(rec.points3D.items()):
        elems = list(track_of.get(pid, []))
        elems += [(photo_ids[e.image_id], e.point2D_idx) for e in p.track.elements
                  if e.image_id in photo_ids]
        if not elems:
            dropped += 1
            continue
        track = pycolmap.Track()
        for image, idx in elems:
            track.add_element(image, idx)
        new = out.add_point3D(np.asarray(p.xyz, np.float64), track, np.asarray(p.color))
        out.points3D[new].error = p.error
    return out


# ---------------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------------
def run_sfm(project: Project, config: SfmConfig, events: Emitter) -> dict[str, Any]:
    """Structure-from-motion stage (see the module docstring for the outputs): lay out the
    images and extract features, choose and match the pairs, map (with the fallbacks of
    ``sfm.mapper=auto``), pose the training views on SfM's own rig, report, write the model.

    Metrics: images, frames, pairs (image pairs matched), frame_pairs, verified_pairs,
    registered_images, registered_fraction, registered_frames, registered_frames_fraction,
    points3D, mean_reprojection_error_px, models, and seconds of each step
    (seconds_features, seconds_matching, seconds_mapping).

    Raises:
        InputError: reproject outputs missing.
        StageError: no model, or fewer than ``min_registered_fraction`` of the images
            registered (the message lists the frames that failed and what to try).
        Cancelled: the user cancelled (the database is kept; a re-run resumes).
    """
    run = plan_sfm(project, config, events)
    extract_features(run)
    events.check_cancelled()
    pairs = match_pairs(run)
    events.check_cancelled()
    model = map_scene(run, pairs)
    check_against_gps(run, pairs, model)
    pose_training_views(run, model)
    report = write_report(run, pairs, model)
    check_registered(run, report)
    write_model(run, model, report)
    return report


@dataclass(eq=False)
class SfmRun:
    """The inputs, folders and timings the sfm phases share.

    Attributes:
        project, config, events: the stage's arguments.
        inputs: reproject's frames and rigs (``reproject/frames.json``).
        frames, rig: what SfM runs on (:func:`sfm_views`): the frames with the images of SfM's
            own rig when there is one, and that rig (None without panoramas).
        out: the stage folder ``sfm/``; db_path: its ``database.db``; state_path: its
            ``state.json``; state: the fingerprints read from it (``{}`` when new).
        has_panos, has_photos: whether there are panoramas / perspective photos.
        timings: seconds per step (``features``, ``headings``, ``matching``, ``mapping`` ...).
        images, masks: the image and mask roots laid out for COLMAP (:func:`prepare_images`,
            set by :func:`extract_features`).
        feat_key: fingerprint of the feature inputs and options; n_images: images in the
            database (both set by :func:`extract_features`).
        work: the mappers' scratch folder ``sfm/models.tmp``.
    """

    project: Project
    config: SfmConfig
    events: Emitter
    inputs: Frames
    frames: list[dict[str, Any]]
    rig: dict[str, Any] | None
    out: Path
    db_path: Path
    state_path: Path
    state: dict[str, Any]
    has_panos: bool
    has_photos: bool
    timings: dict[str, float] = field(default_factory=dict)
    images: Path | None = None
    masks: Path | None = None
    feat_key: str = ""
    n_images: int = 0

    @property
    def work(self) -> Path:
        """The mappers' scratch folder, ``sfm/models.tmp``."""
        return self.out / "models.tmp"


@dataclass(eq=False)
class MatchedPairs:
    """What :func:`match_pairs` matched.

    Attributes:
        frame_pairs: frame pairs (i < j, indices into ``SfmRun.frames``).
        image_pairs: the image-name pairs matched (``sfm/pairs.txt``).
        overlap: :func:`image_pairs_by_overlap`'s counts, None when every view pair of two
            frames is matched.
        verified: image pairs with at least ``sfm.min_num_inliers`` verified inliers.
    """

    frame_pairs: list[tuple[int, int]]
    image_pairs: list[tuple[str, str]]
    overlap: dict[str, Any] | None
    verified: int


@dataclass(eq=False)
class MappedModel:
    """The models mapping built and the one kept.

    Attributes:
        mapper: the mapper whose model is kept.
        recs: the models (``pycolmap.Reconstruction``) with registered images, by index;
            best: the index of the largest.
        rec: the model kept; on the training views once :func:`pose_training_views` ran.
        gps_tries: per mapper tried, its GPS verdict (``sfm.json``'s ``gps_check``).
        sfm_rec: with SfM's own rig, the model on its views as mapped, else None.
        registered: per frame id, the images of the mapped model registered
            (:func:`model_frames`; set by :func:`write_report`).
    """

    mapper: Mapper
    recs: dict[int, Any]
    best: int
    rec: Any
    gps_tries: list[dict[str, Any]] = field(default_factory=list)
    sfm_rec: Any = None
    registered: dict[str, int] = field(default_factory=dict)


def _build(run: SfmRun, pairs: MatchedPairs, mapper: Mapper, work: Path,
           label: str = "") -> tuple[dict[int, Any], int, Any]:
    """:func:`build_model` with `mapper` into `work` on the run's database and images.

    Raises:
        StageError: no model at all.
        Cancelled: the user cancelled.
    """
    return build_model(mapper, run.config, run.db_path, run.images, work, run.has_panos,
                       run.has_photos, run.n_images, pairs.verified, len(run.frames),
                       run.timings, run.events, label=label)


def plan_sfm(project: Project, config: SfmConfig, events: Emitter) -> SfmRun:
    """Quiet COLMAP's log, seed pycolmap, read reproject's frames and rigs and ``sfm/state.json``
    (creating ``sfm/``); writes nothing else.

    Raises:
        ImportError: pycolmap is missing.
        InputError: reproject has not run or left no frames, or a rig it names is missing.
    """
    import pycolmap

    _quiet_glog()
    pycolmap.set_random_seed(config.seed)
    inputs = read_frames(project.root)
    frames, rig = sfm_views(inputs)
    out = project.stage_dir("sfm")
    state_path = out / "state.json"
    return SfmRun(project, config, events, inputs, frames, rig, out, out / "database.db",
                  state_path, read_json(state_path) if state_path.exists() else {},
                  has_panos=rig is not None,
                  has_photos=any(f["kind"] != "equirect" for f in frames))


def extract_features(run: SfmRun) -> None:
    """Lay out ``sfm/images`` and ``sfm/masks`` (:func:`prepare_images`), start a new database
    when the feature inputs or options changed (``state.json``'s ``features``), heal it,
    extract SIFT (on the farm when there is one, then the gaps here; :func:`extract`) and set
    up the rigs, cameras and pose priors (:func:`setup_database`). Emits images, frames,
    mean_keypoints; sets ``images``, ``masks``, ``feat_key``, ``n_images``,
    ``timings["features"]``.

    Raises:
        InputError: an image or mask of reproject is missing.
        StageError: SIFT on a device that is not there, or extraction failed.
        Cancelled: the user cancelled during extraction.
    """
    config, events, frames, rig, db_path = run.config, run.events, run.frames, run.rig, run.db_path
    t0 = time.monotonic()
    events.progress(0.0, "preparing images")
    images, masks = prepare_images(run.project, frames, rig, config.ownership_mask)
    run.images, run.masks = images, masks
    run.feat_key = _hash(
        {"rig": rig, "frames": [[f["id"], f["kind"], f["images"], f.get("camera")] for f in frames],
         "max_image_size": config.max_image_size, "max_num_features": config.max_num_features,
         "peak": config.peak_threshold, "ownership": config.ownership_mask,
         "upsample_below": config.upsample_below, "upright": config.upright,
         **({"device": "cuda"} if sift_device(config) == "cuda" else {}),
         "sizes": sorted((p.relative_to(images).as_posix(), p.stat().st_size)
                        for p in images.rglob("*.jpg"))}
    )
    if run.state.get("features") != run.feat_key and db_path.exists():
        events.log("feature inputs or options changed: starting a new database")
        db_path.unlink()
        run.state = {}
    write_json_atomic(run.state_path, {**run.state, "features": run.feat_key})
    expected = {n for f in frames for n in image_names(f, rig)}
    heal_database(db_path, expected, events)
    events.progress(0.02, "extracting SIFT features")
    farm_features(run.project, db_path, images, masks, frames, rig, config, events)
    extract(db_path, images, masks, frames, rig, config, events)  # here: all, or the farm's gaps
    healed = heal_database(db_path, expected, events)
    if healed["images_removed"]:  # a broken write during this very extraction: redo those
        extract(db_path, images, masks, frames, rig, config, events)
        heal_database(db_path, expected, events)
    info = setup_database(db_path, frames, rig, config.gps_priors)
    run.timings["features"] = time.monotonic() - t0
    run.n_images = info["images"]
    kps = list(info["keypoints"].values())
    events.metric("images", run.n_images)
    events.metric("frames", len(frames))
    events.metric("mean_keypoints", float(np.mean(kps)) if kps else 0.0)
    events.log(f"features: {run.n_images} images, {np.mean(kps) if kps else 0:.0f} keypoints "
               f"each ({run.timings['features']:.1f} s)")


def match_pairs(run: SfmRun) -> MatchedPairs:
    """Choose the frame pairs (:func:`frame_pairs`) and their image pairs (only the views that
    overlap once the panoramas' relative headings are known, ``sfm.view_overlap_deg``), write
    ``sfm/pairs.txt``, clear the matches when a matching option changed (``state.json``'s
    ``matching``) and match (on the farm when there is one, then the gaps here;
    :func:`match`). Emits frame_pairs, pairs, verified_pairs; sets ``timings["headings"]``
    and ``["matching"]``.

    Raises:
        StageError: matching failed.
        Cancelled: the user cancelled during matching.
    """
    import pycolmap

    config, events, frames, rig, db_path = run.config, run.events, run.frames, run.rig, run.db_path
    t0 = time.monotonic()
    fpairs = frame_pairs(frames, config.neighbours, config.radius_m, config.time_neighbours)
    how: dict[str, Any] | None = None
    if rig and config.view_overlap_deg > 0:
        events.progress(0.08, "relative headings of the panoramas")
        feats = panorama_features(db_path, frames, rig)
        ipairs, how = image_pairs_by_overlap(frames, rig, fpairs, feats, config.view_overlap_deg)
        run.timings["headings"] = time.monotonic() - t0
        t0 = time.monotonic()  # matching is timed on its own
        events.log(f"view pairs: {len(ipairs)} of {len(image_pairs(frames, rig, fpairs))} "
                   f"(views within {config.view_overlap_deg:g} deg once the relative heading "
                   f"is known: {how['estimated']} panorama pairs, every view pair for "
                   f"{how['fallback']} without a reliable heading)")
    else:
        ipairs = image_pairs(frames, rig, fpairs)
    pairs_path = run.out / "pairs.txt"
    tmp = pairs_path.with_name("pairs.txt.tmp")
    tmp.write_text("".join(f"{a} {b}\n" for a, b in ipairs))
    os.replace(tmp, pairs_path)
    events.artifact("sfm/pairs.txt")
    match_key = _hash({"f": run.feat_key, "n": config.min_num_inliers, "seed": config.seed,
                       **({"overlap": config.view_overlap_deg} if config.view_overlap_deg else {})})
    if run.state.get("matching") != match_key:
        with pycolmap.Database.open(db_path) as db:
            db.clear_matches()
            db.clear_two_view_geometries()
    write_json_atomic(run.state_path, {"features": run.feat_key, "matching": match_key})
    events.progress(0.1, f"matching {len(ipairs)} image pairs of {len(fpairs)} frame pairs")
    farm_matches(run.project, db_path, ipairs, config, run.has_panos, events)
    match(db_path, pairs_path, config, run.has_panos, events)  # here: all, or the farm's gaps
    with pycolmap.Database.open(db_path) as db:
        _, inliers = db.read_two_view_geometry_num_inliers()
        verified = int(np.count_nonzero(np.asarray(inliers) >= config.min_num_inliers))
    run.timings["matching"] = time.monotonic() - t0
    events.metric("frame_pairs", len(fpairs))
    events.metric("pairs", len(ipairs))
    events.metric("verified_pairs", verified)
    events.log(f"matching: {len(ipairs)} pairs, {verified} verified "
               f"({run.timings['matching']:.1f} s)")
    return MatchedPairs(fpairs, ipairs, how, verified)


def map_scene(run: SfmRun, pairs: MatchedPairs) -> MappedModel:
    """Map with the configured mapper (:func:`mapper_for`) in ``sfm/models.tmp`` (cleared
    first); with ``sfm.mapper=auto``, when the global mapper builds no model, with the
    incremental one (COLMAP's global mapper gives up on some captures the incremental one
    maps: seen on the dashboard walk without its platform mask, "Global mapping failed", 1
    run in 6), the failed try recorded in ``gps_tries``.

    Raises:
        StageError: no model (from the last mapper tried).
        Cancelled: the user cancelled during mapping.
    """
    config = run.config
    mapper = mapper_for(config.mapper, run.has_panos)
    shutil.rmtree(run.work, ignore_errors=True)
    try:
        return MappedModel(mapper, *_build(run, pairs, mapper, run.work))
    except StageError as exc:
        if not (config.mapper == Mapper.AUTO and mapper == Mapper.GLOBAL):
            raise
        tries = [{"mapper": str(mapper), "verdict": "no model", "reason": str(exc)}]
        run.events.warning("the global mapper built no model: trying the incremental mapper"
                           + (" with the GPS positions as pose priors" if config.gps_priors
                              else ""))
        built = _build(run, pairs, Mapper.INCREMENTAL, run.work / "incremental", "_incremental")
        return MappedModel(Mapper.INCREMENTAL, *built, gps_tries=tries)


def check_against_gps(run: SfmRun, pairs: MatchedPairs, model: MappedModel) -> None:
    """Run georef's GPS check on the model (:func:`gps_verdict`, recorded in
    ``model.gps_tries``); with ``sfm.mapper=auto`` and GPS priors, when it rejects the global
    model, map again with the incremental mapper and the GPS positions as pose priors in
    every bundle adjustment (what fixed the dashboard walk,
    tests/integration/test_platform_mask.py) and keep that model in `model` when the check
    does not reject it. Logs and warns which model is kept.

    Raises:
        StageError: the incremental mapper builds no model.
        Cancelled: the user cancelled during mapping.
    """
    config, events = run.config, run.events
    georef = run.project.config.georef
    verdict = gps_verdict(model.rec, run.frames, run.rig, georef)
    if verdict is not None:
        model.gps_tries.append({"mapper": str(model.mapper), **verdict})
    if not (verdict is not None and verdict["verdict"] == "reject" and config.gps_priors
            and config.mapper == Mapper.AUTO and model.mapper == Mapper.GLOBAL):
        return
    events.warning(f"the global model contradicts its GPS ({verdict['reason']}): trying "
                   "the incremental mapper with the GPS positions as pose priors")
    alt = _build(run, pairs, Mapper.INCREMENTAL, run.work / "incremental", "_incremental")
    alt_verdict = gps_verdict(alt[2], run.frames, run.rig, georef)
    if alt_verdict is not None:
        model.gps_tries.append({"mapper": str(Mapper.INCREMENTAL), **alt_verdict})
    if alt_verdict is not None and alt_verdict["verdict"] != "reject":
        events.log(f"the incremental model agrees with the GPS ({alt_verdict['reason']}): "
                   "it is kept")
        (model.recs, model.best, model.rec), model.mapper = alt, Mapper.INCREMENTAL
    else:
        events.warning("the incremental model contradicts its GPS too; the global one is "
                       "kept and georef will say what to try")


def pose_training_views(run: SfmRun, model: MappedModel) -> None:
    """With SfM's own rig: keep the mapped model as ``model.sfm_rec`` and make ``model.rec``
    the model of the training views posed from it (:func:`expand_to_rig`), timed as
    ``timings["expansion"]``; without, nothing. In memory; raises nothing of its own."""
    if run.inputs.sfm_rig is None:
        return
    t1 = time.monotonic()
    sfm_rec = model.sfm_rec = model.rec
    rec = model.rec = expand_to_rig(sfm_rec, run.rig, run.inputs.rig)
    run.timings["expansion"] = time.monotonic() - t1
    run.events.log(f"training rig: {rec.num_reg_images()} views of {len(model_frames(rec))} "
                   f"panoramas posed from the SfM rig's {sfm_rec.num_reg_images()}, "
                   f"{rec.num_points3D()} of {sfm_rec.num_points3D()} points seen by them "
                   f"({run.timings['expansion']:.2f} s)")


def write_report(run: SfmRun, pairs: MatchedPairs, model: MappedModel) -> dict[str, Any]:
    """Emit the model's metrics (registered images and frames, points, reprojection error,
    training views, seconds per step), warn about disconnected models, write ``sfm/sfm.json``
    and return it. Sets ``model.registered``.

    Raises:
        OSError: the file cannot be written.
    """
    events, frames, rig, inputs = run.events, run.frames, run.rig, run.inputs
    rec, recs = model.rec, model.recs
    mapped = model.sfm_rec if model.sfm_rec is not None else rec  # the model on SfM's views
    reg = model.registered = model_frames(mapped)
    frame_ids = [f["id"] for f in frames]
    others = []
    for k, r in recs.items():
        if k != model.best:
            others.append(sorted(model_frames(r)))
    n_reg = mapped.num_reg_images()
    frac = n_reg / max(1, run.n_images)
    n_pano = sum(1 for f in frames if f["kind"] == "equirect")
    events.metric("models", len(recs))
    events.metric("registered_images", n_reg)
    events.metric("registered_fraction", frac)
    events.metric("registered_frames", len(reg))
    events.metric("registered_frames_fraction", len(reg) / len(frames))
    if n_pano:
        events.metric("registered_panoramas", sum(1 for f in frames
                                                  if f["kind"] == "equirect" and f["id"] in reg))
    events.metric("points3D", rec.num_points3D())
    events.metric("mean_reprojection_error_px", float(mapped.compute_mean_reprojection_error()))
    n_train = sum(len(f["images"]) for f in inputs.frames)
    events.metric("training_views", n_train)
    events.metric("registered_training_views", rec.num_reg_images())
    for k, v in run.timings.items():
        events.metric(f"seconds_{k}", round(v, 3))
    if others:
        events.warning(
            f"{len(recs)} disconnected models: kept the largest ({len(reg)} frames); frames in "
            f"the others: {', '.join(', '.join(o) for o in others)}"
        )
    report = {
        "schema_version": 1,
        "mapper": str(model.mapper),
        "frame": "SfM world frame (with GPS pose priors: close to ENU metres; without: "
                 "arbitrary scale and orientation); poses cam_from_world",
        "images": run.n_images,
        "registered_images": n_reg,
        "sfm_rig": None if inputs.sfm_rig is None else {
            "layout": rig["layout"], "views": len(rig["views"]),
            "size": rig["views"][0]["camera"]["width"], "native_size": rig.get("native_size"),
            "points3D": model.sfm_rec.num_points3D()},
        "training_views": {"images": n_train, "registered": rec.num_reg_images()},
        "frames": {
            fid: {"registered": fid in reg, "registered_images": reg.get(fid, 0)}
            for fid in frame_ids
        },
        "other_models": others,
        "pairs": len(pairs.image_pairs),
        "frame_pairs": [[frames[i]["id"], frames[j]["id"]] for i, j in pairs.frame_pairs],
        "verified_pairs": pairs.verified,
        "view_pairs": pairs.overlap,
        "gps_check": model.gps_tries,
        "seconds": {k: round(v, 3) for k, v in run.timings.items()},
        "metrics": dict(events.metrics),
        "image_root": "sfm/images",
    }
    write_json_atomic(run.out / "sfm.json", report)
    events.artifact("sfm/sfm.json")
    return report


def check_registered(run: SfmRun, report: dict[str, Any]) -> None:
    """Fail when fewer than ``sfm.min_registered_fraction`` of the images registered (after
    removing the mappers' scratch folder; ``sfm.json`` stays), else warn about the frames
    not registered. Reads `report` (:func:`write_report`).

    Raises:
        StageError: too few images registered; names the frames not in the model, those in
            separate models, and what to try.
    """
    n_reg, total_views = report["registered_images"], report["images"]
    others = report["other_models"]
    failed = [fid for fid, f in report["frames"].items() if not f["registered"]]
    frac = n_reg / max(1, total_views)
    if frac < run.config.min_registered_fraction:
        shutil.rmtree(run.work, ignore_errors=True)
        raise StageError(
            f"sfm: only {n_reg}/{total_views} images ({frac:.0%}) registered; frames not in the "
            f"model: {', '.join(failed) or 'none'}"
            + (f"; in separate models: {others}" if others else "")
            + ". Try more features (sfm.max_num_features), more neighbours (sfm.neighbours, "
            "sfm.time_neighbours), the other mapper (sfm.mapper), or remove frames that do not "
            "overlap (details in sfm/sfm.json)"
        )
    if failed:
        run.events.warning(f"frames not registered: {', '.join(failed)}")


def write_model(run: SfmRun, model: MappedModel, report: dict[str, Any]) -> None:
    """Write the model kept to ``sfm/sparse`` and, with SfM's own rig, the mapped one to
    ``sfm/sparse_sfm_rig`` (else remove it), each replaced atomically; remove the mappers'
    scratch folder; emit the artifacts and the final progress.

    Raises:
        OSError: a model cannot be written.
    """
    out, rec, sfm_rec, events = run.out, model.rec, model.sfm_rec, run.events
    sparse = out / "sparse"
    tmp_sparse = out / "sparse.tmp"
    shutil.rmtree(tmp_sparse, ignore_errors=True)
    tmp_sparse.mkdir()
    rec.write(tmp_sparse)
    shutil.rmtree(sparse, ignore_errors=True)
    os.replace(tmp_sparse, sparse)
    own = SFM_RIG_MODEL.path(run.project.root)
    shutil.rmtree(own, ignore_errors=True)
    if sfm_rec is not None:
        tmp_own = own.with_name(own.name + ".tmp")
        shutil.rmtree(tmp_own, ignore_errors=True)
        tmp_own.mkdir()
        sfm_rec.write(tmp_own)
        os.replace(tmp_own, own)
        events.artifact(SFM_RIG_MODEL.rel)
    shutil.rmtree(run.work, ignore_errors=True)
    events.artifact("sfm/sparse")
    events.artifact("sfm/database.db")
    events.progress(
        1.0, f"{report['registered_images']}/{report['images']} images, "
        f"{len(model.registered)}/{len(run.frames)} frames registered, {rec.num_points3D()} points"
    )
