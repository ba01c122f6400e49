"""Typed messages a stage emits while it runs, and the emitter a stage writes them to.

A stage never prints and never touches a GUI: it calls methods of an :class:`Emitter`
(`progress`, `log`, `metric`, `preview`, `artifact`) and checks `emitter.check_cancelled()` at
loop boundaries. The runner forwards the messages from the worker process to whoever listens
(CLI progress bars, the GUI, the LAN farm). Previews go through a latest-value slot, never a
growing queue (Brush's "latest splats" slot): a slow listener sees the newest preview, not a
backlog.

All messages are small picklable dataclasses with a `kind` tag, `to_dict()` for JSON and
:func:`event_from_dict` (``Event.from_dict``) to read one back (the LAN farm's item processes send
theirs as JSON lines). :class:`ItemProgress` is the one message about a part of a stage: a farm
work item, with the peer that runs it (sent by :class:`splatstudio.farm.dispatch.Dispatcher`).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
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
        """``{"kind": ..., **fields}``: JSON-ready (enum states become their string values)."""
        d = {"kind": self.kind, **asdict(self)}
        return {k: (v.value if isinstance(v, enum.Enum) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        """The event `data` (from :meth:`to_dict`) describes; see :func:`event_from_dict`.

        Called on a subclass, `data` must be of that kind.

        Raises:
            ValueError: unknown or mismatched ``kind``, missing or unknown fields, a bad state.
        """
        event = event_from_dict(data)
        if not isinstance(event, cls):
            raise ValueError(f"event of kind {data.get('kind')!r} is not a {cls.__name__}")
        return event


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


class ItemState(enum.StrEnum):
    """The state of one work item of a stage (a farm item).

    ``queued`` (submitted, no peer runs it yet), ``running``, ``retried`` (its first peer died or
    left: it runs again, elsewhere, from the last checkpoint shipped back), ``done``, ``failed``
    (it raised an error, or killed its peers too often), ``cancelled``.
    """

    QUEUED = "queued"
    RUNNING = "running"
    RETRIED = "retried"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_active(self) -> bool:
        """Running on a peer (the first time or again)."""
        return self in (ItemState.RUNNING, ItemState.RETRIED)

    @property
    def is_final(self) -> bool:
        """Done, failed or cancelled: no more messages come for this item."""
        return self in (ItemState.DONE, ItemState.FAILED, ItemState.CANCELLED)


@dataclass(frozen=True)
class ItemProgress(Event):
    """Progress of one work item of the stage, e.g. a farm item (sent by the coordinator's
    :class:`splatstudio.farm.dispatch.Dispatcher`, at most a few a second per item).

    Attributes:
        item: the item's id, unique in its run (``sift-003``, ``block01-to0000500``).
        state: an :class:`ItemState` (a string is converted; an unknown one raises ValueError).
        fraction: the item's own progress in [0, 1].
        message: its last progress message ("step 120/500").
        peer: the farm worker that runs it (its name, ``HOST/SLOT``; "" while queued).
        run: the id of the dispatch the item belongs to (a stage may dispatch several batches
            one after another: SIFT then matching, block-training rounds).
        total: the number of items in that run.
    """

    item: str
    state: ItemState
    fraction: float = 0.0
    message: str = ""
    peer: str = ""
    run: str = ""
    total: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", ItemState(self.state))
        f = float(self.fraction)
        if not 0.0 <= f <= 1.0:
            raise ValueError(f"item {self.item}: fraction {f} is outside [0, 1]")
        object.__setattr__(self, "fraction", f)


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__.lower(): cls
    for cls in (Progress, Log, Metric, Preview, Artifact, StageChanged, ItemProgress)
}
"""The public event classes by their ``kind`` tag."""


def event_from_dict(data: dict[str, Any]) -> Event:
    """The event a :meth:`Event.to_dict` dictionary describes (``kind`` picks the class;
    ``StageChanged.state`` and ``ItemProgress.state`` are turned back into their enums).

    Raises:
        ValueError: `data` has no known ``kind``, misses a field, has an unknown field, or holds
            a state or fraction its class refuses.
    """
    kind = data.get("kind")
    cls = EVENT_TYPES.get(str(kind))
    if cls is None:
        raise ValueError(f"unknown event kind {kind!r}; known: {', '.join(EVENT_TYPES)}")
    names = {f.name for f in fields(cls)}
    args = {k: v for k, v in data.items() if k != "kind"}
    unknown = sorted(set(args) - names)
    if unknown:
        raise ValueError(f"{kind} event: unknown field(s) {', '.join(unknown)}")
    if cls is StageChanged and "state" in args:
        args["state"] = StageState(args["state"])
    try:
        return cls(**args)
    except TypeError as e:
        raise ValueError(f"{kind} event: {e}") from None


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
        item_interval_s: the same for each item's :class:`ItemProgress` (a new state always
            goes through).
    """

    def __init__(
        self,
        stage: str,
        sink: Callable[[Event], None],
        cancel: CancelToken | None = None,
        preview_sink: Callable[[Event], None] | None = None,
        min_interval_s: float = 0.05,
        item_interval_s: float = 0.25,
    ):
        self.stage = stage
        self._sink = sink
        self._preview_sink = preview_sink or sink
        self._cancel = cancel
        self._min_interval_s = min_interval_s
        self._last_progress = 0.0
        self._item_interval_s = item_interval_s
        self._last_item: dict[str, tuple[float, ItemState]] = {}
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

    def item(self, item: str, state: ItemState | str, fraction: float = 0.0, message: str = "",
             *, peer: str = "", run: str = "", total: int = 0) -> bool:
        """Report work item `item`'s state and progress (see :class:`ItemProgress`).

        Messages of an item in the same state closer together than `item_interval_s` are
        dropped; a change of state always goes through.

        Returns:
            True when the message was sent (the caller may send a dropped update later).

        Raises:
            ValueError: an unknown state.
        """
        state = ItemState(state)
        now = time.monotonic()
        last = self._last_item.get(item)
        if last is not None and last[1] == state and now - last[0] < self._item_interval_s:
            return False
        self._last_item[item] = (now, state)
        fraction = min(1.0, max(0.0, float(fraction)))
        self._sink(ItemProgress(self.stage, item, state, fraction, message, peer, run, total))
        return True

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
