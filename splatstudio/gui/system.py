"""Help → System: the ``splatstudio doctor`` report inside the application, and the OpenGL
probe the command runs in a child process (``splatstudio _gl-probe``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QFontDatabase, QGuiApplication, QOffscreenSurface, QOpenGLContext
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .. import doctor


def qt_check() -> doctor.Check:
    """The doctor's Qt line: PySide6 and Qt library versions."""
    import PySide6
    from PySide6.QtCore import qVersion

    return doctor.Check("qt", "Qt", doctor.OK, f"PySide6 {PySide6.__version__}, Qt {qVersion()}",
                        details={"pyside6": PySide6.__version__, "qt": qVersion()})


def gl_info() -> dict[str, Any]:
    """Version, renderer and vendor of an OpenGL 3.3 core context on an offscreen surface of
    the running Q(Gui)Application: ``{"version", "renderer", "vendor", "major", "minor"}``, or
    ``{"error": message}`` when no such context can be made."""
    from .viewer.gl_widget import surface_format

    fmt = surface_format()
    ctx = QOpenGLContext()
    ctx.setFormat(fmt)
    if not ctx.create():
        return {"error": "Qt could not create an OpenGL 3.3 core context"}
    surface = QOffscreenSurface()
    surface.setFormat(ctx.format())
    surface.create()
    if not ctx.makeCurrent(surface):
        return {"error": "Qt could not make an OpenGL context current"}
    try:
        from OpenGL import GL

        got = ctx.format()
        return {
            "version": GL.glGetString(GL.GL_VERSION).decode(),
            "renderer": GL.glGetString(GL.GL_RENDERER).decode(),
            "vendor": GL.glGetString(GL.GL_VENDOR).decode(),
            "major": got.majorVersion(),
            "minor": got.minorVersion(),
        }
    except Exception as e:  # noqa: BLE001 - PyOpenGL without a usable library
        return {"error": f"OpenGL query failed: {type(e).__name__}: {e}"}
    finally:
        ctx.doneCurrent()


def probe_main() -> int:
    """``splatstudio _gl-probe``: print :func:`gl_info` as one JSON line (exit 0)."""
    app = QGuiApplication.instance() or QGuiApplication(["splatstudio"])
    print(json.dumps(gl_info()))
    del app
    return 0


class SystemDialog(QDialog):
    """The doctor report (monospace text), with **Estimate CPU presets** (times a few CPU
    training steps, seconds) and **Copy**.

    Args:
        projects_dir: the folder whose free space is reported.
    """

    def __init__(self, projects_dir: Path, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("System — SplatStudio")
        self.projects_dir = Path(projects_dir)
        self._gl = gl_info()
        self.report: doctor.Report | None = None
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("What this machine can run (the same report as "
                             "<code>splatstudio doctor</code>):"))
        self.text = QPlainTextEdit(readOnly=True)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        lay.addWidget(self.text)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.measure_button = QPushButton("Estimate CPU presets")
        self.measure_button.setToolTip("Time a few CPU training steps and estimate each preset "
                                       "with the train stage's own formula")
        self.copy_button = QPushButton("Copy")
        buttons.addButton(self.measure_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        self.measure_button.clicked.connect(lambda: self.refresh(measure=True))
        self.copy_button.clicked.connect(
            lambda: QApplication.clipboard().setText(self.text.toPlainText()))
        lay.addWidget(buttons)
        self.resize(900, 520)
        self.refresh(measure=False)

    def refresh(self, measure: bool) -> None:
        """Build the report again (with the CPU timing when `measure`)."""
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            self.report = doctor.collect(self.projects_dir, measure=measure, gl=self._gl)
        finally:
            QApplication.restoreOverrideCursor()
        self.text.setPlainText(self.report.to_text())
        has_cuda = (c := self.report.check("cuda")) is not None and c.state == doctor.OK
        self.measure_button.setEnabled(not has_cuda and self.report.check("torch").state == "ok")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(probe_main())
