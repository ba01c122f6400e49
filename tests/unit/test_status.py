"""The stage status record: states, status.json round trip, what readers see."""

from __future__ import annotations

import json
import socket

from splatstudio.status import INTERRUPTED, STORED_STATES, StageState, StageStatus


def test_round_trip_through_json():
    st = StageStatus.running("sfm", started="2026-01-01T00:00:00+00:00", pid=123,
                             host="h", fingerprint="f" * 64)
    assert StageStatus.from_dict(json.loads(json.dumps(st.to_dict()))) == st
    done = st.ended(StageState.DONE, finished="2026-01-01T00:01:00+00:00", seconds=60.0,
                    error=None, metrics={"views": 90.0}, artifacts=["sfm/sparse"])
    d = json.loads(json.dumps(done.to_dict()))
    assert d["state"] == "done" and d["pid"] is None and d["fingerprint"] == "f" * 64
    assert StageStatus.from_dict(d) == done
    failed = st.ended(StageState.FAILED, finished="x", seconds=1.0, error="boom")
    assert failed.fingerprint is None and failed.error == "boom"


def test_missing_and_unknown_fields():
    assert StageStatus.from_dict({}, "ingest") == StageStatus("ingest")
    st = StageStatus.from_dict({"state": "exploded", "stage": "train"})
    assert st.state == StageState.FAILED and "exploded" in st.error


def test_state_groups():
    assert {s for s in StageState if s.is_ok} == {StageState.DONE, StageState.SKIPPED}
    assert {s for s in StageState if s.is_problem} == {StageState.FAILED, StageState.CANCELLED}
    assert not StageState.RUNNING.is_final and StageState.SKIPPED.is_final
    assert StageState.SKIPPED not in STORED_STATES


def test_summary_interrupted_and_stale():
    host = socket.gethostname()
    running = StageStatus("ingest", StageState.RUNNING, pid=42, host=host)
    alive = running.summary(None, host=host, pid_alive=lambda pid: True)
    assert alive["state"] == StageState.RUNNING
    dead = running.summary(None, host=host, pid_alive=lambda pid: False)
    assert dead["state"] == StageState.FAILED and dead["error"] == INTERRUPTED
    other_host = running.summary(None, host="elsewhere", pid_alive=lambda pid: False)
    assert other_host["state"] == StageState.RUNNING  # cannot check a pid on another host
    done = StageStatus("ingest", StageState.DONE, fingerprint="a")
    assert done.summary("a", host=host, pid_alive=bool)["stale"] is False
    stale = done.summary("b", host=host, pid_alive=bool)
    assert stale["state"] == StageState.PENDING and stale["stale"]
    assert done.is_current("a") and not done.is_current("b")


def test_refused_keeps_the_last_run():
    st = StageStatus("train", StageState.DONE, fingerprint="a", metrics={"psnr": 20.0})
    r = st.refused(finished="t", error="disk")
    assert r.state == StageState.FAILED and r.fingerprint is None and r.metrics == {"psnr": 20.0}
