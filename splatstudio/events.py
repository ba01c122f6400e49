"""Typed messages a stage emits while it runs, and the emitter a stage writes them to.

A stage never prints and never touches a GUI: it calls methods of an :class:`Emitter`
(`progress`, `log`, `metric`, `preview`, `artifact`) and checks `emitter.check_cancelled()` at
loop boundaries. The runner forwards the messages from the worker process to whoever listens
(CLI progress bars, the GUI, the LAN farm). Previews go through a latest-value slot, never a
growing queue (Brush's "latest splats" slot): a slow listener sees the newest preview, not a
backlog.

All messages are small picklable dataclasses with a `kind` tag and `to_dict()` for JSON.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from .errors import Cancelled
from .status import StageState


@dataclass(frozen=True)
class Event:
    """Base of all stage messages. `stage` is the stage name, `t` the UNIX time in seconds."""

    stage: str
    t: float = field(default_factory=time.time, kw_only=True)

    @property
    def kind(self) -> str:
        return type(self).__name__.lower()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True)
class Progress(Event):
    """Fraction of the stage done, in [0, 1], with a short human message ("remap 3/5")."""

    fraction: float
    message: str = ""


@dataclass(frozen=True)
class Log(Event):
    """A log line; `level` is one of debug, info, warning, error."""

    level: str
    message: str


@dataclass(frozen=True)
class Metric(Event):
    """A named scalar (e.g. "psnr", "loss", "views"), optionally tied to a training step."""

    name: str
    value: float
    step: int | None = None


@dataclass(frozen=True)
class Preview(Event):
    """A preview image: `path` of a PNG/JPEG written by the stage (overwritten each time)."""

    path: str
    step: int | None = None


@dataclass(frozen=True)
class Artifact(Event):
    """A file or folder the stage produced, relative to the project folder."""

    path: str


@dataclass(frozen=True)
class StageChanged(Event):
    """Emitted by the runner (not the stage) when a stage changes state.

    `state` is a :class:`~splatstudio.status.StageState` (running, done, failed, cancelled,
    skipped); `error` holds the message of a failure.
    """

    state: StageState
    error: str | None = None


class CancelToken(Protocol):
    """Anything with `is_set()`: a `threading.Event` or a `multiprocessing.Event`."""

    def is_set(self) -> bool: ...


class Emitter:
    """What a stage writes its messages to.

    Args:
        stage: the stage name stamped on every message.
        sink: called with each message (in a worker: puts it on the runner's queue).
        cancel: a cancel token; `check_cancelled()` raises :class:`Cancelled` once it is set.
        preview_sink: called with preview messages (a latest-value slot); defaults to `sink`.
        min_interval_s: progress messages closer together than this are dropped (the last one,
            fraction 1.0, always goes through), so tight loops cannot flood the queue.
    """

    def __init__(
        self,
        stage: str,
        sink: Callable[[Event], None],
        cancel: CancelToken | None = None,
        preview_sink: Callable[[Event], None] | None = None,
        min_interval_s: float = 0.05,
    ):
        self.stage = stage
        self._sink = sink
        self._preview_sink = preview_sink or sink
        self._cancel = cancel
        self._min_interval_s = min_interval_s
        self._last_progress = 0.0
        self.metrics: dict[str, float] = {}
        self.artifacts: list[str] = []
        self.warnings: list[str] = []

    def progress(self, fraction: float, message: str = "") -> None:
        """Report `fraction` (clamped to [0, 1]) of the stage done."""
        now = time.monotonic()
        fraction = min(1.0, max(0.0, float(fraction)))
        if fraction < 1.0 and now - self._last_progress < self._min_interval_s:
            return
        self._last_progress = now
        self._sink(Progress(self.stage, fraction, message))

    def log(self, message: str, level: str = "info") -> None:
        """A log line for the user (level: debug, info, warning, error)."""
        self._sink(Log(self.stage, level, message))

    def warning(self, message: str) -> None:
        """A warning; also kept in `self.warnings` for the stage's status file."""
        self.warnings.append(message)
        self.log(message, "warning")

    def metric(self, name: str, value: float, step: int | None = None) -> None:
        """A named scalar; the last value of each name ends up in the stage's status."""
        self.metrics[name] = float(value)
        self._sink(Metric(self.stage, name, float(value), step))

    def preview(self, path: str, step: int | None = None) -> None:
        """A preview image written at `path`, through the latest-value slot."""
        self._preview_sink(Preview(self.stage, str(path), step))

    def artifact(self, path: str) -> None:
        """A produced file or folder, relative to the project folder."""
        self.artifacts.append(str(path))
        self._sink(Artifact(self.stage, str(path)))

    def cancelled(self) -> bool:
        """True once the user asked to cancel."""
        return self._cancel is not None and self._cancel.is_set()

    def check_cancelled(self) -> None:
        """Raise :class:`Cancelled` if the user asked to cancel (call at loop boundaries)."""
        if self.cancelled():
            raise Cancelled(f"stage {self.stage} cancelled")


def null_emitter(stage: str = "test") -> Emitter:
    """An emitter that drops every message (for library use and tests)."""
    return Emitter(stage, lambda event: None)
