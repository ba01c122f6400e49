"""Regenerate the README screenshots into docs/screenshots/*.png.

Starts a private Xvfb (the real xcb platform with Mesa llvmpipe OpenGL), opens the app with
throw-away settings and projects in a temporary folder, and drives it:

1. ``training.png``    the live training view while that project trains (preview from view
                        07 of panorama 3, curves of loss / held-out PSNR every 50 steps /
                        Gaussians), grabbed at the preview of step 250;
2. ``stages.png``      a new project from ../shared/data/panos/geovisio-gopromax-2048 (test
                       preset) after Run finished;
3. ``export.png``      the Export dialog after exporting that project (4 splat formats and a
                       GLB mesh) into a temporary folder, listing the written files;
4. ``options.png``     the stage options of that project, on the train stage's tab;
5. ``capture_map.png`` the capture map of that project with panorama 3 selected;
6. ``projects.png``    the project browser (that project plus a second, new one);
7. ``viewer.png``      the orbit viewer with ../shared/data/splats/donut_fused.ply.

Each PNG is checked not to be blank (pixel standard deviation). Run:
``python scripts/screenshots.py [--out docs/screenshots]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
PANOS = DATA / "panos" / "geovisio-gopromax-2048"
DONUT = DATA / "splats" / "donut_fused.ply"
WINDOW = (1360, 860)


def start_xvfb() -> tuple[subprocess.Popen, str]:
    """A private Xvfb on a free display number; returns (process, ":N")."""
    exe = shutil.which("Xvfb")
    if exe is None:
        raise SystemExit("Xvfb is not installed (apt install xvfb)")
    r, w = os.pipe()
    proc = subprocess.Popen(
        [exe, "-screen", "0", "1920x1080x24", "-nolisten", "tcp", "-displayfd", str(w)],
        pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    os.close(w)
    with os.fdopen(r) as f:
        number = f.readline().strip()
    if not number:
        proc.kill()
        raise SystemExit("Xvfb did not start")
    return proc, f":{number}"


def not_blank(path: Path) -> float:
    """Standard deviation of the image's pixels (raises when it is nearly uniform)."""
    import numpy as np
    from PySide6.QtGui import QImage

    img = QImage(str(path)).convertToFormat(QImage.Format.Format_RGB888)
    arr = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine())
    std = float(arr[:, : img.width() * 3].std())
    if std < 10:
        raise SystemExit(f"{path}: looks blank (pixel std {std:.1f})")
    return std


def wait_for(signal, timeout_ms: int) -> bool:
    """Run the event loop until `signal` fires (True) or `timeout_ms` passes (False)."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    fired = {"v": False}

    def done(*_args) -> None:
        fired["v"] = True
        loop.quit()

    signal.connect(done)
    QTimer.singleShot(timeout_ms, loop.quit)
    loop.exec()
    signal.disconnect(done)
    return fired["v"]


def wait_until(condition, timeout_ms: int, poll_ms: int = 100) -> bool:
    """Run the event loop until `condition()` is true (True) or `timeout_ms` passes (False)."""
    import time

    deadline = time.monotonic() + timeout_ms / 1000
    while time.monotonic() < deadline:
        if condition():
            return True
        settle(poll_ms)
    return condition()


def settle(ms: int = 300) -> None:
    """Let Qt lay out and paint (a short event-loop run)."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def shoot(window, path: Path) -> None:
    """Save the whole window (OpenGL content included) to `path` and check it (a dialog is
    saved on its own)."""
    settle()
    if not window.grab().save(str(path)):
        raise SystemExit(f"{path}: could not save")
    print(f"{path}  ({not_blank(path):.0f} std)")


def run(out: Path) -> None:
    from PySide6.QtCore import QSettings

    from splatstudio.gui.app import create_app, setup_app
    from splatstudio.gui.main_window import (
        TAB_MAP,
        TAB_PROJECTS,
        TAB_STAGES,
        TAB_TRAIN,
        MainWindow,
    )
    from splatstudio.gui.store import AppSettings

    app = create_app([])
    setup_app(app)
    tmp = Path(tempfile.mkdtemp(prefix="splatstudio-shots-"))
    try:
        settings = AppSettings(QSettings(str(tmp / "settings.ini"), QSettings.Format.IniFormat))
        settings.projects_dir = tmp / "SplatStudio Projects"
        settings.preset = "test"
        settings.device = "cpu"
        window = MainWindow(settings)
        window.resize(*WINDOW)
        window.show()
        settle(500)

        # a second, never-run project so the browser shows more than one state
        other = tmp / "street photos"
        other.mkdir()
        shutil.copy(PANOS / "5.jpg", other / "5.jpg")
        window.new_project(other)

        project = window.new_project(PANOS)
        if project is None:
            raise SystemExit(f"could not create a project: {window.last_error}")
        project.config.train.preview_view = "07/3.jpg"  # looking down the path
        project.save()
        window.run()
        print("running the pipeline on the 2048 panoramas (SfM takes about a minute)...")
        model = window.model

        def preview_step() -> int:
            pv = model.stages["train"].preview
            return -1 if pv is None or pv[1] is None else pv[1]

        if not wait_until(lambda: preview_step() >= 250 or not model.is_running, 15 * 60 * 1000):
            raise SystemExit("training did not reach step 250 in 15 minutes")
        if not model.is_running:
            raise SystemExit(f"the run stopped before training: {window.status_label.text()}")
        window.tabs.setCurrentIndex(TAB_TRAIN)
        view = window.train_view
        wait_until(lambda: view.canvas.image is not None, 60_000)
        settle(600)  # the curves redraw every 250 ms
        shoot(window, out / "training.png")
        if not wait_for(model.runFinished, 15 * 60 * 1000):
            raise SystemExit("the run did not finish in 15 minutes")
        settle(800)
        window.tabs.setCurrentIndex(TAB_STAGES)
        window.stage_panel._on_row_clicked("reproject")
        shoot(window, out / "stages.png")

        dlg = window.export_dialog()
        for fmt, box in dlg.format_boxes.items():
            box.setChecked(fmt in ("ply", "splat", "spz", "compressed_ply", "glb"))
        dlg.texture_size.setCurrentIndex(dlg.texture_size.findData(1024))
        dlg.mesh_faces.setValue(20_000)
        dlg.dest.setText(str(tmp / "exports"))
        dlg.start()
        print("exporting (4 splat formats and a textured GLB)...")
        if not wait_for(dlg.exportFinished, 10 * 60 * 1000) or dlg.manifest is None:
            raise SystemExit(f"the export did not finish: {dlg.error}")
        wait_until(lambda: not model.is_running, 30_000)
        dlg.resize(760, dlg.sizeHint().height() + 60)
        shoot(dlg, out / "export.png")
        dlg.close()

        opts = window.options_dialog("train")
        opts.resize(700, 760)
        shoot(opts, out / "options.png")
        opts.close()

        window.tabs.setCurrentIndex(TAB_MAP)
        window.capture_map.select("3")
        shoot(window, out / "capture_map.png")

        window.tabs.setCurrentIndex(TAB_PROJECTS)
        window.browser.list.setCurrentRow(0)
        shoot(window, out / "projects.png")

        page = window.viewer()
        settle(300)
        page.load(DONUT)
        wait_for(page.gl.frameSwapped, 60_000)
        settle(1500)  # a second frame so the fps label shows
        page.gl.update()
        wait_for(page.gl.frameSwapped, 60_000)
        shoot(window, out / "viewer.png")
        window.close()
        window.deleteLater()
        settle(100)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    app.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    xvfb, display = start_xvfb()
    os.environ["DISPLAY"] = display
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    try:
        run(args.out.resolve())
    finally:
        xvfb.terminate()
        xvfb.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
