"""The Dispatcher's per-item bookkeeping without a farm: a scripted client stands in for dask
(where the scheduler says each item runs, the messages its workers relay, the results), so the
state machine queued -> running -> retried -> done / failed, the peer names, the dropping of a
lost worker's late messages, and the item record are checked in a second. The same path on real
loopback workers (one killed mid-item) is tests/integration/test_train_blocks.py."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("distributed")

from splatstudio.events import Emitter, ItemProgress, ItemState, Log  # noqa: E402
from splatstudio.farm import dispatch  # noqa: E402
from splatstudio.farm.items import ItemFailed, WorkItem, sha256_bytes  # noqa: E402

NAMES = {"tls://10.0.0.2:8800": "studio/gpu0", "tls://10.0.0.3:8800": "laptop/cpu",
         "tls://10.0.0.2:8801": "studio/gpu1"}
A, B, C = NAMES


class _Future:
    def __init__(self, client, key):
        self.client, self.key = client, key
        self.item = key.split("-", 1)[1]

    def done(self) -> bool:
        return self.client.tick >= self.client.done_at.get(self.item, 10**9)

    def result(self) -> dict:
        return self.client.results[self.item]

    def release(self) -> None:
        pass


class _Client:
    """Answers `processing()` from `script` (one step per call, the last one repeated) and
    delivers that step's relayed messages to the subscribed handler, as the scheduler would."""

    def __init__(self, script, done_at, results):
        self.script, self.done_at, self.results = script, done_at, results
        self.tick, self.run_id, self.handler, self.cancelled = 0, "", None, None

    def submit(self, fn, *args, key, **kw):
        self.run_id = key.split("-", 1)[0]
        return _Future(self, key)

    def subscribe_topic(self, topic, handler):
        self.handler = handler

    def unsubscribe_topic(self, topic):
        self.handler = None

    def scheduler_info(self, n_workers=-1):
        return {"workers": {a: {"name": n} for a, n in NAMES.items()}}

    def processing(self):
        step = self.script[min(self.tick, len(self.script) - 1)]
        self.tick += 1
        for msg in step.get("messages", []):
            self.handler((0.0, dict(msg)))
        return {a: [f"{self.run_id}-{i}" for i in items]
                for a, items in step.get("processing", {}).items()}

    def cancel(self, futures, force=False):
        self.cancelled = sorted(f.item for f in futures)


def _done(data: bytes) -> dict:
    return {"state": "done", "files": {"out.bin": data}, "sha256": {"out.bin": sha256_bytes(data)},
            "seconds": 1.5, "host": "studio", "worker": "studio/gpu0"}


def test_items_become_item_progress_with_peers_retries_and_failures(tmp_path, monkeypatch):
    monkeypatch.setattr(dispatch, "PEER_POLL_S", 0.0)
    script = [
        {"processing": {A: ["sift-000"], B: ["sift-001"]},
         "messages": [
             {"item": "sift-000", "kind": "progress", "fraction": 0.5, "message": "9/18",
              "worker": A},
             {"item": "sift-001", "kind": "log", "level": "info", "message": "hello",
              "worker": B}]},
        {"processing": {A: ["sift-000"], C: ["sift-001"]},  # B died: sift-001 again on C
         "messages": [
             {"item": "sift-001", "kind": "progress", "fraction": 0.9, "worker": B},  # late
             {"item": "sift-001", "kind": "progress", "fraction": 0.2, "message": "2/18",
              "worker": C}]},
        {"processing": {C: ["sift-001"], A: ["sift-002"]}},
    ]
    client = _Client(script, done_at={"sift-000": 3, "sift-001": 4, "sift-002": 5},
                     results={"sift-000": _done(b"a"), "sift-001": _done(b"b"),
                              "sift-002": {"state": "failed", "error": "bad image 07/3.jpg"}})
    got: list = []
    events = Emitter("sfm", got.append, item_interval_s=0.0)
    record = tmp_path / "items.json"
    written: list = []
    d = dispatch.Dispatcher(client, tmp_path, events, record=record)
    items = [WorkItem("sift", f"sift-00{i}", {"i": i}) for i in range(3)]
    with pytest.raises(ItemFailed, match="bad image"):
        d.run(items, lambda it, files: written.append((it.item_id, files)))

    seq: dict[str, list] = {}
    for e in got:
        if isinstance(e, ItemProgress):
            assert e.stage == "sfm" and e.run == d.run_id and e.total == 3
            seq.setdefault(e.item, []).append((str(e.state), e.peer, e.fraction))
    # (what arrives between two sends is coalesced into one message: the newest state)
    assert seq["sift-000"] == [("queued", "", 0.0), ("running", "studio/gpu0", 0.5),
                               ("done", "studio/gpu0", 1.0)]
    assert seq["sift-001"] == [("queued", "", 0.0), ("running", "laptop/cpu", 0.0),
                               ("retried", "studio/gpu1", 0.2),
                               ("done", "studio/gpu1", 1.0)]  # the late 0.9 of B never shows
    assert seq["sift-002"][0] == ("queued", "", 0.0)
    assert seq["sift-002"][-1][:2] == ("failed", "studio/gpu0")
    fail = [e for e in got if isinstance(e, ItemProgress) and e.state == ItemState.FAILED]
    assert fail[0].message == "bad image 07/3.jpg"
    logs = [e.message for e in got if isinstance(e, Log)]
    assert "[sift-001@laptop/cpu] hello" in logs
    assert "[sift-001] runs again on studio/gpu1 (its peer laptop/cpu was lost)" in logs
    assert "[sift-000@studio/gpu0] done in 1.5 s" in logs
    assert [w[0] for w in written] == ["sift-000", "sift-001"]
    rec = json.loads(record.read_text())["items"]
    assert {k: v["state"] for k, v in rec.items()} == {
        "sift-000": "done", "sift-001": "done", "sift-002": "failed"}
    assert rec["sift-001"]["peer"] == "studio/gpu1"
    assert rec["sift-001"]["peers"] == ["laptop/cpu", "studio/gpu1"]
    assert client.handler is None  # unsubscribed


def test_the_coordinator_throttles_each_item(tmp_path, monkeypatch):
    """40 progress messages of one item in one poll: the stage sees its state change and at
    most one update per `item_interval_s`."""
    monkeypatch.setattr(dispatch, "PEER_POLL_S", 0.0)
    msgs = [{"item": "match-000", "kind": "progress", "fraction": i / 40, "worker": A}
            for i in range(40)]
    client = _Client([{"processing": {A: ["match-000"]}, "messages": msgs}],
                     done_at={"match-000": 3}, results={"match-000": _done(b"m")})
    got: list = []
    d = dispatch.Dispatcher(client, tmp_path, Emitter("sfm", got.append, item_interval_s=60.0))
    d.run([WorkItem("match", "match-000", {})], lambda it, files: None)
    states = [(str(e.state), e.fraction) for e in got if isinstance(e, ItemProgress)]
    assert states == [("queued", 0.0), ("running", 0.975), ("done", 1.0)]  # the newest
