"""Stage events: every kind survives ``to_dict`` -> JSON -> ``event_from_dict`` and pickling
(how they cross from an item process and from a stage's worker process); ``ItemProgress``
refuses bad states and fractions; ``Emitter.item`` throttles each item but never drops a change
of state."""

from __future__ import annotations

import json
import pickle

import pytest

from splatstudio.events import (
    EVENT_TYPES,
    Artifact,
    Emitter,
    Event,
    ItemProgress,
    ItemState,
    Log,
    Metric,
    Preview,
    Progress,
    StageChanged,
    event_from_dict,
)
from splatstudio.status import StageState

EXAMPLES = [
    Progress("sfm", 0.25, "farm: 1/4 items"),
    Log("train", "warning", "[block01-to0000500@studio/gpu0] step 250/500"),
    Metric("train", "psnr", 23.5, step=500),
    Preview("train", "train/preview.png", step=100),
    Artifact("export", "export/scene.spz"),
    StageChanged("sfm", StageState.FAILED, error="no images"),
    ItemProgress("train", "block02-to0000500", ItemState.RETRIED, 0.4, "step 200/500",
                 peer="laptop/gpu0", run="4f1c2a9b0e11", total=4),
]


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: e.kind)
def test_round_trip_through_json_and_pickle(event):
    text = json.dumps(event.to_dict())
    back = event_from_dict(json.loads(text))
    assert back == event and type(back) is type(event)
    assert type(event).from_dict(json.loads(text)) == event
    assert Event.from_dict(json.loads(text)) == event
    assert pickle.loads(pickle.dumps(event)) == event


def test_every_public_kind_is_known():
    assert set(EVENT_TYPES) == {e.kind for e in EXAMPLES}


def test_item_progress_states_are_enums_and_checked():
    d = EXAMPLES[-1].to_dict()
    assert d["kind"] == "itemprogress" and d["state"] == "retried"
    assert type(d["state"]) is str  # JSON-ready, not the enum
    back = event_from_dict(d)
    assert back.state is ItemState.RETRIED and back.state.is_active and not back.state.is_final
    assert ItemProgress("sfm", "sift-001", "done").state is ItemState.DONE
    assert ItemState.CANCELLED.is_final and not ItemState.QUEUED.is_active
    with pytest.raises(ValueError, match="'lost'"):
        ItemProgress("sfm", "sift-001", "lost")
    with pytest.raises(ValueError, match="sift-001: fraction 1.5"):
        ItemProgress("sfm", "sift-001", ItemState.RUNNING, 1.5)


def test_bad_dictionaries_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="unknown event kind 'nope'"):
        event_from_dict({"kind": "nope", "stage": "sfm"})
    with pytest.raises(ValueError, match="unknown field"):
        event_from_dict({**EXAMPLES[0].to_dict(), "colour": "red"})
    with pytest.raises(ValueError, match="itemprogress event"):
        event_from_dict({"kind": "itemprogress", "stage": "sfm"})  # no item, no state
    with pytest.raises(ValueError, match="is not a Progress"):
        Progress.from_dict(EXAMPLES[-1].to_dict())


def test_emitter_throttles_each_item_but_passes_every_change_of_state():
    got: list = []
    ev = Emitter("sfm", got.append, item_interval_s=60.0)
    assert ev.item("sift-001", ItemState.QUEUED, run="r", total=2)
    assert ev.item("sift-002", "queued", run="r", total=2)  # another item: its own clock
    assert ev.item("sift-001", ItemState.RUNNING, 0.0, peer="a/cpu", run="r", total=2)
    for i in range(1, 10):  # same state, within the interval: dropped
        assert not ev.item("sift-001", ItemState.RUNNING, i / 10, peer="a/cpu", run="r")
    assert ev.item("sift-001", ItemState.DONE, 1.0, peer="a/cpu", run="r", total=2)
    assert [(e.item, e.state) for e in got] == [
        ("sift-001", ItemState.QUEUED), ("sift-002", ItemState.QUEUED),
        ("sift-001", ItemState.RUNNING), ("sift-001", ItemState.DONE)]
    assert got[-1].peer == "a/cpu" and got[-1].stage == "sfm" and got[-1].total == 2
    with pytest.raises(ValueError):
        ev.item("sift-001", "exploded")
    fast: list = []
    ev = Emitter("sfm", fast.append, item_interval_s=0.0)
    for i in range(5):
        ev.item("sift-001", ItemState.RUNNING, i / 4)
    assert [e.fraction for e in fast] == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_the_cli_prints_items_only_when_verbose_and_once_per_state(capsys):
    from splatstudio.cli import _Console, build_parser

    def feed(console):
        for state, frac, peer in [("queued", 0.0, ""), ("running", 0.0, "a/cpu"),
                                  ("running", 0.5, "a/cpu"), ("running", 0.7, "a/cpu"),
                                  ("retried", 0.0, "b/gpu0"), ("done", 1.0, "b/gpu0")]:
            console(ItemProgress("train", "block01-to0000100", state, frac, "", peer, "r", 2))

    feed(_Console(quiet=False))
    feed(_Console(quiet=True, verbose=True))
    assert capsys.readouterr().err == ""  # quiet by default, and -q wins
    feed(_Console(quiet=False, verbose=True))
    assert capsys.readouterr().err.splitlines() == [
        "[train] item block01-to0000100 queued",
        "[train] item block01-to0000100 running on a/cpu",
        "[train] item block01-to0000100 retried on b/gpu0",
        "[train] item block01-to0000100 done on b/gpu0"]
    assert build_parser().parse_args(["train", "-p", "x", "-v"]).verbose
