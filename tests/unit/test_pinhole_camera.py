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
