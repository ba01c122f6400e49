"""The stage side of farm work: :class:`Dispatcher` submits work items, relays their events,
verifies what comes back and records each item in ``<stage>/farm/items.json``.

Inputs go to the workers as ``read_blob`` tasks of the coordinator's ``HOME`` worker (one key
per content); each item is a :func:`splatstudio.farm.supervisor.run_item` task placed by its
resources (never by worker address) with ``retries=1``, so an item whose worker died runs again
elsewhere. The stage's own cancel (``events.check_cancelled``) sets the run's cancel event and
cancels the remaining tasks. A result is written into the project only after its SHA-256 check
(:func:`splatstudio.farm.items.verify_outputs`), by the caller's ``on_result``.

Each item's state, peer and progress go to the stage's emitter as
:class:`~splatstudio.events.ItemProgress` messages (the GUI's stage panel shows one row per
item): ``queued`` when submitted, ``running`` once the scheduler has placed it on a worker (polled
with ``Client.processing`` every :data:`PEER_POLL_S`) or its first message arrives, ``retried``
when it shows up on a second worker (its first one died), then ``done``, ``failed`` or
``cancelled``. The item's own messages come from its worker on the run's event topic
(:func:`splatstudio.farm.supervisor.run_item`); they are handled in the dispatching thread, and
its log lines are re-emitted as ``[item@peer] message`` with the worker's name.
"""

from __future__ import annotations

import collections
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Cancelled
from ..events import Emitter, ItemState
from .home import read_blob
from .items import WorkItem, verify_outputs
from .supervisor import cancel_event_name, run_item, topic

__all__ = ["PEER_POLL_S", "Dispatcher"]

PEER_POLL_S = 0.5
"""Seconds between two asks of the scheduler which worker runs which item."""


@dataclass
class _Item:
    """What the dispatcher knows of one item: its state, the workers (addresses) that ran it, in
    order (the last one runs it now), the current attempt's progress, and what was last sent."""

    state: ItemState = ItemState.QUEUED
    workers: list[str] = field(default_factory=list)
    fraction: float = 0.0
    message: str = ""
    peer: str = ""
    sent: tuple[Any, ...] | None = None


class Dispatcher:
    """Runs work items of one stage on a farm.

    Args:
        client: a ``distributed.Client`` of the farm (coordinator credentials).
        project_root: the project folder (inputs are read from it by the ``HOME`` worker,
            which runs on this machine).
        events: the stage's emitter (progress, logs, cancel).
        record: ``items.json`` to write (default none).
        progress_span: the stage's progress fraction the items cover, ``(start, end)``.
    """

    def __init__(self, client: Any, project_root: str | Path, events: Emitter, *,
                 record: Path | None = None, progress_span: tuple[float, float] = (0.0, 1.0)):
        self.client = client
        self.root = str(Path(project_root).resolve())
        self.events = events
        self.record = record
        self.span = progress_span
        self.run_id = uuid.uuid4().hex[:12]
        self.items: dict[str, dict[str, Any]] = {}
        self._live: dict[str, _Item] = {}
        self._inbox: collections.deque[dict[str, Any]] = collections.deque()
        self._names: dict[str, str] = {}
        self._names_asked = 0.0
        self._polled = 0.0
        self._total = 0

    def _on_event(self, event: Any) -> None:
        """Topic handler (the client's event-loop thread): queue the message for :meth:`run`'s
        thread, which may call the scheduler (the event loop must not)."""
        _, msg = event
        if isinstance(msg, dict):
            self._inbox.append(msg)

    def peer_name(self, address: str) -> str:
        """The name of the worker at `address` (``HOST/SLOT``), or the address when the
        scheduler no longer knows it (asked at most once a second)."""
        if address not in self._names and time.monotonic() - self._names_asked > 1.0:
            self._learn_names()
        return self._names.get(address, address)

    def _learn_names(self) -> None:
        self._names_asked = time.monotonic()
        try:
            workers = self.client.scheduler_info(n_workers=-1)["workers"]
            self._names.update({a: str(w.get("name", a)) for a, w in workers.items()})
        except Exception:  # noqa: BLE001 - a scheduler hiccup: names show as addresses
            pass

    def _seen_on(self, item_id: str, address: str) -> bool:
        """Record that `item_id` runs on the worker at `address`; False for a late message of
        an earlier attempt (a worker that already lost the item)."""
        it = self._live[item_id]
        if it.state.is_final:
            return False
        if address not in it.workers:
            it.state = ItemState.RETRIED if it.workers else ItemState.RUNNING
            it.workers.append(address)
            it.peer = self.peer_name(address)
            it.fraction, it.message = 0.0, ""
            if it.state == ItemState.RETRIED:
                self.events.log(f"[{item_id}] runs again on {it.peer} (its peer "
                                f"{self.peer_name(it.workers[-2])} was lost)", "warning")
            return True
        return address == it.workers[-1]

    def _drain(self) -> None:
        """Apply the item messages that arrived since the last call."""
        while self._inbox:
            msg = self._inbox.popleft()
            item_id = str(msg.get("item"))
            if item_id not in self._live:
                continue
            address = str(msg.get("worker", ""))
            current = self._seen_on(item_id, address) if address else True
            kind = msg.get("kind")
            if kind == "progress" and current:
                it = self._live[item_id]
                it.fraction = min(1.0, max(0.0, float(msg.get("fraction", 0.0))))
                it.message = str(msg.get("message", ""))
            elif kind == "log":
                who = self.peer_name(address) if address else "?"
                self.events.log(f"[{item_id}@{who}] {msg.get('message', '')}",
                                msg.get("level", "info"))

    def _poll_peers(self, keys: dict[str, str]) -> None:
        """Ask the scheduler where the items of `keys` (task key -> item id) run now."""
        if time.monotonic() - self._polled < PEER_POLL_S:
            return
        self._polled = time.monotonic()
        try:
            processing = self.client.processing()
        except Exception:  # noqa: BLE001 - a scheduler hiccup: ask again next time
            return
        for address, tasks in processing.items():
            for key in tasks:
                item_id = keys.get(str(key))
                if item_id is not None:
                    self._seen_on(item_id, str(address))

    def _send(self, item_id: str) -> None:
        """Send `item_id`'s state to the emitter when it changed (throttled there)."""
        it = self._live[item_id]
        if it.workers and it.peer.startswith(("tls://", "tcp://")):  # a worker that was new
            it.peer = self.peer_name(it.workers[-1])
        now = (it.state, it.peer, round(it.fraction, 3), it.message)
        if now != it.sent and self.events.item(item_id, it.state, it.fraction, it.message,
                                               peer=it.peer, run=self.run_id, total=self._total):
            it.sent = now

    def _end(self, item_id: str, state: ItemState, message: str = "") -> None:
        it = self._live[item_id]
        it.state, it.message = state, message
        if state == ItemState.DONE:
            it.fraction = 1.0
        self.items[item_id]["state"] = str(state)
        if it.peer:
            self.items[item_id]["peer"] = it.peer
        if len(it.workers) > 1:
            self.items[item_id]["peers"] = [self.peer_name(a) for a in it.workers]
        self._send(item_id)

    def _save(self) -> None:
        if self.record is not None:
            from ..project import write_json_atomic

            self.record.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.record, {"run_id": self.run_id, "items": self.items})

    def run(self, items: list[WorkItem],
            on_result: Callable[[WorkItem, dict[str, bytes]], None], grace_s: float = 10.0) -> None:
        """Run `items`; call ``on_result(item, files)`` (in this thread) for each as it ends.

        Every item's state and progress goes to the emitter as ``ItemProgress`` messages.

        Raises:
            Cancelled: the stage was cancelled (remaining items are cancelled on the workers).
            ItemFailed: an item raised a SplatStudio error on its worker.
            OutputHashMismatch: an output arrived corrupted.
            distributed.KilledWorker: an item killed its workers too often.
        """
        from distributed import Event

        if not items:
            return
        client = self.client
        blobs: dict[str, Any] = {}
        for it in items:
            for rel, sha in it.inputs.items():
                if sha not in blobs:
                    blobs[sha] = client.submit(read_blob, self.root, rel, sha, key=f"blob-{sha}",
                                               resources={"HOME": 1}, pure=False)  # fmt: skip
        futures: dict[Any, WorkItem] = {}
        keys: dict[str, str] = {}
        self._total = len(items)
        for it in items:
            inputs = {rel: blobs[sha] for rel, sha in it.inputs.items()}
            fut = client.submit(run_item, it.to_dict(), self.run_id, inputs, grace_s,
                                key=f"{self.run_id}-{it.item_id}", resources=it.resources,
                                retries=1, pure=False)  # fmt: skip
            futures[fut] = it
            keys[str(fut.key)] = it.item_id
            self.items[it.item_id] = {"spec_hash": it.spec_hash(), "state": str(ItemState.QUEUED),
                                      "kind": it.kind, "cost": it.cost}  # fmt: skip
            self._live[it.item_id] = _Item()
            self._send(it.item_id)
        self._save()
        self._learn_names()
        client.subscribe_topic(topic(self.run_id), self._on_event)
        total = sum(it.cost for it in items) or 1.0
        done_cost = 0.0
        pending = set(futures)
        lo, hi = self.span
        try:
            while pending:
                finished = {f for f in pending if f.done()}
                pending -= finished
                if not finished:
                    time.sleep(0.2)
                self._poll_peers({k: i for k, i in keys.items()
                                  if not self._live[i].state.is_final})
                self._drain()
                for fut in finished:
                    it = futures[fut]
                    t0 = time.monotonic()
                    try:
                        result = fut.result()
                        files = verify_outputs(result)
                        on_result(it, files)
                    except Exception as e:
                        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
                        self._end(it.item_id, ItemState.FAILED, first or type(e).__name__)
                        raise
                    done_cost += it.cost
                    live = self._live[it.item_id]
                    if result.get("worker") and not live.peer:
                        live.peer = str(result["worker"])
                    self.items[it.item_id].update(
                        host=result.get("host"), seconds=result.get("seconds"),
                        write_seconds=round(time.monotonic() - t0, 3),
                        bytes=sum(len(v) for v in files.values()),
                        sha256=result.get("sha256"))  # fmt: skip
                    self._end(it.item_id, ItemState.DONE,
                              f"done in {result.get('seconds', 0):.1f} s")
                    self._save()
                    fut.release()
                    self.events.log(f"[{it.item_id}@{live.peer or result.get('host')}] done in "
                                    f"{result.get('seconds', 0):.1f} s")
                for item_id in self._live:
                    self._send(item_id)
                running = sum(it.cost * self._live[it.item_id].fraction
                              for f, it in futures.items() if f in pending)
                frac = (done_cost + running) / total
                self.events.progress(lo + (hi - lo) * frac,
                                     f"farm: {len(items) - len(pending)}/{len(items)} items")
                self.events.check_cancelled()
            self._drain()  # the last log lines of the last items
        except BaseException as e:
            # cancelled, or an item failed: the rest of the run is cancelled on the workers
            if isinstance(e, Cancelled):
                Event(cancel_event_name(self.run_id), client=client).set()
            client.cancel(list(pending), force=True)
            for item_id, live in self._live.items():
                if not live.state.is_final:
                    self._end(item_id, ItemState.CANCELLED)
            self._save()
            raise
        finally:
            client.unsubscribe_topic(topic(self.run_id))
            for fut in blobs.values():
                fut.release()
