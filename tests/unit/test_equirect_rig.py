"""Ray math of equirect panoramas and the virtual rig: round trips, remap, masks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from splatstudio.config import RigLayout
from splatstudio.errors import ConfigError
from splatstudio.pano.equirect import (
    equirect_to_ray,
    ray_to_equirect,
    yaw_pitch_to_rotation,
)
from splatstudio.pano.rig import (
    View,
    auto_view_size,
    make_rig,
    nadir_mask,
    ownership_mask,
    render_view,
)
from splatstudio.quaternion import rotmat_to_quat


def project_to_view(view: View, rays: np.ndarray) -> np.ndarray:
    """Continuous pixel coordinates [..., 2] of rig-frame rays in `view` (independent path)."""
    cam = rays @ view.cam_from_rig.T
    uv = cam[..., :2] / cam[..., 2:3]
    return uv * view.focal + view.size / 2.0


def test_equirect_round_trip_subpixel():
    w, h = 5760, 2880
    rng = np.random.default_rng(0)
    u = rng.uniform(0, w, 10000)
    v = rng.uniform(1, h - 1, 10000)
    u2, v2 = ray_to_equirect(equirect_to_ray(u, v, w, h), w, h)
    du = np.abs((u2 - u + w / 2) % w - w / 2)
    assert du.max() < 1e-6 and np.abs(v2 - v).max() < 1e-6


def test_equirect_axes():
    w, h = 2048, 1024
    # centre column, middle row is forward (+z); a quarter to the right is +x; top is up (-y)
    assert np.allclose(equirect_to_ray(w / 2, h / 2, w, h), [0, 0, 1])
    assert np.allclose(equirect_to_ray(3 * w / 4, h / 2, w, h), [1, 0, 0])
    assert np.allclose(equirect_to_ray(w / 2, 0, w, h), [0, -1, 0])


@pytest.mark.parametrize("layout", list(RigLayout))
def test_view_equirect_view_round_trip(layout):
    """view pixel -> rig ray -> equirect pixel -> ray -> view pixel, under 0.5 px (it is ~1e-9)."""
    rig = make_rig(layout, 90.0, 400, custom="0:0,45:20,200:-60")
    w, h = 5760, 2880
    for view in rig.views:
        rays = view.pixel_rays()[::7, ::7]
        u, v = ray_to_equirect(rays, w, h)
        back = project_to_view(view, equirect_to_ray(u, v, w, h))
        c = np.arange(view.size)[::7] + 0.5
        gx, gy = np.meshgrid(c, c)
        err = np.hypot(back[..., 0] - gx, back[..., 1] - gy)
        assert err.max() < 0.5
        assert err.max() < 1e-6


def test_remap_places_a_dot_where_the_math_says():
    """Render a synthetic panorama with a small bright dot and find it in a view: < 0.5 px."""
    w, h = 4096, 2048
    lon, lat = np.radians(70.0), np.radians(12.0)
    direction = np.array([np.cos(lat) * np.sin(lon), -np.sin(lat), np.cos(lat) * np.cos(lon)])
    u0, v0 = ray_to_equirect(direction, w, h)
    uu, vv = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    pano = (255 * np.exp(-((uu - u0) ** 2 + (vv - v0) ** 2) / (2 * 3.0**2))).astype(np.float32)
    view = View("t", 60.0, 0.0, 90.0, 800)
    img = render_view(pano, view)
    ys, xs = np.nonzero(img > 20)
    wts = img[ys, xs]
    found = np.array([(xs * wts).sum() / wts.sum() + 0.5, (ys * wts).sum() / wts.sum() + 0.5])
    expected = project_to_view(view, direction)
    assert np.linalg.norm(found - expected) < 0.5


def test_remap_wraps_across_the_seam():
    w, h = 1024, 512
    pano = np.zeros((h, w), np.uint8)
    pano[:, :8] = 200
    pano[:, -8:] = 200
    img = render_view(pano, View("back", 180.0, 0.0, 60.0, 200))
    assert img[100, 95:105].min() > 150  # the seam is continuous in the backward view


def test_rotations_and_quaternions():
    for yaw, pitch in [(0, 0), (60, 35), (300, -35), (45, 90), (123.4, -12.5)]:
        r = yaw_pitch_to_rotation(yaw, pitch)
        assert np.allclose(r @ r.T, np.eye(3), atol=1e-12)
        assert np.isclose(np.linalg.det(r), 1.0)
        p = np.radians(pitch)
        y = np.radians(yaw)
        assert np.allclose(r[:, 2], [np.cos(p) * np.sin(y), -np.sin(p), np.cos(p) * np.cos(y)])
        assert abs(r[1, 0]) < 1e-12  # no roll: the camera x axis stays horizontal
        q = rotmat_to_quat(r)
        w_, x, y_, z = q
        rq = np.array(
            [
                [1 - 2 * (y_ * y_ + z * z), 2 * (x * y_ - z * w_), 2 * (x * z + y_ * w_)],
                [2 * (x * y_ + z * w_), 1 - 2 * (x * x + z * z), 2 * (y_ * z - x * w_)],
                [2 * (x * z - y_ * w_), 2 * (y_ * z + x * w_), 1 - 2 * (x * x + y_ * y_)],
            ]
        )
        assert np.allclose(rq, r, atol=1e-9)


def test_layouts():
    assert len(make_rig("splatforge18", 90, 64).views) == 18
    colmap = make_rig("colmap12", 90, 64)
    assert len(colmap.views) == 12
    assert sorted({v.yaw_deg for v in colmap.views if v.pitch_deg > 0}) == [45, 135, 225, 315]
    assert len(make_rig("cube6", 90, 64).views) == 6
    custom = make_rig("custom", 75, 64, custom="0:0, 90:10")
    assert [(v.yaw_deg, v.pitch_deg, v.fov_deg) for v in custom.views] == [(0, 0, 75), (90, 10, 75)]
    with pytest.raises(ConfigError, match="yaw:pitch"):
        make_rig("custom", 90, 64, custom="0:0,bad")
    with pytest.raises(ConfigError, match="custom"):
        make_rig("custom", 90, 64)
    with pytest.raises(ConfigError, match="fov"):
        make_rig("cube6", 0, 64)


def test_auto_view_size():
    assert auto_view_size(5760, 90, 1600) == 1440
    assert auto_view_size(2048, 90, 1600) == 512
    assert auto_view_size(16000, 90, 1600) == 1600


def test_ownership_masks_partition_the_covered_sphere():
    rig = make_rig("cube6", 90, 96)
    # On a cube every direction is seen by exactly one owner: the owned pixels of the 6 faces
    # are the whole of each face, up to the diagonals' ties.
    total = sum((ownership_mask(rig, i) > 0).mean() for i in range(6))
    assert abs(total - 6.0) < 0.05
    rig = make_rig("splatforge18", 90, 128)
    rng = np.random.default_rng(1)
    rays = rng.normal(size=(20000, 3))
    rays /= np.linalg.norm(rays, axis=1, keepdims=True)
    owners = np.argmax(rays @ rig.axes().T, axis=1)
    for i, view in enumerate(rig.views):
        sel = rays[owners == i]
        px = project_to_view(view, sel)
        inside = (px >= 0).all(1) & (px < view.size).all(1) & ((sel @ view.rig_from_cam[:, 2]) > 0)
        # every ray owned by view i and inside its image lands on an owned pixel (or on the
        # one-pixel border of the owned region, where the pixel centre's owner may differ)
        mask = cv2.dilate(ownership_mask(rig, i), np.ones((3, 3), np.uint8))
        ix = np.clip(px[inside].astype(int), 0, view.size - 1)
        assert (mask[ix[:, 1], ix[:, 0]] > 0).all()


def test_nadir_mask_angle():
    view = View("down", 0.0, -90.0, 90.0, 201)
    m = nadir_mask(view, 30.0)
    assert m[100, 100] == 0  # straight down
    # 30 deg from the centre of a 90 deg view: tan(30)/tan(45) of the half size
    r = np.tan(np.radians(30)) * 100.5
    assert m[100, int(100 + r - 2)] == 0 and m[100, int(100 + r + 2)] == 255
    assert (nadir_mask(View("up", 0.0, 60.0, 90.0, 64), 30.0) == 255).all()


@pytest.mark.parametrize("layout", ["splatforge18", "colmap12", "cube6"])
def test_ownership_polygon_matches_brute_force_argmax(layout):
    rig = make_rig(layout, 90, 200)
    axes = rig.axes()
    for i, view in enumerate(rig.views):
        brute = np.argmax(view.pixel_rays() @ axes.T, axis=-1) == i
        fast = ownership_mask(rig, i) > 0
        differ = brute != fast
        # only pixels on the boundary may differ (the polygon edge cuts through them)
        assert differ.mean() < 0.01
        near = cv2.dilate(brute.astype(np.uint8), np.ones((3, 3))) != cv2.erode(
            brute.astype(np.uint8), np.ones((3, 3))
        )
        assert not (differ & ~near).any()


def test_nadir_mask_brute_force():
    for pitch in (-90.0, -35.0, 0.0, 35.0):
        view = View("v", 30.0, pitch, 90.0, 120)
        angle = np.degrees(np.arccos(np.clip(view.pixel_rays()[..., 1], -1, 1)))
        brute = np.where(angle < 45.0, 0, 255)
        assert (nadir_mask(view, 45.0) != brute).mean() < 0.002
