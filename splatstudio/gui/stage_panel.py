"""The stage panel: every pipeline stage with its state, progress, time, metrics and log, and,
while a stage runs on the LAN farm, one row per work item (item, peer, progress, state)."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QMouseEvent, QTextCursor
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..config import STAGES
from ..status import StageState
from .model import ItemInfo, ProjectModel, StageInfo

STATE_TEXT = {s: str(s) for s in StageState} | {StageState.SKIPPED: "done (up to date)"}
"""What a stage row says for each state."""
STALE = "stale"
"""The badge of a pending stage that was done before (its config or inputs changed since)."""

STAGE_TITLES = {
    "ingest": "Ingest",
    "reproject": "Reproject",
    "sfm": "Structure from motion",
    "georef": "Geo-registration",
    "train": "Train",
    "export": "Export",
}


def format_seconds(s: float | None) -> str:
    """``75.2`` -> ``"1:15"``, ``4.21`` -> ``"4.2 s"``; None -> ``""``."""
    if s is None:
        return ""
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m}:{sec:02d}"
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{sec:02d}"


def format_metric(v: float) -> str:
    """Integers without decimals, other values with 3 significant digits."""
    if float(v).is_integer() and abs(v) < 1e12:
        return str(int(v))
    return f"{v:.3g}"


def format_metrics(metrics: dict[str, float]) -> str:
    """``{"images": 5.0, "path_m": 9.58}`` -> ``"images 5 · path_m 9.58"``."""
    return "  ·  ".join(f"{k} {format_metric(v)}" for k, v in metrics.items())


ITEM_ROWS_SHOWN = 8
"""Item rows visible at once under a stage (more scroll)."""


class ItemRow:
    """The widgets of one work item in an :class:`ItemsView`: id, peer, progress bar, state
    badge and last message."""

    def __init__(self, item: str):
        self.item_label = QLabel(item)
        self.item_label.setObjectName("itemId")
        self.peer_label = QLabel()
        self.peer_label.setObjectName("muted")
        self.progress = QProgressBar()
        self.progress.setObjectName("itemProgress")
        self.progress.setRange(0, 1000)
        self.progress.setMinimumWidth(140)
        self.progress.setMaximumWidth(360)
        self.state_label = QLabel()
        self.state_label.setObjectName("badge")
        self.state_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.state_label.setFixedWidth(80)
        self.message_label = QLabel()
        self.message_label.setObjectName("muted")
        self.message_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

    def widgets(self) -> list[QWidget]:
        return [self.item_label, self.peer_label, self.progress, self.state_label,
                self.message_label]

    def update_from(self, info: ItemInfo) -> None:
        """Show `info`."""
        self.peer_label.setText(info.peer or "—")
        self.peer_label.setToolTip(info.peer)
        self.progress.setValue(int(round(info.fraction * 1000)))
        self.progress.setFormat(f"{info.fraction * 100:.0f}%")
        state = str(info.state)
        if self.state_label.text() != state:
            self.state_label.setText(state)
            self.state_label.setProperty("state", state)
            self.state_label.style().unpolish(self.state_label)
            self.state_label.style().polish(self.state_label)
        self.message_label.setText(info.message)
        self.message_label.setToolTip(info.message)


class ItemsView(QScrollArea):
    """The work items of one stage's farm dispatch: a header and one :class:`ItemRow` per item,
    at most :data:`ITEM_ROWS_SHOWN` visible at once."""

    HEADERS = ("Item", "Peer", "Progress", "State", "")

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("itemsView")
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.rows: dict[str, ItemRow] = {}
        self._line = max(QLabel("X").sizeHint().height(), QProgressBar().sizeHint().height())
        self._build()

    def _build(self) -> None:
        inner = QWidget()
        inner.setObjectName("itemsInner")
        self.grid = QGridLayout(inner)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setHorizontalSpacing(10)
        self.grid.setVerticalSpacing(2)
        for col, text in enumerate(self.HEADERS):
            head = QLabel(text)
            head.setObjectName("muted")
            self.grid.addWidget(head, 0, col)
        self.grid.setColumnStretch(2, 1)
        self.grid.setColumnStretch(4, 2)
        self.setWidget(inner)
        self.rows = {}

    def clear(self) -> None:
        """Remove every item row."""
        old = self.takeWidget()
        if old is not None:
            old.deleteLater()
        self._build()
        self._fit()

    def show_item(self, info: ItemInfo) -> None:
        """Add or update the row of `info.item`."""
        row = self.rows.get(info.item)
        if row is None:
            row = self.rows[info.item] = ItemRow(info.item)
            r = len(self.rows)
            for col, w in enumerate(row.widgets()):
                self.grid.addWidget(w, r, col)
            self._fit()
        row.update_from(info)

    def _fit(self) -> None:
        shown = min(len(self.rows), ITEM_ROWS_SHOWN) + 1  # and the header
        self.setFixedHeight(shown * (self._line + self.grid.verticalSpacing()) + 4)


class StageRow(QFrame):
    """One stage: name, state badge, progress bar, elapsed/ETA, metrics and error.

    Signals:
        clicked(str): the user clicked the row (the panel shows this stage's log).
    """

    clicked = Signal(str)

    def __init__(self, stage: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.stage = stage
        self.setObjectName("stageRow")
        self.setProperty("selected", False)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        grid = QGridLayout(self)
        grid.setContentsMargins(10, 6, 10, 6)
        grid.setHorizontalSpacing(10)
        grid.setVerticalSpacing(3)
        self.name_label = QLabel(STAGE_TITLES.get(stage, stage))
        self.name_label.setObjectName("stageName")
        self.name_label.setFixedWidth(190)
        self.state_label = QLabel()
        self.state_label.setObjectName("badge")
        self.state_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.state_label.setFixedWidth(130)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        self.progress.setMinimumWidth(200)
        self.time_label = QLabel()
        self.time_label.setObjectName("muted")
        self.time_label.setFixedWidth(150)
        self.time_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.message_label = QLabel()
        self.message_label.setObjectName("muted")
        # never widens the first columns (that would shift this row's badge and bar)
        self.message_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.metrics_label = QLabel()
        self.metrics_label.setObjectName("muted")
        self.metrics_label.setWordWrap(True)
        self.metrics_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label = QLabel()
        self.error_label.setObjectName("error")
        self.error_label.setWordWrap(True)
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.hide()
        self.items_toggle = QToolButton()
        self.items_toggle.setObjectName("itemsToggle")
        self.items_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.items_toggle.setCheckable(True)
        self.items_toggle.setToolTip("Show or hide the farm's work items of this stage")
        self.items_toggle.clicked.connect(self._on_toggle)
        self.items_toggle.hide()
        self.items_view = ItemsView()
        self.items_view.hide()
        self._items_expanded: bool | None = None  # None: open while running, else the user's
        self._state = StageState.PENDING
        grid.addWidget(self.name_label, 0, 0)
        grid.addWidget(self.state_label, 0, 1)
        grid.addWidget(self.progress, 0, 2)
        grid.addWidget(self.time_label, 0, 3)
        grid.addWidget(self.message_label, 1, 0, 1, 2)
        grid.addWidget(self.metrics_label, 1, 2, 1, 2)
        grid.addWidget(self.error_label, 2, 0, 1, 4)
        grid.addWidget(self.items_toggle, 3, 0, 1, 4)
        grid.addWidget(self.items_view, 4, 0, 1, 4)
        grid.setColumnStretch(2, 1)

    def set_selected(self, selected: bool) -> None:
        """Highlight the row whose log is shown."""
        self.setProperty("selected", selected)
        self.style().unpolish(self)
        self.style().polish(self)

    def update_from(self, info: StageInfo) -> None:
        """Show `info`."""
        if info.state != self._state:
            if info.state == StageState.RUNNING:
                self._items_expanded = None  # a new run: open again while it runs
            self._state = info.state
            self.update_items(info)
        state = STALE if info.stale and info.state == StageState.PENDING else str(info.state)
        text = STATE_TEXT[info.state]
        if state == STALE:
            text = "stale: will re-run"
        if self.state_label.text() != text or self.state_label.property("state") != state:
            self.state_label.setText(text)
            self.state_label.setProperty("state", state)
            self.state_label.style().unpolish(self.state_label)
            self.state_label.style().polish(self.state_label)
        self.progress.setValue(int(round(info.fraction * 1000)))
        self.progress.setFormat(f"{info.fraction * 100:.0f}%")
        self.update_time(info)
        msg = info.message if info.state == StageState.RUNNING else ""
        self.message_label.setText(msg)
        self.message_label.setToolTip(msg)
        self.metrics_label.setText(format_metrics(info.metrics))
        if info.error and info.state.is_problem:
            self.error_label.setText(info.error.strip())
            self.error_label.show()
        else:
            self.error_label.clear()
            self.error_label.hide()

    def update_items(self, info: StageInfo, item: str | None = None) -> None:
        """Show the stage's farm items: all of them again (`item` None or ""), else the row of
        `item`. The list is open while the stage runs and folds away when it ends (the toggle
        opens it again)."""
        self._state = info.state
        if not item:
            self.items_view.clear()
            for it in info.items.values():
                self.items_view.show_item(it)
        elif item in info.items:
            self.items_view.show_item(info.items[item])
        has = bool(info.items)
        expanded = has and (self._items_expanded if self._items_expanded is not None
                            else info.state == StageState.RUNNING)
        self.items_toggle.setVisible(has)
        self.items_toggle.setChecked(expanded)
        self.items_toggle.setArrowType(Qt.ArrowType.DownArrow if expanded
                                       else Qt.ArrowType.RightArrow)
        self.items_toggle.setText(info.items_summary())
        self.items_view.setVisible(expanded)

    def _on_toggle(self, checked: bool) -> None:
        self._items_expanded = checked
        self.items_toggle.setArrowType(Qt.ArrowType.DownArrow if checked
                                       else Qt.ArrowType.RightArrow)
        self.items_view.setVisible(checked)

    def update_time(self, info: StageInfo) -> None:
        """Refresh the elapsed time and ETA (called every second while running)."""
        el = info.elapsed()
        eta = info.eta()
        parts = []
        if el is not None and info.state != StageState.PENDING:
            parts.append(format_seconds(el))
        if eta is not None:
            parts.append(f"ETA {format_seconds(eta)}")
        self.time_label.setText("  ·  ".join(parts))

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        self.clicked.emit(self.stage)
        super().mousePressEvent(event)


class StagePanel(QWidget):
    """Every stage of the open project, the run/cancel/re-run buttons and the log.

    Subscribes to :class:`ProjectModel` signals; asks the model to run through
    :attr:`runRequested` / :attr:`cancelRequested` (the window adds the device and grace
    period from the settings).

    Signals:
        runRequested(object): None to run every stage not done, or a stage name to re-run
            from that stage on.
        cancelRequested: the user pressed Cancel.
        exportRequested: the user pressed Export… (the window opens the Export dialog).
        optionsRequested(str): the user pressed Options… (the window opens the stage options
            on the selected stage).
    """

    runRequested = Signal(object)
    cancelRequested = Signal()
    exportRequested = Signal()
    optionsRequested = Signal(str)

    def __init__(self, model: ProjectModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.model = model
        self.selected: str = STAGES[0]
        self._follow = True  # the log follows the running stage until the user picks one

        self.title = QLabel("No project open")
        self.title.setObjectName("title")
        self.subtitle = QLabel()
        self.subtitle.setObjectName("muted")
        self.subtitle.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.run_button = QPushButton("Run")
        self.run_button.setObjectName("primary")
        self.run_button.setToolTip("Run every stage that is not done yet (Ctrl+R)")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running stage (Esc)")
        self.rerun_combo = QComboBox()
        for s in STAGES:
            self.rerun_combo.addItem(STAGE_TITLES.get(s, s), s)
        self.rerun_button = QPushButton("Re-run from")
        self.rerun_button.setToolTip("Run the chosen stage and every stage after it again")
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Export the trained splat: formats, filters, mesh, "
                                      "destination (Ctrl+E)")
        self.options_button = QPushButton("Options…")
        self.options_button.setToolTip("Every stage's options (saved in project.json; a changed "
                                       "option re-runs its stage and the ones after it)")

        head = QHBoxLayout()
        titles = QVBoxLayout()
        titles.addWidget(self.title)
        titles.addWidget(self.subtitle)
        head.addLayout(titles, 1)
        head.addWidget(self.rerun_button)
        head.addWidget(self.rerun_combo)
        head.addSpacing(12)
        head.addWidget(self.options_button)
        head.addWidget(self.export_button)
        head.addWidget(self.cancel_button)
        head.addWidget(self.run_button)

        rows_widget = QWidget()
        rows_layout = QVBoxLayout(rows_widget)
        rows_layout.setContentsMargins(0, 0, 0, 0)
        rows_layout.setSpacing(6)
        self.rows: dict[str, StageRow] = {}
        for s in STAGES:
            row = StageRow(s)
            row.clicked.connect(self._on_row_clicked)
            rows_layout.addWidget(row)
            self.rows[s] = row
        rows_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(rows_widget)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)

        self.log_title = QLabel()
        self.log_title.setObjectName("muted")
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(5000)
        self.log_view.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        log_box = QWidget()
        log_layout = QVBoxLayout(log_box)
        log_layout.setContentsMargins(0, 0, 0, 0)
        log_layout.addWidget(self.log_title)
        log_layout.addWidget(self.log_view)

        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(scroll)
        split.addWidget(log_box)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)

        lay = QVBoxLayout(self)
        lay.addLayout(head)
        lay.addWidget(split, 1)

        self.run_button.clicked.connect(lambda: self.runRequested.emit(None))
        self.cancel_button.clicked.connect(self.cancelRequested.emit)
        self.export_button.clicked.connect(self.exportRequested.emit)
        self.options_button.clicked.connect(lambda: self.optionsRequested.emit(self.selected))
        self.rerun_button.clicked.connect(
            lambda: self.runRequested.emit(self.rerun_combo.currentData())
        )

        model.projectChanged.connect(self.refresh)
        model.stageChanged.connect(self._on_stage_changed)
        model.logAdded.connect(self._on_log)
        model.itemChanged.connect(self._on_item)
        model.runningChanged.connect(self._on_running)

        self._ticker = QTimer(self)
        self._ticker.setInterval(500)
        self._ticker.timeout.connect(self._tick)
        self.refresh()

    # -- model -> view --------------------------------------------------------------------
    def refresh(self) -> None:
        """Show the whole model again (a project was opened)."""
        p = self.model.project
        if p is None:
            self.title.setText("No project open")
            self.subtitle.setText("Create or open a project in the Projects tab.")
        else:
            self.title.setText(p.root.name)
            self.subtitle.setText(
                f"{p.root}   ·   input {p.input_dir}   ·   preset {p.config.preset}"
                f"   ·   device {p.config.device}"
            )
        for s in STAGES:
            self.rows[s].update_from(self.model.stages[s])
            self.rows[s].update_items(self.model.stages[s])
        self._follow = True
        self._select(self._first_interesting())
        self._on_running(self.model.is_running)

    def _first_interesting(self) -> str:
        for s in STAGES:
            if self.model.stages[s].state in (StageState.RUNNING, StageState.FAILED,
                                              StageState.CANCELLED):
                return s
        return STAGES[0]

    def _on_stage_changed(self, stage: str) -> None:
        info = self.model.stages[stage]
        self.rows[stage].update_from(info)
        if self._follow and (info.state == StageState.RUNNING or info.state.is_problem):
            self._select(stage)

    def _on_item(self, stage: str, item: str) -> None:
        self.rows[stage].update_items(self.model.stages[stage], item)

    def _on_log(self, stage: str, level: str, message: str) -> None:
        if stage in ("", self.selected):
            self._append(level, message)

    def _on_running(self, running: bool) -> None:
        has_project = self.model.project is not None
        self.run_button.setEnabled(has_project and not running)
        self.rerun_button.setEnabled(has_project and not running)
        self.rerun_combo.setEnabled(has_project and not running)
        self.cancel_button.setEnabled(running)
        self.export_button.setEnabled(has_project and not running)
        self.options_button.setEnabled(has_project and not running)
        if running:
            self._follow = True
            self._ticker.start()
        else:
            self._ticker.stop()
            for s in STAGES:
                self.rows[s].update_time(self.model.stages[s])

    def _tick(self) -> None:
        for s in STAGES:
            info = self.model.stages[s]
            if info.state == StageState.RUNNING:
                self.rows[s].update_time(info)

    # -- log ------------------------------------------------------------------------------
    def _on_row_clicked(self, stage: str) -> None:
        self._follow = False
        self._select(stage)

    def _select(self, stage: str) -> None:
        if stage != self.selected or not self.log_view.toPlainText():
            self.selected = stage
            for s, row in self.rows.items():
                row.set_selected(s == stage)
            self.log_title.setText(f"Log: {STAGE_TITLES.get(stage, stage)}")
            self.log_view.clear()
            for level, message in self.model.stages[stage].log:
                self._append(level, message)
        else:
            for s, row in self.rows.items():
                row.set_selected(s == stage)

    def _append(self, level: str, message: str) -> None:
        colours = {"error": "#ff7b72", "warning": "#e3b341", "debug": "#6e7681"}
        text = html.escape(message).replace("\n", "<br>")
        if level in colours:
            text = f"{level}: {text}"
        text = f'<span style="color:{colours.get(level, "#dfe3ea")}">{text}</span>'
        self.log_view.appendHtml(text)
        self.log_view.moveCursor(QTextCursor.MoveOperation.End)
