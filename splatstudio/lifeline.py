"""Tie a process's life to its parent's: a stage worker (and its pool processes) never outlives
the runner that started it.

Two mechanisms, because either alone leaves a hole:

- Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills the process the moment its parent
  ends, however it ends (SIGKILL and the OOM killer included), even while the process is stuck
  in a native call that holds the GIL. The signal is tied to the parent *thread* that started
  the process, so the runner must start workers from a thread that outlives them (it does: the
  thread that starts a worker waits for it).
- A watchdog thread that polls the parent pid (every platform with ``os.getppid``): when the
  parent is gone it kills this process's own process group, so the descendants of a stage
  worker (which leads its own group, see :mod:`splatstudio.pipeline.runner`) end too.

The issue that asked for this measured an orphaned SfM worker still writing the COLMAP database
after its runner was killed, and a second run opening the same database beside it.
:func:`kill_process_tree` is the other half: the runner's (and the farm's) second cancel tier.

Standard library only (psutil for the tree kill): :mod:`splatstudio.mesh`, the pipeline and the
farm use it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
import threading

PR_SET_PDEATHSIG = 1
"""``prctl`` option number (``<linux/prctl.h>``)."""

WATCHDOG_PERIOD_S = 0.25
"""How often the watchdog thread looks at the parent pid, seconds."""


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Ask the Linux kernel to send `sig` to this process when its parent thread ends.

    Returns:
        True when set (Linux with a C library), False elsewhere (nothing done).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _end_own_group() -> None:
    """SIGKILL this process's group when this process leads it (a stage worker and everything
    it started), else only this process."""
    if hasattr(os, "killpg") and os.getpgid(0) == os.getpid():
        with contextlib.suppress(OSError):
            os.killpg(os.getpid(), signal.SIGKILL)
    os._exit(137)


def start_parent_watchdog(parent_pid: int | None = None,
                          period_s: float = WATCHDOG_PERIOD_S) -> threading.Thread:
    """Start a daemon thread that ends this process (and its group, when it leads one) as soon
    as `parent_pid` (default: the current parent) is no longer its parent.

    Returns:
        the watchdog thread (already started).
    """
    parent = os.getppid() if parent_pid is None else parent_pid

    def watch() -> None:
        event = threading.Event()
        while not event.wait(period_s):
            if os.getppid() != parent:
                _end_own_group()

    t = threading.Thread(target=watch, name="splatstudio-parent-watchdog", daemon=True)
    t.start()
    return t


def tie_to_parent(parent_pid: int | None = None) -> None:
    """Both mechanisms at once: call first thing in a worker process (and in the initializer
    of a pool the worker starts). If the parent already died before this call, end now."""
    parent = os.getppid() if parent_pid is None else parent_pid
    set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the death signal was armed
        _end_own_group()
    start_parent_watchdog(parent)


def kill_process_tree(pid: int) -> None:
    """SIGKILL process `pid`, its process group (if it leads one) and all its descendants."""
    import psutil

    procs: list[psutil.Process] = []
    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    if hasattr(os, "killpg"):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    # Wait for the descendants only: the root is the caller's child, and reaping it here would
    # hide its exit status from multiprocessing (which would then think it is still alive).
    psutil.wait_procs(procs[1:], timeout=5)
