"""The project browser: recent projects with a thumbnail, their state and date."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QImageReader, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..config import STAGES
from ..pipeline.artifacts import MANIFEST, read_manifest
from ..project import Project
from ..status import StageState
from .store import AppSettings

THUMB = QSize(160, 80)
IMAGE_EXTS = (".jpg", ".jpeg", ".png")


@dataclass
class ProjectOverview:
    """What the browser shows of one project folder.

    Attributes:
        root: the project folder; name: its name; state: one line ("reproject done",
        "failed at reproject", "missing"...); date: last activity (local time, text);
        thumbnail: an image to show (first panorama), or None.
    """

    root: Path
    name: str
    state: str
    date: str
    thumbnail: Path | None


def _local(iso: str | None) -> str:
    if not iso:
        return ""
    try:
        t = _dt.datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return t.astimezone().strftime("%Y-%m-%d %H:%M")


def overview(root: Path) -> ProjectOverview:
    """Summarise project folder `root` for the browser (never raises)."""
    root = Path(root)
    if not (root / "project.json").exists():
        return ProjectOverview(root, root.name, "missing (folder moved or deleted?)", "", None)
    try:
        project = Project.open(root)
        stages = project.summary()["stages"]
    except Exception as e:  # noqa: BLE001 - an unreadable project is listed, not fatal
        return ProjectOverview(root, root.name, f"unreadable: {e}", "", None)
    state = "new"
    last = project.created
    for s in STAGES:
        st = stages[s]
        if st["finished"] and (not last or st["finished"] > last):
            last = st["finished"]
        if st["state"] == StageState.RUNNING:
            state = f"running {s}"
        elif st["state"].is_problem:
            state = f"{st['state']} at {s}"
            break
        elif st["state"] == StageState.DONE:
            state = f"{s} done"
    return ProjectOverview(root, root.name, state, _local(last), _thumbnail_source(project))


def _thumbnail_source(project: Project) -> Path | None:
    try:
        if MANIFEST.path(project.root).exists():
            for e in read_manifest(project.root).images:
                p = project.input_dir / e["file"]
                if p.is_file():
                    return p
        if project.input_dir.is_dir():
            for p in sorted(project.input_dir.iterdir()):
                if p.suffix.lower() in IMAGE_EXTS:
                    return p
    except Exception:  # noqa: BLE001 - no thumbnail is fine
        return None
    return None


def load_thumbnail(path: Path | None, size: QSize = THUMB) -> QPixmap:
    """A pixmap of `path` scaled to cover `size` and centre-cropped (grey when None)."""
    if path is not None:
        reader = QImageReader(str(path))
        reader.setAutoTransform(True)
        src = reader.size()
        if src.isValid() and src.width() > 0:
            scale = max(size.width() / src.width(), size.height() / src.height())
            reader.setScaledSize(QSize(max(1, round(src.width() * scale)),
                                       max(1, round(src.height() * scale))))
        img = reader.read()
        if not img.isNull():
            x = (img.width() - size.width()) // 2
            y = (img.height() - size.height()) // 2
            return QPixmap.fromImage(img.copy(max(0, x), max(0, y), size.width(), size.height()))
    img = QImage(size, QImage.Format.Format_RGB32)
    img.fill(QColor("#2a303c"))
    return QPixmap.fromImage(img)


class ProjectBrowser(QWidget):
    """Recent projects (from :class:`AppSettings`), with New / Open / Remove buttons.

    Dropping folders is handled by the main window (anywhere on it); this page shows the hint.

    Signals:
        openRequested(object): a project folder (Path) to open.
        newRequested: the user wants a new project (the window asks for the folder).
        openFolderRequested: the user wants to pick an existing project folder.
        removeRequested(object): take this project folder (Path) off the list.
    """

    openRequested = Signal(object)
    newRequested = Signal()
    openFolderRequested = Signal()
    removeRequested = Signal(object)

    def __init__(self, settings: AppSettings, parent: QWidget | None = None):
        super().__init__(parent)
        self.settings = settings
        title = QLabel("Projects")
        title.setObjectName("title")
        self.new_button = QPushButton("New project…")
        self.new_button.setObjectName("primary")
        self.new_button.setToolTip("Make a project from a folder of panoramas (Ctrl+N)")
        self.open_button = QPushButton("Open project folder…")
        self.open_button.setToolTip("Open an existing project folder (Ctrl+O)")
        self.remove_button = QPushButton("Remove from list…")
        self.remove_button.setToolTip("Take the selected project off this list")
        head = QHBoxLayout()
        head.addWidget(title, 1)
        head.addWidget(self.remove_button)
        head.addWidget(self.open_button)
        head.addWidget(self.new_button)

        self.list = QListWidget()
        self.list.setIconSize(THUMB)
        self.list.setSpacing(3)
        self.list.setUniformItemSizes(True)
        self.empty_label = QLabel("No recent projects yet.")
        self.empty_label.setObjectName("muted")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        hint = QLabel(
            "Drop a folder of 360° panoramas (or photos with GPS) anywhere on this window to "
            "start a new project, or drop a project folder to open it. "
            "Drop a .ply / .splat / .spz file to view it."
        )
        hint.setObjectName("dropHint")
        hint.setWordWrap(True)
        hint.setAlignment(Qt.AlignmentFlag.AlignCenter)

        lay = QVBoxLayout(self)
        lay.addLayout(head)
        lay.addWidget(self.list, 1)
        lay.addWidget(self.empty_label)
        lay.addWidget(hint)

        self.new_button.clicked.connect(self.newRequested.emit)
        self.open_button.clicked.connect(self.openFolderRequested.emit)
        self.remove_button.clicked.connect(self._remove_selected)
        self.list.itemActivated.connect(lambda it: self.openRequested.emit(self._root(it)))
        self.list.itemDoubleClicked.connect(lambda it: self.openRequested.emit(self._root(it)))
        self.list.currentItemChanged.connect(lambda *_: self._update_buttons())
        settings.recentChanged.connect(self.refresh)
        self.refresh()

    @staticmethod
    def _root(item: QListWidgetItem) -> Path:
        return Path(item.data(Qt.ItemDataRole.UserRole))

    def refresh(self) -> None:
        """Rebuild the list from the recent projects in the settings."""
        current = self.list.currentItem()
        keep = self._root(current) if current is not None else None
        self.list.clear()
        for root in self.settings.recent():
            ov = overview(root)
            item = QListWidgetItem(
                QIcon(load_thumbnail(ov.thumbnail)),
                f"{ov.name}\n{ov.state}{'   ·   ' + ov.date if ov.date else ''}\n{ov.root}",
            )
            item.setData(Qt.ItemDataRole.UserRole, str(root))
            item.setToolTip(str(root))
            item.setSizeHint(QSize(0, THUMB.height() + 14))
            self.list.addItem(item)
            if keep is not None and root == keep:
                self.list.setCurrentItem(item)
        self.empty_label.setVisible(self.list.count() == 0)
        self._update_buttons()

    def selected_root(self) -> Path | None:
        """The selected project folder, or None."""
        item = self.list.currentItem()
        return self._root(item) if item is not None else None

    def _update_buttons(self) -> None:
        self.remove_button.setEnabled(self.list.currentItem() is not None)

    def _remove_selected(self) -> None:
        root = self.selected_root()
        if root is not None:
            self.removeRequested.emit(root)
