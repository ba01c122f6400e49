"""The Viewer tab: the OpenGL splat widget with a small tool bar and a status line."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ...splats.formats import READ_SUFFIXES, file_dialog_filter
from .camera import UP_AXES
from .gl_widget import MAX_SH_DEGREE, SplatGLWidget

SPLAT_FILTER = file_dialog_filter()
SPLAT_SUFFIXES = READ_SUFFIXES


def is_splat_file(path: Path) -> bool:
    """True for a file name the viewer can open (.ply, .compressed.ply, .splat, .spz, .sog,
    .glb with ``KHR_gaussian_splatting``)."""
    return path.is_file() and path.name.lower().endswith(SPLAT_SUFFIXES)


class ViewerPage(QWidget):
    """Open a splat file (button, menu or drag and drop) and orbit it; the workbench panel
    (:class:`~.tools.WorkbenchPanel`) beside the view jumps between a project's capture
    positions, selects, deletes, undoes, measures and renders fly-through videos.

    The tool bar's ``sh_combo`` caps the spherical-harmonic degree drawn ("SH ≤ 3" .. "SH ≤ 0",
    0 = base colour only; the H key cycles it); the status line shows the file's own degree.

    Signals:
        fileLoaded(str): a file was loaded and is shown.
        loadFailed(str): the message of a file that could not be loaded.
    """

    fileLoaded = Signal(str)
    loadFailed = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.path: Path | None = None
        self.gl = SplatGLWidget(self)
        self.open_button = QPushButton("Open splat…")
        self.reset_button = QPushButton("Reset view")
        self.up_combo = QComboBox()
        for name in UP_AXES:
            self.up_combo.addItem(f"up {name}", name)
        self.up_combo.setToolTip("World up axis: +Z for SplatStudio (ENU) scenes, -Y for COLMAP")
        self.sh_combo = QComboBox()
        for d in range(MAX_SH_DEGREE, -1, -1):
            self.sh_combo.addItem(f"SH ≤ {d}", d)
        self.sh_combo.setToolTip(
            "Highest spherical-harmonic degree drawn (view-dependent colour); 0 = base colour "
            "only. The file's own degree is shown after its name. Key: H cycles."
        )
        self.info = QLabel("Drop a .ply, .compressed.ply, .splat, .spz, .sog or splat .glb file "
                           "here, or open one.")
        self.info.setObjectName("muted")
        self.fps_label = QLabel()
        self.fps_label.setObjectName("muted")
        help_label = QLabel(
            "left drag: orbit · right drag / shift+left: pan · wheel: zoom · "
            "W A S D Q E: fly · F: frame · R: reset · H: SH degree · "
            "Del: delete selection · Ctrl+Z / Ctrl+Shift+Z: undo / redo"
        )
        help_label.setObjectName("muted")
        bar = QHBoxLayout()
        bar.addWidget(self.open_button)
        bar.addWidget(self.reset_button)
        bar.addWidget(self.up_combo)
        bar.addWidget(self.sh_combo)
        bar.addWidget(self.info, 1)
        bar.addWidget(self.fps_label)
        from .tools import WorkbenchPanel

        self.workbench = WorkbenchPanel(self)
        body = QHBoxLayout()
        body.addWidget(self.gl, 1)
        body.addWidget(self.workbench)
        lay = QVBoxLayout(self)
        lay.addLayout(bar)
        lay.addLayout(body, 1)
        lay.addWidget(help_label)

        self.open_button.clicked.connect(self.open_dialog)
        self.reset_button.clicked.connect(self.gl.reset_view)
        self.up_combo.currentIndexChanged.connect(
            lambda _: self.gl.set_up_axis(UP_AXES[self.up_combo.currentData()])
        )
        self.sh_combo.currentIndexChanged.connect(
            lambda _: self.gl.set_max_sh_degree(self.sh_combo.currentData())
        )
        self.gl.shDegreeChanged.connect(
            lambda d: self.sh_combo.setCurrentIndex(self.sh_combo.findData(d))
        )
        self.gl.glError.connect(lambda msg: self.info.setText(msg))
        self._fps_timer = QTimer(self)
        self._fps_timer.setInterval(1000)
        self._fps_timer.timeout.connect(self._show_fps)
        self._fps_timer.start()

    def _show_fps(self) -> None:
        if self.gl.packed is None or not self.gl.last_frame_ms:
            return
        text = f"{self.gl.last_frame_ms:.0f} ms/frame"
        if self.gl.fps() > 0:
            text += f" · {self.gl.fps():.1f} fps"
        self.fps_label.setText(text)

    def open_dialog(self) -> None:
        """Ask for a splat file and load it."""
        name, _ = QFileDialog.getOpenFileName(self, "Open splat", "", SPLAT_FILTER)
        if name:
            self.load(Path(name))

    def load(self, path: Path) -> bool:
        """Load and show `path`; a bad file shows its message instead (returns False)."""
        from ...geo.sidecar import file_up, read_axes
        from ...splats.io import detect_format, load_splats

        path = Path(path)
        try:
            # a SplatStudio export states its axes in its sidecar: its SPZ is then read as
            # stored (the sidecar's axes) and the view's up is the file's ENU up
            axes = read_axes(path)
            raw = axes is not None and detect_format(path) == "spz"
            splats = load_splats(path, **({"coordinate_system": None} if raw else {}))
            self.gl.set_splats(splats)
            n = splats.n
            if axes is not None:
                name = next((k for k, v in UP_AXES.items() if v == file_up(axes)), None)
                if name is not None:
                    self.up_combo.setCurrentIndex(self.up_combo.findData(name))
        except (OSError, ValueError) as e:
            self.info.setText(f"Cannot open {path.name}: {e}")
            self.loadFailed.emit(str(e))
            return False
        self.path = path
        deg = self.gl.packed.sh_degree if self.gl.packed is not None else 0
        self.info.setText(f"{path.name}: {n:,} gaussians · SH degree {deg}")
        self.workbench.on_loaded(path)
        self.fileLoaded.emit(str(path))
        return True

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt override
        urls = event.mimeData().urls()
        if urls and is_splat_file(Path(urls[0].toLocalFile())):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt override
        urls = event.mimeData().urls()
        if urls:
            self.load(Path(urls[0].toLocalFile()))
            event.acceptProposedAction()
