"""The live training view: the trainer's preview under a camera the user orbits, the curves of
loss, held-out PSNR and Gaussian count against the step, and pause / resume / stop.

How it talks to the trainer (:mod:`splatstudio.pipeline.train`), all through files in
``PROJECT/train/``, never through the worker process:

* ``preview.png``: rendered every ``preview_every`` steps; the model's ``previewChanged``
  signal says when (the runner's latest-value slot, so a slow GUI never queues previews).
* ``preview_camera.json``: written here (atomically) when the user orbits:
  ``{viewmat [4x4] world-to-camera (OpenCV: x right, y down, z forward; world = ENU metres),
  K [3x3] pixels, width, height}``; the trainer reads it before each preview.
* ``pause``: an empty flag file; the trainer sleeps between steps while it exists
  (:func:`splatstudio.pipeline.train_session.wait_while_paused`). Stop is the runner's cancel.

The initial camera is the trainer's own default preview camera (``preview_view`` or the first
training view, at the training resolution), turned into an orbit about the point it looks at
(the median depth of the georeferenced SfM points in front of it).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QWheelEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from ..pipeline.artifacts import georef_model, write_preview_camera
from ..pipeline.train import PAUSE_FILE, PREVIEW_CAMERA_FILE, preview_camera
from ..project import Project
from ..render.camera import PinholeCamera
from ..status import StageState
from .model import ProjectModel
from .viewer.camera import OrbitCamera
from .viewer.mouse import drag_step

UP = np.array([0.0, 0.0, 1.0])  # ENU: z up
MAX_OVERLAY_POINTS = 4000
#: Curves drawn: metric name -> (plot title, colour, draw symbols).
CURVES: dict[str, tuple[str, str, bool]] = {
    "loss": ("loss (L1 + SSIM)", "#58a6ff", False),
    "psnr": ("held-out PSNR (dB)", "#3fb950", True),
    "gaussians": ("Gaussians", "#f0883e", False),
}


def default_preview_camera(project: Project) -> tuple[PinholeCamera, np.ndarray, np.ndarray]:
    """The trainer's default preview camera and the model's 3D points.

    The camera is what :func:`splatstudio.pipeline.train.run_train` previews from without a
    ``preview_camera.json``: the ``preview_view`` image, else the first training view (by
    name, after the hold-out split), with its intrinsics scaled to the training resolution
    (``downscale``) as :func:`~splatstudio.pipeline.train.load_view` does.

    Returns:
        (camera, points ``[N, 3]`` ENU metres float64, colours ``[N, 3]`` uint8); at most
        :data:`MAX_OVERLAY_POINTS` points, a fixed random subset.

    Raises:
        FileNotFoundError: no ``georef/sparse`` model yet; ValueError: it has no registered
        images. Anything pycolmap raises for a broken model.
    """
    from ..pipeline.train import load_cameras, split_views

    model = georef_model(project.root)
    sparse = model.path
    if not model.exists():
        raise FileNotFoundError(f"{sparse}: no georeferenced model yet (run georef)")
    rec = model.reconstruction()
    cams = load_cameras(rec)
    if not cams:
        raise ValueError(f"{sparse}: no registered images")
    cfg = project.config.train
    train, _ = split_views(cams, cfg.holdout_every)
    by_name = {c.name: c for c in cams}
    cam = by_name.get(cfg.preview_view, train[0] if train else cams[0])
    small = cam.camera.downscaled(cfg.downscale)
    pts = rec.points3D
    ids = sorted(pts.keys())
    if len(ids) > MAX_OVERLAY_POINTS:
        ids = sorted(np.random.default_rng(0).choice(ids, MAX_OVERLAY_POINTS, replace=False))
    xyz = np.array([pts[i].xyz for i in ids], np.float64).reshape(-1, 3)
    rgb = np.array([pts[i].color for i in ids], np.uint8).reshape(-1, 3)
    return small, xyz, rgb


def orbit_from_view(camera: PinholeCamera, points: np.ndarray | None = None,
                    up: np.ndarray = UP) -> OrbitCamera:
    """An :class:`OrbitCamera` that sees what `camera` sees (roll removed).

    The orbit centre is on the optical axis at the median depth of the `points` ([N, 3]
    world) in front of the camera (5 units without points); yaw and pitch follow from the
    camera's viewing direction about world `up`; the vertical field of view from ``K[1, 1]``
    and the height.
    """
    eye, forward = camera.centre, camera.forward
    depth = 5.0
    if points is not None and len(points):
        z = (points - eye) @ forward
        z = z[z > 1e-3]
        if len(z):
            depth = float(np.median(z))
    fov = math.degrees(2 * math.atan(0.5 * camera.height / float(camera.K[1, 1])))
    orbit = OrbitCamera(up=np.asarray(up, np.float64) / np.linalg.norm(up), fov_deg=fov)
    orbit.look_from(eye, forward, depth)
    orbit.near = max(1e-3, 1e-3 * depth)
    return orbit


class PreviewCanvas(QWidget):
    """The preview image, fitted to the widget; the mouse moves an :class:`OrbitCamera`.

    Left drag orbits, right or middle drag (or shift + left) pans, the wheel zooms. While
    the camera differs from the one the shown preview was rendered with, the SfM points are
    drawn over it, projected with the new camera, so a move shows at once.

    Signals:
        cameraChanged: the camera moved (while dragging: many times).
        cameraCommitted: a move ended (mouse released, wheel turned).
    """

    cameraChanged = Signal()
    cameraCommitted = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setMinimumSize(320, 240)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMouseTracking(False)
        self.image: QImage | None = None
        self.camera: OrbitCamera | None = None
        self.preview: PinholeCamera | None = None  # the preview image's K and size
        self.points: np.ndarray | None = None
        self.colors: np.ndarray | None = None
        self.overlay = False
        self.placeholder = "No preview yet: the trainer writes one every preview_every steps."
        self._mouse: QPointF | None = None

    def set_camera(self, camera: OrbitCamera | None, preview: PinholeCamera | None) -> None:
        """The orbit the mouse moves and the preview camera whose intrinsics and image size
        it keeps (None, None: no camera)."""
        self.camera, self.preview = camera, preview
        self.update()

    @property
    def size_px(self) -> tuple[int, int]:
        """The preview image's ``(width, height)`` in pixels, ``(0, 0)`` without a camera."""
        return (0, 0) if self.preview is None else (self.preview.width, self.preview.height)

    def current(self) -> PinholeCamera | None:
        """The camera the user has placed: the orbit's pose with the preview's intrinsics and
        size (None without a camera)."""
        if self.camera is None or self.preview is None:
            return None
        p = self.preview
        return PinholeCamera(self.camera.viewmat(), p.K, p.width, p.height)

    def set_image(self, image: QImage | None) -> None:
        """Show `image` (None: the placeholder text); hides the point overlay."""
        self.image = image
        self.overlay = False
        self.update()

    def image_rect(self) -> QRectF:
        """Where the image is drawn in widget pixels (aspect ratio kept, centred)."""
        w, h = self.size_px if self.image is None else (self.image.width(), self.image.height())
        if not w or not h:
            return QRectF(self.rect())
        s = min(self.width() / w, self.height() / h)
        return QRectF((self.width() - s * w) / 2, (self.height() - s * h) / 2, s * w, s * h)

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#0d1117"))
        rect = self.image_rect()
        if self.image is not None:
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            p.drawImage(rect, self.image)
        else:
            p.setPen(QColor("#8b93a3"))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                       self.placeholder)
        if self.overlay and self.camera is not None and self.points is not None:
            self._draw_points(p, rect)
        p.end()

    def _draw_points(self, p: QPainter, rect: QRectF) -> None:
        view = self.current()
        if view is None or self.points is None or not len(self.points):
            return
        w, h, K, vm = view.width, view.height, view.K, view.viewmat
        cam = self.points @ vm[:3, :3].T + vm[:3, 3]
        front = cam[:, 2] > 1e-3
        uv = cam[front, :2] / cam[front, 2:3] * [K[0, 0], K[1, 1]] + K[:2, 2]
        cols = self.colors[front] if self.colors is not None else None
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
        sx, sy = rect.width() / w, rect.height() / h
        p.setPen(Qt.PenStyle.NoPen)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        for i in np.flatnonzero(inside):
            c = cols[i] if cols is not None else (255, 255, 255)
            p.setBrush(QColor(int(c[0]), int(c[1]), int(c[2]), 220))
            p.drawEllipse(QPointF(rect.x() + uv[i, 0] * sx, rect.y() + uv[i, 1] * sy), 2.0, 2.0)

    # -- interaction --------------------------------------------------------------------
    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        self._mouse = event.position()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        if self._mouse is None or self.camera is None:
            return
        self._mouse, dx, dy, pan, orbit = drag_step(event, self._mouse)
        if pan:
            scale = self.image_rect().height() / max(1, self.size_px[1])  # widget px per image px
            self.camera.pan(dx / scale, dy / scale, max(1, self.size_px[1]))
        elif orbit:
            self.camera.orbit(-0.4 * dx, 0.4 * dy)
        else:
            return
        self.overlay = True
        self.update()
        self.cameraChanged.emit()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        if self._mouse is not None and self.overlay:
            self.cameraCommitted.emit()
        self._mouse = None

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802 - Qt override
        if self.camera is None:
            return
        self.camera.zoom(0.85 ** (event.angleDelta().y() / 120.0))
        self.overlay = True
        self.update()
        self.cameraChanged.emit()
        self.cameraCommitted.emit()


class LiveTrainView(QWidget):
    """The Training tab: preview, orbit camera, curves, pause / resume / stop.

    Subscribes to :class:`ProjectModel` (``metricAdded``, ``previewChanged``,
    ``stageChanged``, ``projectChanged``); writes ``train/preview_camera.json`` and creates
    or removes ``train/pause``; asks the window to cancel through :attr:`stopRequested`.

    Signals:
        stopRequested: the user pressed Stop (the window cancels the run).
        cameraWritten(str): ``preview_camera.json`` was written (its path).
    """

    stopRequested = Signal()
    cameraWritten = Signal(str)

    def __init__(self, model: ProjectModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.model = model
        self.default_camera: PinholeCamera | None = None
        self.camera_error: str | None = None
        self._camera_loaded = False
        self._curves_dirty = True
        self._clear_pause_when_done = False

        self.title = QLabel("Training")
        self.title.setObjectName("title")
        self.status = QLabel()
        self.status.setObjectName("muted")
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setToolTip("Pause training between two steps (creates train/pause)")
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Go on training (removes train/pause)")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop training; a checkpoint is saved and the next run "
                                    "resumes from it")
        self.reset_button = QPushButton("Reset view")
        self.reset_button.setToolTip("Preview from the trainer's default camera again")
        head = QHBoxLayout()
        titles = QVBoxLayout()
        titles.addWidget(self.title)
        titles.addWidget(self.status)
        head.addLayout(titles, 1)
        for b in (self.reset_button, self.pause_button, self.resume_button, self.stop_button):
            head.addWidget(b)

        self.canvas = PreviewCanvas()
        self.preview_label = QLabel()
        self.preview_label.setObjectName("muted")
        hint = QLabel("left drag: orbit · right / middle drag: pan · wheel: zoom — the trainer "
                      "renders its next preview from this camera")
        hint.setObjectName("muted")
        hint.setWordWrap(True)
        left = QWidget()
        left_l = QVBoxLayout(left)
        left_l.setContentsMargins(0, 0, 0, 0)
        left_l.addWidget(self.preview_label)
        left_l.addWidget(self.canvas, 1)
        left_l.addWidget(hint)

        pg.setConfigOptions(antialias=True)
        self.plots_widget = pg.GraphicsLayoutWidget()
        self.plots_widget.setBackground("#141820")
        self.plots: dict[str, pg.PlotItem] = {}
        self.curves: dict[str, pg.PlotDataItem] = {}
        for row, (name, (title, colour, symbols)) in enumerate(CURVES.items()):
            plot = self.plots_widget.addPlot(row=row, col=0)
            plot.setTitle(title, color="#dfe3ea", size="10pt")
            plot.showGrid(x=True, y=True, alpha=0.15)
            plot.setMenuEnabled(False)
            plot.getAxis("left").setWidth(56)
            if name == "gaussians":
                plot.setLabel("bottom", "step")
            kw: dict[str, Any] = {"pen": pg.mkPen(colour, width=2)}
            if symbols:
                kw.update(symbol="o", symbolSize=7, symbolBrush=colour, symbolPen=None)
            self.curves[name] = plot.plot([], [], **kw)
            self.plots[name] = plot
        self.loss_note = pg.TextItem(
            "No loss yet: it is plotted as training runs\n"
            "(and kept in train/curve.jsonl).",
            color="#8b93a3", anchor=(0.5, 0.5),
        )
        self.plots["loss"].addItem(self.loss_note, ignoreBounds=True)

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(self.plots_widget)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        lay = QVBoxLayout(self)
        lay.addLayout(head)
        lay.addWidget(split, 1)

        self.pause_button.clicked.connect(self.pause)
        self.resume_button.clicked.connect(self.resume)
        self.stop_button.clicked.connect(self.stop)
        self.reset_button.clicked.connect(self.reset_camera)
        self.canvas.cameraChanged.connect(self._on_camera_moved)
        self.canvas.cameraCommitted.connect(self.write_camera)
        self._write_timer = QTimer(self)
        self._write_timer.setSingleShot(True)
        self._write_timer.setInterval(150)
        self._write_timer.timeout.connect(self.write_camera)
        self._ticker = QTimer(self)
        self._ticker.setInterval(250)
        self._ticker.timeout.connect(self._tick)
        self._ticker.start()

        model.projectChanged.connect(self.refresh)
        model.stageChanged.connect(self._on_stage)
        model.metricAdded.connect(self._on_metric)
        model.previewChanged.connect(self._on_preview)
        model.runningChanged.connect(self._on_running)
        self.refresh()

    # -- paths ----------------------------------------------------------------------------
    @property
    def train_dir(self) -> Path | None:
        """``PROJECT/train`` of the open project (None without one)."""
        return self.model.stage_dir("train")

    def pause_path(self) -> Path | None:
        """``PROJECT/train/pause`` (None without a project)."""
        d = self.train_dir
        return None if d is None else d / PAUSE_FILE

    def is_pause_requested(self) -> bool:
        """True while the pause flag file exists."""
        p = self.pause_path()
        return p is not None and p.exists()

    # -- model -> view --------------------------------------------------------------------
    def refresh(self) -> None:
        """Show the open project again (a project was opened or closed)."""
        self.default_camera = None
        self.camera_error = None
        self._camera_loaded = False
        self.canvas.set_camera(None, None)
        self.canvas.points = self.canvas.colors = None
        info = self.model.stages["train"]
        self._show_preview(info.preview)
        self._curves_dirty = True
        self._draw_curves()
        self._update_controls()
        if self.isVisible():
            self.ensure_camera()

    def _on_stage(self, stage: str) -> None:
        if stage != "train":
            return
        info = self.model.stages["train"]
        if info.state.is_final and self._clear_pause_when_done:
            self._clear_pause_when_done = False
            p = self.pause_path()
            if p is not None:
                p.unlink(missing_ok=True)
        if info.state == StageState.RUNNING and not self._camera_loaded:
            self.ensure_camera()
        self._update_controls()

    def _on_running(self, _running: bool) -> None:
        self._update_controls()

    def _on_metric(self, stage: str, name: str, step: int, value: float) -> None:
        if stage == "train" and name in CURVES:
            self._curves_dirty = True

    def _on_preview(self, stage: str, path: str, step: int) -> None:
        if stage == "train":
            self._show_preview((path, None if step < 0 else step))
            if not self._camera_loaded:
                self.ensure_camera()

    def _show_preview(self, preview: tuple[str, int | None] | None) -> None:
        if preview is None:
            self.canvas.set_image(None)
            self.preview_label.setText("Preview")
            return
        path, step = preview
        img = QImage(path)
        if img.isNull():  # replaced while we read it: the next preview comes soon
            return
        self.canvas.set_image(img)
        at = f" at step {step}" if step is not None else ""
        self.preview_label.setText(f"Preview{at}  ·  {img.width()}×{img.height()} px")

    def _tick(self) -> None:
        if self._curves_dirty:
            self._draw_curves()
        if self.model.stages["train"].state == StageState.RUNNING:
            self._update_controls()

    def _draw_curves(self) -> None:
        self._curves_dirty = False
        hist = self.model.stages["train"].history
        p = self.model.project
        # x from 0 to the configured steps (or beyond, for a run with more steps before)
        last = max((pts[-1][0] for pts in hist.values() if pts), default=0)
        x_max = max(last, p.config.train.steps if p is not None else 1, 1)
        for name, curve in self.curves.items():
            pts = hist.get(name, [])
            if pts:
                arr = np.asarray(pts, np.float64)
                curve.setData(arr[:, 0], arr[:, 1])
            else:
                curve.setData([], [])
            plot = self.plots[name]
            plot.setXRange(0, x_max, padding=0.02)
            plot.enableAutoRange(axis="y")
        empty = not hist.get("loss")
        self.loss_note.setVisible(empty and p is not None)
        if empty:
            self.plots["loss"].setYRange(0, 1, padding=0)
            self.loss_note.setPos(x_max / 2, 0.5)

    def curve_points(self, name: str) -> int:
        """Number of points the curve of metric `name` draws."""
        x, _ = self.curves[name].getData()
        return 0 if x is None else len(x)

    def _update_controls(self) -> None:
        p = self.model.project
        info = self.model.stages["train"]
        running = info.state == StageState.RUNNING
        requested = self.is_pause_requested()
        self.pause_button.setEnabled(running and not requested)
        self.resume_button.setEnabled(p is not None and requested)
        self.stop_button.setEnabled(running)
        self.reset_button.setEnabled(self.canvas.camera is not None)
        if p is None:
            self.status.setText("No project open")
            return
        steps = p.config.train.steps
        m = info.metrics
        hist = info.history
        step = max((pts[-1][0] for pts in hist.values() if pts), default=None)
        parts = []
        if running and info.paused:
            parts.append(f"paused at step {step}" if step is not None else "paused")
        elif running and requested:
            parts.append("pausing…")
        elif info.state.is_ok:
            parts.append(str(StageState.DONE))
        elif info.stale:
            parts.append("trained before; options changed since (will train again)")
        elif info.state != StageState.PENDING:
            parts.append(info.state)
        if step is not None:
            parts.append(f"step {step}/{steps}")
        for key, label, fmt in (("loss", "loss", "{:.4f}"), ("psnr", "PSNR", "{:.2f} dB"),
                                ("gaussians", "Gaussians", "{:,.0f}"),
                                ("steps_per_s", "", "{:.1f} steps/s"),
                                ("memory_mb", "", "{:,.0f} MB peak")):
            if key in m:
                parts.append(f"{label} {fmt.format(m[key])}".strip())
        if info.error and info.state.is_problem:
            parts.append(info.error.splitlines()[0])
        if not parts:
            parts.append("not trained yet" if info.state == StageState.PENDING else info.state)
        self.status.setText("  ·  ".join(parts))

    # -- camera ---------------------------------------------------------------------------
    def ensure_camera(self) -> bool:
        """Load the default preview camera and the SfM points once per project (the trainer's
        default view, or the ``preview_camera.json`` already there). False when there is no
        georeferenced model yet (the reason is in ``camera_error``)."""
        if self._camera_loaded:
            return self.default_camera is not None
        p = self.model.project
        if p is None:
            return False
        self._camera_loaded = True
        try:
            cam, pts, cols = default_preview_camera(p)
        except Exception as e:  # noqa: BLE001 - no model yet, or a broken one: no orbit
            self.camera_error = str(e)
            self.canvas.placeholder = ("No preview yet. The camera can be moved once the "
                                       "georeferenced model exists.")
            self.canvas.update()
            self._update_controls()
            return False
        self.default_camera = cam
        current = preview_camera(self.train_dir, cam)  # the stored one, else `cam`
        self.canvas.points, self.canvas.colors = pts, cols
        self.canvas.set_camera(orbit_from_view(current, pts), current)
        self._update_controls()
        return True

    def current_camera(self) -> PinholeCamera | None:
        """The camera the user has placed, as the trainer will read it (None: no camera)."""
        return self.canvas.current()

    def _on_camera_moved(self) -> None:
        self._write_timer.start()

    def write_camera(self) -> Path | None:
        """Write the current camera to ``train/preview_camera.json`` (atomically)."""
        self._write_timer.stop()
        cam, d = self.current_camera(), self.train_dir
        if cam is None or d is None:
            return None
        path = write_preview_camera(d, cam)
        self.cameraWritten.emit(str(path))
        return path

    def reset_camera(self) -> None:
        """Back to the trainer's default preview camera (removes ``preview_camera.json``)."""
        self._write_timer.stop()
        d = self.train_dir
        if d is not None:
            (d / PREVIEW_CAMERA_FILE).unlink(missing_ok=True)
        cam = self.default_camera
        if cam is not None:
            self.canvas.set_camera(orbit_from_view(cam, self.canvas.points), cam)
            self.canvas.overlay = True

    # -- pause / resume / stop ------------------------------------------------------------
    def pause(self) -> None:
        """Ask the trainer to pause (creates ``train/pause``)."""
        p = self.pause_path()
        if p is None:
            return
        p.parent.mkdir(parents=True, exist_ok=True)
        p.touch()
        self._update_controls()

    def resume(self) -> None:
        """Let the trainer go on (removes ``train/pause``)."""
        p = self.pause_path()
        if p is not None:
            p.unlink(missing_ok=True)
        self._update_controls()

    def stop(self) -> None:
        """Stop training (the runner's cancel; the trainer saves a checkpoint first). A pause
        flag is removed once the stage has stopped, so the next run does not start paused."""
        self._clear_pause_when_done = True
        self.stopRequested.emit()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        if self.model.project is not None and not self._camera_loaded:
            self.ensure_camera()
