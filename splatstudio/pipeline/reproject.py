"""Reproject: cut each equirect panorama into the perspective views of a virtual rig.

Reads ``ingest/manifest.json``; writes into ``reproject/``::

    rig.json                  the rig: per view name, yaw/pitch, PINHOLE intrinsics, cam_from_rig
    masks/<view>.ownership.png  255 where the view owns the ray (nearest optical axis), else 0
    masks/<view>.nadir.png    0 within nadir_deg of straight down (operator, mount), else 255
    platform_mask.png         equirect (512 x 256): 0 on the platform (what stays fixed in the
                              camera's frame: vehicle, cabin, mount; :mod:`splatstudio.pano.
                              platform`, or the user's own file), else 255
    masks/<view>.keep.png     what SfM and training use of each view: nadir AND platform
    views/<pano id>/<view>.jpg  the views, with the panorama's GPS and time in their EXIF
    photos/<id>.<ext>         perspective photos, passed through unchanged
    frames.json               per image: frame id, kind, image paths, camera, GPS/ENU, time
                              (with an SfM rig: ``sfm_images`` per panorama, ``sfm_rig``)
    sfm_rig.json              with ``reproject.sfm_rig`` other than ``training``: SfM's own
                              rig (views ``s00``, ``s01`` ..., their masks in masks/ as
                              above, ``native_size``: the view size at the panoramas' own
                              resolution)
    sfm_views/<pano id>/<view>.jpg  SfM's own views

One rig serves every panorama: the view size is what the smallest panorama supports
(width x fov / 360, capped by max_size) unless set. SfM may run on a smaller rig of its own
(:func:`make_sfm_rig`), rendered from the same decoded panorama; training keeps the views of
``rig.json``. Rendering runs in a process pool over
panoramas with ``cv2.remap`` tables cached per (pano size, view). Each panorama is written to a
temporary folder and renamed when complete, with a fingerprint, so a killed or cancelled run
resumes where it stopped and a changed config redoes only what it changes.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import hashlib
import json
import multiprocessing as mp
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ReprojectConfig, SfmRig, config_hash
from ..errors import ConfigError, InputError
from ..events import Emitter
from ..lifeline import tie_to_parent
from ..pano.partial import PanoCrop, pad_to_full, valid_mask
from ..pano.rig import Rig, View, auto_view_size, make_rig, nadir_mask, ownership_mask, render_view
from ..project import Project, read_json, write_json_atomic
from .artifacts import MASKS, SFM_RIG, SFM_VIEWS, read_manifest

_MARKER = "view_set.json"


def _exif_for_views(entry: dict[str, Any], focal_35mm: float) -> bytes:
    """EXIF block (APP1 payload) with the panorama's GPS fix and capture time."""
    import datetime as dt
    from fractions import Fraction

    import piexif

    def rat(x: float, den: int = 1000000) -> tuple[int, int]:
        f = Fraction(abs(x)).limit_denominator(den)
        return f.numerator, f.denominator

    def dms(x: float) -> tuple:
        x = abs(x)
        d = int(x)
        m = int((x - d) * 60)
        s = (x - d - m / 60) * 3600
        return ((d, 1), (m, 1), rat(s, 10000))

    zeroth = {piexif.ImageIFD.Software: b"SplatStudio"}
    if entry.get("make"):
        zeroth[piexif.ImageIFD.Make] = entry["make"].encode()
    if entry.get("model"):
        zeroth[piexif.ImageIFD.Model] = entry["model"].encode()
    exif = {piexif.ExifIFD.FocalLengthIn35mmFilm: int(round(focal_35mm))}
    if entry.get("time"):
        try:
            t = dt.datetime.fromisoformat(entry["time"])
            exif[piexif.ExifIFD.DateTimeOriginal] = t.strftime("%Y:%m:%d %H:%M:%S").encode()
        except ValueError:
            pass
    gps = {}
    g = entry.get("gps")
    if g:
        gps = {
            piexif.GPSIFD.GPSVersionID: (2, 3, 0, 0),
            piexif.GPSIFD.GPSLatitudeRef: b"N" if g["lat_deg"] >= 0 else b"S",
            piexif.GPSIFD.GPSLatitude: dms(g["lat_deg"]),
            piexif.GPSIFD.GPSLongitudeRef: b"E" if g["lon_deg"] >= 0 else b"W",
            piexif.GPSIFD.GPSLongitude: dms(g["lon_deg"]),
            piexif.GPSIFD.GPSAltitudeRef: 0 if g["h_m"] >= 0 else 1,
            piexif.GPSIFD.GPSAltitude: rat(g["h_m"], 10000),
        }
    return piexif.dump({"0th": zeroth, "Exif": exif, "GPS": gps})


def insert_exif(jpeg: bytes, exif: bytes) -> bytes:
    """Insert an EXIF APP1 segment (payload starting "Exif\\0\\0") into JPEG bytes after
    SOI and a JFIF APP0 segment if present."""
    pos = 2
    if jpeg[2:4] == b"\xff\xe0":
        pos = 4 + int.from_bytes(jpeg[4:6], "big")
    seg = b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif
    return jpeg[:pos] + seg + jpeg[pos:]


def _init_worker() -> None:
    import cv2

    tie_to_parent()  # end with the stage worker, however it ends
    cv2.setNumThreads(1)  # one process per core: no oversubscription


def render_panorama(
    src: str, out_dir: str | None, views: list[View], quality: int, exif: bytes,
    expect: tuple[int, int], crop: dict[str, int] | None = None,
    extra: tuple[tuple[str, list[View], bytes], ...] = (),
) -> list[str]:
    """Decode one panorama, render and write every view of the rig as JPEG.

    A partial panorama (`crop`, :class:`splatstudio.pano.partial.PanoCrop` as a dict) is
    padded to its full sphere first. Writes into ``out_dir + ".tmp"`` (nothing when `out_dir`
    is None) and into each ``folder + ".tmp"`` of `extra` (``(folder, views, exif)``: another
    rig rendered from the same decoded panorama, SfM's own rig); the caller renames each
    folder when its views are written.

    Returns:
        the file names written into `out_dir` ([] when it is None).

    Raises:
        InputError: the file cannot be decoded or its size differs from the manifest's.
    """
    import cv2

    img = cv2.imread(src, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None:
        raise InputError(src, "cannot decode the image (corrupt JPEG/PNG data)")
    if (img.shape[1], img.shape[0]) != expect:
        raise InputError(
            src, f"decoded size {img.shape[1]}x{img.shape[0]} differs from header {expect}"
        )
    if crop is not None:
        img = pad_to_full(img, PanoCrop.from_dict(crop))
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    jobs = ([(out_dir, views, exif)] if out_dir is not None else []) + list(extra)
    written: list[list[str]] = []
    for folder, job_views, job_exif in jobs:
        tmp = Path(folder + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        names = []
        for view in job_views:
            ok, buf = cv2.imencode(".jpg", render_view(img, view), params)
            if not ok:
                raise RuntimeError(f"JPEG encoding failed for view {view.name} of {src}")
            name = f"{view.name}.jpg"
            (tmp / name).write_bytes(insert_exif(buf.tobytes(), job_exif))
            names.append(name)
        written.append(names)
    return written[0] if out_dir is not None else []


def _pano_fingerprint(entry: dict[str, Any], src: Path, rig: Rig, config: ReprojectConfig) -> str:
    st = src.stat()
    parts = [rig.to_dict(), config.jpeg_quality, entry["file"], st.st_size, st.st_mtime_ns]
    if entry.get("crop"):  # partial panoramas only: full ones keep their fingerprints
        parts.append(entry["crop"])
    blob = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def platform_keep_mask(project: Project, panos: list[dict[str, Any]], input_dir: Path,
                       config: ReprojectConfig, events: Emitter,
                       covered: np.ndarray | None = None) -> np.ndarray:
    """The capture's platform mask as uint8 [256, 512] equirect: 0 on the platform, 255 else.

    From ``config.platform_mask_file`` when set, else estimated from the panoramas
    (:func:`splatstudio.pano.platform.estimate_platform_mask`, decoded at a quarter size,
    within `covered`, :func:`covered_mask` when not given), else all 255.

    Raises:
        InputError: the user's mask file is missing or not an image.
    """
    import cv2

    from ..pano.platform import WORK_WIDTH, estimate_platform_mask

    size = (WORK_WIDTH, WORK_WIDTH // 2)
    if config.platform_mask_file:
        path = Path(config.platform_mask_file).expanduser()
        if not path.is_absolute():
            path = project.root / path
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise InputError(path, "platform mask missing or not an image "
                             "(reproject.platform_mask_file)")
        keep = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        keep = np.where(keep >= 128, 255, 0).astype(np.uint8)
        events.log(f"platform mask from {path}: {100 * (keep == 0).mean():.1f} % of the image")
        return keep
    if not config.platform_mask or len(panos) == 0:
        return np.full(size[::-1], 255, np.uint8)

    def small(e: dict[str, Any]) -> np.ndarray:
        src = input_dir / e["file"]
        img = cv2.imread(str(src), cv2.IMREAD_REDUCED_COLOR_4)
        if img is None:
            raise InputError(src, "cannot decode the panorama")
        if e.get("crop"):  # a partial panorama on its full sphere
            img = pad_to_full(img, PanoCrop.from_dict(e["crop"]).scaled(img.shape[1], img.shape[0]))
        return img

    found = estimate_platform_mask((small(e) for e in panos),
                                   covered=(covered_mask(panos, None) if covered is None
                                            else covered) > 0)
    if found.reason:
        events.log(f"platform mask: none ({found.reason})")
    else:
        events.log(f"platform mask: {100 * found.fraction:.1f} % of the sphere stays fixed in "
                   f"the camera's frame over {found.frames} panoramas (ignored in SfM and "
                   "training; reproject/platform_mask.png)")
    if found.fraction > 0.3:
        events.warning(f"the platform mask covers {100 * found.fraction:.0f} % of the sphere: "
                       "check it (reproject/platform_mask.png), or set your own with "
                       "reproject.platform_mask_file")
    return np.where(found.mask, 0, 255).astype(np.uint8)


def covered_mask(panos: list[dict[str, Any]], events: Emitter | None) -> np.ndarray:
    """uint8 [256, 512] equirect: 255 where every panorama has pixels, 0 where a partial
    panorama (GPano cropped area) does not reach; all 255 for full panoramas."""
    from ..pano.platform import WORK_WIDTH

    size = (WORK_WIDTH // 2, WORK_WIDTH)
    keep = np.ones(size, bool)
    crops = [PanoCrop.from_dict(e["crop"]) for e in panos if e.get("crop")]
    for c in crops:
        keep &= valid_mask(c, size[1], size[0])
    if crops and events is not None:
        events.log(f"{len(crops)} partial panoramas cover {100 * keep.mean():.0f} % of the "
                   "sphere together; the rest is masked in SfM and training")
    return np.where(keep, 255, 0).astype(np.uint8)


def view_keep_mask(root: Path | None, view: str) -> str:
    """Path, relative to the project folder, of the mask training and SfM use for rig view
    `view` (255 = keep): ``reproject/masks/<view>.keep.png`` (nadir and platform), or the
    nadir mask in a project reprojected before platform masks existed (when `root` is given
    and the keep mask is not there)."""
    keep = f"{MASKS.rel}/{view}.keep.png"
    if root is not None and not (Path(root) / keep).exists():
        return f"{MASKS.rel}/{view}.nadir.png"
    return keep


def platform_view(keep: np.ndarray, view: View) -> np.ndarray:
    """The equirect keep-mask `keep` [h, w] uint8 seen by `view`: uint8 [S, S], 0 or 255."""
    return np.where(render_view(keep, view) >= 128, 255, 0).astype(np.uint8)


SFM_FOV_DEG = 90.0
"""Field of view of every view of SfM's own rig (cube faces; COLMAP's panorama layout too)."""

SFM_MAX_SIZE = 1024
"""Largest automatic view size of SfM's own rig, pixels (``reproject.sfm_size`` = 0)."""

SFM_MIN_KEEP = 0.25
"""A view of SfM's own rig whose pixels the masks keep for less than this share is left out."""

SFM_VIEW_PREFIX = "s"
"""SfM's own views are named ``s00``, ``s01`` ...: COLMAP image names ``s00/<pano id>.jpg``
never meet the training views' ``00/<pano id>.jpg``."""


def _native_size(entry: dict[str, Any], fov_deg: float) -> int:
    """View size, pixels, at the panorama's own resolution for a view of `fov_deg`."""
    return auto_view_size(entry.get("crop", {}).get("full_width", entry["width"]), fov_deg,
                          1 << 30)


def make_sfm_rig(config: ReprojectConfig, panos: list[dict[str, Any]]) -> Rig | None:
    """SfM's own rig (``reproject.sfm_rig``), or None when SfM runs on the training views.

    Every view has a :data:`SFM_FOV_DEG` field of view and the size ``reproject.sfm_size``,
    else what the smallest panorama supports at that field of view, capped at
    :data:`SFM_MAX_SIZE`; views are named ``s00``, ``s01`` ... (:data:`SFM_VIEW_PREFIX`).

    Raises:
        ConfigError: a size below 16 pixels.
    """
    if SfmRig(config.sfm_rig) == SfmRig.TRAINING or not panos:
        return None
    if 0 < config.sfm_size < 16:
        raise ConfigError(f"reproject.sfm_size must be 0 (automatic) or at least 16 pixels, "
                          f"got {config.sfm_size}")
    size = config.sfm_size or min(min(_native_size(e, SFM_FOV_DEG) for e in panos),
                                  SFM_MAX_SIZE)
    rig = make_rig(str(config.sfm_rig), SFM_FOV_DEG, size)
    views = tuple(dataclasses.replace(v, name=SFM_VIEW_PREFIX + v.name) for v in rig.views)
    return Rig(rig.layout, views)


def _write_rig_masks(out: Path, rig: Rig, config: ReprojectConfig, platform: np.ndarray,
                     min_keep: float = 0.0) -> tuple[dict[str, Any], Rig]:
    """Write the ownership, nadir and keep (nadir AND `platform`, the equirect keep mask
    [256, 512] uint8) masks of the views of `rig` into ``out/masks``.

    A view whose owned pixels are kept (keep AND ownership) for less than `min_keep` of its
    area is left out (SfM's own rig: the cube face looking down at the operator, 21 % kept
    with the 45 deg nadir mask, is not worth its SIFT and matching); ownership is computed
    on the whole rig, so what such a view owned stays unowned.

    Returns:
        (the rig's JSON form with each view's ``masks`` (paths relative to `out`),
        ``nadir_deg`` and ``platform_mask``, the rig of the views kept).
    """
    rig_dict = rig.to_dict()
    (out / "masks").mkdir(exist_ok=True)
    kept = []
    for i, view in enumerate(rig.views):
        own = ownership_mask(rig, i)
        nadir = nadir_mask(view, config.nadir_deg) if config.nadir_mask else None
        if nadir is None:
            nadir = np.full((view.size, view.size), 255, np.uint8)
        keep = np.minimum(nadir, platform_view(platform, view))
        if min_keep > 0 and ((keep >= 128) & (own >= 128)).mean() < min_keep:
            continue
        paths = {kind: f"masks/{view.name}.{kind}.png" for kind in ("ownership", "nadir", "keep")}
        for kind, mask in (("ownership", own), ("nadir", nadir), ("keep", keep)):
            _write_png(out / paths[kind], mask)
        rig_dict["views"][i]["masks"] = paths
        kept.append(i)
    rig_dict["views"] = [rig_dict["views"][i] for i in kept]
    rig_dict["nadir_deg"] = config.nadir_deg if config.nadir_mask else None
    rig_dict["platform_mask"] = "platform_mask.png"
    return rig_dict, Rig(rig.layout, tuple(rig.views[i] for i in kept))


def _done(folder: Path, fingerprint: str) -> bool:
    marker = folder / _MARKER
    if not marker.exists():
        return False
    try:
        return read_json(marker).get("fingerprint") == fingerprint
    except Exception:
        return False


def run_reproject(project: Project, config: ReprojectConfig, events: Emitter) -> dict[str, Any]:
    """Reproject stage (see the module docstring for outputs): plan the run from the
    manifest, write the rigs and their masks, list the panoramas still to render, render them,
    pass the photos through, remove outputs of images no longer in the manifest, write
    ``frames.json``.

    Metrics: panoramas, photos, views, view_size (px), rendered (panoramas rendered this run,
    the rest were already done), seconds_per_pano (wall time per rendered panorama).

    Raises:
        InputError: no manifest, an undecodable panorama, or an input file gone since ingest.
    """
    run = plan_reproject(project, config, events)
    if run.panos:
        write_rigs(run)
    if run.sfm_rig is None:
        clear_sfm_rig(run)
    list_panoramas(run)
    render_panoramas(run)
    pass_photos(run)
    remove_stale_outputs(run)
    return write_frames(run)


@dataclass(eq=False)
class ReprojectRun:
    """The state the reproject phases share.

    Attributes:
        project, config, events: the stage's arguments.
        manifest: ``ingest/manifest.json`` as a dict.
        out: the stage folder ``reproject/`` (absolute).
        input_dir: the folder the manifest's ``file`` paths are relative to.
        panos, photos: the manifest's equirect and perspective entries, in its order.
        rig: the training rig (None without panoramas); sfm_rig: SfM's own rig, views kept
            (None when SfM runs on the training views).
        frames: ``frames.json``'s frames so far (panoramas, then photos).
        todo: panoramas still to render: (manifest entry, source path, [(rig, folder,
            fingerprint)] of each folder not done).
        done_before: panoramas already rendered by an earlier run (resume).
        seconds: wall time of the rendering, seconds.
    """

    project: Project
    config: ReprojectConfig
    events: Emitter
    manifest: dict[str, Any]
    out: Path
    input_dir: Path
    panos: list[dict[str, Any]]
    photos: list[dict[str, Any]]
    rig: Rig | None = None
    sfm_rig: Rig | None = None
    frames: list[dict[str, Any]] = field(default_factory=list)
    todo: list[tuple[dict[str, Any], Path, list[tuple[Rig, Path, str]]]] = field(
        default_factory=list)
    done_before: int = 0
    seconds: float = 0.0


def plan_reproject(project: Project, config: ReprojectConfig, events: Emitter) -> ReprojectRun:
    """Read ``ingest/manifest.json`` and create ``reproject/``; splits the images into
    panoramas and photos. Writes nothing else.

    Raises:
        InputError: no manifest (ingest has not run).
        ProjectError: the manifest is not valid JSON.
    """
    manifest = read_manifest(project.root).data
    out = project.stage_dir("reproject")
    return ReprojectRun(
        project, config, events, manifest, out, Path(manifest["input_dir"]),
        panos=[e for e in manifest["images"] if e["kind"] == "equirect"],
        photos=[e for e in manifest["images"] if e["kind"] == "perspective"],
    )


def write_rigs(run: ReprojectRun) -> None:
    """Settle the training rig (view size: ``reproject.size``, else what the smallest
    panorama supports) and, with ``reproject.sfm_rig``, SfM's own rig; write
    ``platform_mask.png``, ``rig.json``, the views' masks and ``sfm_rig.json`` (removing the
    masks of SfM views an earlier run kept). Sets ``run.rig`` and ``run.sfm_rig``.

    Raises:
        InputError: the user's platform mask is missing or not an image, a panorama cannot be
            decoded for the platform mask, or the masks hide every view of SfM's own rig.
        ConfigError: ``reproject.sfm_size`` below 16 pixels.
    """
    project, config, events, out, panos = run.project, run.config, run.events, run.out, run.panos
    size = config.size or min(
        auto_view_size(e.get("crop", {}).get("full_width", e["width"]), config.fov_deg,
                       config.max_size) for e in panos
    )
    rig = run.rig = make_rig(config.rig, config.fov_deg, size, config.views)
    covered = covered_mask(panos, events)  # partial panoramas: the sphere they cover
    platform = np.minimum(
        platform_keep_mask(project, panos, run.input_dir, config, events, covered), covered)
    _write_png(out / "platform_mask.png", platform)
    events.artifact("reproject/platform_mask.png")
    rig_dict, _ = _write_rig_masks(out, rig, config, platform)
    write_json_atomic(out / "rig.json", rig_dict)
    events.artifact("reproject/rig.json")
    events.artifact("reproject/masks")
    events.log(
        f"rig {rig.layout}: {len(rig.views)} views of {size}x{size} px at "
        f"{config.fov_deg:g} deg for {len(panos)} panoramas"
    )
    sfm_rig = make_sfm_rig(config, panos)
    if sfm_rig is None:
        return
    for p in (out / "masks").glob(f"{SFM_VIEW_PREFIX}*.png"):
        p.unlink()  # of views an earlier run kept
    sfm_dict, sfm_rig = _write_rig_masks(out, sfm_rig, config, platform, SFM_MIN_KEEP)
    if not sfm_rig.views:
        raise InputError(out / "platform_mask.png", "the nadir and platform masks hide "
                         "every view of SfM's own rig (reproject.sfm_rig)")
    run.sfm_rig = sfm_rig
    sfm_dict["native_size"] = min(_native_size(e, SFM_FOV_DEG) for e in panos)
    write_json_atomic(SFM_RIG.path(project.root), sfm_dict)
    events.artifact(SFM_RIG.rel)
    events.log(
        f"SfM rig {sfm_rig.layout}: {len(sfm_rig.views)} views of {sfm_rig.size}x"
        f"{sfm_rig.size} px ({', '.join(v.name for v in sfm_rig.views)}; views the "
        f"masks hide for {100 * (1 - SFM_MIN_KEEP):.0f} % or more are left out); SfM "
        f"poses the panoramas on them, training keeps the {len(rig.views)} views above")


def clear_sfm_rig(run: ReprojectRun) -> None:
    """SfM runs on the training views: remove ``sfm_rig.json``, ``sfm_views/`` and the SfM
    views' masks an earlier run left (nothing of an earlier SfM rig stays). Raises nothing
    for missing files."""
    SFM_RIG.path(run.project.root).unlink(missing_ok=True)
    shutil.rmtree(SFM_VIEWS.path(run.project.root), ignore_errors=True)
    for p in (run.out / "masks").glob(f"{SFM_VIEW_PREFIX}*.png"):
        p.unlink()


def list_panoramas(run: ReprojectRun) -> None:
    """Append each panorama's frame to ``run.frames`` and list in ``run.todo`` those still to
    render: per panorama its training views' folder and, with an SfM rig of its own, that
    rig's folder, each done or not (the fingerprint in its ``view_set.json``; resume). Creates
    ``reproject/views/`` and removes the folders to redo; logs how many were done before.

    Raises:
        InputError: a panorama's file is gone since ingest.
    """
    out, rig, sfm_rig = run.out, run.rig, run.sfm_rig
    views_dir = out / "views"
    views_dir.mkdir(exist_ok=True)
    sfm_views_dir = SFM_VIEWS.path(run.project.root)
    for e in run.panos:
        src = run.input_dir / e["file"]
        if not src.exists():
            raise InputError(src, "file gone since ingest; run ingest again")
        jobs = []
        for r, base in ((rig, views_dir), (sfm_rig, sfm_views_dir)):
            if r is None:
                continue
            fp = _pano_fingerprint(e, src, r, run.config)
            folder = base / e["id"]
            if not _done(folder, fp):
                shutil.rmtree(folder, ignore_errors=True)
                jobs.append((r, folder, fp))
        if jobs:
            run.todo.append((e, src, jobs))
        frame = {
            "id": e["id"],
            "kind": "equirect",
            "source": e["file"],
            "images": [f"views/{e['id']}/{v.name}.jpg" for v in rig.views],
            "gps": e["gps"],
            "enu_m": e["enu_m"],
            "time": e["time"],
        }
        if sfm_rig is not None:
            rel = sfm_views_dir.relative_to(out).as_posix()
            frame["sfm_images"] = [f"{rel}/{e['id']}/{v.name}.jpg" for v in sfm_rig.views]
        run.frames.append(frame)
    run.done_before = len(run.panos) - len(run.todo)
    if run.done_before:
        run.events.log(f"{run.done_before} panoramas already reprojected (resumed)")


def render_panoramas(run: ReprojectRun) -> None:
    """Render the panoramas of ``run.todo`` in a process pool (``reproject.workers``, else one
    per core; :func:`render_panorama`), each rig's views into a temporary folder renamed with
    its ``view_set.json`` when complete; progress per panorama. Sets ``run.seconds``.

    Raises:
        InputError: a panorama cannot be decoded or its size differs from the manifest's.
        Cancelled: the user cancelled (the pending panoramas are cancelled; finished ones
            stay done).
    """
    import time

    rig, todo, events, n_panos = run.rig, run.todo, run.events, len(run.panos)
    t0 = time.monotonic()
    if todo:
        workers = run.config.workers or os.cpu_count() or 1
        workers = max(1, min(workers, len(todo)))
        ctx = mp.get_context("spawn")
        with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
            futs = {}
            for e, src, jobs in todo:
                args = [(str(folder), list(r.views),
                         _exif_for_views(e, r.views[0].focal / r.size * 36.0))
                        for r, folder, _ in jobs]
                main = args.pop(0) if jobs[0][0] is rig else (None, list(rig.views), b"")
                futs[pool.submit(render_panorama, str(src), main[0], main[1],
                                 run.config.jpeg_quality, main[2], (e["width"], e["height"]),
                                 e.get("crop"), tuple(args))] = (e, jobs)
            pending = set(futs)
            k = 0
            try:
                while pending:
                    done, pending = cf.wait(pending, timeout=0.2, return_when=cf.FIRST_COMPLETED)
                    for fut in done:
                        e, jobs = futs[fut]
                        fut.result()
                        for r, folder, fp in jobs:
                            tmp = Path(str(folder) + ".tmp")
                            write_json_atomic(tmp / _MARKER, {
                                "fingerprint": fp, "source": e["file"],
                                "views": [f"{v.name}.jpg" for v in r.views]})
                            os.replace(tmp, folder)
                        k += 1
                        events.progress(
                            (run.done_before + k) / n_panos,
                            f"reprojected {run.done_before + k}/{n_panos} panoramas",
                        )
                    events.check_cancelled()
            except BaseException:
                for f in futs:
                    f.cancel()
                raise
    run.seconds = time.monotonic() - t0


def pass_photos(run: ReprojectRun) -> None:
    """Copy each perspective photo unchanged to ``reproject/photos/<id>.<ext>`` (unless a copy
    of the same size is there) and append its frame (SIMPLE_RADIAL camera, EXIF focal length
    or 1.2 x the longer side) to ``run.frames``.

    Raises:
        InputError: a photo is gone since ingest.
        Cancelled: the user cancelled (checked before each photo).
    """
    photo_dir = run.out / "photos"
    for e in run.photos:
        run.events.check_cancelled()
        src = run.input_dir / e["file"]
        if not src.exists():
            raise InputError(src, "file gone since ingest; run ingest again")
        dst = photo_dir / f"{e['id']}{src.suffix.lower()}"
        st = src.stat()
        if not (dst.exists() and dst.stat().st_size == st.st_size):
            photo_dir.mkdir(exist_ok=True)
            shutil.copyfile(src, dst.with_name(dst.name + ".tmp"))
            os.replace(dst.with_name(dst.name + ".tmp"), dst)
        w, h = e["width"], e["height"]
        focal = e.get("focal_px")
        run.frames.append(
            {
                "id": e["id"],
                "kind": "perspective",
                "source": e["file"],
                "images": [f"photos/{dst.name}"],
                "camera": {
                    "model": "SIMPLE_RADIAL",
                    "width": w,
                    "height": h,
                    "params": [focal or 1.2 * max(w, h), w / 2.0, h / 2.0, 0.0],
                    "focal_source": "exif" if focal else "default (1.2 x max side)",
                },
                "gps": e["gps"],
                "enu_m": e["enu_m"],
                "time": e["time"],
            }
        )


def remove_stale_outputs(run: ReprojectRun) -> None:
    """Outputs of images no longer in the manifest are ours to remove: panorama folders in
    ``views/`` and ``sfm_views/``, files in ``photos/`` that no frame names. Raises
    nothing for missing folders."""
    keep = {e["id"] for e in run.panos}
    for base in (run.out / "views", SFM_VIEWS.path(run.project.root)):
        for d in base.iterdir() if base.exists() else ():
            if d.is_dir() and d.name not in keep:
                shutil.rmtree(d, ignore_errors=True)
    photo_dir = run.out / "photos"
    if photo_dir.exists():
        keep_photos = {Path(f["images"][0]).name for f in run.frames
                       if f["kind"] == "perspective"}
        for p in photo_dir.iterdir():
            if p.name not in keep_photos:
                p.unlink()


def write_frames(run: ReprojectRun) -> dict[str, Any]:
    """Write ``reproject/frames.json`` (frames, rig file names, origin, config hash), emit
    the artifacts, the metrics and the final progress; returns the stage result
    ``{"frames": [...]}``.

    Raises:
        OSError: the file cannot be written.
    """
    events, frames, todo = run.events, run.frames, run.todo
    write_json_atomic(
        run.out / "frames.json",
        {
            "schema_version": 1,
            "rig": "rig.json" if run.rig else None,
            **({"sfm_rig": Path(SFM_RIG.rel).name} if run.sfm_rig else {}),
            "origin": run.manifest["origin"],
            "config_hash": config_hash(run.config),
            "frames": frames,
        },
    )
    events.artifact("reproject/frames.json")
    if run.panos:
        events.artifact("reproject/views")
    if run.sfm_rig:
        events.artifact(SFM_VIEWS.rel)
    if run.photos:
        events.artifact("reproject/photos")
    n_views = sum(len(f["images"]) for f in frames)
    events.metric("panoramas", len(run.panos))
    events.metric("photos", len(run.photos))
    events.metric("views", n_views)
    if run.rig:
        events.metric("view_size", run.rig.size)
    events.metric("rendered", len(todo))
    if todo:
        events.metric("seconds_per_pano", run.seconds / len(todo))
    events.progress(1.0, f"{n_views} images from {len(run.panos)} panoramas and "
                    f"{len(run.photos)} photos")
    return {"frames": frames}


def _write_png(path: Path, mask: np.ndarray) -> None:
    import cv2

    tmp = path.with_name(path.name + ".tmp.png")
    if not cv2.imwrite(str(tmp), mask):
        raise OSError(f"{path}: cannot write mask")
    os.replace(tmp, path)
