"""The stage side of farm work: :class:`Dispatcher` submits work items, relays their events,
verifies what comes back and records each item in ``<stage>/farm/items.json``.

Inputs go to the workers as ``read_blob`` tasks of the coordinator's ``HOME`` worker (one key
per content); each item is a :func:`splatstudio.farm.supervisor.run_item` task placed by its
resources (never by worker address) with ``retries=1``, so an item whose worker died runs again
elsewhere. The stage's own cancel (``events.check_cancelled``) sets the run's cancel event and
cancels the remaining tasks. A result is written into the project only after its SHA-256 check
(:func:`splatstudio.farm.items.verify_outputs`), by the caller's ``on_result``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import Cancelled
from ..events import Emitter
from .home import read_blob
from .items import WorkItem, verify_outputs
from .supervisor import cancel_event_name, run_item, topic

__all__ = ["Dispatcher"]


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
        self._fraction: dict[str, float] = {}

    def _on_event(self, event: Any) -> None:
        _, msg = event
        item = str(msg.get("item"))
        kind = msg.get("kind")
        if kind == "progress":
            self._fraction[item] = float(msg.get("fraction", 0.0))
        elif kind == "log":
            who = msg.get("worker", "?")
            self.events.log(f"[{item}@{who}] {msg.get('message', '')}", msg.get("level", "info"))

    def _save(self) -> None:
        if self.record is not None:
            from ..project import write_json_atomic

            self.record.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.record, {"run_id": self.run_id, "items": self.items})

    def run(self, items: list[WorkItem],
            on_result: Callable[[WorkItem, dict[str, bytes]], None], grace_s: float = 10.0) -> None:
        """Run `items`; call ``on_result(item, files)`` (in this thread) for each as it ends.

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
        for it in items:
            inputs = {rel: blobs[sha] for rel, sha in it.inputs.items()}
            fut = client.submit(run_item, it.to_dict(), self.run_id, inputs, grace_s,
                                key=f"{self.run_id}-{it.item_id}", resources=it.resources,
                                retries=1, pure=False)  # fmt: skip
            futures[fut] = it
            self.items[it.item_id] = {"spec_hash": it.spec_hash(), "state": "queued",
                                      "kind": it.kind, "cost": it.cost}  # fmt: skip
        self._save()
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
                for fut in finished:
                    it = futures[fut]
                    t0 = time.monotonic()
                    result = fut.result()
                    files = verify_outputs(result)
                    on_result(it, files)
                    done_cost += it.cost
                    self.items[it.item_id].update(
                        state="done", host=result.get("host"), seconds=result.get("seconds"),
                        write_seconds=round(time.monotonic() - t0, 3),
                        bytes=sum(len(v) for v in files.values()),
                        sha256=result.get("sha256"))  # fmt: skip
                    self._save()
                    fut.release()
                    self.events.log(f"[{it.item_id}@{result.get('host')}] done in "
                                    f"{result.get('seconds', 0):.1f} s")
                running = sum(it.cost * self._fraction.get(it.item_id, 0.0)
                              for f, it in futures.items() if f in pending)
                frac = (done_cost + running) / total
                self.events.progress(lo + (hi - lo) * frac,
                                     f"farm: {len(items) - len(pending)}/{len(items)} items")
                self.events.check_cancelled()
        except Cancelled:
            Event(cancel_event_name(self.run_id), client=client).set()
            client.cancel(list(pending), force=True)
            for fut in pending:
                self.items[futures[fut].item_id]["state"] = "cancelled"
            self._save()
            raise
        finally:
            client.unsubscribe_topic(topic(self.run_id))
            for fut in blobs.values():
                fut.release()
