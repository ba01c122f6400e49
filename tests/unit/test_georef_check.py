"""The GPS check and the levelling of cameras that look down (synthetic drone survey), the far
GPS fixes of ingest."""

from __future__ import annotations

import numpy as np
import pytest

from splatstudio.config import GeorefConfig
from splatstudio.pipeline.georef import align_gravity, fit_gravity_sim3, gps_check, model_up
from splatstudio.pipeline.ingest import far_gps_fixes


def _rot(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def lawn_mower(noise_m: float = 1.5, seed: int = 0):
    """60 nadir photos over 6 lines of 10, 100 m x 50 m at 60 m above ground, flown back and
    forth; a model frame that is an arbitrary similarity of ENU (scale 0.3); GPS with noise.

    Returns:
        (centres as frame_centres gives them, ids, model centres [N, 3], noisy GPS [N, 3],
        true ENU [N, 3])."""
    rng = np.random.default_rng(seed)
    q = _rot(np.array([0.3, -0.5, 0.8]), 1.1)  # model_from_enu rotation
    s_m, t_m = 0.3, np.array([4.0, -7.0, 2.0])
    centres, enu = {}, []
    for line in range(6):
        for k in range(10):
            east = k * 11.0 if line % 2 == 0 else 99.0 - k * 11.0
            p = np.array([east, line * 10.0, 60.0])
            heading = np.array([1.0, 0, 0]) if line % 2 == 0 else np.array([-1.0, 0, 0])
            z = np.array([0, 0, -1.0])  # looking down
            x = heading
            y = np.cross(z, x)
            cam_from_enu = np.stack([x, y, z])
            fid = f"{line}_{k}"
            centres[fid] = {"centre": s_m * q @ p + t_m, "R": cam_from_enu @ q.T,
                            "kind": "photo"}
            enu.append(p)
    enu = np.array(enu)
    ids = list(centres)
    src = np.array([centres[i]["centre"] for i in ids])
    gps = enu + rng.normal(scale=noise_m, size=enu.shape)
    return centres, ids, src, gps, enu


def test_nadir_survey_is_levelled_by_its_viewing_direction():
    centres, ids, src, gps, enu = lawn_mower()
    # the cameras' own up axis is horizontal here: levelling by it fails (today's behaviour)
    s, r, t, inl = fit_gravity_sim3(src, gps, model_up(centres), 5.0)
    bad = np.linalg.norm(s * src @ r.T + t - gps, axis=1)
    assert np.sqrt(np.mean(bad**2)) > 10
    label, s, r, t, inl = align_gravity(centres, ids, src, gps, 5.0)
    assert "looking down" in label
    aligned = s * src @ r.T + t
    assert np.sqrt(np.mean(np.sum((aligned - enu) ** 2, 1))) < 1.0  # against the truth
    assert s == pytest.approx(1 / 0.3, rel=0.02)
    check = gps_check(aligned, gps, GeorefConfig())
    assert check["verdict"] == "pass" and check["fraction"] == 1.0
    assert check["extent_ratio"] == pytest.approx(1.0, abs=0.05)


def test_upright_cameras_keep_their_up_axis():
    """A straight walk of upright cameras (the shared walk's shape): the nadir candidate is
    not even offered for panoramas, and for upright photos the cameras' up wins."""
    rng = np.random.default_rng(1)
    centres = {}
    for k in range(12):
        p = np.array([k * 2.5, 0.2 * k, 1.6])
        x, y, z = np.array([0, -1.0, 0]), np.array([0, 0, -1.0]), np.array([1.0, 0, 0])
        centres[str(k)] = {"centre": p, "R": np.stack([x, y, z]), "kind": "photo"}
    ids = list(centres)
    src = np.array([centres[i]["centre"] for i in ids])
    gps = src + rng.normal(scale=0.5, size=src.shape)
    label, s, r, t, inl = align_gravity(centres, ids, src, gps, 5.0)
    assert label == "the cameras' up axis"
    assert np.allclose(r, np.eye(3), atol=0.05) and s == pytest.approx(1.0, abs=0.05)


def test_check_rejects_a_glued_model_and_tolerates_noisy_gps():
    cfg = GeorefConfig()
    rng = np.random.default_rng(2)
    gps = np.stack([np.linspace(0, 360, 100), np.linspace(0, 160, 100), np.zeros(100)], 1)
    # the car drive: a model 0.35x the track's size, most frames far from their fix
    glued = gps * 0.35 + [100.0, 50.0, 0]
    c = gps_check(glued, gps, cfg)
    assert c["verdict"] == "reject" and "within 5 m" in c["reason"]
    # the extent alone: a 40 m track and a model a third of its size, with a tolerance large
    # enough that the share within it says nothing
    track = np.stack([np.linspace(0, 40, 10), np.zeros(10), np.zeros(10)], 1)
    small = track.mean(0) + (track - track.mean(0)) / 3
    c = gps_check(small, track, GeorefConfig(check_tolerance_m=10.0, check_min_fraction=0.0))
    assert c["verdict"] == "reject" and "spans" in c["reason"]
    assert c["extent_ratio"] == pytest.approx(1 / 3)
    # Lund-like phone GPS: a third of the fixes 6-15 m off, the model right
    noisy = gps + rng.normal(scale=0.8, size=gps.shape)
    off = rng.choice(100, 34, replace=False)
    noisy[off] += rng.uniform(6, 15, size=(34, 1)) * [[0.6, 0.8, 0]]
    c = gps_check(gps, noisy, cfg)
    assert c["verdict"] == "noisy-gps" and 0.5 <= c["fraction"] < 0.8
    # too few frames to say anything
    assert gps_check(gps[:2], gps[:2], cfg)["verdict"] == "no-check"


def test_far_gps_fixes_are_flagged():
    def fix(lat, lon):
        return {"gps": {"lat_deg": lat, "lon_deg": lon, "h_m": 50.0}}

    walk = [fix(55.70 + i * 1e-5, 13.19 + i * 1e-5) for i in range(20)]  # ~30 m
    trip = fix(48.85, 2.35)  # Paris, ~1,000 km away
    far = far_gps_fixes([*walk[:10], trip, *walk[10:], {"gps": None}], 1000.0)
    assert [e for e, _ in far] == [trip] and 900e3 < far[0][1] < 1200e3
    drive = [fix(55.70 + i * 5e-5, 13.19) for i in range(100)]  # a 550 m drive: nothing far
    assert far_gps_fixes(drive, 1000.0) == []
    assert far_gps_fixes([walk[0], trip], 1000.0) == []  # two fixes: no majority


def test_check_rejects_a_frame_thrown_far_away():
    """The shared walk with a pasted dashboard and no platform mask (measured): four frames
    within 2 m, one 22 m away; the share within 5 m (4 of 5) passes, the path does not."""
    gps = np.array([[0, 0, 0], [0.31, 1.0, -0.09], [0.8, 4.07, 0.05], [1.05, 7.25, 0.32],
                    [0.63, 9.32, 0.98]])
    model = np.array([[0.52, 1.93, -0.39], [12.31, 17.6, -7.9], [0.09, 2.31, -0.52],
                      [1.15, 7.57, 0.52], [0.71, 8.83, 1.74]])
    c = gps_check(model, gps, GeorefConfig())
    assert c["verdict"] == "reject"  # (its frames 1 and 3 are glued too: the first reason)
    assert c["path_ratio"] == pytest.approx(5.1, abs=0.1)
    alone = model.copy()
    alone[[0, 2]] = gps[[0, 2]] + 0.5  # the same without the glued pair: the path says it
    c = gps_check(alone, gps, GeorefConfig())
    assert c["verdict"] == "reject" and "path" in c["reason"] and "frame 2 of 5" in c["reason"]
    # the same walk georeferenced from clean panoramas (measured): passes
    clean = np.array([[0.52, -0.23, 0.9], [0.14, 1.38, 0.47], [0.21, 4.47, 0.06],
                      [0.91, 6.78, -0.14], [1.0, 9.24, -0.03]])
    c = gps_check(clean, gps, GeorefConfig())
    assert c["verdict"] == "pass" and c["path_ratio"] == pytest.approx(1.0, abs=0.15)


def test_check_rejects_frames_glued_onto_one_spot():
    """The dashboard walk without the platform mask, another run (measured): panoramas 1, 3,
    4 and 5 on one spot, every frame but one within 5 m, path 1.06x: only the collapse shows
    (6 of the 9 pairs over 2 m apart by GPS)."""
    gps = np.array([[0, 0, 0], [0.31, 1.0, -0.09], [0.8, 4.07, 0.05], [1.05, 7.25, 0.32],
                    [0.63, 9.32, 0.98]])
    model = np.array([[0.81, 6.54, -0.22], [0.41, 2.04, 2.01], [0.78, 6.53, -0.28],
                      [0.8, 6.54, -0.23], [0.8, 6.54, -0.24]])
    c = gps_check(model, gps, GeorefConfig())
    assert c["verdict"] == "reject" and "one spot" in c["reason"]
    assert c["collapsed_pairs"] == pytest.approx(6 / 9)  # 1-2 are 1.05 m apart: not counted
    # a vehicle that stops: a few frames on one spot, the GPS too (drift under 2 m)
    stop = np.concatenate([np.stack([np.arange(20.0) * 5, np.zeros(20), np.zeros(20)], 1),
                           np.tile([[95.0, 0, 0]], (5, 1))])
    drift = stop + np.random.default_rng(3).normal(scale=0.5, size=stop.shape)
    assert gps_check(stop, drift, GeorefConfig())["verdict"] == "pass"


def test_check_rejects_frames_glued_within_a_metre():
    """A third run of the dashboard walk without the mask (measured): panoramas 1-4 within
    0.7 m of each other, every frame within 5 m of its fix, path 1.0x."""
    gps = np.array([[0, 0, 0], [0.31, 1.0, -0.09], [0.8, 4.07, 0.05], [1.05, 7.25, 0.32],
                    [0.63, 9.32, 0.98]])
    model = np.array([[0.18, 4.02, 0.06], [0.83, 3.63, -0.52], [0.73, 3.75, -0.5],
                      [0.69, 3.59, -0.61], [0.35, 6.66, 2.83]])
    c = gps_check(model, gps, GeorefConfig())
    assert c["fraction"] == 1.0  # the share within 5 m alone would pass it
    assert c["verdict"] == "reject" and c["collapsed_pairs"] == pytest.approx(4 / 9)


def test_check_rejects_three_frames_glued_and_spares_gps_jumps():
    """A fourth run of the dashboard walk without the mask (measured): panoramas 1-3 within
    0.3 m, every frame within 2.5 m of its fix. And an indoor-like walk whose GPS jumps: the
    jumping fixes do not count as frames the model glued together."""
    from splatstudio.pipeline.georef import gps_jumps

    gps = np.array([[0, 0, 0], [0.31, 1.0, -0.09], [0.8, 4.07, 0.05], [1.05, 7.25, 0.32],
                    [0.63, 9.32, 0.98]])
    model = np.array([[0.32, 2.38, -0.37], [0.47, 2.32, -0.27], [0.65, 2.17, -0.16],
                      [0.86, 5.06, -0.08], [0.48, 9.73, 2.14]])
    c = gps_check(model, gps, GeorefConfig())
    assert c["verdict"] == "reject" and c["collapsed_pairs"] == pytest.approx(2 / 9)
    # 11 panoramas 1 m apart indoors; fixes 3, 6 and 8 jump 6-12 m away
    truth = np.stack([np.arange(11.0), np.zeros(11), np.zeros(11)], 1)
    noisy = truth + np.random.default_rng(4).normal(scale=0.7, size=truth.shape) * [1, 1, 0]
    noisy[[3, 6, 8]] += [[0, 9.0, 0], [6.0, -8.0, 0], [0, 12.0, 0]]
    assert list(np.nonzero(gps_jumps(noisy))[0]) == [3, 6, 8]
    c = gps_check(truth, noisy, GeorefConfig())
    assert c["verdict"] == "noisy-gps" and c["collapsed_pairs"] < 0.15


def test_check_rejects_one_glued_pair_of_five_panoramas():
    """A fifth run of the dashboard walk without the mask (measured): panoramas 2 and 3 0.23 m
    apart where the GPS has them 3.1 m apart, every frame within 3 m of its fix, RMS 2.1 m."""
    gps = np.array([[0, 0, 0], [0.31, 1.0, -0.09], [0.8, 4.07, 0.05], [1.05, 7.25, 0.32],
                    [0.63, 9.32, 0.98]])
    model = np.array([[-0.24, 0.31, -2.39], [0.69, 3.85, 0.33], [0.75, 4.06, 0.52],
                      [1.57, 5.71, 1.92], [0.01, 7.72, 0.88]])
    c = gps_check(model, gps, GeorefConfig())
    assert c["fraction"] == 1.0 and c["collapsed_pairs"] == pytest.approx(1 / 9)
    assert c["verdict"] == "reject"
