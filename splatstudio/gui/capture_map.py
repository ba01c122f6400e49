"""The capture map: where each panorama was taken (local ENU metres), coloured by its state.

Reads ``ingest/manifest.json`` (positions), ``reproject/views/<id>/`` (views done) and, when the
georef stage has run, ``georef/georef.json`` (registration and GPS residuals; optional).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from ..errors import SplatStudioError
from ..pipeline.artifacts import GEOREF_REPORT, VIEWS, read_manifest
from ..status import StageState
from .model import ProjectModel
from .project_browser import load_thumbnail

if TYPE_CHECKING:
    from .mask_editor import PlatformMaskEditor

#: Marker colour per capture state.
STATE_COLOURS = {
    "ingested": "#8b93a3",
    "reprojected": "#3d8bff",
    "registered": "#3fb950",
    "off its GPS fix": "#f0883e",
    "not registered": "#f85149",
}
VIEW_THUMB = QSize(112, 112)


@dataclass
class Capture:
    """One image of the manifest with a position.

    Attributes:
        id: the manifest id; file: path of the image (absolute); enu: ``[3]`` east, north, up
        in metres about the project origin; state: a key of :data:`STATE_COLOURS`;
        views: paths of its reprojected views; residual_m: GPS residual after georef;
        sfm_enu: ``[3]`` its SfM position in ENU metres after georef (None before).
    """

    id: str
    file: Path
    enu: np.ndarray
    state: str
    views: list[Path] = field(default_factory=list)
    residual_m: float | None = None
    kind: str = "equirect"
    sfm_enu: np.ndarray | None = None


def _georef_entries(path: Path) -> dict[str, dict[str, Any]]:
    """Per-frame entries of georef.json (``frames: {id: {registered, residual_m, sfm_enu_m}}``),
    tolerant of other layouts (the file is optional)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    for key in ("frames", "panos", "images", "residuals"):
        v = data.get(key) if isinstance(data, dict) else None
        if isinstance(v, dict) and v and all(isinstance(x, (dict, int, float)) for x in v.values()):
            if not any(isinstance(x, dict) for x in v.values()) and key != "residuals":
                continue  # a summary ({"registered": 90}), not per-image entries
            return {str(k): (x if isinstance(x, dict) else {"residual_m": x}) for k, x in v.items()}
        if isinstance(v, list):
            return {str(x.get("id")): x for x in v if isinstance(x, dict) and "id" in x}
    return {}


def load_captures(project_root: Path) -> tuple[list[Capture], int]:
    """Captures with a position, and the number of images without GPS.

    Returns ``([], 0)`` when ingest has not run yet.
    """
    try:
        manifest = read_manifest(project_root)
    except (OSError, SplatStudioError):  # no manifest yet, or a torn one
        return [], 0
    input_dir = manifest.input_dir
    georef = _georef_entries(GEOREF_REPORT.path(project_root))
    out: list[Capture] = []
    missing = 0
    for e in manifest.images:
        if e.get("enu_m") is None:
            missing += 1
            continue
        views_dir = VIEWS.path(project_root) / e["id"]
        views = sorted(views_dir.glob("*.jpg")) if views_dir.is_dir() else []
        state = "reprojected" if views else "ingested"
        residual = sfm = None
        g = georef.get(e["id"])
        if georef:
            registered = bool(g and g.get("registered", True))
            state = "registered" if registered else "not registered"
            if registered and (g or {}).get("agrees") is False:  # the GPS check's tolerance
                state = "off its GPS fix"
            r = (g or {}).get("residual_m", (g or {}).get("residual"))
            residual = float(r) if isinstance(r, (int, float)) else None
            p = (g or {}).get("sfm_enu_m")
            sfm = np.asarray(p, float) if isinstance(p, list) and len(p) == 3 else None
        out.append(
            Capture(
                e["id"], input_dir / e["file"], np.asarray(e["enu_m"], float), state, views,
                residual, e.get("kind", "equirect"), sfm,
            )
        )
    return out, missing


def gps_check_summary(project_root: Path) -> str | None:
    """One line on the georef stage's GPS check (``georef/georef.json``), or None before it."""
    try:
        data = json.loads(GEOREF_REPORT.path(project_root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    check = data.get("check") or {}
    verdict, reason = check.get("verdict"), check.get("reason")
    if not verdict:
        return None
    words = {"pass": "agrees with the GPS", "noisy-gps": "agrees; the GPS is noisy",
             "reject": "REJECTED: contradicts the GPS", "no-check": "not checked"}
    return f"GPS check: {words.get(verdict, verdict)} ({reason})"


class CaptureMap(QWidget):
    """Plan view of the capture positions; clicking one shows its image and its views.

    Subscribes to :class:`ProjectModel`: it reloads when a project opens or when ingest,
    reproject or georef change state.
    """

    def __init__(self, model: ProjectModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.model = model
        self.captures: list[Capture] = []
        self.selected: str | None = None
        self._check_line: str | None = None  # the georef stage's GPS check, in words

        pg.setConfigOptions(antialias=True)
        self.plot = pg.PlotWidget(background="#141820")
        self.plot.setAspectLocked(True)
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        self.plot.setLabel("bottom", "east", units="m")
        self.plot.setLabel("left", "north", units="m")
        self.plot.getPlotItem().setMenuEnabled(False)
        self.path_item = pg.PlotDataItem(pen=pg.mkPen("#4a5264", width=1.5))
        self.scatter = pg.ScatterPlotItem(size=16, hoverable=True, tip=None)
        self.highlight = pg.ScatterPlotItem(
            size=26, pen=pg.mkPen("#ffffff", width=2), brush=pg.mkBrush(0, 0, 0, 0)
        )
        self.residual_item = pg.PlotDataItem(pen=pg.mkPen("#f0883e", width=2), connect="pairs")
        self.sfm_item = pg.ScatterPlotItem(size=9, symbol="x", pen=pg.mkPen("#f0883e", width=2))
        self.plot.addItem(self.path_item)
        self.plot.addItem(self.residual_item)
        self.plot.addItem(self.sfm_item)
        self.plot.addItem(self.scatter)
        self.plot.addItem(self.highlight)
        self._labels: list[pg.TextItem] = []
        self.legend = self.plot.addLegend(offset=(10, 10))
        self.scatter.sigClicked.connect(self._on_click)

        self.info = QLabel("Run ingest to see where the panoramas were taken.")
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.thumb = QLabel()
        self.thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thumb.setMinimumHeight(170)
        self.views = QListWidget()
        self.views.setViewMode(QListView.ViewMode.IconMode)
        self.views.setIconSize(VIEW_THUMB)
        self.views.setResizeMode(QListView.ResizeMode.Adjust)
        self.views.setMovement(QListView.Movement.Static)
        self.views.setSpacing(4)
        self.mask_button = QPushButton("Platform mask…")
        self.mask_button.setToolTip("see, paint or erase what SfM and training ignore in every "
                                    "panorama (vehicle, cabin, mount)")
        self.mask_button.clicked.connect(self.edit_platform_mask)
        self.mask_button.setEnabled(False)
        side = QWidget()
        side_l = QVBoxLayout(side)
        side_l.addWidget(self.info)
        side_l.addWidget(self.thumb)
        side_l.addWidget(self.mask_button, 0, Qt.AlignmentFlag.AlignLeft)
        views_title = QLabel("Reprojected views")
        views_title.setObjectName("muted")
        side_l.addWidget(views_title)
        side_l.addWidget(self.views, 1)

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.plot)
        split.addWidget(side)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(split)

        model.projectChanged.connect(self.reload)
        model.stageChanged.connect(self._on_stage)
        self.reload()

    def _on_stage(self, stage: str) -> None:
        if stage in ("ingest", "reproject", "georef"):
            st = self.model.stages[stage].state
            if st not in (StageState.RUNNING, StageState.CANCELLED):
                self.reload()

    def point_count(self) -> int:
        """Number of capture markers on the map."""
        return len(self.scatter.data)

    def reload(self) -> None:
        """Re-read the project's manifest (and views, georef) and redraw."""
        project = self.model.project
        if project is None:
            self.captures, missing = [], 0
        else:
            self.captures, missing = load_captures(project.root)
        for t in self._labels:
            self.plot.removeItem(t)
        self._labels = []
        self.legend.clear()
        if not self.captures:
            self.scatter.setData([])
            self.sfm_item.setData([])
            self.residual_item.setData([], [])
            self.path_item.setData([], [])
            self.highlight.setData([])
            self.views.clear()
            self.thumb.clear()
            self.info.setText(
                "Run ingest to see where the panoramas were taken."
                if project is not None and missing == 0
                else ("No image has a GPS position." if project is not None else "No project open.")
            )
            return
        xy = np.array([c.enu[:2] for c in self.captures])
        spots = [
            {
                "pos": (float(x), float(y)),
                "data": c.id,
                "brush": pg.mkBrush(STATE_COLOURS[c.state]),
                "pen": pg.mkPen("#0d1117", width=1),
                "symbol": "o" if c.kind == "equirect" else "s",
            }
            for c, (x, y) in zip(self.captures, xy, strict=True)
        ]
        self.scatter.setData(spots)
        self.path_item.setData(xy[:, 0], xy[:, 1])
        with_sfm = [c for c in self.captures if c.sfm_enu is not None]
        self.sfm_item.setData([float(c.sfm_enu[0]) for c in with_sfm],
                              [float(c.sfm_enu[1]) for c in with_sfm])
        pairs = np.array([[c.enu[:2], c.sfm_enu[:2]] for c in with_sfm]).reshape(-1, 2)
        self.residual_item.setData(pairs[:, 0] if len(pairs) else [],
                                   pairs[:, 1] if len(pairs) else [])
        for c, (x, y) in zip(self.captures, xy, strict=True):
            t = pg.TextItem(c.id, color="#dfe3ea", anchor=(-0.3, 1.1))
            t.setPos(float(x), float(y))
            self.plot.addItem(t)
            self._labels.append(t)
        for state in sorted({c.state for c in self.captures}, key=list(STATE_COLOURS).index):
            item = pg.ScatterPlotItem(size=10, brush=pg.mkBrush(STATE_COLOURS[state]))
            self.legend.addItem(item, state)
        if with_sfm:
            self.legend.addItem(self.sfm_item, "SfM position (georef)")
        self.plot.autoRange(padding=0.15)
        text = f"{len(self.captures)} captures with GPS"
        if missing:
            text += f", {missing} without"
        text += ". Click one to see it and its views."
        self._check_line = gps_check_summary(project.root) if project is not None else None
        if self._check_line:
            text += f"<br>{self._check_line}"
        self.info.setText(text)
        keep = self.selected if any(c.id == self.selected for c in self.captures) else None
        self.select(keep or self.captures[0].id)

    def edit_platform_mask(self) -> PlatformMaskEditor | None:
        """Open the platform mask editor on the selected panorama (returns the dialog)."""
        from .mask_editor import PlatformMaskEditor

        cap = next((c for c in self.captures if c.id == self.selected), None)
        project = self.model.project
        if cap is None or project is None or cap.kind != "equirect":
            return None
        dlg = PlatformMaskEditor(project, cap.file, self)
        dlg.saved.connect(lambda _path: self.model.reload())  # reproject is stale now
        dlg.open()
        return dlg

    def _on_click(self, item: Any, points: Any, *args: Any) -> None:
        if len(points):
            self.select(str(points[0].data()))

    def select(self, capture_id: str) -> None:
        """Show capture `capture_id`: its image, state, position and reprojected views."""
        cap = next((c for c in self.captures if c.id == capture_id), None)
        if cap is None:
            return
        self.selected = capture_id
        self.mask_button.setEnabled(cap.kind == "equirect")
        self.highlight.setData([{"pos": (float(cap.enu[0]), float(cap.enu[1]))}])
        e, n, u = cap.enu
        text = (
            f"<b>{cap.id}</b> &nbsp; {cap.file.name}<br>"
            f"state: {cap.state}<br>east {e:.2f} m, north {n:.2f} m, up {u:.2f} m"
        )
        if cap.residual_m is not None:
            text += f"<br>GPS residual after georef: {cap.residual_m:.3f} m"
        if self._check_line:
            text += f"<br>{self._check_line}"
        self.info.setText(text)
        self.thumb.setPixmap(load_thumbnail(cap.file, QSize(340, 170)))
        self.views.clear()
        for v in cap.views:
            pm = QPixmap(str(v))
            if not pm.isNull():
                pm = pm.scaled(
                    VIEW_THUMB,
                    Qt.AspectRatioMode.KeepAspectRatio,
                    Qt.TransformationMode.SmoothTransformation,
                )
            it = QListWidgetItem(QIcon(pm), v.stem)
            it.setToolTip(str(v))
            self.views.addItem(it)
