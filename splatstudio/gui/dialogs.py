"""Settings and About dialogs, and the error dialog behind ``sys.excepthook``."""

from __future__ import annotations

import platform
import sys
import traceback
from importlib import metadata
from pathlib import Path
from types import TracebackType

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import qVersion
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QWidget,
)

from .. import __version__
from ..config import PRESETS, Device
from .store import AppSettings


class SettingsDialog(QDialog):
    """Device, preset, projects folder and cancel grace period.

    The preset and device are those of new projects; with a project open, ``apply_to_project``
    tells the window to apply them to it as well (the window does so only while idle).
    """

    def __init__(self, settings: AppSettings, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.settings = settings
        self.device = QComboBox()
        for d in Device:
            self.device.addItem({"auto": "Automatic (CUDA if available)", "cpu": "CPU",
                                 "cuda": "CUDA GPU", "mps": "Apple GPU (MPS)"}[d.value], d.value)
        self.device.setCurrentIndex(self.device.findData(settings.device))
        self.preset = QComboBox()
        for name in PRESETS:
            self.preset.addItem(name, name)
        self.preset.setCurrentIndex(self.preset.findData(settings.preset))
        self.projects_dir = QLineEdit(str(settings.projects_dir))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.projects_dir, 1)
        row.addWidget(browse)
        self.grace = QDoubleSpinBox()
        self.grace.setRange(0.0, 600.0)
        self.grace.setSuffix(" s")
        self.grace.setValue(settings.grace_s)
        self.grace.setToolTip("After Cancel, a stage gets this long to stop before it is killed")
        form = QFormLayout(self)
        form.addRow("Compute device", self.device)
        form.addRow("Preset", self.preset)
        form.addRow("New projects in", row)
        form.addRow("Cancel grace period", self.grace)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _browse(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Folder for new projects",
                                             self.projects_dir.text())
        if d:
            self.projects_dir.setText(d)

    def apply(self) -> None:
        """Store the dialog's values in the settings."""
        self.settings.device = self.device.currentData()
        self.settings.preset = self.preset.currentData()
        self.settings.projects_dir = Path(self.projects_dir.text()).expanduser()
        self.settings.grace_s = self.grace.value()


def versions() -> dict[str, str]:
    """Versions shown in the About box (torch from its metadata: it is never imported)."""
    import numpy

    out = {
        "SplatStudio": __version__,
        "Python": platform.python_version(),
        "Qt": qVersion(),
        "PySide6": pyside_version,
        "NumPy": numpy.__version__,
    }
    for dist in ("torch", "gsplat", "pycolmap", "pyqtgraph", "PyOpenGL"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            if dist in ("torch", "gsplat", "pycolmap"):
                out[dist] = "not installed"
    return out


def about_text(gl_renderer: str | None = None) -> str:
    """HTML of the About box."""
    rows = "".join(f"<tr><td>{k}</td><td>&nbsp;{v}</td></tr>" for k, v in versions().items())
    if gl_renderer:
        rows += f"<tr><td>OpenGL</td><td>&nbsp;{gl_renderer}</td></tr>"
    return (
        "<h3>SplatStudio</h3><p>Georeferenced 3D Gaussian Splatting from 360° panoramas and "
        f"GPS photos.</p><table>{rows}</table>"
    )


def show_about(parent: QWidget | None, gl_renderer: str | None = None) -> None:
    """The About box."""
    QMessageBox.about(parent, "About SplatStudio", about_text(gl_renderer))


class ErrorDialogHook:
    """A ``sys.excepthook`` that shows unexpected errors in a dialog instead of crashing.

    The traceback also goes to stderr. Re-entrant errors (an error while the dialog is open)
    are only printed. `show` may be set to False (tests) to only record them in `errors`.
    """

    def __init__(self, show: bool = True):
        self.show = show
        self.errors: list[str] = []
        self._busy = False
        self._previous = sys.excepthook

    def install(self) -> ErrorDialogHook:
        """Make this the process's ``sys.excepthook``."""
        self._previous = sys.excepthook
        sys.excepthook = self
        return self

    def uninstall(self) -> None:
        """Put the previous hook back."""
        if sys.excepthook is self:
            sys.excepthook = self._previous

    def __call__(
        self, etype: type[BaseException], value: BaseException, tb: TracebackType | None
    ) -> None:
        if issubclass(etype, KeyboardInterrupt):
            QApplication.quit()
            return
        text = "".join(traceback.format_exception(etype, value, tb))
        self.errors.append(text)
        print(text, file=sys.stderr)
        if not self.show or self._busy or QApplication.instance() is None:
            return
        self._busy = True
        try:
            box = QMessageBox(QApplication.activeWindow())
            box.setIcon(QMessageBox.Icon.Critical)
            box.setWindowTitle("SplatStudio: unexpected error")
            box.setText(f"{etype.__name__}: {value}")
            box.setInformativeText(
                "The application keeps running. Please report this with the details below."
            )
            box.setDetailedText(text)
            box.exec()
        finally:
            self._busy = False
