"""The dask task that runs one work item on a farm worker: :func:`run_item`.

It checks each input blob against its SHA-256, lays the inputs out in a work folder, runs the
item in a child process (:mod:`splatstudio.farm.itemproc`, its own session: dask's worker
processes are daemonic and may not fork pools, a Python thread cannot be killed, and CUDA memory
is freed when the process ends), relays the item's events to the coordinator
(``Worker.log_event`` on topic ``splatstudio-<run_id>``), and returns the outputs with their
SHA-256. Cancel, as the runner does locally: the cancel flag file first (the item stops at its
next ``check_cancelled``), then after the grace period a SIGKILL of the item's process tree. The
cancel comes from the ``distributed.Event`` ``splatstudio-cancel-<run_id>``, or from dask marking
this task cancelled (the coordinator's client went away).

Design: ``../shared/docs/FARM.md`` sections 2.4, 2.5 and 2.7.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from . import FarmError
from .items import check_relpath, sha256_bytes

POLL_S = 0.2
__all__ = ["ItemCrashed", "cancel_event_name", "run_item", "topic"]


class ItemCrashed(FarmError):
    """The item process died (a signal, out of memory): raised so dask runs the item again on
    another worker (``retries``); a SplatStudio error in the item is returned instead, since it
    would fail anywhere."""


def topic(run_id: str) -> str:
    """The dask event topic of a run's item events."""
    return f"splatstudio-{run_id}"


def cancel_event_name(run_id: str) -> str:
    """The ``distributed.Event`` that cancels a run's items."""
    return f"splatstudio-cancel-{run_id}"


def _task_cancelled() -> bool:
    """True when dask marked the running task cancelled (its client released it). Reads the
    worker's internal ``state`` (pinned by the ``farm`` extra's version cap)."""
    try:
        from distributed import get_worker

        w = get_worker()
        ts = w.state.tasks.get(w.get_current_task())
        return ts is not None and ts.state == "cancelled"
    except Exception:  # noqa: BLE001 - not in a worker (tests) or an internal change
        return False


def _relay(proc: subprocess.Popen, item_id: str, run_id: str, last: dict[str, Any],
           log_event: Any) -> None:
    """Forward the item's JSON event lines to the coordinator with `log_event` (the worker's
    ``log_event``, looked up in the task's thread: ``get_worker()`` fails in this relay
    thread); keep the last progress."""
    assert proc.stdout is not None
    sent = 0.0
    for line in proc.stdout:
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("kind") == "progress":
            last["progress"] = ev
            if time.monotonic() - sent < 0.5:  # at most 2 progress messages a second
                continue
            sent = time.monotonic()
        if log_event is not None:
            with contextlib.suppress(Exception):
                log_event(topic(run_id), {"item": item_id, **ev})


def run_item(item: dict[str, Any], run_id: str, blobs: dict[str, bytes],
             grace_s: float = 10.0) -> dict[str, Any]:
    """Run work item `item` (``WorkItem.to_dict()``) here.

    Args:
        item: the item.
        run_id: its run (event topic, cancel event).
        blobs: its inputs' bytes by project path (dask resolves the ``read_blob`` futures).
        grace_s: seconds between the cancel flag and the kill.

    Returns:
        ``{"state": "done", "files": {name: bytes}, "sha256": {name: hex}, "seconds",
        "host", "worker"}`` (``worker``: the dask worker's name, ``HOST/SLOT``),
        ``{"state": "failed", "error"}`` (a SplatStudio error in the item) or
        ``{"state": "cancelled"}``.

    Raises:
        ItemCrashed: the item process died, or an input blob arrived corrupted.
    """
    import socket

    from ..lifeline import kill_process_tree

    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix=f"splatstudio-{item['item_id']}-"))
    try:
        for rel, sha in item["inputs"].items():
            data = blobs[rel]
            if sha256_bytes(data) != sha:
                raise ItemCrashed(f"input {rel} arrived corrupted (SHA-256 mismatch)")
            dst = work / "in" / check_relpath(rel)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(data)
        (work / "item.json").write_text(json.dumps(item))
        proc = subprocess.Popen([sys.executable, "-m", "splatstudio.farm.itemproc", str(work)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)  # fmt: skip
        last: dict[str, Any] = {}
        log_event, worker_name = None, ""
        with contextlib.suppress(Exception):  # not in a worker (tests): no relay
            from distributed import get_worker

            log_event = get_worker().log_event
            worker_name = str(get_worker().name)
        relay = threading.Thread(target=_relay, daemon=True,
                                 args=(proc, item["item_id"], run_id, last, log_event))
        relay.start()
        err_tail: list[str] = []
        drain = threading.Thread(target=lambda: err_tail.extend(proc.stderr or []), daemon=True)
        drain.start()
        cancel = None
        with contextlib.suppress(Exception):
            from distributed import Event

            cancel = Event(cancel_event_name(run_id))
        cancelled_at = None
        while proc.poll() is None:
            time.sleep(POLL_S)
            if cancelled_at is None:
                asked = _task_cancelled()
                if not asked and cancel is not None:
                    with contextlib.suppress(Exception):
                        asked = cancel.is_set()
                if asked:
                    (work / "cancel").touch()
                    cancelled_at = time.monotonic()
            elif time.monotonic() - cancelled_at > grace_s:
                kill_process_tree(proc.pid)
        relay.join(5)
        drain.join(5)
        rc = proc.returncode
        if cancelled_at is not None:
            return {"state": "cancelled"}
        if rc == 3:
            err = json.loads((work / "error.json").read_text())["error"]
            return {"state": "failed", "error": err}
        if rc != 0:
            tail = "".join(err_tail)[-1500:]
            raise ItemCrashed(f"item {item['item_id']} process ended with code {rc} on "
                              f"{socket.gethostname()}:\n{tail}")
        files = {p.relative_to(work / "out").as_posix(): p.read_bytes()
                 for p in sorted((work / "out").rglob("*")) if p.is_file()}
        return {"state": "done", "files": files,
                "sha256": {k: sha256_bytes(v) for k, v in files.items()},
                "seconds": round(time.monotonic() - t0, 3), "host": socket.gethostname(),
                "worker": worker_name}
    finally:
        shutil.rmtree(work, ignore_errors=True)
