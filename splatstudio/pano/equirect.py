"""Ray math of equirectangular panoramas.

Frames and units:
  - The *rig frame* (also "pano frame") sits at the panorama's centre of projection with the
    OpenCV axes: x right, y down, z forward, where forward is the centre column of the image
    (longitude 0) and the horizon is the middle row. Up is -y.
  - Longitude grows to the right (clockwise seen from above), in [-pi, pi); latitude grows up,
    in [-pi/2, pi/2].
  - Pixel coordinates are continuous with pixel centres at i + 0.5 (COLMAP's convention): the
    image spans u in [0, W), v in [0, H). Subtract 0.5 to get OpenCV ``remap`` coordinates.
"""

from __future__ import annotations

import numpy as np


def equirect_to_ray(u, v, width: int, height: int) -> np.ndarray:
    """Unit rays in the rig frame of continuous equirect pixel coordinates.

    Args:
        u, v: arrays (any matching shape [...]) of pixel coordinates, pixel centres at i + 0.5.
        width, height: panorama size in pixels (2:1 for a full sphere).

    Returns:
        float64 array [..., 3] of unit directions (x right, y down, z forward).
    """
    lon = (np.asarray(u, dtype=np.float64) / width - 0.5) * 2.0 * np.pi
    lat = (0.5 - np.asarray(v, dtype=np.float64) / height) * np.pi
    cl = np.cos(lat)
    return np.stack([cl * np.sin(lon), -np.sin(lat), cl * np.cos(lon)], axis=-1)


def ray_to_equirect(rays, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Continuous equirect pixel coordinates (u, v) of rays [..., 3] in the rig frame.

    Rays need not be unit length. u is in [0, width), v in [0, height].
    """
    d = np.asarray(rays, dtype=np.float64)
    x, y, z = d[..., 0], d[..., 1], d[..., 2]
    lon = np.arctan2(x, z)
    lat = np.arctan2(-y, np.hypot(x, z))
    u = (lon / (2.0 * np.pi) + 0.5) * width
    v = (0.5 - lat / np.pi) * height
    return np.mod(u, width), v


def yaw_pitch_to_rotation(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """Rotation rig_from_cam [3, 3] of a camera looking at azimuth `yaw_deg`, elevation `pitch_deg`.

    The camera has no roll: its x axis stays horizontal. yaw > 0 turns right, pitch > 0 looks
    up. Column 2 is the camera's optical axis in the rig frame:
    (cos p sin y, -sin p, cos p cos y).
    """
    y, p = np.radians(yaw_deg), np.radians(pitch_deg)
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    return ry @ rx
