"""A synthetic scene of known size for measurement tests: a floor and a back wall."""

from __future__ import annotations

import numpy as np

from splatstudio.splats.model import Splats, logit


def room(spacing: float = 0.05) -> Splats:
    """A floor (z = 0, x 0..10 m, y 0..8 m) and a back wall (y = 8 m, x 0..10 m, z 0..3 m) of
    flat, nearly opaque (0.95) gaussians `spacing` metres apart (std 0.8 spacing in the plane,
    2 mm across it), SH degree 0, grey."""
    gx, gy = np.meshgrid(np.arange(0, 10, spacing), np.arange(0, 8, spacing), indexing="ij")
    floor = np.stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)], 1)
    wx, wz = np.meshgrid(np.arange(0, 10, spacing), np.arange(0, 3, spacing), indexing="ij")
    wall = np.stack([wx.ravel(), np.full(wx.size, 8.0), wz.ravel()], 1)
    s = Splats.empty(len(floor) + len(wall))
    s.means[:] = np.concatenate([floor, wall])
    s.quats[:] = [1, 0, 0, 0]
    sc = np.full((s.n, 3), 0.8 * spacing)
    sc[: len(floor), 2] = 0.002  # the floor is thin in z
    sc[len(floor):, 1] = 0.002  # the wall is thin in y
    s.scales[:] = np.log(sc)
    s.opacities[:] = logit(np.full(s.n, 0.95))
    s.sh0[: len(floor)] = 0.3
    s.sh0[len(floor):] = -0.3
    return s
