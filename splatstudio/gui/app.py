"""Entry point of the desktop application: ``splatstudio`` with no arguments calls :func:`main`.

``main(["PATH"])`` opens PATH: a project folder, a folder of panoramas (a new project) or a
splat file (the viewer).
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QCoreApplication, Qt
from PySide6.QtGui import QIcon, QSurfaceFormat
from PySide6.QtWidgets import QApplication

from .. import __version__
from .dialogs import ErrorDialogHook
from .resources import resource_path


def style_sheet() -> str:
    """The application's Qt style sheet ('' if the resources are missing); ``@ICONS@`` in
    ``style.qss`` becomes the icons folder (QSS urls are relative to the working directory)."""
    try:
        text = resource_path("style.qss").read_text(encoding="utf-8")
    except (FileNotFoundError, OSError):
        return ""
    return text.replace("@ICONS@", resource_path("icons").as_posix())


def create_app(argv: list[str] | None = None) -> QApplication:
    """The QApplication (created once; OpenGL 3.3 core as default surface format)."""
    app = QApplication.instance()
    if app is not None:
        return app  # type: ignore[return-value]
    from .viewer.gl_widget import surface_format

    QSurfaceFormat.setDefaultFormat(surface_format())
    QCoreApplication.setAttribute(Qt.ApplicationAttribute.AA_ShareOpenGLContexts)
    app = QApplication(["splatstudio", *(argv or [])])
    app.setApplicationName("SplatStudio")
    app.setOrganizationName("SplatStudio")
    app.setApplicationVersion(__version__)
    return app


def setup_app(app: QApplication) -> None:
    """Style sheet and window icon."""
    app.setStyle("Fusion")
    app.setStyleSheet(style_sheet())
    try:
        app.setWindowIcon(QIcon(str(resource_path("icons", "splatstudio.svg"))))
    except FileNotFoundError:
        pass


def main(argv: list[str] | None = None) -> int:
    """Run the desktop application until its window closes; returns the exit code.

    Args:
        argv: optional ``[PATH]``: a project folder, an image folder or a splat file to open.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    app = create_app([])
    setup_app(app)
    hook = ErrorDialogHook().install()
    from .main_window import MainWindow

    window = MainWindow()
    window.show()
    if argv:
        window.handle_drop(Path(argv[0]).expanduser().resolve())
    try:
        return int(app.exec())
    finally:
        hook.uninstall()


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
