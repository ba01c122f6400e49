"""The platform mask: what stays fixed in the camera's frame while the world moves.

People drive a place with the 360° camera on the car (roof, bonnet, inside the cabin) or walk
it on a helmet or a stick: the vehicle, the mount or the operator is in every panorama at the
same pixels. SfM then matches that platform perfectly between all frames and glues the
panoramas together (measured on a real 100-panorama drive: a model 0.35 times the GPS track's
size, 9 of 100 frames within 5 m of their fix), and training learns it as a ghost.

This module finds those pixels from per-pixel statistics over the panoramas of one capture,
on downscaled equirects (:data:`WORK_WIDTH` px wide), in the spirit of static-background
estimation by temporal statistics (e.g. the median background model of video surveillance,
Cucchiara et al., "Detecting moving objects, ghosts and shadows in video streams", PAMI 2003)
turned around: here the *static* part is the foreground to remove.

1. Each panorama becomes a blurred grey image and its gradient magnitude (Sobel).
2. Frames are compared in pairs as far apart in the capture as possible (frame i with frame
   i + N/2), so the world has moved most; pairs whose whole image barely changed (a stopped
   vehicle) are left out.
3. A pixel is *platform core* when it is textured (median gradient over the frames above
   :data:`MIN_TEXTURE`) and its gradient stays the same (median change under
   :data:`MAX_CHANGE` of its texture). Gradients, not colours, so an exposure change does not
   break the platform, and the untextured sky (static but featureless) is not platform.
   A textured pixel whose colours stay the same (:data:`MAX_COLOUR_CHANGE`) counts too.
4. Clean-up: an opening removes isolated pixels, connected components under
   :data:`MIN_AREA` of the sphere are dropped, a closing joins the parts; untextured pixels
   whose colour does not change at all (:data:`STILL_COLOUR`) are added when they touch the
   platform (up to :data:`STILL_REACH_DEG` away); small holes (under :data:`MAX_HOLE` of the
   sphere: a plain patch of a dashboard, not a cabin window) are filled, and the mask grows by
   ``grow_deg``.

A person carrying the camera moves against it (head and shoulders shift by 5-20 px of 512
between the shared walk's panoramas, colours change by 16-22 grey levels where the scenery
changes by 37-70): this statistic does not find them, and the nadir mask (45 deg, which covers
the shared walk's operator) stays the tool for them; it finds what is rigidly mounted.

Areas are shares of the sphere (equirect rows weighted by the cosine of their latitude).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

WORK_WIDTH = 512
"""Width of the downscaled equirects the statistics are computed on (height: half)."""

MIN_TEXTURE = 12.0
"""Median Sobel gradient magnitude (grey levels per pixel, after a 1 px blur) of a textured
pixel."""

MAX_CHANGE = 0.3
"""Largest median gradient change between far-apart frames, as a share of the pixel's texture,
of a pixel fixed in the camera's frame (0.0-0.1 on a pasted dashboard, JPEG noise included;
0.5-2 on the scenery of the shared walk)."""

MAX_COLOUR_CHANGE = 6.0
"""Largest median colour change (mean over B, G, R, grey levels, 2 px blur) between far-apart
frames of a textured pixel fixed in the camera's frame, for a platform that moves a little
(an operator's head and shoulders): its gradients change, its colours do not."""

STILL_COLOUR = 3.0
"""Colour change (grey levels) under which an untextured pixel next to the platform is
platform too (JPEG noise on a fixed object: about 1)."""

STILL_REACH_DEG = 20.0
"""How far such untextured pixels may extend from the textured platform, degrees."""

MIN_AREA = 0.002
"""Smallest connected part of the mask kept, share of the sphere."""

MAX_HOLE = 0.02
"""Largest hole inside the mask that is filled, share of the sphere."""

MIN_FRAMES = 3
"""Fewest panoramas the statistics need."""


@dataclass(frozen=True)
class PlatformMask:
    """A capture's platform mask.

    Attributes:
        mask: [H, W] bool, True on the platform (pixels to ignore), at the work resolution
            (:data:`WORK_WIDTH` x half), equirect (rows: latitude +90 .. -90 deg).
        fraction: share of the sphere covered (0..1).
        frames: panoramas used; pairs: frame pairs compared.
        reason: why the mask is empty when it could not be computed, else None.
    """

    mask: np.ndarray
    fraction: float
    frames: int
    pairs: int
    reason: str | None = None


def sphere_weights(height: int, width: int) -> np.ndarray:
    """Area weight [H, W] of each equirect pixel (sums to 1): cosine of the row's latitude."""
    lat = (0.5 - (np.arange(height) + 0.5) / height) * np.pi
    w = np.repeat(np.cos(lat)[:, None], width, axis=1)
    return w / w.sum()


def sphere_fraction(mask: np.ndarray) -> float:
    """Share of the sphere [0, 1] covered by equirect `mask` [H, W] bool."""
    return float((sphere_weights(*mask.shape) * mask).sum())


def _colour_and_gradient(pano: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """([h, w, 3] float32 colour blurred by 2 px, [h, w] gradient magnitude of the grey image
    blurred by 1 px) at `width` x `width`/2."""
    import cv2

    small = cv2.resize(pano, (width, width // 2), interpolation=cv2.INTER_AREA)
    if small.ndim == 2:
        small = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)
    grey = cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.float32),
                            (0, 0), 1.0)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    return cv2.GaussianBlur(small.astype(np.float32), (0, 0), 2.0), np.hypot(gx, gy)


def _fill_small_holes(mask: np.ndarray, max_fraction: float) -> np.ndarray:
    import cv2

    holes = (~mask).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(holes, connectivity=4)
    w = sphere_weights(*mask.shape)
    area = np.bincount(labels.ravel(), weights=w.ravel(), minlength=n)
    out = mask.copy()
    for k in range(1, n):
        x, y, bw, bh, _ = stats[k]
        touches_top = y == 0  # the sky side of the sphere is never a hole
        if area[k] <= max_fraction and not touches_top:
            out[labels == k] = True
    return out


def estimate_platform_mask(panoramas: Iterable[np.ndarray], *, grow_deg: float = 1.5,
                           width: int = WORK_WIDTH,
                           covered: np.ndarray | None = None) -> PlatformMask:
    """The pixels fixed in the camera's frame across `panoramas` (module docstring).

    Args:
        panoramas: equirect images [H, W, 3] BGR (or [H, W] grey) uint8 of one capture, in
            capture order, any size (each is downscaled to `width`).
        grow_deg: the mask grows by this many degrees at the end.
        width: work resolution (pixels across 360 deg).
        covered: bool [width / 2, width], where the panoramas have pixels (partial panoramas,
            :mod:`splatstudio.pano.partial`); the edge of what they cover is not a platform.

    Returns:
        a :class:`PlatformMask`; empty (with `reason`) with fewer than :data:`MIN_FRAMES`
        panoramas or when no pair of frames differs (the camera never moved).
    """
    import cv2

    colours, grads = [], []
    for p in panoramas:
        c, d = _colour_and_gradient(p, width)
        colours.append(c)
        grads.append(d)
    h = width // 2
    empty = np.zeros((h, width), bool)
    n = len(colours)
    if n < MIN_FRAMES:
        return PlatformMask(empty, 0.0, n, 0, f"{n} panoramas: at least {MIN_FRAMES} are needed "
                            "to tell what stays fixed in the camera's frame")
    pairs = [(i, (i + n // 2) % n) for i in range(n)]
    change = np.array([np.median(np.abs(colours[i] - colours[j])) for i, j in pairs])
    moving = [p for p, c in zip(pairs, change, strict=True) if c >= 0.25 * np.median(change)
              and c > 1.0]
    if not moving:
        return PlatformMask(empty, 0.0, n, 0, "the panoramas do not differ: the camera did not "
                            "move, nothing can be told apart")
    texture = np.median(np.stack(grads), axis=0)
    dgrad = np.median(np.stack([np.abs(grads[i] - grads[j]) for i, j in moving]), axis=0)
    dcol = np.median(np.stack([np.abs(colours[i] - colours[j]).mean(-1) for i, j in moving]),
                     axis=0)
    core = (texture > MIN_TEXTURE) & ((dgrad < MAX_CHANGE * texture) | (dcol < MAX_COLOUR_CHANGE))
    inside = np.ones_like(core)
    if covered is not None:  # the border of a partial panorama is fixed too, but no platform
        inside = cv2.erode(covered.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        core &= inside

    px_per_deg = width / 360.0
    k3 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    m = cv2.morphologyEx(core.astype(np.uint8), cv2.MORPH_OPEN, k3)
    nlab, labels = cv2.connectedComponents(m, connectivity=8)
    w = sphere_weights(h, width)
    area = np.bincount(labels.ravel(), weights=w.ravel(), minlength=nlab)
    keep = np.zeros(nlab, bool)
    keep[1:] = area[1:] >= MIN_AREA
    m = keep[labels].astype(np.uint8)
    kc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, kc)
    # untextured parts of the platform (a smooth bonnet, a plain patch of a dashboard): pixels
    # whose colour does not change at all, reached from the textured core
    still = ((dcol < STILL_COLOUR) & inside).astype(np.uint8)
    for _ in range(int(round(STILL_REACH_DEG * px_per_deg))):
        grown = cv2.dilate(m, k3) & (still | m)
        if np.array_equal(grown, m):
            break
        m = grown
    mask = _fill_small_holes(m.astype(bool), MAX_HOLE)
    r = max(1, int(round(grow_deg * px_per_deg)))
    if r > 0:
        kg = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        mask = cv2.dilate(mask.astype(np.uint8), kg).astype(bool)
    if covered is not None:
        mask &= covered
    return PlatformMask(mask, sphere_fraction(mask), n, len(moving))
