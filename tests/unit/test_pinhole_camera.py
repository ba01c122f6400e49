"""render.camera.PinholeCamera / Cameras: the one camera record."""

import numpy as np
import pytest

from splatstudio.render.camera import Cameras, PinholeCamera, intrinsics_from_fov, look_at


def _cam(eye=(1.0, 2.0, 3.0), w=64, h=48) -> PinholeCamera:
    return PinholeCamera(look_at(np.array(eye), np.zeros(3)), intrinsics_from_fov(60, w, h), w, h)


def test_centre_forward_and_round_trip():
    c = _cam()
    assert np.allclose(c.centre, (1, 2, 3))
    assert np.allclose(c.forward, -np.array([1, 2, 3]) / np.sqrt(14))
    back = PinholeCamera.from_dict(c.to_dict())
    assert np.array_equal(back.viewmat, c.viewmat) and np.array_equal(back.K, c.K)
    assert (back.width, back.height) == (64, 48)


def test_resized_keeps_the_projection_of_a_point():
    c = _cam()
    p = np.array([0.1, -0.2, 0.3, 1.0])
    def px(cam):
        q = cam.K @ (cam.viewmat @ p)[:3]
        return q[:2] / q[2] / (cam.width, cam.height)  # in image fractions
    half = c.resized(32, 24)
    assert np.allclose(px(c), px(half))
    d = c.downscaled(3.0)
    assert (d.width, d.height) == (21, 16)
    assert np.array_equal(c.downscaled(1.0).K, c.K)


def test_bad_cameras_are_refused():
    with pytest.raises(ValueError):
        PinholeCamera(np.eye(4), np.eye(3), 0, 10)
    with pytest.raises(ValueError):
        PinholeCamera(np.full((4, 4), np.nan), np.eye(3), 10, 10)
    with pytest.raises(ValueError, match="not a camera"):
        PinholeCamera.from_dict({"viewmat": np.eye(4).tolist()})


def test_batch():
    cams = Cameras.stack([_cam((1, 0, 0)), _cam((0, 5, 0), 32, 32)])
    assert len(cams) == 2 and cams.sizes.tolist() == [[64, 48], [32, 32]]
    assert np.allclose(cams.centres, [[1, 0, 0], [0, 5, 0]])
    assert [c.width for c in cams] == [64, 32]
    assert len(Cameras.stack([])) == 0


def test_pixel_ray_passes_through_the_point_it_images():
    from splatstudio.render.camera import pixel_ray

    c = _cam(w=640, h=480)
    rng = np.random.default_rng(0)
    for p in rng.uniform(-0.5, 0.5, size=(20, 3)):
        q = c.K @ (c.viewmat[:3, :3] @ p + c.viewmat[:3, 3])
        o, d = c.pixel_ray(q[0] / q[2], q[1] / q[2])
        assert np.allclose(o, c.centre) and np.isclose(np.linalg.norm(d), 1.0)
        assert np.linalg.norm(np.cross(p - o, d)) < 1e-9  # p is on the ray
        assert (p - o) @ d > 0  # in front
    o, d = pixel_ray(c.viewmat, c.K, 320.0, 240.0)  # the image centre: the optical axis
    assert np.allclose(d, c.forward)


def test_capture_subset_scales_the_longest_side(tmp_path):
    """mesh.pipeline._capture_subset on the registered cameras of a (tiny) project: evenly
    picked, longest side resized, the same projection as the full-size camera."""
    pytest.importorskip("pycolmap")
    from helpers.tiny_project import tiny_georef_project

    from splatstudio.mesh.pipeline import _capture_subset
    from splatstudio.pipeline.export import capture_cameras

    project = tiny_georef_project(tmp_path / "p", views=8, size=(64, 48), gaussians=50)
    cams = capture_cameras(project)
    assert isinstance(cams, Cameras) and len(cams) == 8
    sub = _capture_subset(cams, 3, 100)
    assert len(sub) == 3 and sub.sizes.tolist() == [[100, 75]] * 3
    np.testing.assert_array_equal(sub.viewmats, cams.viewmats[[0, 4, 7]])
    np.testing.assert_allclose(sub.Ks[0], cams[0].resized(100, 75).K)
    np.testing.assert_allclose(sub.centres, cams.centres[[0, 4, 7]])
