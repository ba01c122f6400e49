"""Disk-space preflight: what a stage will write, estimated before it starts.

The runner calls :func:`check_disk` before each stage: it refuses the stage when the free space
is below the stage's *minimum* (what the stage writes even in the best case) and warns when it
is below one and a half times the *typical* size, so a run does not spend an hour to die of a
full disk in its last minute. A full disk in the middle of a stage is still reported clearly
(:class:`~splatstudio.errors.DiskFullError`) and the next run resumes.

The numbers come from the shared 2048 walk with the ``test`` preset (5 panoramas, 90 views of
512 px): views 9.4 MB (0.40 B per view pixel, JPEG quality 95, with the masks), database 6.3 MB
(418 keypoints per view: 152 B each for the 128-byte descriptor and six float32 of the
keypoint, plus matches), model and georef 2.7 MB, a checkpoint of 2,700 gaussians 0.38 MB.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import free_bytes
from ..project import Project
from .artifacts import TRAIN_SPLAT, read_manifest

MB = 1_000_000

VIEW_PIXELS_PER_PANO_PIXEL = 2.25
"""Pixels of the default 18-view rig per pixel of its panorama (90 views of 512 px from five
2048 x 1024 panoramas; 18 views of 1440 px from one 5760 x 2880)."""

VIEW_BYTES_PER_PIXEL = 0.5
"""JPEG bytes per view pixel with its masks (measured 0.40 at quality 95; rounded up)."""

KEYPOINT_BYTES = 152 * 1.3
"""Database bytes per keypoint: descriptor (128 B) and keypoint (6 float32), plus 30 % for the
matches and two-view geometries."""

PIXELS_PER_KEYPOINT = 600
"""SIFT keypoints per view in the walk: about one per 600 pixels of 512 px views."""


@dataclass(frozen=True)
class DiskNeed:
    """Bytes a stage is expected to write.

    Attributes:
        minimum: bytes written even in the best case (refuse below this).
        typical: bytes written in a typical run (warn below 1.5 times this).
        detail: how the estimate was made, for the message.
    """

    minimum: int
    typical: int
    detail: str


def _images(project: Project) -> list[dict[str, Any]]:
    try:
        return read_manifest(project.root).images
    except Exception:  # no manifest, or a torn one: the stage itself will say so
        return []


def _floats_per_gaussian(sh_degree: int) -> int:
    # means 3, quats 4, scales 3, opacities 1, sh0 3, shN 3 * ((d+1)^2 - 1)
    return 14 + 3 * ((sh_degree + 1) ** 2 - 1)


def estimate(project: Project, stage: str) -> DiskNeed:
    """Disk need of `stage` of `project` from its inputs and options.

    Returns:
        a :class:`DiskNeed` (zero for a stage with nothing to estimate yet).
    """
    images = _images(project)
    panos = [im for im in images if im.get("kind") == "equirect"]
    photos = [im for im in images if im.get("kind") != "equirect"]
    pano_px = sum(int(im.get("width", 0)) * int(im.get("height", 0)) for im in panos)
    view_px = pano_px * VIEW_PIXELS_PER_PANO_PIXEL
    cfg = project.config
    if stage == "ingest":
        return DiskNeed(MB, MB, "the manifest")
    if stage == "reproject":
        typical = int(view_px * VIEW_BYTES_PER_PIXEL + sum(int(p.get("bytes", 0)) for p in photos))
        return DiskNeed(typical // 2, typical,
                        f"{len(panos)} panoramas as perspective views, {len(photos)} photos")
    if stage == "sfm":
        photo_px = sum(int(im.get("width", 0)) * int(im.get("height", 0)) for im in photos)
        max_kp = max(1, int(cfg.sfm.max_num_features))
        kp = min(max_kp * (len(panos) * 18 + len(photos)),
                 (view_px + photo_px) / PIXELS_PER_KEYPOINT)
        typical = int(kp * KEYPOINT_BYTES) + 2 * MB
        return DiskNeed(typical // 2, typical, f"SIFT features of about {kp:,.0f} keypoints")
    if stage == "georef":
        n = len(images)
        return DiskNeed(MB, 5 * MB + 20_000 * n * 18, "the model in ENU metres")
    if stage == "train":
        t = cfg.train
        per = _floats_per_gaussian(int(t.sh_degree)) * 4
        # parameters and two Adam moments, twice while a checkpoint replaces the last one,
        # plus splat.ply (the same floats again) and previews
        start = 100_000
        cap = int(t.max_gaussians) if int(t.max_gaussians) > 0 else 3_000_000
        return DiskNeed(
            int(start * per * 7) + 2 * MB,
            int(cap * per * 7) + 10 * MB,
            f"checkpoints and splat.ply of up to {cap:,} gaussians",
        )
    if stage == "export":
        ply = TRAIN_SPLAT.path(project.root)
        size = ply.stat().st_size if ply.exists() else 0
        formats = [str(f) for f in cfg.export.formats]
        if "all" in formats:
            formats = ["ply", "splat", "spz", "compressed_ply", "sog", "glb", "obj"]
        mesh = any(f in ("glb", "obj") for f in formats)
        typical = int(size * 1.2 * max(1, len(formats))) + (200 * MB if mesh else 0)
        return DiskNeed(size, typical, f"{len(formats)} export formats")
    return DiskNeed(0, 0, "")


@dataclass(frozen=True)
class DiskCheck:
    """Outcome of :func:`check_disk`: ``ok`` False means refuse; `message` says why or warns."""

    ok: bool
    message: str | None
    need: DiskNeed
    free: int | None


def _mb(n: float) -> str:
    return f"{math.ceil(n / MB):,} MB"


def check_disk(project: Project, stage: str, free: int | None = None) -> DiskCheck:
    """Compare the free space of the project's disk with :func:`estimate` of `stage`.

    Args:
        free: free bytes (default: read from the disk; tests pass a number).

    Returns:
        ok=False with a message naming the folder, the free and the needed space when free is
        below the minimum; ok=True with a warning when below 1.5 x typical; else no message.
    """
    need = estimate(project, stage)
    free = free_bytes(project.root) if free is None else free
    if free is None or need.typical == 0:
        return DiskCheck(True, None, need, free)
    if free < need.minimum:
        return DiskCheck(
            False,
            f"{project.root}: {_mb(free)} free, but the {stage} stage needs at least "
            f"{_mb(need.minimum)} ({need.detail}; about {_mb(need.typical)} in a typical run). "
            "Free some space or move the project to a larger disk, then run again",
            need, free,
        )
    if free < 1.5 * need.typical:
        return DiskCheck(
            True,
            f"only {_mb(free)} free on the project's disk; the {stage} stage may need about "
            f"{_mb(need.typical)} ({need.detail})",
            need, free,
        )
    return DiskCheck(True, None, need, free)
