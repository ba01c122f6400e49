"""Picking the splat surface along a ray and measuring (splatstudio.splats.measure)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.room import room

from splatstudio.geo.enu import GeoOrigin, enu_to_geodetic, geodetic_to_enu
from splatstudio.render.camera import intrinsics_from_fov, look_at, pixel_ray
from splatstudio.splats.edit import project_points
from splatstudio.splats.measure import measure, pick_ray
from splatstudio.splats.model import Splats, logit


def _pick_world(s: Splats, vm, K, p: np.ndarray) -> np.ndarray:
    uv, _ = project_points(p[None], vm, K)
    o, d = pixel_ray(vm, K, float(uv[0, 0]), float(uv[0, 1]))
    t = pick_ray(s, o, d)
    assert t is not None
    return o + t * d


def test_distance_within_one_percent_on_a_room_of_known_size():
    s = room()
    w, h = 640, 480
    K = intrinsics_from_fov(70, w, h)
    vm = look_at([5.0, 1.0, 1.6], [5.0, 8.0, 1.0])
    pairs = [
        (np.array([2.0, 4.0, 0.0]), np.array([8.0, 8.0, 2.5])),  # floor -> wall
        (np.array([1.0, 8.0, 0.5]), np.array([9.0, 8.0, 0.5])),  # along the wall, 8 m
        (np.array([3.0, 3.0, 0.0]), np.array([7.0, 6.0, 0.0])),  # on the floor, 5 m
    ]
    for a, b in pairs:
        pa, pb = _pick_world(s, vm, K, a), _pick_world(s, vm, K, b)
        np.testing.assert_allclose(pa, a, atol=0.03)
        m = measure(pa, pb, metric=True)
        true = float(np.linalg.norm(b - a))
        assert abs(m.distance - true) <= 0.01 * true, (a, b, m.distance, true)
        assert abs(m.height - (b[2] - a[2])) <= 0.03
        assert abs(m.horizontal - np.linalg.norm((b - a)[:2])) <= 0.01 * true


def test_pick_sees_through_a_faint_floater_and_misses_the_sky():
    s = room()
    floater = Splats.empty(1)
    floater.means[:] = [5.0, 5.0, 1.2]
    floater.scales[:] = np.log(0.2)
    floater.opacities[:] = logit(np.array([0.3]))
    both = Splats.concat([s, floater])
    o = np.array([5.0, 1.0, 1.2])
    d = np.array([0.0, 1.0, 0.0])
    t = pick_ray(both, o, d)
    assert t is not None and abs(t - 7.0) < 0.03  # the wall at y = 8, not the floater at y = 5
    opaque = floater.copy()
    opaque.opacities[:] = logit(np.array([0.99]))
    t2 = pick_ray(Splats.concat([s, opaque]), o, d)
    assert t2 is not None and abs(t2 - 4.0) < 0.05
    alive = np.ones(s.n + 1, bool)
    alive[-1] = False  # a deleted gaussian is not picked
    t3 = pick_ray(Splats.concat([s, opaque]), o, d, alive=alive)
    assert t3 is not None and abs(t3 - 7.0) < 0.03
    assert pick_ray(s, o, np.array([0.0, 0.0, 1.0])) is None  # straight up: nothing


def test_wgs84_of_a_measured_point_round_trips_through_enu():
    origin = GeoOrigin(49.00689, 1.91919, 92.86)
    p = np.array([12.5, -3.0, 1.75])
    lat, lon, h = enu_to_geodetic(p, origin)  # what the measure panel shows
    np.testing.assert_allclose(geodetic_to_enu(lat, lon, h, origin), p, atol=1e-6)
    assert abs(lat - origin.lat_deg) < 1e-3 and abs(h - origin.h_m - 1.75) < 0.01
    with pytest.raises(ValueError, match="up"):
        measure(p, p, up=np.zeros(3))


def test_pixel_footprint_catches_subpixel_gaussians():
    """A 0.1 mm gaussian 0.5 mm off a thin ray is missed; seen through 2 mrad pixels from
    5 m away (10 mm per pixel) it covers the pixel, as the rasterizers draw it."""
    s = Splats.empty(1)
    s.means[:] = [0.0, 0.0005, 5.0]
    s.scales[:] = np.log(1e-4)
    s.opacities[:] = logit(np.array([0.99]))
    o, d = np.zeros(3), np.array([0.0, 0.0, 1.0])
    assert pick_ray(s, o, d) is None
    t = pick_ray(s, o, d, pixel_size=0.002)
    assert t is not None and abs(t - 5.0) < 1e-3


def test_pick_agrees_with_the_rasterizers_depth_on_a_real_splat():
    """On donut_fused.ply (45,624 trained gaussians, about 0.2 m): the picked depth at three
    pixels is within 1.5 cm of the expected depth our rasterizer renders there."""
    import torch

    from splatstudio.render.camera import frame_points
    from splatstudio.render.rasterize import rasterize
    from splatstudio.splats.io import load_splats

    path = Path(__file__).resolve().parents[3] / "shared" / "data" / "splats" / "donut_fused.ply"
    if not path.exists():
        pytest.skip(f"{path} not present")
    s = load_splats(path)
    w, h = 640, 480
    vm, K = frame_points(s.means, 60, w, h)

    def t(a):
        return torch.tensor(np.asarray(a), dtype=torch.float32)

    hits = 0
    for x, y in ((0.45, 0.62), (0.5, 0.4), (0.3, 0.5), (0.6, 0.55)):
        px, py = w * x, h * y
        k1 = K.copy()
        k1[0, 2] -= px - 0.5  # a 1x1 image whose pixel centre is (px, py)
        k1[1, 2] -= py - 0.5
        with torch.no_grad():
            depth, alpha, _ = rasterize(t(s.means), t(s.quats), torch.exp(t(s.scales)),
                                        torch.sigmoid(t(s.opacities)), t(np.ones((s.n, 1))),
                                        t(vm)[None], t(k1)[None], 1, 1, render_mode="D")
        if float(alpha[0, 0, 0, 0]) < 0.9:
            continue
        o, d = pixel_ray(vm, K, px, py)
        tt = pick_ray(s, o, d, pixel_size=1.0 / K[1, 1])
        assert tt is not None
        z = (vm[:3, :3] @ (o + tt * d) + vm[:3, 3])[2]
        ed = float(depth[0, 0, 0, 0] / alpha[0, 0, 0, 0])
        assert abs(z - ed) < 0.015, (x, y, z, ed)
        hits += 1
    assert hits >= 3
