"""Screenshots of the viewer's workbench into docs/screenshots/ (README "Viewer workbench").

Under a private Xvfb (Mesa llvmpipe OpenGL), the main window with throw-away settings:

1. ``viewer.png``           the viewer with ../shared/data/splats/donut_fused.ply (the README's
                            gallery shot, now with the workbench panel);
2. ``workbench_select.png`` the donut with a brush stroke's selection (tinted orange);
3. ``workbench_delete.png`` after Delete: the stroke's gaussians gone (undo brings them back);
   ``workbench_rect.png`` a rectangle being dragged (its selection tinted);
   ``workbench_sphere.png`` a 3 cm sphere around a clicked surface point selected;
4. ``workbench_capture.png`` a trained project (``--project``, e.g. the README's
                            ``demo-project``) opened at its first capture position, with the
                            list of positions;
5. ``workbench_measure.png`` in that project, two points measured (metres, ENU, WGS84);
6. ``workbench_video.png``  the fly-through dialog after rendering 8 frames of its capture path.

Run: ``python scripts/screenshots_workbench.py --project demo-project [--out docs/screenshots]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from screenshots import DONUT, settle, shoot, start_xvfb, wait_for  # noqa: E402

WINDOW = (1360, 860)


def run(out: Path, project: Path) -> None:
    import numpy as np
    from PySide6.QtCore import QPointF, QSettings

    from splatstudio.gui.app import create_app, setup_app
    from splatstudio.gui.main_window import MainWindow
    from splatstudio.gui.store import AppSettings

    app = create_app([])
    setup_app(app)
    tmp = Path(tempfile.mkdtemp(prefix="ss-shots-"))
    try:
        settings = AppSettings(QSettings(str(tmp / "s.ini"), QSettings.Format.IniFormat))
        settings.projects_dir = tmp / "projects"
        window = MainWindow(settings)
        window.resize(*WINDOW)
        window.show()
        settle(500)
        page = window.viewer()
        settle(300)

        def draw() -> None:
            page.gl.update()
            wait_for(page.gl.frameSwapped, 60_000)
            settle(300)

        page.load(DONUT)
        wait_for(page.gl.frameSwapped, 60_000)
        settle(1500)
        draw()
        shoot(window, out / "viewer.png")

        wb = page.workbench
        wb.set_tool("brush")
        wb.brush_radius.setValue(30)
        view = page.gl.view_camera()
        w, h = view.width, view.height
        stroke = [(w * 0.3 + i * w * 0.02, h * 0.45 + 40 * np.sin(i / 3)) for i in range(21)]
        wb.press(QPointF(*stroke[0]))
        for q in stroke[1:]:
            wb.move(QPointF(*q))
        wb.stroke = [tuple(q) for q in stroke]  # keep the stroke drawn for the shot
        wb.overlay.update()
        wb.select_brush(stroke)
        draw()
        shoot(window, out / "workbench_select.png")
        wb.stroke = []
        wb.delete()
        draw()
        shoot(window, out / "workbench_delete.png")
        wb.undo()
        wb.undo()

        wb.set_tool("rect")  # a rectangle being dragged over what it has selected so far
        a, b = QPointF(w * 0.55, h * 0.3), QPointF(w * 0.85, h * 0.75)
        wb.press(a)
        wb.move(b)
        wb.select_rect((a.x(), a.y(), b.x(), b.y()))
        draw()
        shoot(window, out / "workbench_rect.png")
        wb.release(b)
        wb.none_button.click()

        wb.set_tool("sphere")  # a sphere of 3 cm around the clicked surface point
        wb.sphere_radius.setValue(0.03)
        wb.press(QPointF(w * 0.45, h * 0.62))
        draw()
        shoot(window, out / "workbench_sphere.png")
        wb.none_button.click()
        wb.set_tool("orbit")

        window.open_project(project)
        settle(500)
        page = window.viewer()
        page.load(project / "train" / "splat.ply")
        wb = page.workbench
        draw()
        shoot(window, out / "workbench_capture.png")

        wb.set_tool("measure")
        view = page.gl.view_camera()
        w, h = view.width, view.height
        picked = 0
        for x, y in ((w * 0.35, h * 0.75), (w * 0.7, h * 0.55), (w * 0.5, h * 0.8),
                     (w * 0.6, h * 0.4)):
            if picked < 2 and wb.add_measure_point(x, y) is not None:
                picked += 1
        wb.scroll.ensureWidgetVisible(wb.clear_measure_button)
        draw()
        shoot(window, out / "workbench_measure.png")
        wb.clear_measure()
        wb.set_tool("orbit")

        dlg = wb.open_video_dialog()
        dlg.size_combo.setCurrentIndex(dlg.size_combo.findData("320x180"))
        dlg.frames.setValue(8)
        dlg.output.setText(str(tmp / "fly.mp4"))
        if dlg.start():
            wait_for(dlg.finished_video, 600_000)
        settle(300)
        dlg.adjustSize()
        shoot(dlg, out / "workbench_video.png")
        dlg.close()
        window.close()
        window.deleteLater()
        settle(100)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    app.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--project", type=Path, default=ROOT / "demo-project",
                        help="a trained, georeferenced project (make demo)")
    args = parser.parse_args(argv)
    if not (args.project / "train" / "splat.ply").is_file():
        raise SystemExit(f"{args.project}: no trained splat (run `make demo` first)")
    args.out.mkdir(parents=True, exist_ok=True)
    xvfb, display = start_xvfb()
    os.environ["DISPLAY"] = display
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    try:
        run(args.out.resolve(), args.project.resolve())
    finally:
        xvfb.terminate()
        xvfb.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
