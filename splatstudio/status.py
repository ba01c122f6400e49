"""The record of a stage's run: its state and the ``<stage>/status.json`` file.

The one place that spells the stage states and the status file's fields (Meshroom's
``Status`` / ``StatusData`` in ``meshroom/core/node.py``). The runner writes
:class:`StageStatus` records, the project reads them back, and the CLI, the GUI and the tests
compare states with :class:`StageState` members, never with bare strings.

``status.json`` (one per stage folder, written atomically by the runner only)::

    {"stage", "state", "started", "finished", "seconds", "pid", "host", "fingerprint",
     "metrics", "artifacts", "warnings", "error"}

Times are ISO 8601 UTC strings, ``seconds`` the wall time of the run, ``pid``/``host`` the worker
of a running stage, ``fingerprint`` the hash of the stage's config and inputs it ran with
(:meth:`splatstudio.project.Project.fingerprints`; set only when ``done``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any


class StageState(enum.StrEnum):
    """The state of a stage.

    Stored in ``status.json``: ``pending`` (never ran, or invalidated), ``running``, ``done``,
    ``failed``, ``cancelled``. Reported by the runner only (never stored): ``skipped`` (done
    before with the same config and inputs, so not run again).
    """

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"

    @property
    def is_final(self) -> bool:
        """The stage ended in this run (done, skipped, failed or cancelled)."""
        return self not in (StageState.PENDING, StageState.RUNNING)

    @property
    def is_ok(self) -> bool:
        """The stage's outputs are there and current (done or skipped)."""
        return self in (StageState.DONE, StageState.SKIPPED)

    @property
    def is_problem(self) -> bool:
        """The stage ended without its outputs (failed or cancelled); its error says why."""
        return self in (StageState.FAILED, StageState.CANCELLED)


STORED_STATES: tuple[StageState, ...] = (
    StageState.PENDING, StageState.RUNNING, StageState.DONE, StageState.FAILED,
    StageState.CANCELLED,
)
"""The states a ``status.json`` holds."""

INTERRUPTED = "interrupted: the process running this stage ended"
"""The error of a stage whose status says running but whose worker is gone."""


@dataclass
class StageStatus:
    """The content of one stage's ``status.json`` (see the module docstring for the fields).

    Raises (from :meth:`from_dict`): nothing; a missing field takes its default and an unknown
    state reads as ``failed`` with an error naming it.
    """

    stage: str
    state: StageState = StageState.PENDING
    started: str | None = None
    finished: str | None = None
    seconds: float | None = None
    pid: int | None = None
    host: str | None = None
    fingerprint: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to ``status.json`` (the state as its string)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["state"] = str(self.state)
        out["metrics"] = dict(self.metrics)
        out["artifacts"] = list(self.artifacts)
        out["warnings"] = list(self.warnings)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], stage: str = "") -> StageStatus:
        """Read a ``status.json`` object; `stage` names the stage when the file does not."""
        state_s = data.get("state", StageState.PENDING)
        error = data.get("error")
        try:
            state = StageState(state_s)
        except ValueError:
            state, error = StageState.FAILED, f"unknown state {state_s!r} in status.json"
        names = {f.name for f in fields(cls)} - {"stage", "state", "error"}
        kw = {k: data[k] for k in names if data.get(k) is not None}
        return cls(stage=str(data.get("stage") or stage), state=state, error=error, **kw)

    # -- the runner's records --------------------------------------------------------------
    @classmethod
    def running(cls, stage: str, *, started: str, pid: int, host: str,
                fingerprint: str) -> StageStatus:
        """The record written when a stage's worker starts."""
        return cls(stage, StageState.RUNNING, started=started, pid=pid, host=host,
                   fingerprint=fingerprint)

    def ended(self, state: StageState, *, finished: str, seconds: float | None,
              error: str | None, metrics: dict[str, float] | None = None,
              artifacts: list[str] | None = None,
              warnings: list[str] | None = None) -> StageStatus:
        """This (running) record once the stage ended: the fingerprint is kept only when
        ``done``, the pid is cleared."""
        return replace(
            self, state=state, finished=finished, seconds=seconds, pid=None,
            fingerprint=self.fingerprint if state == StageState.DONE else None,
            metrics=dict(metrics or {}), artifacts=list(artifacts or []),
            warnings=list(warnings or []), error=error)

    def refused(self, *, finished: str, error: str) -> StageStatus:
        """This stored record marked failed without a run (the runner refused to start it);
        what an earlier run recorded (metrics, artifacts, times) stays."""
        return replace(self, state=StageState.FAILED, pid=None, fingerprint=None,
                       finished=finished, error=error)

    # -- what readers see ------------------------------------------------------------------
    def current_state(self, *, host: str, pid_alive: Callable[[int], bool]) -> StageState:
        """The state, except that ``running`` with no pid, or with a dead pid on this `host`,
        is ``failed`` (its runner died: :data:`INTERRUPTED`)."""
        if self.state == StageState.RUNNING:
            if not self.pid or (self.host == host and not pid_alive(int(self.pid))):
                return StageState.FAILED
        return self.state

    def summary(self, fingerprint: str | None, *, host: str,
                pid_alive: Callable[[int], bool]) -> dict[str, Any]:
        """The stage as ``splatstudio status --json`` shows it.

        Keys: state (a :class:`StageState`: pending, running, done, failed, cancelled), started, finished, seconds,
        metrics, artifacts (relative to the project), error, warnings, stale (done but its
        config or inputs changed since: `fingerprint`, the one computed now, differs from the
        stored one, so it will run again; reported as pending).
        """
        state, error = self.current_state(host=host, pid_alive=pid_alive), self.error
        if state != self.state:
            error = INTERRUPTED
        stale = False
        if fingerprint is not None and state == StageState.DONE \
                and self.fingerprint != fingerprint:
            state, stale = StageState.PENDING, True
        return {
            "state": state,
            "started": self.started,
            "finished": self.finished,
            "seconds": self.seconds,
            "metrics": dict(self.metrics),
            "artifacts": list(self.artifacts),
            "error": error,
            "warnings": list(self.warnings),
            "stale": stale,
        }

    def is_current(self, fingerprint: str) -> bool:
        """Done with exactly this `fingerprint` (its config and inputs unchanged)."""
        return self.state == StageState.DONE and self.fingerprint == fingerprint
