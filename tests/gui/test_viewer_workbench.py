"""The viewer's workbench driven through its widgets and the mouse: a project opens at its
first capture position; rectangle, brush, sphere, box, opacity and size selection on a real
splat (donut_fused.ply) delete what they select and undo restores the file's gaussians exactly;
a saved version is offered by the Export dialog; measuring a synthetic room of known size
gives metres within 1 %; the video dialog writes an MP4.

The selections do not need OpenGL (they work on the arrays with the view's camera), so these
run on the offscreen platform; the drawing itself is tested under Xvfb in test_viewer.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt

from splatstudio.project import write_json_atomic
from splatstudio.splats import edit
from splatstudio.splats.io import load_splats, save_splats

pytestmark = pytest.mark.gui

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
DONUT = DATA / "splats" / "donut_fused.ply"
ORIGIN = {"lat_deg": 49.00689, "lon_deg": 1.91919, "h_m": 92.86}


@pytest.fixture
def page(qtbot):
    from splatstudio.gui.viewer.page import ViewerPage

    p = ViewerPage()
    qtbot.addWidget(p)
    p.resize(1100, 700)
    p.show()
    qtbot.waitExposed(p)
    return p


@pytest.fixture
def donut() -> Path:
    if not DONUT.exists():
        pytest.skip(f"{DONUT} not present")
    return DONUT


def _assert_same(a, b) -> None:
    for f in ("means", "quats", "scales", "opacities", "sh0", "shN"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))


def _georeferenced(root: Path) -> None:
    write_json_atomic(root / "georef" / "georef.json",
                      {"schema_version": 1, "status": "georeferenced", "origin": ORIGIN})


def test_project_opens_at_its_first_capture_position(page, tmp_path, donut):
    """A project's splat (the tiny georeferenced project: 8 registered cameras on a ring)
    opens standing at the first camera looking along the path; the list jumps."""
    from helpers.tiny_project import tiny_georef_project

    project = tiny_georef_project(tmp_path / "proj", views=8, size=(32, 24), gaussians=50)
    (project.root / "train").mkdir()
    save_splats(load_splats(donut), project.root / "train" / "splat.ply")
    _georeferenced(project.root)
    assert page.load(project.root / "train" / "splat.ply")
    wb = page.workbench
    assert wb.project_root == project.root and wb.metric
    assert len(wb.poses) == 8 and wb.capture_box.isVisibleTo(page)
    assert wb.pose_combo.count() == 8
    cam = page.gl.camera
    # ring of radius 3 m at z 1.2, camera 0 at angle 0; the next one 45 degrees on
    np.testing.assert_allclose(cam.eye(), [3.0, 0.0, 1.2], atol=1e-6)
    vm = cam.viewmat()
    expect = np.array([math.cos(math.radians(45)) - 1, math.sin(math.radians(45)), 0.0])
    np.testing.assert_allclose(vm[2, :3], expect / np.linalg.norm(expect), atol=1e-6)
    wb.pose_slider.setValue(4)
    assert wb.pose_combo.currentIndex() == 4
    np.testing.assert_allclose(cam.eye(), [-3.0, 0.0, 1.2], atol=1e-6)
    # a loose file: no positions, framed from outside on its fine gaussians
    assert page.load(donut)
    assert wb.poses == [] and not wb.capture_box.isVisibleTo(page) and not wb.metric


def _drag(qtbot, gl, points) -> None:
    qtbot.mousePress(gl, Qt.MouseButton.LeftButton, pos=QPoint(*points[0]))
    for p in points[1:]:
        qtbot.mouseMove(gl, QPoint(*p))
    qtbot.mouseRelease(gl, Qt.MouseButton.LeftButton, pos=QPoint(*points[-1]))


def test_mouse_tools_delete_and_undo_exactly(page, qtbot, donut):
    assert page.load(donut)
    wb, gl = page.workbench, page.gl
    original = load_splats(donut)
    n = original.n
    cam = gl.view_camera()
    vm, K, w, h = cam.viewmat, cam.K, cam.width, cam.height

    # rectangle: the left half of the view
    wb.set_tool("rect")
    _drag(qtbot, gl, [(5, 5), (w // 4, h // 2), (w // 2, h - 5)])
    expect = edit.select_screen_rect(original.means, vm, K, (5, 5, w // 2, h - 5),
                                     near=gl.camera.near)
    assert 0 < expect.sum() < n
    np.testing.assert_array_equal(wb.editor.selected, expect)
    qtbot.keyClick(gl, Qt.Key.Key_Delete)
    assert wb.editor.n_alive == n - expect.sum()
    np.testing.assert_array_equal(gl.alive, ~expect)
    assert wb.editor.result().n == n - expect.sum()

    # brush on what is left, added to nothing (replace): a horizontal stroke
    wb.set_tool("brush")
    wb.brush_radius.setValue(15)
    stroke = [(w // 2 - 100, h // 2), (w // 2, h // 2 + 5), (w // 2 + 150, h // 2)]
    _drag(qtbot, gl, stroke)
    brush = edit.select_screen_brush(original.means, vm, K, stroke, 15, width=w, height=h,
                                     near=gl.camera.near) & ~expect
    assert brush.sum() > 0
    np.testing.assert_array_equal(wb.editor.selected, brush)
    wb.delete_button.click()
    assert wb.editor.n_alive == n - expect.sum() - brush.sum()

    # sphere around the surface point under the view's centre
    wb.set_tool("sphere")
    wb.sphere_radius.setValue(0.02)
    qtbot.mouseClick(gl, Qt.MouseButton.LeftButton, pos=QPoint(w * 3 // 4, h // 2))
    sel = wb.editor.selected
    assert sel.any()
    picked = wb.pick(w * 3 // 4, h // 2)
    assert np.all(np.linalg.norm(original.means[sel] - picked, axis=1) <= 0.02 + 1e-6)

    # undo everything with Ctrl+Z: the file's gaussians exactly; redo with Ctrl+Shift+Z
    steps = len(wb.editor.undo_labels)
    for _ in range(steps):
        qtbot.keyClick(gl, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert not wb.editor.can_undo and gl.alive is None
    _assert_same(wb.editor.result(), original)
    qtbot.keyClick(gl, Qt.Key.Key_Z,
                   Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    np.testing.assert_array_equal(wb.editor.selected, expect)
    assert wb.editor.n_alive == n


def test_box_opacity_size_invert_crop_and_save_version(page, qtbot, donut, tmp_path):
    """On a project holding the real splat: box / opacity / size selections through the
    panel, invert, crop, save a version (original kept), the Export dialog offers it."""
    from helpers.tiny_project import mark_done, splat_project

    from splatstudio.gui.export_dialog import source_combo

    project = splat_project(tmp_path / "proj", donut)
    mark_done(project, ["ingest", "reproject", "sfm", "georef", "train"])
    trained = project.root / "train" / "splat.ply"
    before = trained.read_bytes()
    assert page.load(trained)
    wb = page.workbench
    s = wb.editor.splats
    wb.opacity_max.setValue(0.2)
    wb.opacity_button.click()
    op = edit.select_opacity(s.opacities, 0.0, 0.2)
    assert wb.editor.n_selected == op.sum() > 0
    wb.mode.setCurrentIndex(wb.mode.findData("add"))
    wb.size_min.setValue(0.01)
    wb.size_button.click()
    big = edit.select_size(s.scales, 0.01)
    assert wb.editor.n_selected == (op | big).sum()
    wb.mode.setCurrentIndex(wb.mode.findData("replace"))
    lo = np.percentile(s.means, 25, axis=0)
    hi = np.percentile(s.means, 75, axis=0)
    for j in range(3):
        wb.box_lo[j].setValue(float(lo[j]))
        wb.box_hi[j].setValue(float(hi[j]))
    wb.box_button.click()
    box = edit.select_box(s.means, [b.value() for b in wb.box_lo], [b.value() for b in wb.box_hi])
    assert wb.editor.n_selected == box.sum() > 0
    wb.invert_button.click()
    assert wb.editor.n_selected == s.n - box.sum()
    wb.invert_button.click()
    wb.crop_button.click()
    assert wb.editor.n_alive == box.sum()
    out = wb.save_version()
    assert out == project.root / "edits" / "v001.ply"
    saved = load_splats(out)
    assert saved.n == box.sum()
    np.testing.assert_array_equal(saved.means, s.means[box])
    assert trained.read_bytes() == before
    versions = json.loads((project.root / "edits" / "versions.json").read_text())["versions"]
    assert versions[0]["source"] == "train/splat.ply" and versions[0]["removed"] == s.n - box.sum()
    combo = source_combo(project.root, "v001")
    assert combo.currentData() == "v001" and combo.count() == 2


def test_measure_a_room_of_known_size_in_metres(page, qtbot, tmp_path):
    """Two clicks on a synthetic room (floor 10 x 8 m, wall 3 m high) of a georeferenced
    project: the distance within 1 %, the height difference, ENU and WGS84 shown."""
    from helpers.room import room
    from helpers.tiny_project import splat_project

    s = room()
    save_splats(s, tmp_path / "room.ply")
    project = splat_project(tmp_path / "proj", tmp_path / "room.ply")
    _georeferenced(project.root)
    assert page.load(project.root / "train" / "splat.ply")
    wb, gl = page.workbench, page.gl
    assert wb.metric
    gl.camera.look_from(np.array([5.0, 1.0, 1.6]), np.array([0.0, 1.0, -0.08]), 3.0)
    wb.set_tool("measure")
    cam = gl.view_camera()
    vm, K = cam.viewmat, cam.K
    a, b = np.array([2.0, 4.0, 0.0]), np.array([8.0, 8.0, 2.5])
    uv, _ = edit.project_points(np.stack([a, b]), vm, K)
    for q in uv:
        qtbot.mouseClick(gl, Qt.MouseButton.LeftButton, pos=QPoint(round(q[0]), round(q[1])))
    m = wb.last_measure
    assert m is not None and m.metric
    true = float(np.linalg.norm(b - a))
    assert abs(m.distance - true) <= 0.01 * true, (m.distance, true)
    assert abs(m.height - 2.5) <= 0.05
    text = wb.measure_label.text()
    assert "WGS84 49.0" in text and f"distance {m.distance:.3f} m" in text
    # not georeferenced: scene units, said so
    (project.root / "georef" / "georef.json").unlink()
    assert page.load(project.root / "train" / "splat.ply")
    assert not wb.metric


def test_video_dialog_renders_keyframes_to_mp4(page, qtbot, donut, tmp_path):
    import imageio.v2 as imageio

    assert page.load(donut)
    dlg = page.workbench.open_video_dialog()
    assert dlg.path_combo.findData("capture") < 0  # a loose file has no capture path
    assert not dlg.start() and "2 keyframes" in dlg.message.text()
    dlg.add_keyframe()
    page.gl.camera.orbit(40, 0)
    dlg.add_keyframe()
    dlg.size_combo.setCurrentIndex(dlg.size_combo.findData("320x180"))
    dlg.frames.setValue(3)
    dlg.output.setText(str(tmp_path / "fly.mp4"))
    with qtbot.waitSignal(dlg.finished_video, timeout=120000):
        assert dlg.start()
    assert isinstance(dlg.result, dict) and dlg.result["frames"] == 3
    assert dlg.progress.value() == 3
    frames = [f for f in imageio.get_reader(str(tmp_path / "fly.mp4"))]  # no len() here
    assert len(frames) == 3 and frames[0].shape == (180, 320, 3)
    assert frames[0].std() > 5  # the donut is in view
    dlg.close()


def test_viewer_tab_shows_the_open_projects_splat(window, qtbot, donut, tmp_path):
    """With a trained project open, the Viewer tab loads its train/splat.ply by itself; a
    splat file opened explicitly is not replaced by it."""
    from helpers.tiny_project import mark_done, splat_project

    from splatstudio.gui.main_window import TAB_VIEWER

    project = splat_project(tmp_path / "proj", donut)
    mark_done(project, ["ingest", "reproject", "sfm", "georef", "train"])
    window.open_project(project.root)
    window.tabs.setCurrentIndex(TAB_VIEWER)
    page = window.viewer_tab.page
    qtbot.waitUntil(lambda: page.path is not None, timeout=30000)
    assert page.path == project.root / "train" / "splat.ply"
    assert page.workbench.project_root == project.root
    other = tmp_path / "other.ply"
    save_splats(load_splats(donut).subset(slice(0, 100)), other)
    assert window.open_splat(other)
    qtbot.wait(200)
    assert page.path == other and page.workbench.editor.splats.n == 100


def test_framing_ignores_a_far_background(donut):
    """The automatic framing of a loose file follows the fine gaussians: the real donut
    (about 0.2 m) with twice as many large gaussians on a 200 m sky dome around it is framed
    on the donut, as it is alone."""
    from splatstudio.gui.viewer.gaussians import robust_sphere
    from splatstudio.splats.model import Splats

    s = load_splats(donut)
    c0, r0 = robust_sphere(s.means, s.scales)
    rng = np.random.default_rng(0)
    d = rng.normal(size=(2 * s.n, 3))
    sky = Splats.empty(len(d))
    sky.means[:] = 200.0 * d / np.linalg.norm(d, axis=1, keepdims=True)
    sky.scales[:] = np.log(5.0)
    c, r = robust_sphere(np.concatenate([s.means, sky.means]),
                         np.concatenate([s.scales, sky.scales]))
    # on the donut (another subset of it is the finest quarter now), not on the dome
    assert r0 < 0.2 and np.linalg.norm(c - c0) < 0.5 * r0 and 0.5 * r0 < r < 1.5 * r0


def test_workbench_draws_deletion_tint_and_undo_under_xvfb(xdisplay, tmp_path):
    """The GL side under Xvfb (Mesa llvmpipe), in a child pytest (tests/gui/workbench_xcb.py):
    deleting the left half of the view empties it, a selection is tinted, undo draws the
    first image again."""
    import os
    import subprocess
    import sys

    here = Path(__file__).resolve().parent
    env = {**os.environ, "DISPLAY": xdisplay, "QT_QPA_PLATFORM": "xcb",
           "VIEWER_CHECK_OUT": str(tmp_path / "report.json")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         "-rs", str(here / "workbench_xcb.py")],
        cwd=here.parents[1], env=env, capture_output=True, text=True, timeout=300,
    )
    if "could not connect to display" in proc.stderr + proc.stdout:
        pytest.skip(f"cannot open X display {xdisplay}")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    if " passed" not in proc.stdout:
        pytest.skip(proc.stdout.strip().splitlines()[-1])
    print(json.loads((tmp_path / "report.json").read_text()))
