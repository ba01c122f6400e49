"""Paint and erase the platform mask over a panorama of the project.

The platform mask (:mod:`splatstudio.pano.platform`) marks what stays fixed in the camera's frame
(vehicle, cabin, mount); reproject finds it automatically. This dialog shows it in red over a
panorama of the capture and lets the user paint more of it or erase some with a round brush
(sizes in degrees of the sphere). Saving writes the mask as the project's own file,
``PROJECT/masks/platform-<hash>.png`` (equirect 512 x 256, black on the platform, the name
changing with the content so the stage fingerprints see every edit), and sets
``reproject.platform_mask_file`` to it, so the next run redoes reproject and what follows.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PySide6.QtCore import QPoint, Qt, Signal
from PySide6.QtGui import QImage, QMouseEvent, QPixmap
from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from ..config import update_config
from ..pano.platform import WORK_WIDTH, sphere_fraction
from ..project import Project

CANVAS_WIDTH = 1024
"""Width of the panorama on screen, pixels (height: half)."""

USER_MASK_DIR = "masks"
"""Folder of the project where edited masks are saved."""


class _Canvas(QLabel):
    """The panorama with the mask over it; emits painted positions (mask pixels) while the
    left button is held."""

    stroke = Signal(float, float)
    released = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setMouseTracking(False)
        self._drawing = False
        self.setCursor(Qt.CursorShape.CrossCursor)

    def _emit(self, pos: QPoint) -> None:
        w, h = max(1, self.width()), max(1, self.height())
        self.stroke.emit(pos.x() / w * WORK_WIDTH, pos.y() / h * (WORK_WIDTH // 2))

    def mousePressEvent(self, e: QMouseEvent) -> None:  # noqa: N802 - Qt override
        if e.button() == Qt.MouseButton.LeftButton:
            self._drawing = True
            self._emit(e.position().toPoint())

    def mouseMoveEvent(self, e: QMouseEvent) -> None:  # noqa: N802 - Qt override
        if self._drawing:
            self._emit(e.position().toPoint())

    def mouseReleaseEvent(self, e: QMouseEvent) -> None:  # noqa: N802 - Qt override
        if self._drawing and e.button() == Qt.MouseButton.LeftButton:
            self._drawing = False
            self.released.emit()


def load_platform_mask(project: Project) -> np.ndarray:
    """The project's current platform mask, bool [256, 512] (True on the platform): what the
    last reproject saved, unless the user's own file is set since; else what reproject would
    make now (:func:`splatstudio.pipeline.reproject.platform_keep_mask`: the user's file, or
    the estimate from the panoramas); empty without either."""
    import cv2

    from ..errors import InputError
    from ..events import null_emitter
    from ..pipeline.artifacts import PLATFORM_MASK, read_manifest
    from ..pipeline.reproject import platform_keep_mask

    saved = PLATFORM_MASK.path(project.root)
    if not project.config.reproject.platform_mask_file and saved.exists():
        img = cv2.imread(str(saved), cv2.IMREAD_GRAYSCALE)
        if img is not None:
            return img < 128
    try:
        manifest = read_manifest(project.root)
        panos = [e for e in manifest.images if e["kind"] == "equirect"]
        input_dir = manifest.input_dir
    except InputError:  # no ingest yet: only the user's file, if any
        panos, input_dir = [], project.input_dir
    keep = platform_keep_mask(project, panos, input_dir, project.config.reproject,
                              null_emitter("reproject"))
    return keep < 128


def save_platform_mask(project: Project, mask: np.ndarray) -> Path:
    """Write `mask` (bool [256, 512], True on the platform) as the project's own platform mask
    and point ``reproject.platform_mask_file`` at it; returns the file."""
    import cv2

    img = np.where(mask, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise OSError("cannot encode the platform mask")
    data = buf.tobytes()
    rel = Path(USER_MASK_DIR) / f"platform-{hashlib.sha256(data).hexdigest()[:12]}.png"
    path = project.root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    project.config.reproject = update_config(project.config.reproject,
                                             {"platform_mask_file": rel.as_posix()})
    project.save()
    return path


class PlatformMaskEditor(QDialog):
    """Paint (left drag) or erase the platform mask over `panorama` of `project`.

    Signals:
        saved(Path): the mask file written (the project's config points at it).
    """

    saved = Signal(object)

    def __init__(self, project: Project, panorama: Path, parent: QWidget | None = None):
        super().__init__(parent)
        import cv2

        self.setWindowTitle(f"Platform mask - {panorama.name}")
        self.project = project
        self.mask = load_platform_mask(project)
        self._original = self.mask.copy()
        img = cv2.imread(str(panorama), cv2.IMREAD_REDUCED_COLOR_2)
        if img is None:
            img = np.zeros((CANVAS_WIDTH // 2, CANVAS_WIDTH, 3), np.uint8)
        self._pano = cv2.cvtColor(cv2.resize(img, (CANVAS_WIDTH, CANVAS_WIDTH // 2),
                                             interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)

        self.canvas = _Canvas()
        self.canvas.setFixedSize(CANVAS_WIDTH, CANVAS_WIDTH // 2)
        self.canvas.stroke.connect(self.paint_at)
        self.paint_button = QRadioButton("Paint (mask more)")
        self.erase_button = QRadioButton("Erase")
        self.paint_button.setChecked(True)
        tools = QButtonGroup(self)
        tools.addButton(self.paint_button)
        tools.addButton(self.erase_button)
        self.brush = QDoubleSpinBox()
        self.brush.setRange(0.5, 30.0)
        self.brush.setValue(4.0)
        self.brush.setSuffix(" deg")
        self.brush.setToolTip("brush radius, degrees of the sphere")
        self.undo_button = QPushButton("Revert")
        self.undo_button.setToolTip("back to the mask the dialog opened with")
        self.undo_button.clicked.connect(self.revert)
        self.clear_button = QPushButton("Clear")
        self.clear_button.clicked.connect(self.clear)
        self.info = QLabel()
        self.info.setObjectName("muted")
        save = QPushButton("Save")
        save.setDefault(True)
        save.clicked.connect(self.save)
        cancel = QPushButton("Cancel")
        cancel.clicked.connect(self.reject)

        row = QHBoxLayout()
        for w in (self.paint_button, self.erase_button, QLabel("Brush"), self.brush,
                  self.undo_button, self.clear_button):
            row.addWidget(w)
        row.addStretch(1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.info, 1)
        buttons.addWidget(cancel)
        buttons.addWidget(save)
        lay = QVBoxLayout(self)
        help_ = QLabel("Red: the platform mask, ignored in SfM and training (what stays fixed in "
                       "the camera's frame: vehicle, cabin, mount). Blue: the nadir mask "
                       "(reproject.nadir_deg), ignored too. Drag to paint or erase the red; Save "
                       "re-runs reproject and what follows on the next run.")
        help_.setWordWrap(True)
        lay.addWidget(help_)
        lay.addLayout(row)
        lay.addWidget(self.canvas)
        lay.addLayout(buttons)
        self.refresh()

    def paint_at(self, x: float, y: float) -> None:
        """Paint (or erase) a disc of the brush radius at mask pixel (x, y)."""
        h, w = self.mask.shape
        r = self.brush.value() * w / 360.0
        yy, xx = np.ogrid[:h, :w]
        dx = np.abs(xx + 0.5 - x)
        dx = np.minimum(dx, w - dx)  # the panorama wraps around
        disc = dx**2 + (yy + 0.5 - y) ** 2 <= r * r
        self.mask[disc] = self.paint_button.isChecked()
        self.refresh()

    def revert(self) -> None:
        self.mask = self._original.copy()
        self.refresh()

    def clear(self) -> None:
        self.mask[:] = False
        self.refresh()

    def refresh(self) -> None:
        """Redraw the panorama with the mask in red; say how much of the sphere it covers."""
        import cv2

        big = cv2.resize(self.mask.astype(np.uint8), (CANVAS_WIDTH, CANVAS_WIDTH // 2),
                         interpolation=cv2.INTER_NEAREST).astype(bool)
        rgb = self._pano.copy()
        cfg = self.project.config.reproject
        if cfg.nadir_mask:  # the nadir cap, ignored as well, in blue (not edited here)
            h = rgb.shape[0]
            lat = 90.0 - (np.arange(h) + 0.5) / h * 180.0
            cap = lat < -90.0 + float(cfg.nadir_deg)
            rgb[cap] = (0.6 * rgb[cap] + [0, 30, 90]).astype(np.uint8)
        rgb[big] = (0.45 * rgb[big] + [140, 0, 0]).astype(np.uint8)
        edge = big ^ cv2.erode(big.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        rgb[edge] = (255, 64, 64)
        qimg = QImage(rgb.data, rgb.shape[1], rgb.shape[0], rgb.strides[0],
                      QImage.Format.Format_RGB888).copy()
        self.canvas.setPixmap(QPixmap.fromImage(qimg))
        self.info.setText(f"{100 * sphere_fraction(self.mask):.1f} % of the sphere masked")

    def save(self) -> None:
        """Save the mask into the project (see :func:`save_platform_mask`) and close."""
        path = save_platform_mask(self.project, self.mask)
        self.saved.emit(path)
        self.accept()
