"""The main window: tabs (Projects, Stages, Training, Capture map, Viewer), menus, shortcuts,
drops, the Export dialog."""

from __future__ import annotations

import shutil
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..config import Device, ProjectConfig, apply_preset
from ..errors import SplatStudioError
from ..project import Project
from ..status import StageState
from .capture_map import CaptureMap
from .dialogs import SettingsDialog, show_about
from .export_dialog import ExportDialog
from .model import ProjectModel
from .options_form import StageOptionsDialog
from .project_browser import ProjectBrowser
from .stage_panel import StagePanel
from .store import AppSettings
from .train_view import LiveTrainView

TAB_PROJECTS, TAB_STAGES, TAB_TRAIN, TAB_MAP, TAB_VIEWER = range(5)


def unique_project_dir(parent: Path, name: str) -> Path:
    """``parent/name``, or ``parent/name-2``, ``-3``... the first that does not exist."""
    base = parent / (name or "project")
    out, k = base, 1
    while out.exists():
        k += 1
        out = parent / f"{base.name}-{k}"
    return out


class _LazyViewer(QWidget):
    """Placeholder of the Viewer tab; the OpenGL page is built when first needed."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.page = None
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)

    def ensure(self):
        """The :class:`~splatstudio.gui.viewer.page.ViewerPage`, created on first use."""
        if self.page is None:
            from .viewer.page import ViewerPage

            self.page = ViewerPage(self)
            self._layout.addWidget(self.page)
        return self.page


class MainWindow(QMainWindow):
    """SplatStudio's window.

    Args:
        settings: preferences and recent projects (default: the user's QSettings).
        model: the project model (default: a new one).

    Signals:
        projectOpened(object): a :class:`~splatstudio.project.Project` is now shown.
        errorShown(str): an error message was shown to the user (also in ``last_error``).
    """

    projectOpened = Signal(object)
    errorShown = Signal(str)

    def __init__(
        self,
        settings: AppSettings | None = None,
        model: ProjectModel | None = None,
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.settings = settings or AppSettings(parent=self)
        self.model = model or ProjectModel(self)
        self.last_error: str | None = None
        self._train_followed = False  # the Training tab was shown for this run
        self.setWindowTitle("SplatStudio")
        self.setAcceptDrops(True)
        self.resize(1280, 820)

        self.browser = ProjectBrowser(self.settings)
        self.stage_panel = StagePanel(self.model)
        self.train_view = LiveTrainView(self.model)
        self.capture_map = CaptureMap(self.model)
        self.viewer_tab = _LazyViewer()
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.browser, "Projects")
        self.tabs.addTab(self.stage_panel, "Stages")
        self.tabs.addTab(self.train_view, "Training")
        self.tabs.addTab(self.capture_map, "Capture map")
        self.tabs.addTab(self.viewer_tab, "Viewer")
        self.tabs.currentChanged.connect(self._on_tab)
        self.setCentralWidget(self.tabs)
        self.status_label = QLabel()
        self.statusBar().addWidget(self.status_label, 1)

        self._make_actions()
        self.browser.newRequested.connect(self.new_project_dialog)
        self.browser.openFolderRequested.connect(self.open_project_dialog)
        self.browser.openRequested.connect(self.open_project)
        self.browser.removeRequested.connect(self.remove_project)
        self.stage_panel.runRequested.connect(self.run)
        self.stage_panel.cancelRequested.connect(self.cancel)
        self.stage_panel.exportRequested.connect(self.export_dialog)
        self.stage_panel.optionsRequested.connect(self.options_dialog)
        self.train_view.stopRequested.connect(self.cancel)
        self.model.stageChanged.connect(self._on_stage_changed)
        self.export_dialog_window: ExportDialog | None = None
        self.options_dialog_window: StageOptionsDialog | None = None
        self.model.runningChanged.connect(self._on_running)
        self.model.runError.connect(lambda msg: self.show_error("Cannot run", msg))
        self.model.runFinished.connect(self._on_run_finished)
        self.model.projectChanged.connect(self._on_project_changed)
        self._on_project_changed()

    # -- menus and shortcuts --------------------------------------------------------------
    def _action(self, text: str, shortcut: QKeySequence | str | None, slot) -> QAction:
        a = QAction(text, self)
        if shortcut is not None:
            a.setShortcut(QKeySequence(shortcut))
        a.triggered.connect(slot)
        self.addAction(a)
        return a

    def _make_actions(self) -> None:
        S = QKeySequence.StandardKey  # noqa: N806
        self.new_action = self._action("&New project…", S.New, self.new_project_dialog)
        self.open_action = self._action("&Open project…", S.Open, self.open_project_dialog)
        self.open_splat_action = self._action("Open &splat file…", "Ctrl+Shift+O",
                                              self.open_splat_dialog)
        self.settings_action = self._action("Se&ttings…", "Ctrl+,", self.settings_dialog)
        self.quit_action = self._action("&Quit", "Ctrl+Q", self.close)
        self.run_action = self._action("&Run", "Ctrl+R", lambda: self.run(None))
        self.cancel_action = self._action("&Cancel", "Esc", self.cancel)
        self.export_action = self._action("&Export…", "Ctrl+E", self.export_dialog)
        self.options_action = self._action("Stage &options…", "Ctrl+Shift+P",
                                           lambda: self.options_dialog(self.stage_panel.selected))
        self.about_action = self._action("&About SplatStudio", None, self.about)
        self.system_action = self._action("&System…", None, self.system_dialog)
        self.farm_action = self._action("&Farm…", None, self.farm_dialog)
        m = self.menuBar().addMenu("&File")
        for a in (self.new_action, self.open_action, self.open_splat_action):
            m.addAction(a)
        m.addSeparator()
        m.addAction(self.export_action)
        m.addAction(self.options_action)
        m.addSeparator()
        m.addAction(self.settings_action)
        m.addSeparator()
        m.addAction(self.quit_action)
        m = self.menuBar().addMenu("&Run")
        m.addAction(self.run_action)
        m.addAction(self.cancel_action)
        m.addSeparator()
        m.addAction(self.farm_action)
        m = self.menuBar().addMenu("&Help")
        m.addAction(self.system_action)
        m.addAction(self.about_action)

    # -- projects -------------------------------------------------------------------------
    def new_project_dialog(self) -> None:
        """Ask for a folder of panoramas and make a project from it."""
        d = QFileDialog.getExistingDirectory(self, "Folder of panoramas or photos")
        if d:
            self.new_project(Path(d))

    def open_project_dialog(self) -> None:
        """Ask for an existing project folder and open it."""
        d = QFileDialog.getExistingDirectory(self, "Open a SplatStudio project folder")
        if d:
            self.open_project(Path(d))

    def new_project(self, input_dir: Path, root: Path | None = None) -> Project | None:
        """Make a project from `input_dir` (in the projects folder unless `root` is given),
        add it to the recent list and open it. Errors are shown, not raised."""
        input_dir = Path(input_dir)
        if self.model.is_running:
            self.show_error("Busy", "Stages are running; cancel them before making a project.")
            return None
        if not input_dir.is_dir():
            self.show_error("New project", f"{input_dir}: not a folder")
            return None
        try:
            root = root or unique_project_dir(self.settings.projects_dir, input_dir.name)
            cfg = ProjectConfig.from_preset(self.settings.preset)
            cfg.device = Device(self.settings.device)
            project = Project.create(root, input_dir, cfg)
        except (SplatStudioError, OSError) as e:
            self.show_error("New project", str(e))
            return None
        self._show_project(project)
        self.status_label.setText(f"New project {project.root} from {input_dir}")
        return project

    def open_project(self, root: Path) -> Project | None:
        """Open project folder `root` (errors are shown, not raised)."""
        if self.model.is_running:
            self.show_error("Busy", "Stages are running; cancel them before switching projects.")
            return None
        try:
            project = Project.open(root)
        except (SplatStudioError, OSError, KeyError) as e:
            self.show_error("Open project", str(e))
            return None
        self._show_project(project)
        return project

    def _show_project(self, project: Project) -> None:
        self.model.open(project)
        self.settings.add_recent(project.root)
        self.tabs.setCurrentIndex(TAB_STAGES)
        self.projectOpened.emit(project)

    def remove_project(self, root: Path, ask: bool = True) -> None:
        """Take `root` off the recent list; with `ask`, offer to delete the project folder
        too (after a second confirmation; the input folder is never touched)."""
        root = Path(root)
        if not ask:
            self.settings.remove_recent(root)
            return
        box = QMessageBox(self)
        box.setWindowTitle("Remove project")
        box.setText(f"Remove {root.name} from the list of recent projects?")
        box.setInformativeText("The project folder stays on disk unless you delete it here.")
        remove = box.addButton("Remove from list", QMessageBox.ButtonRole.AcceptRole)
        delete = box.addButton("Delete project folder…", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        clicked = box.clickedButton()
        if clicked is remove:
            self.settings.remove_recent(root)
        elif clicked is delete:
            if self.model.project is not None and self.model.project.root == root.resolve():
                self.show_error("Delete project", "Close the project before deleting it.")
                return
            if not (root / "project.json").exists():
                self.show_error("Delete project", f"{root}: not a SplatStudio project folder")
                return
            sure = QMessageBox.question(
                self,
                "Delete project folder",
                f"Delete {root} and everything in it? The input panoramas are not touched. "
                "This cannot be undone.",
            )
            if sure == QMessageBox.StandardButton.Yes:
                shutil.rmtree(root)
                self.settings.remove_recent(root)

    def _on_project_changed(self) -> None:
        p = self.model.project
        for tab in (TAB_STAGES, TAB_TRAIN, TAB_MAP):
            self.tabs.setTabEnabled(tab, p is not None)
        self.setWindowTitle(f"SplatStudio - {p.root.name}" if p else "SplatStudio")
        self.status_label.setText(str(p.root) if p else "No project open")
        self._on_running(self.model.is_running)

    # -- running ----------------------------------------------------------------------
    def run(self, from_stage: str | None = None) -> None:
        """Run every stage not done (or re-run from `from_stage` on)."""
        if self.model.project is None or self.model.is_running:
            return
        device = str(self.model.project.config.device)
        if from_stage:
            self.model.run_from(from_stage, device=device, grace_s=self.settings.grace_s)
        else:
            self.model.run(None, device=device, grace_s=self.settings.grace_s)
        self.tabs.setCurrentIndex(TAB_STAGES)

    def cancel(self) -> None:
        """Cancel the running stage (Esc)."""
        if self.model.is_running:
            self.model.cancel()
            self.status_label.setText("Cancelling...")

    def _on_running(self, running: bool) -> None:
        has = self.model.project is not None
        self.run_action.setEnabled(has and not running)
        self.cancel_action.setEnabled(running)
        self.export_action.setEnabled(has and not running)
        self.options_action.setEnabled(has and not running)
        self.new_action.setEnabled(not running)
        self.open_action.setEnabled(not running)
        if running:
            self._train_followed = False
            self.status_label.setText("Running...")

    def _on_stage_changed(self, stage: str) -> None:
        # training started: follow it in the Training tab (only from the Stages tab)
        if (stage == "train" and self.model.stages["train"].state == StageState.RUNNING
                and self.tabs.currentIndex() == TAB_STAGES and not self._train_followed):
            self._train_followed = True
            self.tabs.setCurrentIndex(TAB_TRAIN)

    # -- export ---------------------------------------------------------------------------
    def export_dialog(self) -> ExportDialog | None:
        """Show the Export dialog for the open project (window-modal, not blocking)."""
        if self.model.project is None:
            self.show_error("Export", "Open a project first.")
            return None
        if self.export_dialog_window is not None:
            self.export_dialog_window.deleteLater()
        dlg = ExportDialog(self.model, self, grace_s=self.settings.grace_s)
        dlg.exportFinished.connect(lambda _m: self.browser.refresh())
        self.export_dialog_window = dlg
        dlg.open()
        return dlg

    def options_dialog(self, stage: str) -> StageOptionsDialog | None:
        """Show every stage's options (tab `stage` first); saving them updates the stage
        panel (changed stages read as stale)."""
        if self.model.project is None or self.model.is_running:
            return None
        dlg = StageOptionsDialog(self.model.project, stage, self)
        dlg.accepted.connect(self.model.reload)
        self.options_dialog_window = dlg
        dlg.open()
        return dlg

    def _on_run_finished(self, result) -> None:
        if result is None:
            return
        if result.stopped_at and result.ok:
            text = f"Stopped before {result.stopped_at}: {result.reason}"
        elif result.stopped_at:
            text = f"{result.stopped_at} {result.states.get(result.stopped_at)}"
        else:
            text = "All stages done"
        self.status_label.setText(text)
        self.browser.refresh()

    # -- viewer ---------------------------------------------------------------------------
    def viewer(self):
        """The viewer page (created on first use) and show its tab."""
        page = self.viewer_tab.ensure()
        self.tabs.setCurrentIndex(TAB_VIEWER)
        return page

    def open_splat(self, path: Path) -> bool:
        """Show splat file `path` in the viewer."""
        return self.viewer().load(Path(path))

    def show_project_splat(self) -> bool:
        """An empty viewer shows the open project's trained splat, inside the capture (at its
        first registered position); returns whether it loaded one."""
        page = self.viewer_tab.page
        p = self.model.project
        if page is None or page.path is not None or p is None:
            return False
        splat = p.root / "train" / "splat.ply"
        return splat.is_file() and page.load(splat)

    def open_splat_dialog(self) -> None:
        """Ask for a splat file and view it."""
        self.viewer().open_dialog()

    def _on_tab(self, index: int) -> None:
        if index == TAB_VIEWER:
            self.viewer_tab.ensure()
            # after the event (open_splat loads its own file first)
            QTimer.singleShot(0, self.show_project_splat)
        elif index == TAB_PROJECTS:
            self.browser.refresh()

    # -- dialogs ------------------------------------------------------------------------
    def settings_dialog(self) -> None:
        """Edit the settings; apply device and preset to the open project when idle."""
        dlg = SettingsDialog(self.settings, self)
        if dlg.exec() != SettingsDialog.DialogCode.Accepted:
            return
        dlg.apply()
        p = self.model.project
        if p is not None and not self.model.is_running:
            changed = False
            if p.config.preset != self.settings.preset:
                apply_preset(p.config, self.settings.preset)  # as --preset does
                p.save()
                changed = True
            if str(p.config.device) != self.settings.device:
                p.config.device = Device(self.settings.device)
                p.save()
                changed = True
            if changed:
                self.model.open(p)

    def about(self) -> None:
        """The About box with versions."""
        page = self.viewer_tab.page
        renderer = page.gl.gl_info.get("renderer") if page is not None else None
        show_about(self, renderer)

    def system_dialog(self):
        """Help → System: the ``splatstudio doctor`` report (non-modal); returns the dialog."""
        from .system import SystemDialog

        dlg = SystemDialog(self.settings.projects_dir, self)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.show()
        return dlg

    def show_error(self, title: str, message: str) -> None:
        """Show `message` in a non-blocking message box and the status bar."""
        self.last_error = message
        self.status_label.setText(message.splitlines()[0] if message else title)
        box = QMessageBox(QMessageBox.Icon.Warning, title, message, parent=self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        self.errorShown.emit(message)

    # -- drag and drop --------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt override
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt override
        urls = event.mimeData().urls()
        if not urls:
            return
        event.acceptProposedAction()
        self.handle_drop(Path(urls[0].toLocalFile()))

    def handle_drop(self, path: Path) -> None:
        """A dropped folder opens (project) or becomes a new project (images); a dropped
        splat file opens in the viewer."""
        from .viewer.page import is_splat_file

        if path.is_dir():
            if (path / "project.json").exists():
                self.open_project(path)
            else:
                self.new_project(path)
        elif is_splat_file(path):
            self.open_splat(path)
        else:
            self.show_error("Drop", f"{path}: drop a folder of images, a project folder or a "
                            "splat file (.ply, .splat, .spz, .sog, .glb)")

    def farm_dialog(self) -> None:
        """Run → Farm…: the LAN farm's set-up, switch and peers (non-modal; farming stays on
        while the window is open)."""
        from .farm_dialog import FarmController, FarmDialog

        if getattr(self, "farm", None) is None:
            self.farm = FarmController(parent=self)
        if getattr(self, "farm_window", None) is None:
            self.farm_window = FarmDialog(self.farm, self)
        self.farm_window.show()
        self.farm_window.raise_()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        if self.model.is_running:
            self.model.cancel()
            self.model.wait(int((self.settings.grace_s + 15) * 1000))
        if getattr(self, "farm", None) is not None:
            self.farm.stop(wait=True)  # farming never outlives the app
        event.accept()
