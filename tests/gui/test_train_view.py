"""The live training view: curves and previews from events, the orbit camera the trainer reads,
and pause / resume / stop on a real (tiny) training run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QImage, QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication

from splatstudio.events import Metric, Preview, Progress, StageChanged
from splatstudio.gui.main_window import TAB_STAGES, TAB_TRAIN
from splatstudio.project import Project
from splatstudio.status import StageState

pytestmark = pytest.mark.gui


def _blank_project(tmp_path: Path) -> Project:
    (tmp_path / "in").mkdir()
    return Project.create(tmp_path / "proj", tmp_path / "in")


def _png(path: Path, w: int = 64, h: int = 48) -> Path:
    img = QImage(w, h, QImage.Format.Format_RGB888)
    img.fill(0x3366AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert img.save(str(path))
    return path


def _mouse(widget, kind, pos, button, buttons):
    ev = QMouseEvent(kind, QPointF(*pos), widget.mapToGlobal(QPointF(*pos)), button, buttons,
                     Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, ev)


def _drag(widget, start, end, button=Qt.MouseButton.LeftButton, steps=5):
    T = QMouseEvent.Type  # noqa: N806
    _mouse(widget, T.MouseButtonPress, start, button, button)
    for k in range(1, steps + 1):
        p = (start[0] + (end[0] - start[0]) * k / steps, start[1] + (end[1] - start[1]) * k / steps)
        _mouse(widget, T.MouseMove, p, Qt.MouseButton.NoButton, button)
    _mouse(widget, T.MouseButtonRelease, end, button, Qt.MouseButton.NoButton)


def test_live_view_draws_curves_and_preview_from_events(window, tmp_path, qtbot):
    project = _blank_project(tmp_path)
    window.open_project(project.root)
    model, view = window.model, window.train_view
    assert window.tabs.tabText(TAB_TRAIN) == "Training" and window.tabs.isTabEnabled(TAB_TRAIN)
    window.tabs.setCurrentIndex(TAB_TRAIN)
    assert view.camera_error and "georef" in view.camera_error  # no model yet: no orbit

    model.handle_event(StageChanged("train", StageState.RUNNING))
    model.handle_event(Metric("train", "psnr", 9.5, step=0))
    for s in range(10, 110, 10):
        model.handle_event(Metric("train", "loss", 0.5 - s / 1000, step=s))
        model.handle_event(Metric("train", "gaussians", 1000 + s, step=s))
        model.handle_event(Metric("train", "steps_per_s", 12.0, step=s))
    model.handle_event(Metric("train", "psnr", 14.0, step=100))
    model.handle_event(Metric("train", "seconds", 8.0))  # no step: no curve point
    png = _png(project.root / "train" / "preview.png", 80, 60)
    with qtbot.waitSignal(model.previewChanged, timeout=2000):
        model.handle_event(Preview("train", str(png), step=100))
    qtbot.waitUntil(lambda: view.curve_points("loss") == 10, timeout=3000)
    assert view.curve_points("gaussians") == 10
    assert view.curve_points("psnr") == 2
    x, y = view.curves["psnr"].getData()
    assert list(x) == [0, 100] and list(y) == [9.5, 14.0]
    assert "seconds" not in model.stages["train"].history
    assert view.canvas.image is not None and view.canvas.image.width() == 80
    assert "step 100" in view.preview_label.text()
    assert "step 100/" in view.status.text() and "PSNR 14.00 dB" in view.status.text()

    # paused (the trainer's progress message): the ETA stands still, the status says so
    info = model.stages["train"]
    model.handle_event(Progress("train", 0.5, "step 100/200"))
    model.handle_event(Progress("train", 0.5, "paused at step 100"))
    assert info.paused
    eta = info.eta()
    time.sleep(0.2)
    assert info.eta() == pytest.approx(eta, abs=0.05) and info.paused_seconds() >= 0.2
    view._update_controls()
    assert "paused at step 100" in view.status.text()
    model.handle_event(Progress("train", 0.51, "step 101/200"))
    assert not info.paused and info.paused_s >= 0.2

    # a resumed run rolls the curves back to the step it restarts from
    model.handle_event(Metric("train", "loss", 0.3, step=60))
    assert [s for s, _ in info.history["loss"]] == [10, 20, 30, 40, 50, 60]
    model.handle_event(StageChanged("train", StageState.DONE))


def test_a_finished_run_shows_its_curves_when_the_project_is_opened(window, tmp_path, qtbot):
    project = _blank_project(tmp_path)
    train = project.root / "train"
    train.mkdir()
    lines = [json.dumps({"step": s, "loss": 0.4 - s / 1000, "gaussians": 500 + s,
                         "steps_per_s": 9.0, "memory_mb": 300.0}) for s in range(10, 110, 10)]
    # a kill in the middle of a write leaves half a line: it is skipped
    (train / "curve.jsonl").write_text("\n".join(lines) + '\n{"step": 11')
    (train / "metrics.json").write_text(json.dumps({"evals": [
        {"step": 0, "psnr": 8.0, "ssim": 0.2, "gaussians": 500},
        {"step": 100, "psnr": 13.0, "ssim": 0.4, "gaussians": 600}]}))
    window.open_project(project.root)
    window.tabs.setCurrentIndex(TAB_TRAIN)
    view = window.train_view
    qtbot.waitUntil(lambda: view.curve_points("loss") == 10, timeout=3000)
    x, y = view.curves["loss"].getData()
    assert list(x) == list(range(10, 110, 10)) and y[0] == pytest.approx(0.39)
    assert view.curve_points("psnr") == 2
    # the gaussians come from the denser curve, not the two evaluations
    assert view.curve_points("gaussians") == 10
    assert not view.loss_note.isVisible()


def test_orbit_writes_a_camera_the_trainer_reads(window, tmp_path, qtbot):
    from helpers.tiny_project import tiny_georef_project

    from splatstudio.gui.train_view import default_preview_camera
    from splatstudio.pipeline.train import preview_camera

    project = tiny_georef_project(tmp_path / "p", views=8, size=(64, 48), gaussians=150)
    window.open_project(project.root)
    window.tabs.setCurrentIndex(TAB_TRAIN)
    view = window.train_view
    assert view.ensure_camera(), view.camera_error
    default, pts, _ = default_preview_camera(project)
    assert (default.width, default.height) == (64, 48) and len(pts) == 150
    # the trainer's default view: the first training view by name (v00 is held out)
    import pycolmap

    rec = pycolmap.Reconstruction(str(project.root / "georef" / "sparse"))
    v01 = next(im for im in rec.images.values() if im.name == "photos/v01.jpg")
    np.testing.assert_allclose(default.viewmat[:3], v01.cam_from_world().matrix(), atol=1e-9)
    # the orbit starts exactly there (the ring cameras have no roll)
    np.testing.assert_allclose(view.current_camera().viewmat, default.viewmat, atol=1e-6)

    out = project.root / "train"
    canvas = view.canvas
    with qtbot.waitSignal(view.cameraWritten, timeout=3000) as sig:
        _drag(canvas, (200, 150), (260, 170))
    assert Path(sig.args[0]) == out / "preview_camera.json"
    data = json.loads((out / "preview_camera.json").read_text())
    assert set(data) == {"viewmat", "K", "width", "height"}
    cam = preview_camera(out, default)  # what the trainer renders its preview from
    vm, K, w, h = cam.viewmat, cam.K, cam.width, cam.height
    assert (w, h) == (64, 48)
    np.testing.assert_allclose(K, default.K, atol=1e-5)
    np.testing.assert_allclose(vm, view.current_camera().viewmat, atol=1e-5)
    assert not np.allclose(vm, default.viewmat, atol=1e-3)  # it moved
    R = vm[:3, :3].astype(np.float64)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-5)  # a rotation
    # the orbit centre stays on the optical axis, in front of the camera
    c = vm[:3, :3] @ canvas.camera.target + vm[:3, 3]
    assert c[2] > 0 and np.hypot(c[0], c[1]) < 1e-4
    assert canvas.overlay  # the points show the new view until the next preview

    # pan (right drag) and zoom (wheel) move the camera too
    d0, t0 = canvas.camera.distance, canvas.camera.target.copy()
    _drag(canvas, (200, 150), (230, 150), button=Qt.MouseButton.RightButton)
    assert not np.allclose(canvas.camera.target, t0)
    wheel = QWheelEvent(QPointF(200, 150), canvas.mapToGlobal(QPointF(200, 150)), QPoint(0, 0),
                        QPoint(0, 120), Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                        Qt.ScrollPhase.NoScrollPhase, False)
    with qtbot.waitSignal(view.cameraWritten, timeout=3000):
        QApplication.sendEvent(canvas, wheel)
    assert canvas.camera.distance == pytest.approx(0.85 * d0)
    vm2 = preview_camera(out, default).viewmat
    np.testing.assert_allclose(vm2, view.current_camera().viewmat, atol=1e-5)

    # reset: the trainer's default camera again
    view.reset_button.click()
    assert not (out / "preview_camera.json").exists()
    np.testing.assert_allclose(view.current_camera().viewmat, default.viewmat, atol=1e-6)


@pytest.mark.slow
def test_pause_resume_and_stop_a_real_training_run(window, tmp_path, qtbot):
    """Tiny project, real worker: Pause holds the loop (no step advances), Stop works while
    paused (a checkpoint is kept, the flag removed), the next run resumes, Pause / Resume,
    and paused time is not counted in steps/s."""
    pytest.importorskip("pycolmap")
    pytest.importorskip("gsplat")
    from helpers.tiny_project import tiny_georef_project

    t_start = time.monotonic()
    project = tiny_georef_project(tmp_path / "p", views=6, size=(40, 30), gaussians=120,
                                  steps=60, metrics_every=5, preview_every=10,
                                  checkpoint_every=1000)
    window.open_project(project.root)
    model, view = window.model, window.train_view
    pause_file = project.root / "train" / "pause"
    events: list = []
    model.metricAdded.connect(lambda st, name, step, v: events.append((time.time(), name, step, v)))
    logs: list[str] = []
    model.logAdded.connect(lambda st, lvl, msg: logs.append(msg))

    def last_step() -> int:
        return max((s for _, n, s, _ in events if n == "loss"), default=-1)

    # run 1: pause, then stop while paused
    window.tabs.setCurrentIndex(TAB_STAGES)
    model.run(["train"], device="cpu", grace_s=20)
    qtbot.waitUntil(lambda: last_step() >= 10, timeout=60_000)
    assert window.tabs.currentIndex() == TAB_TRAIN  # the window follows the training
    assert view.pause_button.isEnabled() and not view.resume_button.isEnabled()
    qtbot.mouseClick(view.pause_button, Qt.MouseButton.LeftButton)
    assert pause_file.exists() and view.resume_button.isEnabled()
    qtbot.waitUntil(lambda: model.stages["train"].paused, timeout=20_000)
    held = last_step()
    qtbot.wait(1000)  # paused: no step may advance meanwhile
    assert last_step() == held
    assert any("paused at step" in m for m in logs)
    assert "paused at step" in view.status.text()
    with qtbot.waitSignal(model.runFinished, timeout=30_000) as sig:
        qtbot.mouseClick(view.stop_button, Qt.MouseButton.LeftButton)
    assert sig.args[0].states["train"] == StageState.CANCELLED
    assert not pause_file.exists()  # Stop removes the flag once the stage stopped
    ck = json.loads((project.root / "train/checkpoints/latest.json").read_text())
    # `held` is the last reported loss step (metrics_every=5): the loop may have run up to 4
    # more steps before it saw the pause file
    assert held <= ck["step"] < held + 5

    # run 2: resumes from the checkpoint; pause ~2 s, resume, finish
    events.clear()
    model.run(["train"], device="cpu", grace_s=20)
    qtbot.waitUntil(lambda: last_step() >= ck["step"] + 10, timeout=60_000)
    view.pause()
    qtbot.waitUntil(lambda: model.stages["train"].paused, timeout=20_000)
    held = last_step()
    qtbot.wait(2000)
    assert last_step() == held
    with qtbot.waitSignal(model.runFinished, timeout=60_000) as sig:
        qtbot.mouseClick(view.resume_button, Qt.MouseButton.LeftButton)
        assert not pause_file.exists()
    assert sig.args[0].states["train"] == StageState.DONE, sig.args[0].reason
    assert any(m.startswith("train: resumed at step") for m in logs)
    m = project.read_status("train").metrics
    assert m["steps"] == 60 and (project.root / "train" / "splat.ply").exists()

    # steps/s of the window that holds the pause counts only the time spent training:
    # its rate is (steps in the window) / (wall time of the window - the pause)
    sps = [(t, s, v) for t, n, s, v in events if n == "steps_per_s"]
    i = next(k for k, (_, s, _) in enumerate(sps) if s > held)
    (t0, s0, _), (t1, s1, v1) = sps[i - 1], sps[i]
    naive = (s1 - s0) / (t1 - t0)  # what it would say if the pause counted
    assert v1 > 1.3 * naive, (v1, naive, t1 - t0)
    assert model.stages["train"].history["loss"][-1][0] == 60
    assert view.curve_points("loss") >= 60 // 5
    print(f"\npause test: {time.monotonic() - t_start:.1f} s")
