"""`splatstudio PATH` opens the window on a splat file (viewer), an image folder (a new project)
and a project folder, as a user starts it (a child process on a private Xvfb, with throw-away
settings and projects); and Help → System shows the doctor report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gui
DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
DONUT = DATA / "splats" / "donut_fused.ply"


def launch(args: list, home: Path, display: str, exe: list | None = None,
           timeout: float = 180) -> tuple[subprocess.CompletedProcess, dict]:
    """Run ``splatstudio ARGS --screenshot`` with HOME and XDG folders under `home`; returns
    the process and the window state it printed (see splatstudio.gui.app.window_state)."""
    env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb", "HOME": str(home),
           "XDG_CONFIG_HOME": str(home / ".config"), "XDG_DATA_HOME": str(home / ".local/share"),
           "XDG_DOCUMENTS_DIR": str(home / "Documents")}
    exe = exe or [sys.executable, "-m", "splatstudio"]
    proc = subprocess.run([*exe, *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    state = json.loads(lines[-1]) if lines else {}
    return proc, state


def centre_differs_from_background(png: Path) -> float:
    """Mean colour distance (8-bit levels) of a 40x40 patch at the image centre from the
    viewer's background colour."""
    import cv2

    from splatstudio.gui.viewer.gl_widget import BACKGROUND

    img = cv2.imread(str(png))[..., ::-1].astype(float)
    h, w = img.shape[:2]
    patch = img[h // 2 - 20: h // 2 + 20, w // 2 - 20: w // 2 + 20]
    return float(np.abs(patch - np.array(BACKGROUND) * 255).sum(axis=2).mean())


def test_open_splat_images_and_project_paths(xdisplay, tmp_path, panos_2048):
    home = tmp_path / "home"
    home.mkdir()
    # 1) a splat file opens in the viewer and is drawn
    if DONUT.exists():
        proc, st = launch([DONUT, "--screenshot", tmp_path / "splat.png"], home, xdisplay)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert st["tab"] == "Viewer" and st["viewer_file"] == str(DONUT)
        assert st["gaussians"] == 45624 and st["error"] is None
        assert centre_differs_from_background(tmp_path / "splat.png") > 60
    # 2) a folder of panoramas becomes a new project in the projects folder
    proc, st = launch(["gui", panos_2048, "--screenshot", tmp_path / "new.png"], home, xdisplay)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert st["input_dir"] == str(panos_2048) and st["error"] is None
    project = Path(st["project"])
    assert (project / "project.json").is_file() and home in project.parents
    assert st["tab"] == "Stages"
    # 3) that project folder opens as a project (not a second new one)
    proc, st = launch([project, "--screenshot", tmp_path / "open.png"], home, xdisplay)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert st["project"] == str(project) and st["error"] is None
    assert len([p for p in project.parent.iterdir() if p.is_dir()]) == 1
    # 4) anything else: a message, no window
    proc, st = launch([tmp_path / "open.png"], home, xdisplay)
    assert proc.returncode == 2 and st == {}
    assert "not a splat file" in proc.stderr


def test_help_system_shows_the_doctor_report(window, qtbot, monkeypatch):
    from splatstudio import doctor

    monkeypatch.setattr(doctor, "measure_cpu_step", lambda: {
        "seconds_per_step": 0.06, "seconds_per_pixel_step": 0.06 / 65536, "width": 256,
        "height": 256, "gaussians": 1000, "steps": 5})
    assert window.system_action in window.menuBar().actions()[-1].menu().actions()
    dlg = window.system_dialog()
    qtbot.waitExposed(dlg)
    text = dlg.text.toPlainText()
    for title in ("Python", "Resources", "torch", "GPU", "pycolmap", "open3d", "Qt", "OpenGL",
                  "Disk"):
        assert f"] {title}" in text, text
    assert str(window.settings.projects_dir) in text
    if dlg.measure_button.isEnabled():  # no CUDA: the presets on this CPU
        dlg.measure_button.click()
        assert "refused: over cpu_limit_s" in dlg.text.toPlainText()
    dlg.close()
