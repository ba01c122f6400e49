"""Pair selection and the GPS alignment math of the sfm/georef stages (no pycolmap needed)."""

from __future__ import annotations

import numpy as np
import pytest

from splatstudio.pipeline.georef import fit_gravity_sim3, image_source, rotation_between
from splatstudio.pipeline.sfm import frame_of_image, frame_pairs, image_names, image_pairs

RIG = {"views": [{"name": f"{i:02d}"} for i in range(3)]}


def _frames(enu, kind="equirect"):
    return [
        {"id": str(i + 1), "kind": kind, "enu_m": e, "time": f"2021-01-01T00:00:{i:02d}",
         "images": [f"photos/{i + 1}.jpg"]}
        for i, e in enumerate(enu)
    ]


def test_gps_neighbours_k_and_radius():
    # 10 frames on a line 1 m apart, k=2 nearest, no order neighbours
    frames = _frames([[float(i), 0.0, 0.0] for i in range(10)])
    pairs = frame_pairs(frames, k=2, radius_m=50.0, order_neighbours=0)
    assert (0, 1) in pairs and (0, 2) in pairs and (0, 3) not in pairs
    assert all(i < j for i, j in pairs)
    # radius cuts the far ones
    far = _frames([[0.0, 0, 0], [100.0, 0, 0]])
    assert frame_pairs(far, k=8, radius_m=50.0, order_neighbours=0) == []


def test_time_neighbours_without_gps():
    frames = _frames([None] * 6)
    pairs = frame_pairs(frames, k=4, radius_m=50.0, order_neighbours=1)
    # without GPS: max(k // 2, order) = 2 on each side in capture order
    assert (0, 1) in pairs and (0, 2) in pairs and (0, 3) not in pairs
    assert (3, 5) in pairs


def test_capture_order_uses_time_not_list_order():
    frames = _frames([None] * 3)
    frames[0]["time"], frames[2]["time"] = frames[2]["time"], frames[0]["time"]
    pairs = frame_pairs(frames, k=0, radius_m=1.0, order_neighbours=1)
    # order by time is 2, 1, 0: neighbours (1,2) and (0,1); never (0,2)
    assert pairs == [(0, 1), (1, 2)]


def test_view_pairs_never_inside_a_frame():
    frames = _frames([[0.0, 0, 0], [1.0, 0, 0]])
    names = image_names(frames[0], RIG)
    assert names == ["00/1.jpg", "01/1.jpg", "02/1.jpg"]
    pairs = image_pairs(frames, RIG, [(0, 1)])
    assert len(pairs) == 9
    assert all(frame_of_image(a) != frame_of_image(b) for a, b in pairs)
    assert frame_of_image("photos/07.jpg") == "07"
    assert image_source("03/12.jpg") == "reproject/views/12/03.jpg"
    assert image_source("photos/07.jpg") == "reproject/photos/07.jpg"


def test_rotation_between():
    rng = np.random.default_rng(1)
    for _ in range(5):
        a, b = rng.normal(size=3), rng.normal(size=3)
        r = rotation_between(a, b)
        assert np.allclose(r @ r.T, np.eye(3)) and np.isclose(np.linalg.det(r), 1)
        assert np.allclose(r @ (a / np.linalg.norm(a)), b / np.linalg.norm(b))
    r = rotation_between(np.array([0, 0, -1.0]), np.array([0, 0, 1.0]))
    assert np.allclose(r @ [0, 0, -1.0], [0, 0, 1])


def test_gravity_fit_recovers_a_similarity_on_a_straight_line_with_an_outlier():
    rng = np.random.default_rng(0)
    # ENU positions along a nearly straight walk (collinear: a 7-DoF fit could roll freely)
    dst = np.stack([np.linspace(0, 10, 8), np.linspace(0, 1, 8), np.zeros(8)], 1)
    # model frame: up is -y (OpenCV-like), scale 0.5, some heading
    yaw = np.radians(40)
    rz = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    model_from_level = rotation_between(np.array([0, 0, 1.0]), np.array([0, -1.0, 0]))
    src = (dst @ rz.T) @ model_from_level.T * 0.5 + np.array([3.0, -2.0, 1.0])
    noisy = dst + rng.normal(scale=0.05, size=dst.shape)
    noisy[5] += [0, 12.0, 0]  # a GPS outlier
    s, r, t, inl = fit_gravity_sim3(src, noisy, np.array([0, -1.0, 0]), max_error=1.0)
    assert s == pytest.approx(2.0, rel=0.03)
    assert not inl[5] and inl.sum() == 7
    res = np.linalg.norm(s * src @ r.T + t - dst, axis=1)
    assert res.max() < 0.2
    assert np.allclose(r @ [0, -1.0, 0], [0, 0, 1], atol=1e-9)  # model up -> ENU up


def test_sift_upsamples_only_small_images():
    from splatstudio.config import SfmConfig
    from splatstudio.pipeline.sfm import sift_first_octave

    cfg = SfmConfig()
    assert sift_first_octave(512, 512, cfg) == -1  # 2048 panoramas: views upsampled x2
    assert sift_first_octave(1024, 768, cfg) == -1  # Lund photos: COLMAP's default
    assert sift_first_octave(1440, 1440, cfg) == 0  # full-resolution views as they are
    # a SIFT size cap shrinks without upsampling back; images under the cap are unchanged
    assert sift_first_octave(1440, 1440, SfmConfig(max_image_size=1024)) == 0
    assert sift_first_octave(512, 512, SfmConfig(max_image_size=1024)) == -1
    assert sift_first_octave(1440, 1440, SfmConfig(upsample_below=2000)) == -1


def test_relative_heading_and_overlapping_view_pairs():
    from splatstudio.pano.rig import make_rig
    from splatstudio.pipeline.sfm import overlapping_view_pairs, relative_heading

    rng = np.random.default_rng(0)
    desc = rng.random((400, 128), dtype=np.float32) * 100
    lon_a = rng.uniform(-180, 180, 400)
    # panorama b turned: every point 33 deg further right, 80 % of them (the far ones) within
    # 2 deg, the rest (near ones, parallax) anywhere
    lon_b = lon_a + 33 + rng.normal(scale=1.0, size=400)
    near = rng.random(400) < 0.2
    lon_b[near] = rng.uniform(-180, 180, near.sum())
    lon_b = (lon_b + 180) % 360 - 180
    noisy = desc + rng.normal(scale=1.0, size=desc.shape).astype(np.float32)
    h = relative_heading((lon_a, desc), (lon_b, noisy))
    assert h == pytest.approx(33, abs=1.0)
    assert relative_heading((lon_a[:10], desc[:10]), (lon_b[:10], noisy[:10])) is None
    other = rng.random((400, 128), dtype=np.float32) * 100  # nothing in common
    assert relative_heading((lon_a, desc), (lon_b, other)) is None

    rig = make_rig("splatforge18", 90.0, 512).to_dict()
    same = overlapping_view_pairs(rig, 0.0, 60.0)
    assert all((a, a) in same for a in range(18))  # each view with itself at heading 0
    turned = overlapping_view_pairs(rig, 60.0, 1.0)  # horizon views one step apart
    axes = {v["name"]: (v["yaw_deg"], v["pitch_deg"]) for v in rig["views"]}
    names = [v["name"] for v in rig["views"]]
    for a, b in turned:
        ya, pa = axes[names[a]]
        yb, pb = axes[names[b]]
        assert pa == pb and ((ya + 60 - yb) % 360 < 1e-6 or abs(pa) == 90)
    assert len(same) < 18 * 18 / 3  # a third of the view pairs or fewer at 60 deg
