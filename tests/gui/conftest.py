"""Fixtures of the GUI tests: isolated settings, the main window, a private Xvfb display."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("PySide6", reason="the GUI tests need PySide6 (pip install .[gui])")
pytest.importorskip("pytestqt", reason="the GUI tests need pytest-qt")


@pytest.fixture
def settings(tmp_path):
    """AppSettings in an INI file of the test's temporary folder (never the user's)."""
    from PySide6.QtCore import QSettings

    from splatstudio.gui.store import AppSettings

    qs = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    s = AppSettings(qs)
    s.projects_dir = tmp_path / "projects"
    s.preset = "test"
    s.device = "cpu"
    s.grace_s = 5.0
    return s


@pytest.fixture
def window(qtbot, qapp, settings):
    """The main window, shown, with the application's style sheet."""
    from splatstudio.gui.app import setup_app
    from splatstudio.gui.main_window import MainWindow

    setup_app(qapp)
    w = MainWindow(settings)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    yield w
    if w.model.is_running:
        w.model.cancel()
        qtbot.waitUntil(lambda: not w.model.is_running, timeout=30000)


@pytest.fixture(scope="session")
def xdisplay():
    """An X display for OpenGL tests: $DISPLAY, or a private ``Xvfb :99`` started here
    (another free number if :99 is taken). Skips when neither is available."""
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    exe = shutil.which("Xvfb")
    if exe is None:
        pytest.skip("no DISPLAY and Xvfb is not installed (apt install xvfb) for the OpenGL tests")
    args = [exe, "-screen", "0", "1280x1024x24", "-nolisten", "tcp"]
    r, w = os.pipe()
    if not Path("/tmp/.X99-lock").exists():
        args.insert(1, ":99")
    proc = subprocess.Popen([*args, "-displayfd", str(w)], pass_fds=(w,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    with os.fdopen(r) as f:
        number = f.readline().strip()  # Xvfb writes the display number once it is ready
    if not number:
        proc.kill()
        pytest.skip("Xvfb did not start")
    try:
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
