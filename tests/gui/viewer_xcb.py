"""OpenGL viewer checks, run by test_viewer.py in a child pytest under Xvfb (QT_QPA_PLATFORM=xcb).

Not collected on its own (no ``test_`` prefix): the parent test passes this file explicitly,
with DISPLAY set, because a process's Qt platform is fixed when its QApplication starts and the
rest of the GUI tests run on the offscreen platform.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gui
DONUT = Path(__file__).resolve().parents[3] / "shared" / "data" / "splats" / "donut_fused.ply"


def _image_array(img) -> np.ndarray:
    from PySide6.QtGui import QImage

    img = img.convertToFormat(QImage.Format.Format_RGBA8888)
    arr = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine())
    return arr[:, : img.width() * 4].reshape(img.height(), img.width(), 4)[..., :3].copy()


def test_viewer_renders_donut(qtbot):
    if not DONUT.exists():
        pytest.skip(f"{DONUT} not present")
    from splatstudio.gui.viewer.page import ViewerPage

    page = ViewerPage()
    qtbot.addWidget(page)
    page.resize(800, 600)
    page.show()
    qtbot.waitExposed(page)
    with qtbot.waitSignal(page.gl.frameRendered, timeout=60_000):
        assert page.load(DONUT)
    assert page.gl.error is None, page.gl.error
    assert page.gl.packed.n == 45624
    assert "llvmpipe" in page.gl.gl_info["renderer"] or page.gl.gl_info["renderer"]
    rgb = _image_array(page.gl.grabFramebuffer())
    background = np.array([20, 23, 28])
    differs = np.abs(rgb.astype(int) - background).sum(axis=2) > 30
    report = {
        "std": float(rgb.std()),
        "covered": float(differs.mean()),
        "renderer": page.gl.gl_info["renderer"],
        "frame_ms": page.gl.last_frame_ms,
    }
    out = os.environ.get("VIEWER_CHECK_OUT")
    if out:
        Path(out).write_text(json.dumps(report))
    assert rgb.std() > 20, report  # not a uniform frame
    assert 0.05 < differs.mean() < 0.95, report  # the donut covers part of the view
    # pink icing dominates the top view: red and blue above green on covered pixels
    mean = rgb[differs].mean(axis=0)
    assert mean[0] > mean[1], report

    # orbiting re-sorts and still draws something
    sorts = page.gl.sort_count
    page.gl.camera.orbit(90, 20)
    with qtbot.waitSignal(page.gl.frameRendered, timeout=30_000):
        page.gl.update()
    assert page.gl.sort_count == sorts + 1
    assert _image_array(page.gl.grabFramebuffer()).std() > 20
