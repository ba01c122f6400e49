"""Ingest: read every image's header, EXIF GPS, time and GPano XMP; write the manifest.

Reads only headers (no pixel decoding) and never modifies the input folder. The first image
(in natural file-name order) with a valid GPS fix is the ENU origin; every fix is converted
geodetic -> ECEF -> topocentric ENU (metres) with pyproj (:mod:`splatstudio.geo.enu`).

Output ``ingest/manifest.json``::

    {"schema_version": 1, "input_dir": str, "crs": "EPSG:4979",
     "origin": {"lat_deg", "lon_deg", "h_m"} | null,
     "images": [{"id", "file", "width", "height", "kind": "equirect"|"perspective",
                 "gps": {"lat_deg", "lon_deg", "h_m"} | null, "enu_m": [e, n, u] | null,
                 "time": ISO 8601 | null, "gps_time": ISO 8601 UTC | null,
                 "focal_px": float | null, "make", "model", "bytes", "gpano": {...},
                 "crop": {"full_width", "full_height", "left", "top", "width", "height"}
                         (partial panoramas only, see splatstudio.pano.partial)}],
     "skipped": [{"file", "reason"}]}

``file`` is relative to the input folder; ``id`` is a unique, file-system-safe name used for
the image's outputs downstream.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ImageKind, IngestConfig
from ..errors import InputError
from ..events import Emitter
from ..geo.enu import GeoOrigin, geodetic_to_enu
from ..geo.exif import HeaderError, focal_px_from_exif, parse_exif, parse_gpano, read_image_header
from ..pano.partial import crop_from_gpano
from ..project import Project, write_json_atomic
from .artifacts import MANIFEST

MANIFEST_SCHEMA = 1


def natural_key(s: str) -> list[Any]:
    """Sort key that orders "2.jpg" before "10.jpg"."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]


def list_input_files(input_dir: Path, recursive: bool, exclude: Path | None = None) -> list[Path]:
    """Non-hidden, non-folder entries of `input_dir` in natural order (sub-folders if
    `recursive`); dangling links and special files are included so ingest can report them.

    `exclude` (e.g. a project folder inside the input folder) is not entered.
    """
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(input_dir):
        d = Path(dirpath)
        dirnames[:] = [
            n
            for n in dirnames
            if recursive and not n.startswith(".") and (exclude is None or d / n != exclude)
        ]
        out += [d / n for n in filenames if not n.startswith(".")]
    return sorted(out, key=lambda p: natural_key(p.relative_to(input_dir).as_posix()))


def _safe_id(rel: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.splitext(rel)[0].replace("/", "_")) or "image"
    out, k = base, 1
    while out in taken:
        k += 1
        out = f"{base}_{k}"
    taken.add(out)
    return out


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


WIDE_PHOTO_RATIO = 2.2
"""Width / height above which a "photo" without GPano metadata is more likely a panorama
cropped to a band (GoPro MAX frames cropped to 4096 x 1344 are 3.05:1) than a camera photo
(3:2, 4:3, 16:9 = 1.78, 21:9 = 2.33 is rare)."""


def classify(width: int, height: int, gpano: dict[str, Any], config: IngestConfig) -> str | None:
    """"equirect", "perspective", or None for a panorama that is not 2:1 (a partial one, placed
    by its GPano cropped area if it has one: :func:`splatstudio.pano.partial.crop_from_gpano`)."""
    two_to_one = abs(width / height / 2.0 - 1.0) <= config.equirect_tolerance
    if config.kind == ImageKind.EQUIRECT:
        return "equirect" if two_to_one else None
    if config.kind == ImageKind.PERSPECTIVE:
        return "perspective"
    if two_to_one:
        return "equirect"
    if str(gpano.get("ProjectionType", "")).lower() == "equirectangular":
        return None  # a partial (cropped) panorama: neither a full sphere nor a pinhole photo
    return "perspective"


def scan_images(
    input_dir: Path, config: IngestConfig, events: Emitter, exclude: Path | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Read the headers of every image; returns (image entries without ENU, skipped files).

    Raises:
        InputError: the folder does not exist, is empty, or holds no readable image.
    """
    if not input_dir.is_dir():
        raise InputError(input_dir, "input folder not found (or not a folder)")
    files = list_input_files(input_dir, config.recursive, exclude)
    if not files:
        raise InputError(input_dir, "the folder is empty: put panoramas or photos in it")
    images: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    wide: list[str] = []  # "photos" wider than any camera makes (cropped panoramas?)
    partial: list[str] = []  # partial panoramas with their GPano cropped area

    def skip(rel: str, reason: str) -> None:
        skipped.append({"file": rel, "reason": reason})
        events.warning(f"skipped {rel}: {reason}")

    taken: set[str] = set()
    for i, path in enumerate(files):
        events.check_cancelled()
        rel = path.relative_to(input_dir).as_posix()
        try:
            st = path.stat()
            if not stat.S_ISREG(st.st_mode):
                skip(rel, "not a regular file")
                continue
            header = read_image_header(path)
            size = st.st_size
        except HeaderError as e:
            skip(rel, str(e))
            continue
        except OSError as e:
            skip(rel, f"unreadable ({e.strerror or e})")
            continue
        gpano = parse_gpano(header.xmp)
        width, height = header.display_size
        kind = classify(width, height, gpano, config)
        crop = None
        if kind is None:  # not 2:1 but a panorama: a partial one, placed by its GPano fields
            try:
                crop = crop_from_gpano(width, height, gpano, config.equirect_tolerance)
                kind = "equirect"
            except ValueError as e:
                skip(rel, f"{width}x{height} is a panorama that is not 2:1 (a partial "
                     f"equirectangular panorama) and cannot be placed on the sphere: {e}")
                continue
        if (kind == "perspective" and config.kind == ImageKind.AUTO
                and width / height > WIDE_PHOTO_RATIO):
            wide.append(f"{rel} ({width}x{height}, {width / height:.2f}:1)")
        exif = parse_exif(header.exif)
        for problem in exif.problems:
            events.warning(f"{rel}: {problem}")
        entry: dict[str, Any] = {
            "id": None,
            "file": rel,
            "width": width,
            "height": height,
            "kind": kind,
            "gps": exif.gps,
            "enu_m": None,
            "time": exif.time,
            "gps_time": exif.gps_time,
            "focal_px": focal_px_from_exif(exif, width, height) if kind == "perspective" else None,
            "make": exif.make,
            "model": exif.model,
            "orientation": header.orientation,
            "bytes": size,
        }
        if gpano:
            entry["gpano"] = gpano
        if crop is not None:
            entry["crop"] = crop.to_dict()
            top, bottom = crop.vertical_fov_deg
            partial.append(f"{rel} ({top:+.0f}° to {bottom:+.0f}°)")
        images.append(entry)
        events.progress((i + 1) / len(files), f"read {i + 1}/{len(files)} headers")

    if partial:
        events.log(f"{len(partial)} partial panoramas, placed on the sphere by their GPano "
                   f"cropped area (latitudes {partial[0].split(' (')[1]}; the rest of the "
                   "sphere is masked): " + ", ".join(p.split(" (")[0] for p in partial[:5])
                   + (f" and {len(partial) - 5} more" if len(partial) > 5 else ""))
    if wide:
        events.warning(
            f"{len(wide)} images are wider than a camera photo ({', '.join(wide[:5])}"
            + (f" and {len(wide) - 5} more" if len(wide) > 5 else "") + "): they are taken as "
            "ordinary pinhole photos, because they have no GPano metadata saying they are "
            "panoramas. If they are 360° panoramas cropped to a band, their vertical field of "
            "view is unknown and SfM will treat them wrongly: use the uncropped 2:1 panoramas, "
            "or add the GPano cropped-area fields that place them on the sphere (partial "
            "panoramas are supported then), or set ingest.kind=perspective to confirm they "
            "are photos"
        )

    # Duplicates: only files of equal size can be equal, so only those are hashed.
    by_size: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for e in images:
        by_size[e["bytes"]].append(e)
    dupes: set[int] = set()
    for group in by_size.values():
        if len(group) < 2:
            continue
        seen: dict[str, str] = {}
        for e in group:
            digest = _sha1(input_dir / e["file"])
            if digest in seen:
                dupes.add(id(e))
                skip(e["file"], f"duplicate of {seen[digest]} (same content)")
            else:
                seen[digest] = e["file"]
    images = [e for e in images if id(e) not in dupes]
    if not images:
        raise InputError(
            input_dir,
            f"no readable JPEG or PNG image among {len(files)} files "
            f"(first problem: {skipped[0]['file']}: {skipped[0]['reason']})",
        )
    for e in images:
        e["id"] = _safe_id(e["file"], taken)
    return images, skipped


def far_gps_fixes(images: list[dict[str, Any]], min_m: float,
                  factor: float = 20.0) -> list[tuple[dict[str, Any], float]]:
    """GPS fixes far from the rest of the capture (a photo of another trip in the folder).

    Distances are horizontal, in metres, from the median latitude/longitude of all fixes; a fix
    is far when it is beyond both `min_m` and `factor` times the median distance (so a long
    drive's ends are never far, and one stray fix cannot move the median).

    Returns:
        [(image entry of the manifest, distance in metres)] in input order; empty with fewer
        than 3 fixes.
    """
    fixes = [e for e in images if e.get("gps") is not None]
    if len(fixes) < 3:
        return []
    lat = np.array([e["gps"]["lat_deg"] for e in fixes])
    lon = np.array([e["gps"]["lon_deg"] for e in fixes])
    centre = GeoOrigin(float(np.median(lat)), float(np.median(lon)), 0.0)
    enu = geodetic_to_enu(lat, lon, np.zeros_like(lat), centre)
    d = np.linalg.norm(enu[:, :2], axis=1)
    limit = max(float(min_m), factor * float(np.median(d)))
    return [(e, float(di)) for e, di in zip(fixes, d, strict=True) if di > limit]


def run_ingest(project: Project, config: IngestConfig, events: Emitter) -> dict[str, Any]:
    """Ingest stage: scan ``project.input_dir`` and write ``ingest/manifest.json``.

    Metrics: images, equirect, perspective, with_gps, skipped, extent_m (largest ENU distance
    from the origin, metres), path_m (length of the GPS track in file order, metres).

    Raises:
        InputError: missing/empty folder, or no readable image in it.
    """
    project.stage_dir("ingest")
    exclude = project.root if project.root.is_relative_to(project.input_dir) else None
    images, skipped = scan_images(project.input_dir, config, events, exclude)

    far = far_gps_fixes(images, config.gps_outlier_m)
    for e, d in far:
        e["gps_outlier_m"] = round(d, 1)
    far_ids = {id(e) for e, _ in far}
    if far:
        names = ", ".join(f"{e['file']} ({d / 1000:,.1f} km)" for e, d in far[:10])
        events.warning(
            f"{len(far)} GPS fixes lie far from the rest of the capture and are ignored (not "
            f"the ENU origin, not a position prior, not checked): {names}"
        )
    with_gps = [e for e in images if e["gps"] is not None and id(e) not in far_ids]
    origin = None
    if with_gps:
        g = with_gps[0]["gps"]
        origin = GeoOrigin(g["lat_deg"], g["lon_deg"], g["h_m"])
        enu = geodetic_to_enu(
            [e["gps"]["lat_deg"] for e in with_gps],
            [e["gps"]["lon_deg"] for e in with_gps],
            [e["gps"]["h_m"] for e in with_gps],
            origin,
        )
        for e, p in zip(with_gps, enu, strict=True):
            e["enu_m"] = [float(x) for x in p]
    missing = [e["file"] for e in images if e["gps"] is None]
    if missing:
        names = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        events.warning(
            f"{len(missing)} of {len(images)} images have no GPS ({names}); "
            "the pipeline goes on without position priors for them"
        )

    manifest = {
        "schema_version": MANIFEST_SCHEMA,
        "input_dir": str(project.input_dir),
        "crs": "EPSG:4979",
        "origin": origin.to_dict() if origin else None,
        "images": images,
        "skipped": skipped,
    }
    write_json_atomic(MANIFEST.path(project.root), manifest)
    events.artifact(MANIFEST.rel)

    n_eq = sum(e["kind"] == "equirect" for e in images)
    events.metric("images", len(images))
    events.metric("equirect", n_eq)
    events.metric("perspective", len(images) - n_eq)
    events.metric("with_gps", len(with_gps))
    events.metric("skipped", len(skipped))
    if with_gps:
        pts = np.array([e["enu_m"] for e in with_gps])
        events.metric("extent_m", float(np.linalg.norm(pts, axis=1).max()))
        events.metric("path_m", float(np.linalg.norm(np.diff(pts, axis=0), axis=1).sum()))
    events.progress(1.0, f"{len(images)} images, {len(with_gps)} with GPS")
    return manifest
