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
from ..resources import resource_path
from .dialogs import ErrorDialogHook


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


def window_state(window) -> dict:
    """What `window` shows: current tab, open project, viewer file and size, last error."""
    page = window.viewer_tab.page
    project = window.model.project
    return {
        "tab": window.tabs.tabText(window.tabs.currentIndex()),
        "project": str(project.root) if project is not None else None,
        "input_dir": str(project.input_dir) if project is not None else None,
        "viewer_file": str(page.path) if page is not None and page.path else None,
        "gaussians": int(page.gl.packed.n) if page is not None and page.gl.packed else 0,
        "gl_renderer": page.gl.gl_info.get("renderer") if page is not None else None,
        "error": window.last_error or (page.gl.error if page is not None else None),
    }


def _screenshot_when_ready(app: QApplication, window, out: Path, timeout_s: float) -> None:
    """Save `window` to `out` once it shows what it opened (the viewer's first frame when a
    splat file was opened, else after the first events), print :func:`window_state` as one JSON
    line on stdout and quit (exit code 1 when there was an error or `timeout_s` passed)."""
    import json

    from PySide6.QtCore import QTimer

    done = {"yes": False}

    def shoot(error: str | None = None) -> None:
        if done["yes"]:
            return
        done["yes"] = True
        app.processEvents()
        out.parent.mkdir(parents=True, exist_ok=True)
        saved = window.grab().save(str(out))
        state = {**window_state(window), "screenshot": str(out) if saved else None}
        if error and not state["error"]:
            state["error"] = error
        print(json.dumps(state), flush=True)
        app.exit(1 if state["error"] or not saved else 0)

    page = window.viewer_tab.page
    if page is not None and page.path is not None:
        page.gl.frameRendered.connect(lambda _ms: QTimer.singleShot(200, shoot))
        page.gl.glError.connect(lambda msg: shoot(msg))
    else:
        QTimer.singleShot(1500, shoot)
    QTimer.singleShot(int(timeout_s * 1000), lambda: shoot(f"timeout after {timeout_s:.0f} s"))


def main(argv: list[str] | None = None, screenshot: Path | None = None,
         timeout_s: float = 120.0) -> int:
    """Run the desktop application until its window closes; returns the exit code.

    Args:
        argv: optional ``[PATH]``: a project folder, an image folder or a splat file to open.
        screenshot: save a PNG of the window here once it shows PATH, print its state as one
            JSON line (:func:`window_state`) and quit, instead of waiting for the user (smoke
            tests of the installed or bundled application).
        timeout_s: with `screenshot`, give up (exit 1) after this many seconds.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    from ..pipeline.runner import limit_openmp_spinning

    limit_openmp_spinning()  # Help → System times CPU training steps in this process
    app = create_app([])
    setup_app(app)
    hook = ErrorDialogHook(show=screenshot is None).install()
    from .main_window import MainWindow

    window = MainWindow()
    window.show()
    if argv:
        window.handle_drop(Path(argv[0]).expanduser().resolve())
    if screenshot is not None:
        _screenshot_when_ready(app, window, Path(screenshot), timeout_s)
    try:
        return int(app.exec())
    finally:
        hook.uninstall()


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
