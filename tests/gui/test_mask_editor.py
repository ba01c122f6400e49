"""The platform mask editor: paint over a panorama, save, and the next reproject uses it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt

from splatstudio.config import ProjectConfig
from splatstudio.gui.main_window import TAB_MAP
from splatstudio.pipeline.runner import PipelineRunner
from splatstudio.project import Project

pytestmark = pytest.mark.gui


@pytest.fixture
def reprojected(tmp_path, panos_2048):
    project = Project.create(tmp_path / "p", panos_2048, ProjectConfig.from_preset("test"))
    assert PipelineRunner(project).run(until="reproject").ok
    return project


def test_paint_save_and_reproject_uses_it(window, reprojected, qtbot):
    window.open_project(reprojected.root)
    window.tabs.setCurrentIndex(TAB_MAP)
    cmap = window.capture_map
    cmap.select("1")
    assert cmap.mask_button.isEnabled()
    dlg = cmap.edit_platform_mask()
    assert dlg is not None
    qtbot.addWidget(dlg)
    qtbot.waitExposed(dlg)
    before = dlg.mask.copy()
    # a stroke across the sky straight ahead (where nothing is masked on this walk)
    canvas = dlg.canvas
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=QPoint(400, 100))
    for x in range(410, 640, 10):
        qtbot.mouseMove(canvas, QPoint(x, 100))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=QPoint(640, 100))
    painted = dlg.mask & ~before
    assert painted[50, 200:320].all()  # canvas 1024 px -> mask 512 px: x/2, y/2
    assert "% of the sphere masked" in dlg.info.text()
    # erase part of it again
    dlg.erase_button.setChecked(True)
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=QPoint(600, 100))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=QPoint(600, 100))
    assert not dlg.mask[50, 300] and dlg.mask[50, 220]
    with qtbot.waitSignal(dlg.saved, timeout=5000) as sig:
        qtbot.mouseClick(next(b for b in dlg.findChildren(type(dlg.undo_button))
                              if b.text() == "Save"), Qt.MouseButton.LeftButton)
    path = sig.args[0]
    saved = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert saved.shape == (256, 512) and saved[50, 220] == 0 and saved[50, 300] == 255
    project = Project.open(reprojected.root)
    assert project.config.reproject.platform_mask_file == path.relative_to(project.root).as_posix()
    assert project.summary()["stages"]["reproject"]["stale"]  # the next run redoes it
    # the next reproject puts the painted sky into the keep mask of the view looking there
    assert PipelineRunner(project).run(until="reproject").ok
    rig_keep = project.root / "reproject" / "platform_mask.png"
    assert cv2.imread(str(rig_keep), cv2.IMREAD_GRAYSCALE)[50, 220] == 0
    import json

    rig = json.loads((project.root / "reproject" / "rig.json").read_text())
    masked = [v["name"] for v in rig["views"]
              if (cv2.imread(str(project.root / "reproject" / v["masks"]["keep"]),
                             cv2.IMREAD_GRAYSCALE) == 0).mean() > 0.01 and v["pitch_deg"] > 0]
    assert masked  # an upward view now ignores the painted patch


def test_editor_shows_the_automatic_mask(reprojected, qtbot, tmp_path):
    """Without a saved mask the editor starts from reproject's automatic one."""
    from splatstudio.gui.mask_editor import PlatformMaskEditor

    auto = cv2.imread(str(reprojected.root / "reproject" / "platform_mask.png"),
                      cv2.IMREAD_GRAYSCALE) < 128
    dlg = PlatformMaskEditor(reprojected, reprojected.input_dir / "1.jpg")
    qtbot.addWidget(dlg)
    assert np.array_equal(dlg.mask, auto)
    dlg.clear()
    assert not dlg.mask.any() and dlg.info.text().startswith("0.0 %")
    dlg.revert()
    assert np.array_equal(dlg.mask, auto)
