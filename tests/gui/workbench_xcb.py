"""OpenGL checks of the viewer's workbench, run by test_viewer_workbench.py in a child pytest
under Xvfb (QT_QPA_PLATFORM=xcb; see viewer_xcb.py for why a child): what the GL widget draws
after a deletion (the alive mask filters the index buffer), with a selection (orange tint in
the shader) and after undo (the first image again). Measurements go to $VIEWER_CHECK_OUT."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gui
DONUT = Path(__file__).resolve().parents[3] / "shared" / "data" / "splats" / "donut_fused.ply"


def _frame(qtbot, page) -> np.ndarray:
    from PySide6.QtGui import QImage

    with qtbot.waitSignal(page.gl.frameRendered, timeout=60_000):
        page.gl.update()
    img = page.gl.grabFramebuffer().convertToFormat(QImage.Format.Format_RGBA8888)
    arr = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine())
    return arr[:, : img.width() * 4].reshape(img.height(), img.width(), 4)[..., :3].astype(int)


def test_delete_tint_undo_draw(qtbot):
    if not DONUT.exists():
        pytest.skip(f"{DONUT} not present")
    from splatstudio.gui.viewer.gl_widget import BACKGROUND
    from splatstudio.gui.viewer.page import ViewerPage

    page = ViewerPage()
    qtbot.addWidget(page)
    page.resize(1100, 600)
    page.show()
    qtbot.waitExposed(page)
    with qtbot.waitSignal(page.gl.frameRendered, timeout=60_000):
        assert page.load(DONUT)
    assert page.gl.error is None, page.gl.error
    wb = page.workbench
    before = _frame(qtbot, page)
    bg = np.round(np.array(BACKGROUND) * 255)
    h, w = before.shape[:2]
    covered = lambda img: np.abs(img - bg).sum(-1) > 30  # noqa: E731
    view = page.gl.view_camera()
    lw, lh = view.width, view.height
    wb.select_rect((0, 0, lw / 2, lh))
    wb.delete()
    after = _frame(qtbot, page)
    left, right = slice(0, int(0.4 * w)), slice(int(0.6 * w), w)
    left_before = covered(before[:, left]).mean()
    left_after = covered(after[:, left]).mean()
    right_diff = np.abs(after[:, right] - before[:, right]).mean()
    wb.all_button.click()
    tinted = _frame(qtbot, page)
    m = covered(after[:, right])
    blue_drop = float(after[:, right][m][:, 2].mean() - tinted[:, right][m][:, 2].mean())
    red_rise = float(tinted[:, right][m][:, 0].mean() - after[:, right][m][:, 0].mean())
    wb.undo()  # select all
    wb.undo()  # delete: the left half is back, selected (tinted) as before the deletion
    reselected = _frame(qtbot, page)
    lm = covered(before[:, left])
    left_blue_drop = float(before[:, left][lm][:, 2].mean()
                           - reselected[:, left][lm][:, 2].mean())
    wb.undo()  # the rectangle selection
    back = _frame(qtbot, page)
    values = {"left_covered_before": float(left_before), "left_covered_after": float(left_after),
              "right_mean_abs_diff": float(right_diff), "tint_blue_drop": blue_drop,
              "tint_red_rise": red_rise, "undo_delete_left_blue_drop": left_blue_drop,
              "undo_max_diff": int(np.abs(back - before).max())}
    out = os.environ.get("VIEWER_CHECK_OUT")
    if os.environ.get("WORKBENCH_XCB_IMAGES"):  # for a look when a check fails
        import cv2

        for name, img in (("before", before), ("after", after), ("tinted", tinted),
                          ("reselected", reselected), ("back", back)):
            cv2.imwrite(f"{os.environ['WORKBENCH_XCB_IMAGES']}/{name}.png",
                        img[..., ::-1].astype(np.uint8))
    if out:
        Path(out).write_text(json.dumps({"workbench": values}, indent=1))
    # a few large gaussians centred right of the cut still reach into the left part
    assert left_before > 0.2 and left_after < 0.3 * left_before, values
    assert right_diff < 8, values
    assert blue_drop > 40 and red_rise > 20, values
    assert left_blue_drop > 40, values
    assert values["undo_max_diff"] <= 1, values
