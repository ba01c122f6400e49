"""Run stages in worker processes, forward their events, cancel them, survive their death.

A stage runs in its own process (``multiprocessing`` spawn context) that starts its own session,
so the stage and everything it starts (process pools, native libraries) form one process group.
Cancel works in two tiers (Meshroom; DESIGN.md habit 7): first the cooperative token the stage
checks at loop boundaries, then, after a grace period, SIGKILL to the whole process tree, for
native calls (pycolmap mapping, a CUDA kernel) that never look at the token.

The parent (this module) is the only writer of ``<stage>/status.json``: ``running`` with the
worker's pid when it starts, then ``done``, ``failed`` or ``cancelled``. A worker that dies
(SIGKILL, segfault, out of memory) leaves the stage ``failed`` and the rest of the project as
it was; the next run resumes from there. A runner that dies itself leaves ``running`` with a dead
pid, which :meth:`Project.stage_summary` reports as ``failed`` (interrupted), and takes its
worker with it (:mod:`splatstudio.lifeline`: ``PR_SET_PDEATHSIG`` and a parent watchdog).

One writer per project: the runner holds ``PROJECT/.lock`` for the whole run and the worker
holds ``PROJECT/.worker.lock`` for its whole life, so a second run is refused while either
lives, with a message naming the stage, the pid and since when. Before each stage the disk is
checked against the stage's estimated need (:mod:`.preflight`); a full disk, before or during a
stage, ends it with one :class:`~splatstudio.errors.DiskFullError` line.

Nothing here knows about terminals or Qt: listeners get typed :mod:`splatstudio.events`.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import multiprocessing as mp
import os
import queue as queue_mod
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..config import STAGES
from ..errors import (
    Cancelled,
    DiskFullError,
    ProjectError,
    SplatStudioError,
    free_bytes,
    is_disk_full,
)
from ..events import Emitter, Event, Log, StageChanged
from ..lifeline import kill_process_tree, tie_to_parent
from ..project import WORKER_LOCK, Project, now_iso, read_lock_owner, try_lock
from ..status import StageState, StageStatus
from . import STAGE_FUNCTIONS
from .preflight import check_disk

EventCallback = Callable[[Event], None]


@dataclass(frozen=True)
class _Finished(Event):
    """Last message of a worker: how the stage ended and what it produced."""

    state: StageState
    error: str | None = None
    error_type: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def resolve_stage_function(stage: str, target: str | None = None) -> Callable[..., Any]:
    """Import and return the function of `stage` ("module:function" `target`, default the
    pipeline's own ``run_<stage>``)."""
    module, func = (target or STAGE_FUNCTIONS[stage]).split(":")
    return getattr(importlib.import_module(module), func)


DISK_FULL_BYTES = 1_000_000
"""A stage that fails with less than this free on the project's disk failed for lack of space,
whatever its library called the error."""

OPENMP_SPINCOUNT = "1000"
"""``GOMP_SPINCOUNT`` our processes use unless the user set it or ``OMP_WAIT_POLICY``: how long
an idle OpenMP thread of torch's CPU kernels spins before it sleeps (libgomp's default is
300,000). Measured by ``benchmarks/bench_cpu_threads.py`` (2-core machine, 100 test-preset CPU
training steps; results/cpu_threads.json): beside one other busy process libgomp's default took
353 s against 6.3 s on idle cores (two torch threads spinning at barriers for a descheduled
peer); 1,000 took 17.9 s there and 6.8 s idle (+8 %); ``OMP_WAIT_POLICY=PASSIVE`` 11.0 s and
12.0 s (+91 % idle; spin counts of 300 or less behave the same); one thread 11.2 s and 10.1 s."""


def limit_openmp_spinning() -> None:
    """Set ``GOMP_SPINCOUNT`` to :data:`OPENMP_SPINCOUNT` unless the user chose an OpenMP wait
    setting. Must run before torch is imported in this process (libgomp reads it at load);
    afterwards it has no effect."""
    if "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = OPENMP_SPINCOUNT


class _LatestSlot:
    """Producer side of a latest-value slot on a ``multiprocessing.Queue(maxsize=1)``."""

    def __init__(self, q: Any):
        self._q = q

    def put(self, item: Any) -> None:
        while True:
            try:
                self._q.put_nowait(item)
                return
            except queue_mod.Full:
                with contextlib.suppress(queue_mod.Empty):
                    self._q.get_nowait()


def _worker_main(
    project_root: str,
    stage: str,
    events: Any,
    slot: Any,
    cancel: Any,
    device: str,
    target: str | None,
    runner_pid: int | None = None,
) -> None:
    """Entry point of a stage's worker process (runs `run_<stage>` and reports how it ended)."""
    if hasattr(os, "setsid"):
        with contextlib.suppress(OSError):
            os.setsid()  # own process group: the runner can kill the whole tree
    tie_to_parent(runner_pid)  # never outlive the runner (SIGKILL of the runner included)
    # The runner handles Ctrl-C (as a cancel); the worker must not die of the terminal's SIGINT.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["SPLATSTUDIO_DEVICE"] = device
    limit_openmp_spinning()
    emitter = Emitter(stage, events.put, cancel, preview_sink=_LatestSlot(slot).put)
    worker_lock = None
    try:
        # One writer per project: held until this process ends, however it ends.
        worker_lock = hold_worker_lock(Path(project_root), stage)
        project = Project.open(project_root)
        func = resolve_stage_function(stage, target)
        func(project, project.config.stage(stage), emitter)
        fin = _Finished(stage, StageState.DONE)
    except Cancelled as e:
        fin = _Finished(stage, StageState.CANCELLED, error=str(e), error_type="Cancelled")
    except SplatStudioError as e:
        fin = _Finished(stage, StageState.FAILED, error=str(e), error_type=type(e).__name__)
    except OSError as e:
        if not is_disk_full(e):
            tb = traceback.format_exc(limit=20)
            fin = _Finished(stage, StageState.FAILED, error=f"{type(e).__name__}: {e}\n{tb}",
                            error_type=type(e).__name__)
        else:
            err = DiskFullError.from_os_error(e, project_root)
            fin = _Finished(stage, StageState.FAILED, error=str(err), error_type="DiskFullError")
    except BaseException as e:  # noqa: BLE001 - a bug: report it with its traceback
        free = free_bytes(project_root)
        if free is not None and free < DISK_FULL_BYTES:
            # a library's own error for a full disk (torch.save: "PytorchStreamWriter failed
            # writing file", OpenCV: imwrite returned False ...)
            err = DiskFullError(project_root, free=free, what=f"{type(e).__name__}: {e}")
            fin = _Finished(stage, StageState.FAILED, error=str(err), error_type="DiskFullError")
        else:
            tb = traceback.format_exc(limit=20)
            fin = _Finished(stage, StageState.FAILED, error=f"{type(e).__name__}: {e}\n{tb}",
                            error_type=type(e).__name__)
    fin = _Finished(
        stage,
        fin.state,
        error=fin.error,
        error_type=fin.error_type,
        metrics=dict(emitter.metrics),
        artifacts=list(emitter.artifacts),
        warnings=list(emitter.warnings),
    )
    events.put(fin)
    events.close()
    events.join_thread()
    if worker_lock is not None:
        worker_lock.close()


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "unknown exit"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}"
    return f"exit code {code}"


class StageJob:
    """One stage running in a worker process.

    Args:
        project: the project.
        stage: stage name.
        on_event: called (in the caller's thread, from :meth:`wait`) with every event.
        grace_s: seconds between the cooperative cancel and killing the process tree.
        device: "auto", "cpu" or "cuda", passed to the worker as SPLATSTUDIO_DEVICE.
        target: "module:function" to run instead of the stage's own function (plugins, tests).

    Use ``job.start(); state = job.wait()``; :meth:`cancel` may be called from any thread.
    """

    def __init__(
        self,
        project: Project,
        stage: str,
        on_event: EventCallback | None = None,
        *,
        grace_s: float = 10.0,
        device: str = "auto",
        target: str | None = None,
    ):
        self.project = project
        self.stage = stage
        self.target = target
        self.on_event = on_event or (lambda e: None)
        self.grace_s = grace_s
        self.device = device
        self._ctx = mp.get_context("spawn")
        self._events = self._ctx.Queue()
        self._slot = self._ctx.Queue(maxsize=1)
        self._cancel = self._ctx.Event()
        self._cancel_at: float | None = None
        self.process: Any = None
        self.state = StageState.PENDING
        self.error: str | None = None
        self._started = ""
        self._t0 = 0.0

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self) -> None:
        """Start the worker and mark the stage running in its status file."""
        fingerprint = self.project.fingerprints()[self.stage]
        self.project.stage_dir(self.stage)
        self.process = self._ctx.Process(
            target=_worker_main,
            args=(
                str(self.project.root),
                self.stage,
                self._events,
                self._slot,
                self._cancel,
                self.device,
                self.target,
                os.getpid(),
            ),
            name=f"splatstudio-{self.stage}",
            daemon=False,
        )
        self._t0 = time.monotonic()
        self._started = now_iso()
        self.process.start()
        self.state = StageState.RUNNING
        self._status = StageStatus.running(self.stage, started=self._started,
                                           pid=self.process.pid, host=socket.gethostname(),
                                           fingerprint=fingerprint)
        self._write_status(self._status)
        self.on_event(StageChanged(self.stage, StageState.RUNNING))

    def _write_status(self, status: StageStatus) -> None:
        """Write the stage's status file; a full disk stops the worker and raises.

        Raises:
            DiskFullError: the status file could not be written for lack of space.
        """
        try:
            self.project.write_status(status)
        except OSError as e:
            if not is_disk_full(e):
                raise
            if self.process is not None and self.process.is_alive():
                kill_process_tree(self.process.pid)
                self.process.join(timeout=5)
            raise DiskFullError.from_os_error(e, self.project.status_path(self.stage)) from None

    def cancel(self) -> None:
        """Ask the stage to stop: cooperative now, process tree killed after `grace_s`."""
        if self._cancel_at is None:
            self._cancel_at = time.monotonic()
            self._cancel.set()

    def _dispatch(self, item: Any) -> _Finished | None:
        if isinstance(item, _Finished):
            return item
        self.on_event(item)
        return None

    def wait(self, poll_s: float = 0.1) -> StageState:
        """Forward events until the worker ends; write the final status; return the state."""
        fin: _Finished | None = None
        killed = False
        while True:
            try:
                item = self._events.get(timeout=poll_s)
                fin = self._dispatch(item) or fin
            except queue_mod.Empty:
                pass
            with contextlib.suppress(queue_mod.Empty):
                self.on_event(self._slot.get_nowait())
            if fin is not None:
                self.process.join(timeout=30)
                break
            if not self.process.is_alive():
                # Drain what the worker flushed before it died.
                deadline = time.monotonic() + 1.0
                while time.monotonic() < deadline:
                    try:
                        fin = self._dispatch(self._events.get(timeout=0.05)) or fin
                    except queue_mod.Empty:
                        break
                break
            if (
                self._cancel_at is not None
                and not killed
                and time.monotonic() - self._cancel_at > self.grace_s
            ):
                kill_process_tree(self.process.pid)
                killed = True
        if self.process.is_alive():
            kill_process_tree(self.process.pid)
        self.process.join(timeout=5)
        # Pool workers of a stage that crashed may outlive it: never leave them behind.
        if self.process.exitcode not in (0, None) and hasattr(os, "killpg"):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)

        disk_full = fin is not None and fin.error_type == "DiskFullError"
        if fin is not None:
            state, error = fin.state, fin.error
            metrics, artifacts, warnings = fin.metrics, fin.artifacts, fin.warnings
        else:
            metrics, artifacts, warnings = {}, [], []
            if self._cancel_at is not None:
                state = StageState.CANCELLED
                error = f"stage {self.stage} cancelled (worker stopped after {self.grace_s:g} s)"
            else:
                state = StageState.FAILED
                error = (
                    f"the {self.stage} worker (pid {self.process.pid}) ended unexpectedly: "
                    f"{_describe_exit(self.process.exitcode)}; run again to resume"
                )
        self.state, self.error = state, error
        seconds = round(time.monotonic() - self._t0, 3)
        final = self._status.ended(state, finished=now_iso(), seconds=seconds, error=error,
                                   metrics=metrics, artifacts=artifacts, warnings=warnings)
        try:
            self._write_status(final)
        except DiskFullError as e:
            if disk_full:  # the worker's message names the file it was writing
                e.args = (error,)
            raise
        self.on_event(StageChanged(self.stage, state, error))
        return state


RUNNER_LOCK = ".lock"
"""Lock file of the runner (one run of stages per project at a time)."""


def _write_owner(f: IO[str], **info: Any) -> None:
    """Record who holds lock file `f` (pid, host, time, ...) in it, for the busy message."""
    f.seek(0)
    f.truncate()
    f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": now_iso(),
                        **info}))
    f.flush()


def _busy_message(root: Path, owner: dict[str, Any], what: str) -> str:
    """'ROOT: WHAT is still running (pid N, since T); how to stop it' from a lock's owner."""
    pid, host, since, stage = (owner.get(k) for k in ("pid", "host", "since", "stage"))
    who = f"the {stage} stage of {what}" if stage else what
    where = ", ".join(x for x in (
        f"pid {pid}" if pid else "",
        f"on {host}" if host and host != socket.gethostname() else "",
        f"since {since}" if since else "") if x)
    if not pid:
        stop = "wait for it to end"
    elif stage:
        stop = (f"wait for it to end, or stop it (`kill {pid}`; what it finished is kept and the "
                "next run resumes)")
    else:
        stop = f"wait for it to end, or stop it (`kill {pid}`)"
    return f"{root}: {who} is still running" + (f" ({where})" if where else "") + f"; {stop}"


def hold_worker_lock(root: Path, stage: str) -> IO[str]:
    """Take the project's worker lock for this process (a stage worker) and return the open
    lock file; the lock lasts until the file is closed or the process ends.

    Raises:
        ProjectError: another process is writing this project's stage outputs (names the
            stage, its pid and since when).
    """
    path = root / WORKER_LOCK
    f = open(path, "a+", encoding="utf-8")
    if not try_lock(f):
        owner = read_lock_owner(path)
        f.close()
        raise ProjectError(_busy_message(root, owner, "an earlier run"))
    _write_owner(f, stage=stage)
    return f


@contextlib.contextmanager
def project_lock(project: Project) -> Iterator[None]:
    """Hold the project's runner lock so two runners never write it at once, and refuse to
    start while a stage worker of an earlier run still lives (one writer per stage).

    Raises:
        ProjectError: another runner holds the lock, or an earlier run's worker is still
            running; the message names it (stage, pid, since when) and how to stop it.
    """
    path = project.root / RUNNER_LOCK
    f = open(path, "a+", encoding="utf-8")
    try:
        if not try_lock(f):
            raise ProjectError(_busy_message(project.root, read_lock_owner(path),
                                             "another SplatStudio run of this project"))
        owner = project.live_worker()
        if owner is not None:
            raise ProjectError(_busy_message(project.root, owner, "an earlier run"))
        _write_owner(f)
        yield
    finally:
        f.close()


@dataclass
class PipelineResult:
    """How a pipeline run ended.

    `states` maps each stage that was considered to its final :class:`StageState` (done,
    skipped, failed, cancelled); `stopped_at` is the first stage that did not finish, with
    `reason`.
    """

    states: dict[str, StageState] = field(default_factory=dict)
    stopped_at: str | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        """No stage failed or was cancelled."""
        return all(s.is_ok for s in self.states.values())


class PipelineRunner:
    """Runs stages in order, skipping the ones already done, one worker process per stage.

    Args:
        project: the project.
        on_event: called with every event of every stage (and a StageChanged for a skipped
            stage).
        grace_s: cancel grace period before the process tree is killed.
        device: "auto", "cpu" or "cuda".
        functions: per stage, a "module:function" replacing the built-in one (plugins, tests).

    :meth:`cancel` (any thread) stops the running stage and the run.
    """

    def __init__(
        self,
        project: Project,
        on_event: EventCallback | None = None,
        *,
        grace_s: float = 10.0,
        device: str | None = None,
        functions: dict[str, str] | None = None,
    ):
        self.project = project
        self.on_event = on_event or (lambda e: None)
        self.grace_s = grace_s
        self.functions = {**STAGE_FUNCTIONS, **(functions or {})}
        self.device = device or str(project.config.device)
        self._cancelled = threading.Event()
        self._job: StageJob | None = None
        self._lock = threading.Lock()

    def _refuse(self, stage: str, message: str, result: PipelineResult) -> None:
        """Record `stage` as failed with `message` without running it (its status file says
        the same when the disk still takes a small write)."""
        result.states[stage] = StageState.FAILED
        result.stopped_at, result.reason = stage, message
        st = self.project.read_status(stage)
        with contextlib.suppress(OSError):
            self.project.write_status(st.refused(finished=now_iso(), error=message))
        self.on_event(StageChanged(stage, StageState.FAILED, message))

    def cancel(self) -> None:
        """Cancel the running stage (two tiers) and stop the run after it."""
        self._cancelled.set()
        with self._lock:
            if self._job is not None:
                self._job.cancel()

    def run(
        self,
        stages: list[str] | None = None,
        *,
        until: str | None = None,
        force: bool = False,
    ) -> PipelineResult:
        """Run `stages` (default: all, in order, up to and including `until`).

        A stage already done with unchanged inputs and config is skipped unless `force`.
        """
        if until is not None and until not in STAGES:
            raise ValueError(f"unknown stage {until!r}; stages are {', '.join(STAGES)}")
        order = list(stages) if stages else list(STAGES)
        if until is not None:
            order = [s for s in order if STAGES.index(s) <= STAGES.index(until)]
        result = PipelineResult()
        with project_lock(self.project):
            for stage in order:
                if self._cancelled.is_set():
                    result.states[stage] = StageState.CANCELLED
                    result.stopped_at, result.reason = stage, str(StageState.CANCELLED)
                    break
                idx = STAGES.index(stage)
                if idx > 0 and not self.project.is_done(STAGES[idx - 1]):
                    prev = STAGES[idx - 1]
                    msg = f"{stage} needs {prev} to be done first (run `splatstudio {prev}`)"
                    result.states[stage] = StageState.FAILED
                    result.stopped_at, result.reason = stage, msg
                    self.on_event(StageChanged(stage, StageState.FAILED, msg))
                    break
                if not force and self.project.is_done(stage):
                    result.states[stage] = StageState.SKIPPED
                    self.on_event(StageChanged(stage, StageState.SKIPPED))
                    continue
                disk = check_disk(self.project, stage)
                if not disk.ok:
                    self._refuse(stage, str(disk.message), result)
                    break
                if disk.message:
                    self.on_event(Log(stage, "warning", disk.message))
                job = StageJob(
                    self.project,
                    stage,
                    self.on_event,
                    grace_s=self.grace_s,
                    device=self.device,
                    target=self.functions[stage],
                )
                with self._lock:
                    self._job = job
                    if self._cancelled.is_set():
                        job.cancel()
                try:
                    job.start()
                    state = job.wait()
                except DiskFullError as e:
                    self._refuse(stage, str(e), result)
                    break
                finally:
                    with self._lock:
                        self._job = None
                result.states[stage] = state
                if state != StageState.DONE:
                    result.stopped_at, result.reason = stage, job.error
                    break
        return result

