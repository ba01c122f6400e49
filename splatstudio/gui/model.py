"""The open project as a Qt model: stage states, progress, logs, metrics, and the run thread.

Views never talk to the runner: they read :class:`ProjectModel` and subscribe to its signals.
The model drives :class:`~splatstudio.pipeline.runner.PipelineRunner` from a
:class:`PipelineThread` (the runner's ``run()`` blocks and calls ``on_event`` in that thread);
events cross to the GUI thread through a queued Qt signal, so the window stays responsive while
the stages run in their worker processes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal

from ..config import STAGES
from ..events import Event, ItemProgress, ItemState
from ..pipeline.artifacts import TRAIN_CURVE, TRAIN_PREVIEW, read_curve, read_evals
from ..pipeline.train import PAUSED_PREFIX
from ..project import Project
from ..status import StageState

MAX_LOG_LINES = 5000
MAX_HISTORY_POINTS = 200_000
"""Most (step, value) points kept per metric (the oldest half is thinned out beyond it)."""


@dataclass
class ItemInfo:
    """What the GUI knows about one work item of a stage (a farm item).

    Attributes:
        item: its id (``sift-003``); state: an :class:`~splatstudio.events.ItemState`.
        fraction: its progress in [0, 1]; message: its last progress message.
        peer: the worker that runs or ran it (``HOST/SLOT``; "" while queued).
    """

    item: str
    state: ItemState = ItemState.QUEUED
    fraction: float = 0.0
    message: str = ""
    peer: str = ""


@dataclass
class StageInfo:
    """What the GUI knows about one stage.

    Attributes:
        state: the :class:`StageState` shown (skipped: up to date in this session's run).
        fraction: progress in [0, 1]; message: the stage's last progress message.
        started: ``time.monotonic()`` when it started running in this session, else None.
        seconds: wall time of the last finished run (seconds), from status.json or measured.
        metrics: last value of each metric; error: the message a failed stage gave.
        stale: done before, but its config or inputs changed since (it will run again).
        log: (level, message) lines of this session and of the last run's warnings.
        history: per metric name, the (step, value) points of metrics reported with a step
            (this session's run, or the evaluations stored in ``train/metrics.json``).
        preview: (path, step) of the stage's latest preview image, or None.
        paused: the stage reports that it is paused; paused_s: seconds paused in this run
            (finished pauses), paused_since: ``time.monotonic()`` of the current pause.
        items: the work items of the stage's current farm dispatch, in the order they were
            first reported (cleared when the stage starts, and replaced when it dispatches a
            new batch: SIFT then matching, the next round of block training);
            items_run: the dispatch they belong to.
    """

    state: StageState = StageState.PENDING
    fraction: float = 0.0
    message: str = ""
    started: float | None = None
    seconds: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    stale: bool = False
    log: list[tuple[str, str]] = field(default_factory=list)
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    preview: tuple[str, int | None] | None = None
    paused: bool = False
    paused_s: float = 0.0
    paused_since: float | None = None
    items: dict[str, ItemInfo] = field(default_factory=dict)
    items_run: str = ""

    def apply_item(self, event: ItemProgress) -> ItemInfo:
        """Record `event` in :attr:`items` (a new dispatch replaces the items of the last);
        returns the item's info."""
        if event.run != self.items_run:
            self.items = {}
            self.items_run = event.run
        info = self.items.get(event.item)
        if info is None:
            info = self.items[event.item] = ItemInfo(event.item)
        info.state, info.fraction, info.message = event.state, event.fraction, event.message
        if event.peer:
            info.peer = event.peer
        return info

    def items_summary(self) -> str:
        """``"farm: 3/8 items done · 2 running on 2 peers · 1 retried"``; "" without items."""
        if not self.items:
            return ""
        states = [i.state for i in self.items.values()]
        done = states.count(ItemState.DONE)
        parts = [f"farm: {done}/{len(states)} items done"]
        active = [i for i in self.items.values() if i.state.is_active]
        if active:
            peers = len({i.peer for i in active})
            parts.append(f"{len(active)} running on {peers} peer{'s' if peers != 1 else ''}")
        for state in (ItemState.RETRIED, ItemState.FAILED, ItemState.CANCELLED):
            n = states.count(state)
            if n:
                parts.append(f"{n} {state}")
        return "  ·  ".join(parts)

    def paused_seconds(self) -> float:
        """Seconds this run has been paused so far (the current pause included)."""
        now = time.monotonic()
        current = now - self.paused_since if self.paused and self.paused_since else 0.0
        return self.paused_s + current

    def elapsed(self) -> float | None:
        """Seconds since the stage started (running), or its last run's duration."""
        if self.state == StageState.RUNNING and self.started is not None:
            return time.monotonic() - self.started
        return self.seconds

    def eta(self) -> float | None:
        """Estimated seconds left while running (linear in the progress fraction; paused
        time does not count, so the estimate stands still during a pause)."""
        if self.state != StageState.RUNNING or self.started is None or self.fraction < 0.02:
            return None
        el = time.monotonic() - self.started - self.paused_seconds()
        return max(0.0, el * (1.0 - self.fraction) / self.fraction)

    def add_point(self, name: str, step: int, value: float) -> None:
        """Append (step, value) to metric `name`'s history (a repeated step replaces it)."""
        pts = self.history.setdefault(name, [])
        if pts and pts[-1][0] == step:
            pts[-1] = (step, value)
            return
        if pts and step < pts[-1][0]:  # a resumed run went back: drop what it redoes
            while pts and pts[-1][0] >= step:
                pts.pop()
        pts.append((step, value))
        if len(pts) > MAX_HISTORY_POINTS:
            half = len(pts) // 2
            pts[:half] = pts[:half:2]


class PipelineThread(QThread):
    """Runs :class:`PipelineRunner` off the GUI thread.

    Args:
        project: the project to run.
        stages: stages to run in order (None: all); force: run even stages already done.
        device: "auto", "cpu" or "cuda"; grace_s: cancel grace period in seconds.
        functions: per stage, a "module:function" replacing the built-in one (tests, plugins).

    Signals:
        event(object): every :class:`~splatstudio.events.Event`, emitted from this thread
            (connect with the default AutoConnection: the slot runs in the receiver's thread).
        result(object): the :class:`~splatstudio.pipeline.runner.PipelineResult`.
        crashed(str): the runner itself raised (e.g. the project is locked by another process).
    """

    event = Signal(object)
    result = Signal(object)
    crashed = Signal(str)

    def __init__(
        self,
        project: Project,
        stages: list[str] | None = None,
        *,
        force: bool = False,
        device: str | None = None,
        grace_s: float = 10.0,
        functions: dict[str, str] | None = None,
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        from ..pipeline.runner import PipelineRunner

        self.stages = stages
        self.force = force
        self.runner = PipelineRunner(
            project, self.event.emit, grace_s=grace_s, device=device, functions=functions
        )

    def run(self) -> None:  # noqa: D102 - QThread entry point
        try:
            res = self.runner.run(self.stages, force=self.force)
        except Exception as e:  # noqa: BLE001 - shown to the user, never crashes the app
            self.crashed.emit(f"{type(e).__name__}: {e}" if not str(e) else str(e))
            return
        self.result.emit(res)

    def cancel(self) -> None:
        """Cancel the running stage (cooperative, then kill after the grace period)."""
        self.runner.cancel()


class ProjectModel(QObject):
    """The open project and the live state of its stages.

    Signals:
        projectChanged: a project was opened or closed (``project`` may be None).
        stageChanged(str): a stage's state, progress, metrics or error changed.
        logAdded(str, str, str): stage, level, message of a new log line.
        metricAdded(str, str, int, float): stage, name, step, value of a metric reported
            with a training step (also kept in ``StageInfo.history``).
        previewChanged(str, str, int): stage, path of the new preview image, step (-1: none).
        itemChanged(str, str): stage, item id: a work item's state or progress changed (its
            :class:`ItemInfo` is in ``stages[stage].items``); item "" means the stage's items
            were cleared or replaced.
        runningChanged(bool): a run started or ended.
        runFinished(object): the PipelineResult of a run (None when the runner crashed).
        runError(str): the runner could not run at all (message for the user).
    """

    projectChanged = Signal()
    stageChanged = Signal(str)
    logAdded = Signal(str, str, str)
    metricAdded = Signal(str, str, int, float)
    previewChanged = Signal(str, str, int)
    itemChanged = Signal(str, str)
    runningChanged = Signal(bool)
    runFinished = Signal(object)
    runError = Signal(str)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.project: Project | None = None
        self.stages: dict[str, StageInfo] = {s: StageInfo() for s in STAGES}
        self._thread: PipelineThread | None = None
        self.functions: dict[str, str] | None = None  # stage function overrides (tests)

    # -- opening ------------------------------------------------------------------------
    def open(self, project: Project) -> None:
        """Show `project` (its states from ``Project.summary()``)."""
        if self.is_running:
            raise RuntimeError("cannot switch projects while stages are running")
        self.project = project
        self.stages = {s: StageInfo() for s in STAGES}
        self.reload()
        self.load_train_history()
        self.projectChanged.emit()

    def close(self) -> None:
        """Forget the open project."""
        if self.is_running:
            raise RuntimeError("cannot close the project while stages are running")
        self.project = None
        self.stages = {s: StageInfo() for s in STAGES}
        self.projectChanged.emit()

    def reload(self) -> None:
        """Re-read every stage's stored status (keeps this session's log lines)."""
        if self.project is None:
            return
        summary = self.project.summary()["stages"]
        for s in STAGES:
            st = summary[s]
            info = self.stages[s]
            info.state = st["state"]
            info.stale = bool(st["stale"])
            info.seconds = st["seconds"]
            info.metrics = dict(st["metrics"])
            info.error = st["error"] if st["state"].is_problem else None
            info.fraction = 1.0 if st["state"] == StageState.DONE else 0.0
            info.message = ""
            info.started = None
            if not info.log:
                for w in st.get("warnings") or []:
                    info.log.append(("warning", w))
            self.stageChanged.emit(s)

    def load_train_history(self) -> None:
        """Seed the train stage's history from ``train/curve.jsonl`` (loss, gaussians,
        steps_per_s, memory_mb every ``metrics_every`` steps), ``train/metrics.json`` (held-out
        psnr and ssim at each evaluation; gaussians too when there is no curve) and its preview
        from ``train/preview.png``, when this session has not seen the stage run. Unreadable
        files and lines are ignored."""
        info = self.stages["train"]
        if self.project is None or info.history:
            return
        root = self.project.root
        for point in read_curve(TRAIN_CURVE.path(root)):
            for name, value in point.items():
                if name != "step" and isinstance(value, (int, float)):
                    info.add_point(name, int(point["step"]), float(value))
        try:
            for e in read_evals(root):
                for name in ("psnr", "ssim", "gaussians"):
                    if name == "gaussians" and "gaussians" in info.history:
                        continue  # the curve has them, every metrics_every steps
                    if e.get(name) is not None:
                        info.add_point(name, int(e["step"]), float(e[name]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
        png = TRAIN_PREVIEW.path(root)
        if info.preview is None and png.is_file():
            last = max((p[0] for pts in info.history.values() for p in pts), default=None)
            info.preview = (str(png), last)

    # -- running ------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        """True while a PipelineThread is running."""
        return self._thread is not None

    def run(
        self,
        stages: list[str] | None = None,
        *,
        force: bool = False,
        device: str | None = None,
        grace_s: float = 10.0,
    ) -> None:
        """Start running `stages` (None: every stage not done, in order) in a thread."""
        if self.project is None or self.is_running:
            return
        for s in stages or STAGES:
            info = self.stages[s]
            if info.state != StageState.DONE or force:
                info.error = None
                info.fraction = 0.0 if force or info.state != StageState.DONE else info.fraction
        thread = PipelineThread(
            self.project,
            stages,
            force=force,
            device=device,
            grace_s=grace_s,
            functions=self.functions,
            parent=self,
        )
        thread.event.connect(self.handle_event)
        thread.result.connect(self._on_result)
        thread.crashed.connect(self._on_crash)
        thread.finished.connect(self._on_thread_finished)
        self._thread = thread
        self.runningChanged.emit(True)
        thread.start()

    def run_from(self, stage: str, **kw: Any) -> None:
        """Re-run `stage` and every stage after it (forced, even if done)."""
        self.run(list(STAGES[STAGES.index(stage) :]), force=True, **kw)

    def cancel(self) -> None:
        """Ask the running stage to stop (no-op when nothing runs)."""
        if self._thread is not None:
            self._thread.cancel()
            self.logAdded.emit("", "warning", "cancelling...")

    def wait(self, ms: int = 60000) -> bool:
        """Block until the run thread ends (for shutdown); True if it ended."""
        return self._thread is None or self._thread.wait(ms)

    # -- events -------------------------------------------------------------------------
    def handle_event(self, event: Event) -> None:
        """Apply one runner event to the stage states (runs in the GUI thread)."""
        stage = event.stage
        if stage not in self.stages:
            return
        info = self.stages[stage]
        kind = event.kind
        if kind == "progress":
            info.fraction = float(event.fraction)
            info.message = event.message
            self._on_pause(info, event.message.startswith(PAUSED_PREFIX))
        elif kind == "log":
            self._log(stage, event.level, event.message)
            return
        elif kind == "metric":
            info.metrics[event.name] = float(event.value)
            if event.step is not None:
                info.add_point(event.name, int(event.step), float(event.value))
                self.metricAdded.emit(stage, event.name, int(event.step), float(event.value))
        elif kind == "stagechanged":
            self._on_state(stage, info, event.state, event.error)
        elif kind == "preview":
            info.preview = (event.path, event.step)
            self.previewChanged.emit(stage, event.path, -1 if event.step is None else event.step)
            return
        elif kind == "artifact":
            return
        elif kind == "itemprogress":
            new_run = event.run != info.items_run
            info.apply_item(event)
            self.itemChanged.emit(stage, "" if new_run else event.item)
            return
        self.stageChanged.emit(stage)

    @staticmethod
    def _on_pause(info: StageInfo, paused: bool) -> None:
        if paused and not info.paused:
            info.paused, info.paused_since = True, time.monotonic()
        elif not paused and info.paused:
            info.paused_s = info.paused_seconds()
            info.paused, info.paused_since = False, None

    def _on_state(self, stage: str, info: StageInfo, state: StageState,
                  error: str | None) -> None:
        info.state = state
        self._on_pause(info, False)
        if state == StageState.RUNNING:
            info.started = time.monotonic()
            info.fraction, info.message, info.error = 0.0, "", None
            info.metrics = {}
            # history stays: a resumed run continues the curves, a fresh one rolls them back
            # to its first step (StageInfo.add_point)
            info.paused_s = 0.0
            info.stale = False
            if info.items:
                info.items, info.items_run = {}, ""
                self.itemChanged.emit(stage, "")
            self._log(stage, "info", f"{stage} started")
        elif state.is_ok:
            if info.started is not None:
                info.seconds = time.monotonic() - info.started
            info.fraction = 1.0
            info.error = None
            what = "up to date, skipped" if state == StageState.SKIPPED else str(StageState.DONE)
            self._log(stage, "info", f"{stage} {what}")
        else:  # failed, cancelled
            if info.started is not None:
                info.seconds = time.monotonic() - info.started
            info.error = error
            self._log(stage, "error" if state == StageState.FAILED else "warning",
                      f"{state}: {error}")
        info.started = None if state != StageState.RUNNING else info.started

    def _log(self, stage: str, level: str, message: str) -> None:
        log = self.stages[stage].log
        log.append((level, message))
        if len(log) > MAX_LOG_LINES:
            del log[: len(log) - MAX_LOG_LINES]
        self.logAdded.emit(stage, level, message)

    def _on_result(self, result: Any) -> None:
        # Final metrics and durations come from status.json; states of this run stay.
        runtime = {s: (i.state, i.error, i.message) for s, i in self.stages.items()}
        self.reload()
        for s, state in result.states.items():
            info = self.stages[s]
            if state == StageState.SKIPPED:
                info.state = StageState.SKIPPED
            elif state.is_problem:
                info.state, info.error, info.message = runtime[s]
            self.stageChanged.emit(s)
        self.runFinished.emit(result)

    def _on_crash(self, message: str) -> None:
        self.runError.emit(message)
        self.runFinished.emit(None)

    def _on_thread_finished(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.deleteLater()
        self.runningChanged.emit(False)

    # -- helpers for views --------------------------------------------------------------
    def stage_dir(self, stage: str) -> Path | None:
        """The folder of `stage` in the open project (None without a project)."""
        if self.project is None:
            return None
        from ..project import STAGE_DIRS

        return self.project.root / STAGE_DIRS[stage]
