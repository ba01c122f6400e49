"""The viewer's workbench: capture positions, selection and clean-up with undo, measurement.

:class:`WorkbenchPanel` sits beside the OpenGL view of :class:`~.page.ViewerPage`:

* **Capture** -- for a project's splat, its registered capture positions
  (:func:`splatstudio.pipeline.capture_path.capture_poses`): a list and a slider; choosing one
  puts the camera there, looking along the path. The view opens at the first one.
* **Select** -- mouse tools on the view (rectangle, brush, sphere around a clicked surface
  point), a box in world coordinates, by opacity and by size; each combines with the
  selection as the mode says (replace, add, subtract, intersect). Selected gaussians are
  tinted orange. Invert, Delete (Del), Crop to selection, Undo (Ctrl+Z), Redo (Ctrl+Shift+Z),
  Save version (a project's ``edits/vNNN.ply``, the trained splat kept; a loose file: save
  as). The arrays side is :mod:`splatstudio.splats.edit`.
* **Measure** -- click two points on the surface (:func:`splatstudio.splats.measure.pick_ray`):
  distance, horizontal distance and height difference, and the clicked point's ENU and WGS84
  coordinates; metres only when the project is georeferenced, else "units".
* **Video** -- a fly-through MP4 (:mod:`.video_dialog`).

Mouse tools take the left button on the view (Shift + left and the other buttons still pan and
orbit); the overlay (:class:`ToolOverlay`) draws the rectangle, the brush and the picked points.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QKeySequence, QPainter, QPen, QShortcut
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QLabel,
    QPushButton,
    QScrollArea,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ...geo.enu import enu_to_geodetic
from ...splats import edit
from ...splats.measure import measure, pick_ray

#: Names of the mouse tools, in the order of their buttons.
TOOLS = ("orbit", "rect", "brush", "sphere", "measure")
TOOL_LABELS = {"orbit": "Orbit", "rect": "Rectangle", "brush": "Brush", "sphere": "Sphere",
               "measure": "Measure"}  # fmt: skip


def project_root_of(path: Path) -> Path | None:
    """The project folder a splat file belongs to (``<project>/train/splat.ply`` or
    ``<project>/edits/<name>.ply``), or None for a loose file."""
    p = Path(path).resolve()
    root = p.parent.parent
    if p.parent.name in ("train", "edits") and (root / "project.json").is_file():
        return root
    return None


class ToolOverlay(QWidget):
    """Transparent layer over the GL view: the rectangle being dragged, the brush stroke and
    the measured points (world points re-projected every paint, so they follow the camera)."""

    def __init__(self, panel: WorkbenchPanel, parent: QWidget):
        super().__init__(parent)
        self.panel = panel
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.setAttribute(Qt.WidgetAttribute.WA_NoSystemBackground)
        self.setAttribute(Qt.WidgetAttribute.WA_TranslucentBackground)
        parent.installEventFilter(self)
        self.setGeometry(parent.rect())

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if event.type() == QEvent.Type.Resize:
            self.setGeometry(self.parentWidget().rect())
        return False

    def paintEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        orange = QColor(255, 140, 30)
        panel = self.panel
        if panel.drag_rect is not None:
            a, b = panel.drag_rect
            p.setPen(QPen(orange, 1.5, Qt.PenStyle.DashLine))
            p.drawRect(QRectF(a, b).normalized())
        if panel.stroke:
            r = panel.brush_radius.value()
            p.setPen(QPen(orange, 1.0))
            p.setBrush(QColor(255, 140, 30, 60))
            for q in panel.stroke[:: max(1, len(panel.stroke) // 200)]:
                p.drawEllipse(QPointF(*q), r, r)
        pts = panel.measure_points
        if pts and panel.page.gl.packed is not None:
            cam = panel.page.gl.view_camera()
            uv, z = edit.project_points(np.array(pts), cam.viewmat, cam.K)
            p.setBrush(QColor(40, 220, 255))
            p.setPen(QPen(QColor(40, 220, 255), 2.0))
            vis = [QPointF(float(u[0]), float(u[1])) for u, zz in zip(uv, z, strict=True)
                   if zz > 0]
            if len(vis) == 2:
                p.drawLine(vis[0], vis[1])
            for q in vis:
                p.drawEllipse(q, 4.0, 4.0)
        p.end()


class WorkbenchPanel(QWidget):
    """The side panel of the viewer (see the module docstring).

    Attributes:
        editor: the :class:`~splatstudio.splats.edit.SplatEditor` of the scene shown (None
            before one is loaded).
        poses: the capture positions of the project shown (``[]`` for a loose file).
        georef: :class:`~splatstudio.pipeline.capture_path.GeorefState` of the project, or
            None (loose file: not metric).
        project_root: the project of the file shown, or None.
        measure_points: ``[[3], ...]`` the picked points (at most 2).
        last_measure: the latest :class:`~splatstudio.splats.measure.Measurement` or None.

    Signals:
        edited(): the selection or the alive set changed (edit, undo, redo).
        versionSaved(str): a version was saved (its file).
    """

    edited = Signal()
    versionSaved = Signal(str)

    def __init__(self, page: Any):
        super().__init__(page)
        self.page = page
        self.editor: edit.SplatEditor | None = None
        self.poses: list[Any] = []
        self.georef: Any = None
        self.project_root: Path | None = None
        self.source_file: Path | None = None
        self.measure_points: list[np.ndarray] = []
        self.last_measure: Any = None
        self.drag_rect: tuple[QPointF, QPointF] | None = None
        self.stroke: list[tuple[float, float]] = []
        self.tool = "orbit"
        self.setFixedWidth(390)

        # capture positions
        self.capture_box = QGroupBox("Capture positions")
        self.pose_combo = QComboBox()
        self.pose_slider = QSlider(Qt.Orientation.Horizontal)
        self.pose_slider.setRange(0, 0)
        cl = QVBoxLayout(self.capture_box)
        cl.addWidget(self.pose_combo)
        cl.addWidget(self.pose_slider)
        self.capture_box.setVisible(False)
        self.pose_combo.currentIndexChanged.connect(self._pose_chosen)
        self.pose_slider.valueChanged.connect(self.pose_combo.setCurrentIndex)

        # tools
        tbox = QGroupBox("Mouse tool (left button)")
        tl = QGridLayout(tbox)
        self.tool_group = QButtonGroup(self)
        self.tool_buttons: dict[str, QPushButton] = {}
        for i, name in enumerate(TOOLS):
            b = QPushButton(TOOL_LABELS[name])
            b.setCheckable(True)
            self.tool_group.addButton(b)
            self.tool_buttons[name] = b
            tl.addWidget(b, i // 3, i % 3)
            b.clicked.connect(lambda _=False, n=name: self.set_tool(n))
        self.tool_buttons["orbit"].setChecked(True)
        self.brush_radius = QSpinBox()
        self.brush_radius.setRange(2, 300)
        self.brush_radius.setValue(25)
        self.brush_radius.setSuffix(" px")
        self.sphere_radius = QDoubleSpinBox()
        self.sphere_radius.setRange(0.001, 1e5)
        self.sphere_radius.setDecimals(3)
        self.sphere_radius.setValue(1.0)
        tf = QFormLayout()
        tf.addRow("Brush radius", self.brush_radius)
        tf.addRow("Sphere radius", self.sphere_radius)
        tl.addLayout(tf, 2, 0, 1, 3)

        # selection
        sbox = QGroupBox("Select")
        sl = QVBoxLayout(sbox)
        self.mode = QComboBox()
        for m in edit.MODES:
            self.mode.addItem(m, m)
        self.mode.setToolTip("How a new selection combines with the current one")
        mf = QFormLayout()
        mf.addRow("Mode", self.mode)
        sl.addLayout(mf)
        self.box_lo = [self._coord() for _ in range(3)]
        self.box_hi = [self._coord() for _ in range(3)]
        bg = QGridLayout()
        for j, axis in enumerate("xyz"):
            bg.addWidget(QLabel(axis), 0, j + 1, Qt.AlignmentFlag.AlignCenter)
        bg.addWidget(QLabel("min"), 1, 0)
        bg.addWidget(QLabel("max"), 2, 0)
        for j in range(3):
            bg.addWidget(self.box_lo[j], 1, j + 1)
            bg.addWidget(self.box_hi[j], 2, j + 1)
        self.box_button = QPushButton("Box")
        self.box_button.setToolTip("Select the gaussians whose centre is in this box "
                                   "(world axes; ENU metres for a georeferenced project)")
        bg.addWidget(self.box_button, 3, 0, 1, 4)
        sl.addLayout(bg)
        self.opacity_max = QDoubleSpinBox()
        self.opacity_max.setRange(0.0, 1.0)
        self.opacity_max.setSingleStep(0.05)
        self.opacity_max.setValue(0.1)
        self.opacity_button = QPushButton("Opacity ≤")
        self.size_min = QDoubleSpinBox()
        self.size_min.setRange(0.0, 1e6)
        self.size_min.setDecimals(3)
        self.size_min.setValue(1.0)
        self.size_button = QPushButton("Size ≥")
        self.size_button.setToolTip("Largest standard deviation of a gaussian, world units")
        of = QGridLayout()
        of.addWidget(self.opacity_button, 0, 0)
        of.addWidget(self.opacity_max, 0, 1)
        of.addWidget(self.size_button, 1, 0)
        of.addWidget(self.size_min, 1, 1)
        sl.addLayout(of)
        self.all_button = QPushButton("All")
        self.none_button = QPushButton("None")
        self.invert_button = QPushButton("Invert")
        self.delete_button = QPushButton("Delete")
        self.crop_button = QPushButton("Crop to selection")
        self.undo_button = QPushButton("Undo")
        self.redo_button = QPushButton("Redo")
        self.save_button = QPushButton("Save version")
        self.save_button.setToolTip("Save the edited splat as a new version of the project "
                                    "(edits/vNNN.ply; the trained splat is kept), or, for a "
                                    "loose file, as a new file")
        ag = QGridLayout()
        for i, b in enumerate((self.all_button, self.none_button, self.invert_button,
                               self.delete_button, self.crop_button, self.undo_button,
                               self.redo_button, self.save_button)):
            ag.addWidget(b, i // 2, i % 2)
        sl.addLayout(ag)
        self.edit_status = QLabel("")
        self.edit_status.setWordWrap(True)
        self.edit_status.setObjectName("muted")
        sl.addWidget(self.edit_status)

        # measure
        mbox = QGroupBox("Measure")
        ml = QVBoxLayout(mbox)
        self.measure_label = QLabel("Measure tool: click two points on the splat.")
        self.measure_label.setWordWrap(True)
        self.measure_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.clear_measure_button = QPushButton("Clear points")
        ml.addWidget(self.measure_label)
        ml.addWidget(self.clear_measure_button)

        # video
        self.video_button = QPushButton("Render fly-through video…")

        inner = QWidget()
        lay = QVBoxLayout(inner)
        lay.setContentsMargins(0, 0, 0, 0)
        for w in (self.capture_box, tbox, sbox, mbox, self.video_button):
            lay.addWidget(w)
        lay.addStretch(1)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll.setWidget(inner)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.scroll)

        self.overlay = ToolOverlay(self, page.gl)
        self.box_button.clicked.connect(self.select_box)
        self.opacity_button.clicked.connect(
            lambda: self.apply_selection(edit.select_opacity(self._s().opacities, 0.0,
                                                             self.opacity_max.value()), "opacity"))
        self.size_button.clicked.connect(
            lambda: self.apply_selection(edit.select_size(self._s().scales, self.size_min.value()),
                                         "size"))
        self.all_button.clicked.connect(lambda: self._do(lambda e: e.select_all()))
        self.none_button.clicked.connect(lambda: self._do(lambda e: e.clear_selection()))
        self.invert_button.clicked.connect(lambda: self._do(lambda e: e.invert()))
        self.delete_button.clicked.connect(self.delete)
        self.crop_button.clicked.connect(lambda: self._do(lambda e: e.crop_to_selection()))
        self.undo_button.clicked.connect(self.undo)
        self.redo_button.clicked.connect(self.redo)
        self.save_button.clicked.connect(self.save_version)
        self.clear_measure_button.clicked.connect(self.clear_measure)
        self.video_button.clicked.connect(self.open_video_dialog)
        # explicit keys: StandardKey.Redo is Ctrl+Shift+Z on Linux, and a second shortcut on
        # the same keys would make both ambiguous (neither fires)
        for keys, fn in ((QKeySequence("Ctrl+Z"), self.undo),
                         (QKeySequence("Ctrl+Shift+Z"), self.redo),
                         (QKeySequence("Ctrl+Y"), self.redo),
                         (QKeySequence(Qt.Key.Key_Delete), self.delete)):
            sc = QShortcut(keys, page)
            sc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            sc.activated.connect(fn)
        self._update_enabled()

    @staticmethod
    def _coord() -> QDoubleSpinBox:
        b = QDoubleSpinBox()
        b.setRange(-1e7, 1e7)
        b.setDecimals(2)
        b.setMinimumWidth(60)
        return b

    def _s(self):
        assert self.editor is not None
        return self.editor.splats

    # -- loading ---------------------------------------------------------------------
    def on_loaded(self, path: Path | None) -> None:
        """A scene was shown (`path` its file, None when set directly): a new editor, the
        project's capture positions and georef state, the box fields at the view's framing;
        the camera goes to the first capture position when there is one."""
        from ...pipeline.capture_path import capture_poses, georef_state

        splats = self.page.gl.splats
        self.editor = edit.SplatEditor(splats) if splats is not None else None
        self.source_file = Path(path) if path is not None else None
        self.project_root = project_root_of(path) if path is not None else None
        self.poses, self.georef = [], None
        self.clear_measure()
        if self.project_root is not None:
            try:
                self.poses = capture_poses(self.project_root)
                self.georef = georef_state(self.project_root)
            except Exception as e:  # noqa: BLE001 - a broken georef must not stop viewing
                self.page.info.setText(f"{self.page.info.text()} · capture positions: {e}")
        self.pose_combo.blockSignals(True)
        self.pose_combo.clear()
        for i, p in enumerate(self.poses):
            c = p.centre
            self.pose_combo.addItem(f"{i + 1}. {p.frame_id}  ({c[0]:.1f}, {c[1]:.1f}, "
                                    f"{c[2]:.1f})")
        self.pose_combo.blockSignals(False)
        self.pose_slider.setRange(0, max(0, len(self.poses) - 1))
        self.capture_box.setVisible(bool(self.poses))
        packed = self.page.gl.packed
        if packed is not None:
            r = packed.radius
            for j in range(3):
                self.box_lo[j].setValue(float(packed.center[j] - r))
                self.box_hi[j].setValue(float(packed.center[j] + r))
            self.sphere_radius.setValue(max(0.001, round(0.1 * r, 3)))
        if self.poses:
            self.go_to_pose(0)
        self.page.gl.set_edit_state(None, None)
        self._update_enabled()

    def pose_step(self) -> float:
        """Median distance between consecutive capture positions (world units; 1 without)."""
        if len(self.poses) < 2:
            return 1.0
        c = np.array([p.centre for p in self.poses])
        step = float(np.median(np.linalg.norm(np.diff(c, axis=0), axis=1)))
        return step if step > 1e-6 else 1.0

    def go_to_pose(self, i: int) -> None:
        """Put the camera at capture position `i`, looking along the path (orbit target one
        capture step ahead)."""
        if not 0 <= i < len(self.poses):
            return
        p = self.poses[i]
        self.page.gl.camera.look_from(p.centre, p.forward, self.pose_step())
        if self.pose_combo.currentIndex() != i:
            self.pose_combo.setCurrentIndex(i)
        self.page.gl.update()

    def _pose_chosen(self, i: int) -> None:
        if i >= 0:
            self.pose_slider.blockSignals(True)
            self.pose_slider.setValue(i)
            self.pose_slider.blockSignals(False)
            self.go_to_pose(i)

    # -- tools -----------------------------------------------------------------------
    def set_tool(self, name: str) -> None:
        """Make `name` (one of :data:`TOOLS`) the left-button tool of the view."""
        if name not in TOOLS:
            raise ValueError(f"unknown tool {name!r} ({', '.join(TOOLS)})")
        self.tool = name
        self.tool_buttons[name].setChecked(True)
        self.page.gl.mouse_tool = None if name == "orbit" else self
        self.page.gl.setCursor(Qt.CursorShape.ArrowCursor if name == "orbit"
                               else Qt.CursorShape.CrossCursor)

    def press(self, pos: QPointF) -> bool:
        """Left button pressed on the view with a tool active; True when the tool takes it."""
        if self.editor is None:
            return False
        if self.tool == "rect":
            self.drag_rect = (pos, pos)
        elif self.tool == "brush":
            self.stroke = [(pos.x(), pos.y())]
        elif self.tool == "sphere":
            pt = self.pick(pos.x(), pos.y())
            if pt is not None:
                self.apply_selection(
                    edit.select_sphere(self._s().means, pt, self.sphere_radius.value()),
                    "sphere")
        elif self.tool == "measure":
            self.add_measure_point(pos.x(), pos.y())
        self.overlay.update()
        return True

    def move(self, pos: QPointF) -> None:
        """Drag with a tool."""
        if self.tool == "rect" and self.drag_rect is not None:
            self.drag_rect = (self.drag_rect[0], pos)
        elif self.tool == "brush" and self.stroke:
            self.stroke.append((pos.x(), pos.y()))
        self.overlay.update()

    def release(self, pos: QPointF) -> None:
        """End of a drag: apply the rectangle or the brush stroke."""
        if self.tool == "rect" and self.drag_rect is not None:
            a = self.drag_rect[0]
            self.drag_rect = None
            self.select_rect((a.x(), a.y(), pos.x(), pos.y()))
        elif self.tool == "brush" and self.stroke:
            stroke, self.stroke = self.stroke, []
            self.select_brush(stroke)
        self.overlay.update()

    def select_rect(self, rect: tuple[float, float, float, float]) -> int:
        """Select by a rectangle of the view (widget pixels x0, y0, x1, y1)."""
        cam = self.page.gl.view_camera()
        return self.apply_selection(edit.select_screen_rect(
            self._s().means, cam.viewmat, cam.K, rect, near=self.page.gl.camera.near),
            "rectangle")

    def select_brush(self, stroke: list[tuple[float, float]]) -> int:
        """Select by a brush stroke of the view (widget pixels), radius from the panel."""
        cam = self.page.gl.view_camera()
        return self.apply_selection(edit.select_screen_brush(
            self._s().means, cam.viewmat, cam.K, stroke, self.brush_radius.value(),
            width=cam.width, height=cam.height, near=self.page.gl.camera.near), "brush")

    def select_box(self) -> int:
        """Select by the box of the panel's min / max fields (world coordinates)."""
        lo = [b.value() for b in self.box_lo]
        hi = [b.value() for b in self.box_hi]
        try:
            mask = edit.select_box(self._s().means, lo, hi)
        except ValueError as e:
            self.edit_status.setText(str(e))
            return self.editor.n_selected if self.editor else 0
        return self.apply_selection(mask, "box")

    def apply_selection(self, mask: np.ndarray, label: str) -> int:
        """Combine `mask` ``[N] bool`` with the selection in the panel's mode; redraw."""
        if self.editor is None:
            return 0
        n = self.editor.select(mask, self.mode.currentData(), label)
        self._refresh()
        return n

    def _do(self, fn) -> None:
        if self.editor is not None:
            fn(self.editor)
            self._refresh()

    def delete(self) -> int:
        """Delete the selection; returns how many gaussians."""
        if self.editor is None:
            return 0
        n = self.editor.delete_selected()
        self._refresh()
        return n

    def undo(self) -> None:
        """Undo the latest edit step."""
        self._do(lambda e: e.undo())

    def redo(self) -> None:
        """Redo the latest undone step."""
        self._do(lambda e: e.redo())

    def _refresh(self) -> None:
        ed = self.editor
        if ed is None:
            return
        alive = None if ed.alive.all() else ed.alive
        self.page.gl.set_edit_state(alive, ed.selected if ed.selected.any() else None)
        self._update_enabled()
        self.edited.emit()

    def _update_enabled(self) -> None:
        ed = self.editor
        for b in (self.all_button, self.none_button, self.invert_button, self.box_button,
                  self.opacity_button, self.size_button, self.video_button):
            b.setEnabled(ed is not None)
        self.delete_button.setEnabled(ed is not None and ed.n_selected > 0)
        self.crop_button.setEnabled(ed is not None and ed.n_selected > 0)
        self.undo_button.setEnabled(ed is not None and ed.can_undo)
        self.redo_button.setEnabled(ed is not None and ed.can_redo)
        self.save_button.setEnabled(ed is not None and ed.n_alive < ed.splats.n)
        if ed is None:
            self.edit_status.setText("")
            return
        removed = ed.splats.n - ed.n_alive
        self.edit_status.setText(
            f"{ed.n_selected:,} selected · {removed:,} deleted · {ed.n_alive:,} left · "
            f"undo history {ed.history_bytes / 1e6:.1f} MB")

    # -- measuring -------------------------------------------------------------------
    def pick(self, x: float, y: float) -> np.ndarray | None:
        """The surface point ``[3]`` (world) under view pixel (`x`, `y`), or None."""
        if self.editor is None:
            return None
        cam = self.page.gl.view_camera()
        o, d = cam.pixel_ray(x, y)
        t = pick_ray(self._s(), o, d, alive=self.editor.alive, near=self.page.gl.camera.near,
                     pixel_size=1.0 / float(cam.K[1, 1]))
        return None if t is None else o + t * d

    @property
    def metric(self) -> bool:
        """Whether coordinates are ENU metres (a georeferenced project)."""
        return bool(self.georef is not None and self.georef.georeferenced)

    def add_measure_point(self, x: float, y: float) -> np.ndarray | None:
        """Pick the surface under (`x`, `y`) and add it (a third point starts a new pair);
        the label shows the point's coordinates and, with two, the distance."""
        pt = self.pick(x, y)
        if pt is None:
            self.measure_label.setText("No surface under the cursor (nothing opaque enough "
                                       "along the ray).")
            return None
        if len(self.measure_points) >= 2:
            self.measure_points = []
        self.measure_points.append(pt)
        self.show_measure()
        self.overlay.update()
        return pt

    def clear_measure(self) -> None:
        """Forget the picked points."""
        self.measure_points = []
        self.last_measure = None
        self.measure_label.setText("Measure tool: click two points on the splat.")
        self.overlay.update()

    def show_measure(self) -> None:
        """Write the picked points and their distance into the label."""
        unit = "m" if self.metric else "units"
        lines = []
        for name, pt in zip("AB", self.measure_points, strict=False):
            if self.metric:
                lat, lon, h = enu_to_geodetic(np.asarray(pt, np.float64), self.georef.origin)
                lines.append(f"{name}: ENU ({pt[0]:.2f}, {pt[1]:.2f}, {pt[2]:.2f}) m\n"
                             f"    WGS84 {lat:.7f}°, {lon:.7f}°, h {h:.2f} m")
            else:
                lines.append(f"{name}: ({pt[0]:.3f}, {pt[1]:.3f}, {pt[2]:.3f}) {unit}")
        if len(self.measure_points) == 2:
            m = measure(*self.measure_points, up=self.page.gl.camera.up, metric=self.metric)
            self.last_measure = m
            lines.append(f"distance {m.distance:.3f} {unit} · horizontal {m.horizontal:.3f} "
                         f"{unit} · height {m.height:+.3f} {unit}")
        if not self.metric:
            lines.append("Not georeferenced: scene units, not metres.")
        self.measure_label.setText("\n".join(lines))

    # -- saving ----------------------------------------------------------------------
    def save_version(self, path: Path | None = None) -> Path | None:
        """Save the edited scene: a new project version (``edits/vNNN.ply``), or for a loose
        file the PLY `path` (asked for when None). Returns the file written or None."""
        from ...pipeline.versions import TRAINED
        from ...pipeline.versions import save_version as save

        ed = self.editor
        if ed is None:
            return None
        if self.project_root is not None and path is None:
            src = self.source_file
            rel = (src.resolve().relative_to(self.project_root.resolve()).as_posix()
                   if src is not None else TRAINED)
            entry = save(self.project_root, ed.result(), source=rel,
                         removed=ed.splats.n - ed.n_alive, steps=ed.undo_labels)
            out = self.project_root / entry["file"]
            self.edit_status.setText(f"saved {entry['file']} ({entry['gaussians']:,} gaussians);"
                                     " export it from File → Export (Splat: Edited "
                                     f"{entry['name']})")
        else:
            if path is None:
                name, _ = QFileDialog.getSaveFileName(self, "Save edited splat", "",
                                                      "PLY (*.ply)")
                if not name:
                    return None
                path = Path(name)
            from ...splats.io import save_splats

            save_splats(ed.result(), path)
            out = Path(path)
            self.edit_status.setText(f"saved {out.name}")
        self.versionSaved.emit(str(out))
        return out

    # -- video -----------------------------------------------------------------------
    def open_video_dialog(self):
        """The fly-through video dialog for the scene shown (returns it)."""
        from .video_dialog import VideoDialog

        dlg = VideoDialog(self, self)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.show()
        return dlg

