"""The viewer's fly-through video dialog: path, size, frames, renderer, a progress bar.

The path is the project's smoothed capture path (:func:`splatstudio.render.video.
capture_path_viewmats`) or keyframes the user adds from the current view (at least two;
:func:`~splatstudio.render.video.keyframe_viewmats`). The scene rendered is the one shown,
with the workbench's deletions applied. Frames are rendered by
:func:`~splatstudio.render.video.render_video` in a worker thread (our CPU rasterizer, or
gsplat on CUDA where it runs); Cancel stops before the next frame and leaves no file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QThread, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

#: Frame sizes offered (width, height), all even (H.264 4:2:0).
SIZES = ((640, 360), (1280, 720), (1920, 1080), (320, 180))


class VideoWorker(QThread):
    """Renders the video off the GUI thread.

    Signals:
        progressed(int, int): frames done, frames in all.
        done(object): the result dict of render_video, or the error message (str).
    """

    progressed = Signal(int, int)
    done = Signal(object)

    def __init__(self, job: dict[str, Any], parent: QWidget | None = None):
        super().__init__(parent)
        self.job = job
        self.cancel_requested = False

    def run(self) -> None:  # noqa: D102 - QThread
        from ...render.video import render_video

        j = self.job
        try:
            info = render_video(j["splats"], j["viewmats"], j["K"], j["width"], j["height"],
                                j["output"], fps=j["fps"], device=j["device"],
                                progress=lambda d, n: self.progressed.emit(d, n),
                                cancelled=lambda: self.cancel_requested)
        except Exception as e:  # noqa: BLE001 - shown in the dialog
            self.done.emit(f"{type(e).__name__}: {e}")
            return
        self.done.emit(info)


class VideoDialog(QDialog):
    """Render a fly-through MP4 of the scene the workbench `panel` shows.

    Attributes:
        keyframes: ``[(eye [3], target [3]), ...]`` added from the view.
        result: the latest render's result dict, or the error message.

    Signals:
        finished_video(object): as :attr:`VideoWorker.done`.
    """

    finished_video = Signal(object)

    def __init__(self, panel: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self.panel = panel
        self.keyframes: list[tuple[np.ndarray, np.ndarray]] = []
        self.result: Any = None
        self.worker: VideoWorker | None = None
        self.setWindowTitle("Fly-through video")
        self.path_combo = QComboBox()
        if len(panel.poses) >= 2:
            self.path_combo.addItem(f"Capture path, smoothed ({len(panel.poses)} positions)",
                                    "capture")
        self.path_combo.addItem("Keyframes (add views below)", "keyframes")
        self.key_label = QLabel("0 keyframes")
        self.add_key = QPushButton("Add current view")
        self.clear_keys = QPushButton("Clear")
        keys = QHBoxLayout()
        keys.addWidget(self.key_label, 1)
        keys.addWidget(self.add_key)
        keys.addWidget(self.clear_keys)
        self.size_combo = QComboBox()
        for w, h in SIZES:
            self.size_combo.addItem(f"{w} × {h}", f"{w}x{h}")
        self.frames = QSpinBox()
        self.frames.setRange(1, 100000)
        self.frames.setValue(120)
        self.fps = QDoubleSpinBox()
        self.fps.setRange(1.0, 120.0)
        self.fps.setValue(30.0)
        self.fov = QDoubleSpinBox()
        self.fov.setRange(10.0, 150.0)
        self.fov.setValue(70.0)
        self.fov.setSuffix("°")
        self.device = QComboBox()
        for d, label in (("auto", "auto (CUDA where gsplat runs)"), ("cpu", "CPU"),
                         ("cuda", "CUDA (gsplat)")):
            self.device.addItem(label, d)
        default = Path.home() / "flythrough.mp4"
        if panel.project_root is not None:
            default = panel.project_root / "exports" / "flythrough.mp4"
        self.output = QLineEdit(str(default))
        browse = QPushButton("Browse…")
        out_row = QHBoxLayout()
        out_row.addWidget(self.output, 1)
        out_row.addWidget(browse)
        form = QFormLayout()
        form.addRow("Path", self.path_combo)
        form.addRow("Keyframes", keys)
        form.addRow("Size", self.size_combo)
        form.addRow("Frames", self.frames)
        form.addRow("Frames per second", self.fps)
        form.addRow("Field of view", self.fov)
        form.addRow("Renderer", self.device)
        form.addRow("File", out_row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.render_button = QPushButton("Render")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.render_button)
        buttons.addWidget(self.cancel_button)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.progress)
        lay.addWidget(self.message)
        lay.addLayout(buttons)
        self.add_key.clicked.connect(self.add_keyframe)
        self.clear_keys.clicked.connect(self.clear_keyframes)
        browse.clicked.connect(self._browse)
        self.render_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)

    def _browse(self) -> None:
        name, _ = QFileDialog.getSaveFileName(self, "Video file", self.output.text(),
                                              "MP4 video (*.mp4)")
        if name:
            self.output.setText(name)

    def add_keyframe(self) -> None:
        """Add the viewer's current camera (eye, orbit target) as a keyframe."""
        cam = self.panel.page.gl.camera
        self.keyframes.append((cam.eye().copy(), np.asarray(cam.target, np.float64).copy()))
        self.key_label.setText(f"{len(self.keyframes)} keyframes")
        self.path_combo.setCurrentIndex(self.path_combo.findData("keyframes"))

    def clear_keyframes(self) -> None:
        """Forget the keyframes."""
        self.keyframes = []
        self.key_label.setText("0 keyframes")

    def job(self) -> dict[str, Any]:
        """What :class:`VideoWorker` renders, from the widgets.

        Raises:
            ValueError: fewer than 2 keyframes for a keyframe path, no scene, or a file name
                that does not end in .mp4 (message for the user).
        """
        from ...render.camera import intrinsics_from_fov
        from ...render.video import capture_path_viewmats, keyframe_viewmats

        ed = self.panel.editor
        if ed is None:
            raise ValueError("no scene is shown")
        out = Path(self.output.text().strip()).expanduser()
        if out.suffix.lower() != ".mp4":
            raise ValueError(f"{out}: the video file must end in .mp4")
        w, h = (int(v) for v in self.size_combo.currentData().split("x"))
        n = self.frames.value()
        up = tuple(self.panel.page.gl.camera.up)
        if self.path_combo.currentData() == "capture":
            vms = capture_path_viewmats(np.array([p.centre for p in self.panel.poses]), n, up=up)
        else:
            if len(self.keyframes) < 2:
                raise ValueError("add at least 2 keyframes (move the view, Add current view)")
            eyes = np.array([k[0] for k in self.keyframes])
            targets = np.array([k[1] for k in self.keyframes])
            vms = keyframe_viewmats(eyes, targets, n, up=up)
        return {"splats": ed.result(), "viewmats": vms, "K": intrinsics_from_fov(
            self.fov.value(), w, h), "width": w, "height": h, "output": out,
            "fps": self.fps.value(), "device": self.device.currentData()}

    def start(self) -> bool:
        """Start rendering (False, with the reason shown, when the options are not valid)."""
        try:
            job = self.job()
        except ValueError as e:
            self.message.setText(str(e))
            return False
        self.progress.setRange(0, len(job["viewmats"]))
        self.progress.setValue(0)
        self.message.setText(f"rendering {len(job['viewmats'])} frames of "
                             f"{job['splats'].n:,} gaussians…")
        self.render_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.worker = VideoWorker(job, self)
        self.worker.progressed.connect(lambda d, n: self.progress.setValue(d))
        self.worker.done.connect(self._done)
        self.worker.start()
        return True

    def cancel(self) -> None:
        """Stop before the next frame (no file is left)."""
        if self.worker is not None:
            self.worker.cancel_requested = True

    def _done(self, result: Any) -> None:
        self.result = result
        self.render_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if isinstance(result, str):
            self.message.setText(f"Failed: {result}")
        elif result.get("cancelled"):
            self.message.setText("Cancelled.")
        else:
            self.message.setText(f"Wrote {result['path']} ({result['frames']} frames, "
                                 f"{result['width']}×{result['height']}, {result['device']}, "
                                 f"{result['seconds']:.1f} s)")
        if self.worker is not None:
            self.worker.wait()
        self.finished_video.emit(result)

    def reject(self) -> None:  # noqa: D102 - cancel a running render first
        if self.worker is not None and self.worker.isRunning():
            self.worker.cancel_requested = True
            self.worker.wait()
        super().reject()
