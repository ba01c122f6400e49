"""The main window: opening, drops, running stages, cancelling, errors, the capture map."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from splatstudio.config import STAGES
from splatstudio.gui.main_window import TAB_MAP, TAB_PROJECTS, TAB_STAGES
from splatstudio.gui.stage_panel import STATE_TEXT
from splatstudio.pipeline.artifacts import outputs
from splatstudio.project import Project
from splatstudio.status import StageState

pytestmark = pytest.mark.gui
RUN_TIMEOUT_MS = 120_000
#: Ingest and reproject take seconds; SfM and georef (once built) about a minute on 2 cores.
FULL_RUN_TIMEOUT_MS = 900_000


def _drop(widget, path: Path) -> None:
    """Drag `path` onto `widget` and drop it (enter first: Qt delivers drops to the target
    that accepted the drag)."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    enter = QDragEnterEvent(  # QPoint: PySide6 6.11 has no QPointF overload
        QPoint(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted()
    event = QDropEvent(
        QPointF(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(widget, event)


def _small_input(tmp_path: Path, panos_2048: Path, n: int = 2) -> Path:
    d = tmp_path / "my panoramas"
    d.mkdir()
    for i in range(1, n + 1):
        shutil.copy(panos_2048 / f"{i}.jpg", d / f"{i}.jpg")
    return d


def test_main_window_opens(window):
    assert window.windowTitle() == "SplatStudio"
    assert [window.tabs.tabText(i) for i in range(window.tabs.count())] == [
        "Projects", "Stages", "Training", "Capture map", "Viewer"
    ]
    assert window.tabs.currentIndex() == TAB_PROJECTS
    assert not window.tabs.isTabEnabled(TAB_STAGES) and not window.tabs.isTabEnabled(TAB_MAP)
    assert window.browser.list.count() == 0 and window.browser.empty_label.isVisible()
    shortcuts = {a.text(): a.shortcut().toString() for a in window.actions()}
    assert shortcuts["&New project…"] == "Ctrl+N"
    assert shortcuts["&Open project…"] == "Ctrl+O"
    assert shortcuts["&Run"] == "Ctrl+R"
    assert shortcuts["&Cancel"] == "Esc"
    assert shortcuts["&Quit"] == "Ctrl+Q"
    assert shortcuts["&Export…"] == "Ctrl+E"
    assert not window.export_action.isEnabled()  # no project yet


def test_drop_folder_creates_project(window, settings, tmp_path, panos_2048, qtbot):
    src = _small_input(tmp_path, panos_2048)
    with qtbot.waitSignal(window.projectOpened, timeout=10_000) as sig:
        _drop(window, src)
    project = sig.args[0]
    assert project.root.parent == settings.projects_dir
    assert project.root.name == "my panoramas"
    assert (project.root / "project.json").exists()
    assert project.input_dir == src.resolve()
    assert project.config.preset == "test"
    assert settings.recent() == [project.root]
    assert window.tabs.currentIndex() == TAB_STAGES
    assert window.windowTitle() == "SplatStudio - my panoramas"
    rows = window.stage_panel.rows
    assert rows["ingest"].state_label.text() == STATE_TEXT[StageState.PENDING]
    assert rows["train"].state_label.text() == STATE_TEXT[StageState.PENDING]
    assert rows["sfm"].state_label.text() == STATE_TEXT[StageState.PENDING]
    assert list(src.iterdir()) and sorted(p.name for p in src.iterdir()) == ["1.jpg", "2.jpg"]

    # Dropping the same folder again makes a second project; dropping the project opens it.
    _drop(window, src)
    assert window.model.project.root.name == "my panoramas-2"
    _drop(window, project.root)
    assert window.model.project.root == project.root
    window.tabs.setCurrentIndex(TAB_PROJECTS)
    assert window.browser.list.count() == 2
    window.remove_project(project.root, ask=False)
    assert window.browser.list.count() == 1
    assert (project.root / "project.json").exists()  # removing from the list deletes nothing


def test_run_end_to_end(window, settings, panos_2048, qtbot):
    """New project from the 5 panoramas (test preset), click Run, watch the stages."""
    project = window.new_project(panos_2048)
    assert project is not None and window.model.project is project
    panel = window.stage_panel
    with qtbot.waitSignal(window.model.runFinished, timeout=FULL_RUN_TIMEOUT_MS) as sig:
        qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
        assert not panel.run_button.isEnabled() and panel.cancel_button.isEnabled()
    result = sig.args[0]
    qtbot.waitUntil(lambda: not window.model.is_running, timeout=10_000)
    assert result.ok and result.states == {s: StageState.DONE for s in STAGES}, result.reason
    root = window.model.project.root
    summary = Project.open(root).summary()["stages"]
    for s in STAGES:  # every stage's outputs exist and are declared in pipeline/artifacts.py
        assert summary[s]["artifacts"], s
        for a in summary[s]["artifacts"]:
            assert (root / a).exists(), (s, a)
            assert any(a == o.rel or a.startswith(o.rel + "/") for o in outputs(s)), (s, a)
    assert (root / "train" / "splat.ply").exists()
    assert (root / "exports" / "manifest.json").exists()
    # the live training view kept the run's curves and shows the last preview
    view = window.train_view
    steps = window.model.project.config.train.steps
    metrics_every = window.model.project.config.train.metrics_every
    assert view.curve_points("loss") == steps // metrics_every
    assert view.curve_points("psnr") >= 2 and view.curve_points("gaussians") >= 2
    assert view.canvas.image is not None and f"step {steps}" in view.preview_label.text()

    rows = panel.rows
    for s in STAGES:
        assert rows[s].state_label.text() == STATE_TEXT[StageState.DONE], s
    assert rows["ingest"].progress.value() == 1000
    ingest_metrics = rows["ingest"].metrics_label.text()
    for text in ("images 5", "equirect 5", "with_gps 5", "skipped 1"):
        assert text in ingest_metrics
    reproject_metrics = rows["reproject"].metrics_label.text()
    for text in ("panoramas 5", "views 90", "view_size 512"):
        assert text in reproject_metrics
    assert rows["ingest"].time_label.text().endswith(" s")
    assert not rows["ingest"].error_label.isVisible()
    assert panel.run_button.isEnabled() and not panel.cancel_button.isEnabled()
    # the LICENSE file is reported in the ingest log as skipped
    panel.rows["ingest"].clicked.emit("ingest")
    assert "skipped LICENSE" in panel.log_view.toPlainText()

    # The capture map shows the 5 panoramas, their state, and the views of a clicked one.
    window.tabs.setCurrentIndex(TAB_MAP)
    cmap = window.capture_map
    assert cmap.point_count() == 5
    states = [c.state for c in cmap.captures]
    assert set(states) <= {"registered", "not registered"} and "registered" in states
    cmap.select("3")
    assert cmap.views.count() == 18
    assert "east" in cmap.info.text() and cmap.thumb.pixmap() is not None

    # A second run skips what is done; the browser lists the project with its state.
    with qtbot.waitSignal(window.model.runFinished, timeout=RUN_TIMEOUT_MS) as sig:
        window.run_action.trigger()
    assert sig.args[0].states["ingest"] == StageState.SKIPPED
    assert rows["ingest"].state_label.text() == "done (up to date)"
    qtbot.waitUntil(lambda: not window.model.is_running, timeout=10_000)
    window.tabs.setCurrentIndex(TAB_PROJECTS)
    item = window.browser.list.item(0)
    assert "export done" in item.text()


def test_escape_cancels_a_running_stage(window, settings, tmp_path, panos_2048, qtbot):
    project = window.new_project(_small_input(tmp_path, panos_2048, 1))
    assert project is not None
    window.model.functions = {"ingest": "helpers.stages:cooperative"}
    window.run()
    qtbot.waitUntil(
        lambda: window.model.stages["ingest"].state == StageState.RUNNING
        and window.model.stages["ingest"].fraction > 0,
        timeout=30_000,
    )
    assert window.stage_panel.rows["ingest"].state_label.text() == STATE_TEXT[StageState.RUNNING]
    with qtbot.waitSignal(window.model.runFinished, timeout=30_000):
        qtbot.keyClick(window, Qt.Key.Key_Escape)
    row = window.stage_panel.rows["ingest"]
    assert row.state_label.text() == STATE_TEXT[StageState.CANCELLED]
    assert Project.open(project.root).read_status("ingest").state == StageState.CANCELLED


def test_stage_error_shows_the_offending_folder(window, tmp_path, qtbot):
    empty = tmp_path / "empty input"
    empty.mkdir()
    window.new_project(empty)
    with qtbot.waitSignal(window.model.runFinished, timeout=RUN_TIMEOUT_MS):
        window.run()
    row = window.stage_panel.rows["ingest"]
    assert row.state_label.text() == STATE_TEXT[StageState.FAILED]
    assert row.error_label.isVisible()
    assert str(empty) in row.error_label.text() and "empty" in row.error_label.text()
    assert window.stage_panel.rows["reproject"].state_label.text() == STATE_TEXT[StageState.PENDING]
    assert window.stage_panel.selected == "ingest"
    assert f"{StageState.FAILED}: " in window.stage_panel.log_view.toPlainText()


def test_open_bad_folder_shows_error_not_crash(window, tmp_path, qtbot):
    with qtbot.waitSignal(window.errorShown, timeout=5_000):
        window.open_project(tmp_path)
    assert "not a SplatStudio project" in window.last_error
    assert window.model.project is None


def test_recent_projects_survive_a_restart(window, settings, tmp_path, panos_2048, qtbot):
    from splatstudio.gui.main_window import MainWindow

    project = window.new_project(_small_input(tmp_path, panos_2048, 1))
    again = MainWindow(settings)
    qtbot.addWidget(again)
    assert again.browser.list.count() == 1
    assert "new" in again.browser.list.item(0).text()
    assert again.browser.selected_root() is None
    again.browser.list.setCurrentRow(0)
    assert again.browser.selected_root() == project.root


def test_all_stages_have_rows(window):
    assert list(window.stage_panel.rows) == list(STAGES)


@pytest.mark.slow
def test_closing_the_window_during_sfm_cancels_and_the_project_resumes(
        window, tmp_path, panos_2048, qtbot):
    """Closing the window mid-SfM once aborted pycolmap and left a database no later run could
    use ("Inconsistent cameras for images with prefix"); now it is a cancel, and a resume."""
    import sqlite3

    from splatstudio.pipeline.runner import PipelineRunner

    pytest.importorskip("pycolmap")
    project = window.new_project(_small_input(tmp_path, panos_2048, 5))
    assert project is not None
    db = project.root / "sfm" / "database.db"

    def extracting() -> bool:
        if window.model.stages["sfm"].state != StageState.RUNNING or not db.exists():
            return False
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.2)
            n = con.execute("SELECT count(*) FROM descriptors").fetchone()[0]
            con.close()
        except sqlite3.Error:
            return False
        return 5 <= n < 85

    window.run()
    qtbot.waitUntil(extracting, timeout=RUN_TIMEOUT_MS)
    window.close()  # cancels and waits for the worker (closeEvent)
    qtbot.waitUntil(lambda: not window.model.is_running, timeout=30_000)
    st = Project.open(project.root).read_status("sfm")
    assert st.state == StageState.CANCELLED, st
    result = PipelineRunner(Project.open(project.root), device="cpu").run(until="georef")
    assert result.ok, result.reason
    summary = Project.open(project.root).summary()["stages"]
    assert summary["sfm"]["metrics"]["registered_images"] == 90
    assert summary["georef"]["metrics"]["rms_residual_all_m"] < 1.0
