"""SfM on a rig of its own: the training views' poses and observations from the panoramas'.

A synthetic model on the cube rig (three panoramas along a street, random points, each point
observed by every cube face it projects into, plus one photo) is expanded to the 18-view
training rig by :func:`splatstudio.pipeline.sfm.expand_to_rig`, and checked against what the
rig and the projection say it must be.
"""

from __future__ import annotations

import numpy as np
import pytest

from splatstudio.errors import StageError
from splatstudio.pano.rig import make_rig
from splatstudio.pipeline.reproject import SFM_VIEW_PREFIX, make_sfm_rig
from splatstudio.pipeline.sfm import (
    expand_to_rig,
    frame_centres,
    reference_view,
    sift_first_octave,
)

pycolmap = pytest.importorskip("pycolmap")
CAM = pycolmap.SensorType.CAMERA


def _yaw_z(deg: float) -> np.ndarray:
    """pano_from_world for a level panorama (world ENU, z up) heading `deg` from north."""
    y = np.radians(deg)
    # panorama axes (OpenCV): x right, y down, z forward; forward = (sin y, cos y, 0) in ENU
    fwd = np.array([np.sin(y), np.cos(y), 0.0])
    right = np.array([np.cos(y), -np.sin(y), 0.0])
    down = np.array([0.0, 0.0, -1.0])
    return np.stack([right, down, fwd])


def _rig_dict(layout: str, size: int, prefix: str = "") -> dict:
    rig = make_rig(layout, 90.0, size).to_dict()
    for v in rig["views"]:
        v["name"] = prefix + v["name"]
    return rig


def _source_model(rig: dict, poses: dict[str, tuple[np.ndarray, np.ndarray]],
                  xyz: np.ndarray, photo: tuple[np.ndarray, np.ndarray] | None):
    """A pycolmap model on `rig` (one frame per pose: pano_from_world R [3, 3], centre [3]):
    every point observed at its projection in every view (and the photo) it falls inside."""
    rec = pycolmap.Reconstruction()
    views = rig["views"]
    rots = [np.array(v["cam_from_rig"]["rotation_matrix"]) for v in views]
    ref = reference_view(rig)
    for i, v in enumerate(views):
        c = v["camera"]
        cam = pycolmap.Camera.create_from_model_name(i + 1, "PINHOLE", c["params"][0],
                                                     c["width"], c["height"])
        cam.params = np.array(c["params"], float)
        rec.add_camera(cam)
    r = pycolmap.Rig()
    r.rig_id = 1
    r.add_ref_sensor(pycolmap.sensor_t(CAM, ref + 1))
    for i in range(len(views)):
        if i != ref:
            r.add_sensor(pycolmap.sensor_t(CAM, i + 1),
                         pycolmap.Rigid3d(pycolmap.Rotation3d(rots[i] @ rots[ref].T), np.zeros(3)))
    rec.add_rig(r)
    obs: list[list[tuple[int, int]]] = [[] for _ in xyz]
    image_id = 0
    for k, (fid, (R, C)) in enumerate(poses.items()):
        frame = pycolmap.Frame()
        frame.frame_id, frame.rig_id = k + 1, 1
        rr = rots[ref] @ R
        frame.rig_from_world = pycolmap.Rigid3d(pycolmap.Rotation3d(rr), -rr @ C)
        images = []
        for i, v in enumerate(views):
            image_id += 1
            p = (xyz - C) @ (rots[i] @ R).T
            uv = p[:, :2] / p[:, 2:3] * v["camera"]["params"][0] + v["camera"]["width"] / 2
            inside = np.nonzero((p[:, 2] > 0) & np.all((uv >= 0) & (uv < v["camera"]["width"]),
                                                       axis=1))[0]
            for j, n in enumerate(inside):
                obs[n].append((image_id, j))
            images.append(pycolmap.Image(name=f"{v['name']}/{fid}.jpg", keypoints=uv[inside],
                                         camera_id=i + 1, image_id=image_id))
            frame.add_data_id(pycolmap.data_t(pycolmap.sensor_t(CAM, i + 1), image_id))
        rec.add_frame(frame)
        for im in images:
            im.frame_id = k + 1
            rec.add_image(im)
        rec.register_frame(k + 1)
    if photo is not None:
        R, C = photo
        cam = pycolmap.Camera.create_from_model_name(100, "SIMPLE_RADIAL", 500.0, 800, 600)
        cam.params = np.array([500.0, 400.0, 300.0, 0.0])  # projected without distortion
        rec.add_camera_with_trivial_rig(cam)
        p = (xyz - C) @ R.T
        uv = p[:, :2] / p[:, 2:3] * 500.0 + [400.0, 300.0]
        inside = np.nonzero((p[:, 2] > 0) & np.all((uv >= 0) & (uv < [800, 600]), axis=1))[0]
        image_id += 1
        for j, n in enumerate(inside):
            obs[n].append((image_id, j))
        rec.add_image_with_trivial_frame(
            pycolmap.Image(name="photos/p1.jpg", keypoints=uv[inside], camera_id=100,
                           image_id=image_id),
            pycolmap.Rigid3d(pycolmap.Rotation3d(R), -R @ C))
    for n, x in enumerate(xyz):
        if len(obs[n]) >= 2:
            t = pycolmap.Track()
            for e in obs[n]:
                t.add_element(*e)
            rec.add_point3D(x, t, np.array([10, 20, 30], np.uint8))
    return rec


@pytest.fixture(scope="module")
def expanded():
    rng = np.random.default_rng(0)
    sfm_rig = _rig_dict("cube6", 256, SFM_VIEW_PREFIX)
    rig = _rig_dict("splatforge18", 512)
    poses = {str(k + 1): (_yaw_z(h), np.array([0.3 * k, 2.5 * k, 1.7 + 0.05 * k]))
             for k, h in enumerate((3.0, -8.0, 20.0))}
    # a street: facades at x = +-6 m, ground at z = 0, some sky-high points
    n = 600
    y = rng.uniform(-10, 25, n)
    side = rng.choice([-6.0, 6.0], n)
    xyz = np.stack([side + rng.normal(0, 0.2, n), y, rng.uniform(0, 12, n)], 1)
    xyz[:100, 0] = rng.uniform(-5, 5, 100)
    xyz[:100, 2] = 0.0
    photo = (_yaw_z(90.0), np.array([-3.0, 4.0, 1.5]))
    src = _source_model(sfm_rig, poses, xyz, photo)
    return src, expand_to_rig(src, sfm_rig, rig), sfm_rig, rig


def test_training_views_take_the_panorama_pose_and_the_rig(expanded):
    src, out, sfm_rig, rig = expanded
    assert out.num_reg_images() == 3 * 18 + 1 and out.num_frames() == 3 + 1
    names = {im.name for im in out.images.values()}
    assert {f"{v['name']}/{f}.jpg" for v in rig["views"] for f in "123"} | {"photos/p1.jpg"} \
        == names
    before, after = frame_centres(src, sfm_rig), frame_centres(out, rig)
    for fid in "123":
        assert np.allclose(after[fid]["centre"], before[fid]["centre"], atol=1e-9)
        assert np.allclose(after[fid]["R"], before[fid]["R"], atol=1e-9)
    rots = {v["name"]: np.array(v["cam_from_rig"]["rotation_matrix"]) for v in rig["views"]}
    by_name = {im.name: im for im in out.images.values()}
    for fid in "123":
        ref = by_name[f"00/{fid}.jpg"].cam_from_world()
        for name, r in rots.items():
            im = by_name[f"{name}/{fid}.jpg"]
            rel = im.cam_from_world() * ref.inverse()  # cam_from_rig_v cam_from_rig_00^T
            assert np.allclose(rel.rotation.matrix(), r @ rots["00"].T, atol=1e-9)
            assert np.allclose(rel.translation, 0, atol=1e-9)
            cam = out.cameras[im.camera_id]
            c = next(v["camera"] for v in rig["views"] if v["name"] == name)
            assert cam.model_name == "PINHOLE" and (cam.width, cam.height) == (512, 512)
            assert np.allclose(cam.params, c["params"])
    # the photo is copied: camera, pose, keypoints
    p_src = next(im for im in src.images.values() if im.name == "photos/p1.jpg")
    p_out = by_name["photos/p1.jpg"]
    assert np.allclose(p_out.cam_from_world().matrix(), p_src.cam_from_world().matrix())
    assert np.allclose(out.cameras[p_out.camera_id].params, src.cameras[p_src.camera_id].params)
    assert len(p_out.points2D) == len(p_src.points2D)


def test_points_reproject_onto_their_observations_in_the_owning_view(expanded):
    src, out, sfm_rig, rig = expanded
    axes = {v["name"]: np.array(v["cam_from_rig"]["rotation_matrix"])[2] for v in rig["views"]}
    centres = frame_centres(out, rig)
    assert out.num_points3D() == src.num_points3D()  # none in the poles' uncovered caps here
    for p_src, p in zip(sorted(src.points3D.values(), key=lambda q: tuple(q.xyz)),
                        sorted(out.points3D.values(), key=lambda q: tuple(q.xyz)), strict=True):
        assert np.allclose(p.xyz, p_src.xyz) and tuple(p.color) == (10, 20, 30)
    assert out.compute_mean_reprojection_error() == pytest.approx(0.0, abs=1e-6)
    for p in out.points3D.values():
        frames_src = set()
        for e in p.track.elements:
            im = out.images[e.image_id]
            xy = np.asarray(im.points2D[e.point2D_idx].xy)
            assert np.allclose(im.project_point(p.xyz), xy, atol=1e-6)
            view, fid = im.name.split("/")
            if view == "photos":
                continue
            d = centres[fid[:-4]]["R"] @ (p.xyz - centres[fid[:-4]]["centre"])
            assert view == max(axes, key=lambda n: axes[n] @ d)  # the view that owns it
            frames_src.add(fid)
        seen = {src.images[e.image_id].name.split("/")[1] for e in
                src.points3D[next(k for k, q in src.points3D.items()
                                  if np.allclose(q.xyz, p.xyz))].track.elements}
        seen.discard("p1.jpg")
        assert frames_src == seen  # one observation per panorama that saw it


def test_image_of_another_rig_is_refused(expanded):
    src, _, _, rig = expanded
    with pytest.raises(StageError, match="not a view of reproject/sfm_rig.json"):
        expand_to_rig(src, rig, rig)


def test_sfm_rig_size_and_sift_octave():
    from splatstudio.config import ReprojectConfig, SfmConfig, SfmRig

    full = [{"width": 5760, "height": 2880}]
    small = [{"width": 2048, "height": 1024}]
    assert make_sfm_rig(ReprojectConfig(), full) is None  # the default: the training views
    cfg = ReprojectConfig(sfm_rig=SfmRig.CUBE6)
    rig = make_sfm_rig(cfg, full)
    assert [v.name for v in rig.views] == [f"s{i:02d}" for i in range(6)]
    assert rig.size == 1024 and rig.views[0].fov_deg == 90.0
    assert make_sfm_rig(cfg, small).size == 512  # what a 2048 panorama supports
    assert make_sfm_rig(ReprojectConfig(sfm_rig=SfmRig.COLMAP12, sfm_size=800), full).size == 800
    sfm = SfmConfig()
    assert sift_first_octave(1024, 1024, sfm, native=1440) == 0  # shrunk: not upsampled back
    assert sift_first_octave(512, 512, sfm, native=512) == -1  # at the panorama's resolution
    assert sift_first_octave(1024, 1024, sfm) == -1
    from splatstudio.errors import ConfigError

    with pytest.raises(ConfigError, match="reproject.sfm_size must be 0"):
        make_sfm_rig(ReprojectConfig(sfm_rig=SfmRig.CUBE6, sfm_size=8), full)
