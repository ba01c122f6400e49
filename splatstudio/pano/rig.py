"""The virtual camera rig a panorama is cut into, its remap tables and its masks.

Each view is an ideal pinhole camera (COLMAP ``PINHOLE``: fx, fy, cx, cy in pixels, pixel
centres at i + 0.5) sharing the panorama's centre of projection, so its pose in the rig is a pure
rotation: ``cam_from_rig`` (x right, y down, z forward; see :mod:`splatstudio.pano.equirect`
for the rig frame). Every panorama is one *frame* of this rig (COLMAP 4 rig/frame terms).

Layouts: ``splatforge18`` (6 azimuths x 3 elevations, Splat Forge), ``colmap12`` (COLMAP 4's
overlapping layout in ``pycolmap.panorama``: 4 azimuths x (-35, 0, +35 deg), upper ring turned
by 45 deg), ``cube6`` and custom "yaw:pitch" lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..config import RigLayout
from ..errors import ConfigError
from ..quaternion import rotmat_to_quat
from .equirect import yaw_pitch_to_rotation


@dataclass(frozen=True)
class View:
    """One virtual pinhole camera of the rig.

    Attributes:
        name: file stem of this view's images ("00", "01", ...).
        yaw_deg, pitch_deg: optical axis azimuth (right positive) and elevation (up positive).
        fov_deg: horizontal = vertical field of view, degrees.
        size: width = height, pixels.
    """

    name: str
    yaw_deg: float
    pitch_deg: float
    fov_deg: float
    size: int

    @property
    def focal(self) -> float:
        """Focal length in pixels: (size / 2) / tan(fov / 2)."""
        return self.size / 2.0 / np.tan(np.radians(self.fov_deg) / 2.0)

    @property
    def K(self) -> np.ndarray:
        """Intrinsics [3, 3] in pixels (principal point at the image centre, size / 2)."""
        f, c = self.focal, self.size / 2.0
        return np.array([[f, 0.0, c], [0.0, f, c], [0.0, 0.0, 1.0]])

    @property
    def rig_from_cam(self) -> np.ndarray:
        """Rotation [3, 3] taking camera-frame vectors to the rig frame."""
        return yaw_pitch_to_rotation(self.yaw_deg, self.pitch_deg)

    @property
    def cam_from_rig(self) -> np.ndarray:
        """Rotation [3, 3] taking rig-frame vectors to the camera frame (COLMAP sens_from_rig)."""
        return self.rig_from_cam.T

    def pixel_rays(self) -> np.ndarray:
        """Unit rays [size, size, 3] in the rig frame through every pixel centre."""
        c = (np.arange(self.size, dtype=np.float64) + 0.5 - self.size / 2.0) / self.focal
        x, y = np.meshgrid(c, c)
        d = np.stack([x, y, np.ones_like(x)], axis=-1)
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
        return d @ self.rig_from_cam.T


@dataclass(frozen=True)
class Rig:
    """A set of views sharing one centre of projection (the panorama's)."""

    layout: str
    views: tuple[View, ...]

    @property
    def size(self) -> int:
        return self.views[0].size

    def axes(self) -> np.ndarray:
        """Optical axes [V, 3] of the views in the rig frame (unit)."""
        return np.stack([v.rig_from_cam[:, 2] for v in self.views])

    def to_dict(self) -> dict:
        """JSON form written as ``rig.json`` (per view: intrinsics and cam_from_rig)."""
        views = []
        for v in self.views:
            r = v.cam_from_rig
            views.append(
                {
                    "name": v.name,
                    "yaw_deg": v.yaw_deg,
                    "pitch_deg": v.pitch_deg,
                    "fov_deg": v.fov_deg,
                    "camera": {
                        "model": "PINHOLE",
                        "width": v.size,
                        "height": v.size,
                        "params": [v.focal, v.focal, v.size / 2.0, v.size / 2.0],
                    },
                    "cam_from_rig": {
                        "rotation_wxyz": rotmat_to_quat(r).tolist(),
                        "rotation_matrix": r.tolist(),
                        "translation_m": [0.0, 0.0, 0.0],
                    },
                }
            )
        return {
            "layout": self.layout,
            "frame": "rig frame = panorama centre, OpenCV axes (x right, y down, z forward)",
            "views": views,
        }


def _parse_custom(spec: str) -> list[tuple[float, float]]:
    pairs = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        try:
            yaw, pitch = (float(x) for x in item.split(":"))
        except ValueError:
            raise ConfigError(
                f"bad custom view {item!r} in reproject.views; expected yaw:pitch in degrees"
            ) from None
        if not -90.0 <= pitch <= 90.0:
            raise ConfigError(f"pitch {pitch} of custom view {item!r} is outside [-90, 90] degrees")
        pairs.append((yaw, pitch))
    if not pairs:
        raise ConfigError("rig 'custom' needs reproject.views, e.g. '0:0,90:0,180:0,270:0'")
    return pairs


def layout_angles(layout: RigLayout | str, custom: str = "") -> list[tuple[float, float]]:
    """(yaw_deg, pitch_deg) of each view of a layout, in view order."""
    layout = RigLayout(layout)
    if layout == RigLayout.SPLATFORGE18:
        return [(y, p) for p in (-35.0, 0.0, 35.0) for y in np.arange(0.0, 360.0, 60.0)]
    if layout == RigLayout.COLMAP12:
        out = []
        for p in (-35.0, 0.0, 35.0):
            offset = 45.0 if p > 0 else 0.0
            out += [(float(y + offset), p) for y in np.arange(0.0, 360.0, 90.0)]
        return out
    if layout == RigLayout.CUBE6:
        return [(0.0, 0.0), (90.0, 0.0), (180.0, 0.0), (270.0, 0.0), (0.0, 90.0), (0.0, -90.0)]
    return _parse_custom(custom)


def make_rig(layout: RigLayout | str, fov_deg: float, size: int, custom: str = "") -> Rig:
    """Build a rig.

    Args:
        layout: a :class:`RigLayout`.
        fov_deg: field of view of every view, degrees, in (0, 170).
        size: view width = height, pixels (>= 16).
        custom: "yaw:pitch,..." for the custom layout.

    Raises:
        ConfigError: bad fov, size or custom list.
    """
    if not 0.0 < fov_deg < 170.0:
        raise ConfigError(f"reproject.fov_deg must be in (0, 170) degrees, got {fov_deg}")
    if size < 16:
        raise ConfigError(f"view size must be at least 16 pixels, got {size}")
    angles = layout_angles(layout, custom)
    views = tuple(
        View(f"{i:02d}", float(y) % 360.0, float(p), float(fov_deg), int(size))
        for i, (y, p) in enumerate(angles)
    )
    return Rig(str(RigLayout(layout)), views)


def auto_view_size(pano_width: int, fov_deg: float, max_size: int) -> int:
    """View size the panorama supports: pano_width * fov / 360, capped at `max_size` pixels."""
    return int(max(16, min(max_size, round(pano_width * fov_deg / 360.0))))


@lru_cache(maxsize=16)
def _base_maps(pitch_deg: float, fov_deg: float, size: int, pano_w: int, pano_h: int):
    """Float remap coordinates of a view at yaw 0 (OpenCV coordinates: pixel centres at i).

    float32 throughout (u has ~1e-3 px of rounding at 5760 px); rays need no normalising for
    the two arctangents of :func:`~splatstudio.pano.equirect.ray_to_equirect`.
    """
    view = View("", 0.0, pitch_deg, fov_deg, size)
    c = (np.arange(size, dtype=np.float32) + 0.5 - size / 2.0) / np.float32(view.focal)
    x, y = np.meshgrid(c, c)
    r = view.rig_from_cam.astype(np.float32)
    dx = r[0, 0] * x + r[0, 1] * y + r[0, 2]
    dy = r[1, 0] * x + r[1, 1] * y + r[1, 2]
    dz = r[2, 0] * x + r[2, 1] * y + r[2, 2]
    lon = np.arctan2(dx, dz)
    lat = np.arctan2(-dy, np.hypot(dx, dz))
    map_x = (lon * np.float32(pano_w / (2.0 * np.pi)) + np.float32(pano_w / 2.0 - 0.5)).astype(
        np.float32
    )
    v = np.float32(pano_h / 2.0) - lat * np.float32(pano_h / np.pi)
    # Rows beyond the poles are clamped; columns wrap (BORDER_WRAP).
    map_y = np.clip(v - np.float32(0.5), 0.0, pano_h - 1.0).astype(np.float32)
    return map_x, map_y


@lru_cache(maxsize=32)
def _maps_cached(view: View, pano_w: int, pano_h: int):
    import cv2

    # A turn about the vertical axis adds the yaw to every ray's longitude, i.e. shifts the
    # equirect column by W * yaw / 360: one trigonometric map per pitch serves a whole ring.
    base_x, map_y = _base_maps(view.pitch_deg, view.fov_deg, view.size, pano_w, pano_h)
    map_x = np.mod(base_x + np.float32(pano_w * view.yaw_deg / 360.0) + 0.5, pano_w) - 0.5
    return cv2.convertMaps(map_x.astype(np.float32), map_y, cv2.CV_16SC2)


def remap_maps(view: View, pano_w: int, pano_h: int):
    """OpenCV fixed-point remap tables of `view` for a pano of size (pano_w, pano_h).

    Returns (map1 [S,S,2] int16, map2 [S,S] uint16) for ``cv2.remap`` (cached per view and
    pano size; the trigonometry is computed once per pitch, see `_maps_cached`).
    """
    return _maps_cached(view, int(pano_w), int(pano_h))


def render_view(pano: np.ndarray, view: View) -> np.ndarray:
    """Render `view` from an equirect image [H, W, C] (bilinear, wrapping at +-180 deg)."""
    import cv2

    m1, m2 = remap_maps(view, pano.shape[1], pano.shape[0])
    return cv2.remap(pano, m1, m2, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)


def ownership_mask(rig: Rig, index: int) -> np.ndarray:
    """uint8 [S, S]: 255 where view `index` owns the pixel's ray, else 0.

    A ray belongs to the one view whose optical axis is nearest (largest dot product), so
    features are detected once per panorama direction. The boundary with view j is the plane
    ray . (a_i - a_j) = 0, a straight line in the image of view i, so the owned region is a
    convex polygon: the image square clipped by one half-plane per other view, filled with
    ``cv2.fillPoly`` (exact up to the pixel grid; ~1 ms instead of an argmax over S² rays).
    """
    import cv2

    view = rig.views[index]
    s, f, c = view.size, view.focal, view.size / 2.0
    axes = rig.axes()
    poly = np.array([[0.0, 0.0], [s, 0.0], [s, s], [0.0, s]])  # continuous pixel coords
    for j in range(len(rig.views)):
        if j == index:
            continue
        d = axes[index] - axes[j]
        if np.allclose(d, 0.0):  # a duplicate axis: the lower index owns it
            if j < index:
                return np.zeros((s, s), np.uint8)
            continue
        n = view.cam_from_rig @ d  # ray_cam . n >= 0, ray_cam ~ ((u - c) / f, (v - c) / f, 1)
        line = np.array([n[0], n[1], n[2] * f - (n[0] + n[1]) * c])
        poly = _clip_polygon(poly, line)
        if len(poly) < 3:
            return np.zeros((s, s), np.uint8)
    mask = np.zeros((s, s), np.uint8)
    shift = 4
    pts = np.round((poly - 0.5) * (1 << shift)).astype(np.int32)  # OpenCV: centres at i
    cv2.fillPoly(mask, [pts], 255, lineType=cv2.LINE_8, shift=shift)
    return mask


def _clip_polygon(poly: np.ndarray, line: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman: the part of convex polygon [K, 2] where a*u + b*v + c >= 0."""
    if len(poly) == 0:
        return poly
    val = poly @ line[:2] + line[2]
    out = []
    for k in range(len(poly)):
        p, q = poly[k], poly[(k + 1) % len(poly)]
        vp, vq = val[k], val[(k + 1) % len(poly)]
        if vp >= 0:
            out.append(p)
        if (vp >= 0) != (vq >= 0):
            out.append(p + (q - p) * (vp / (vp - vq)))
    return np.array(out).reshape(-1, 2)


def nadir_mask(view: View, nadir_deg: float) -> np.ndarray:
    """uint8 [S, S]: 0 for rays within `nadir_deg` of straight down (+y), 255 elsewhere.

    Hides the operator, the pole and the mount that fill the bottom of handheld or helmet
    captures (the panorama is assumed level, as 360 cameras export it).
    """
    half_diag = np.degrees(np.arctan(np.sqrt(2.0) * np.tan(np.radians(view.fov_deg) / 2.0)))
    axis_from_nadir = np.degrees(np.arccos(np.clip(view.rig_from_cam[1, 2], -1.0, 1.0)))
    if axis_from_nadir - half_diag > nadir_deg:  # the cap is out of view
        return np.full((view.size, view.size), 255, np.uint8)
    c = ((np.arange(view.size, dtype=np.float32) + 0.5 - view.size / 2.0) / view.focal)
    x, y = np.meshgrid(c, c)
    r = view.rig_from_cam.astype(np.float32)
    down = r[1, 0] * x + r[1, 1] * y + r[1, 2]  # y component of the (unnormalised) ray
    cos_angle = down / np.sqrt(x * x + y * y + 1.0)
    return np.where(cos_angle > np.cos(np.radians(nadir_deg)), 0, 255).astype(np.uint8)
