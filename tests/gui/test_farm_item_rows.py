"""Per-item farm progress in the stage panel: ItemProgress messages fed to the model become one
row per item under the running stage (item, peer, progress, state), a new dispatch replaces the
rows, the list folds away when the stage ends and opens again on the toggle; and (slow) a real
block training on two loopback farm workers started from the window shows its items there.

README's ``docs/screenshots/farm_items.png`` comes from the slow test:
``SPLATSTUDIO_SCREENSHOTS=docs/screenshots xvfb-run -a -s "-screen 0 1920x1080x24"
pytest tests/gui/test_farm_item_rows.py -k loopback``."""

from __future__ import annotations

import os

import pytest

from splatstudio.events import ItemProgress, ItemState, StageChanged
from splatstudio.status import StageState

pytestmark = pytest.mark.gui


def _open(window, tmp_path, panos_2048):
    project = window.new_project(panos_2048, tmp_path / "proj")
    assert project is not None
    return project


def _feed(model, *events):
    for e in events:
        model.handle_event(e)


def test_item_messages_become_rows_that_fold_away_when_the_stage_ends(
        window, qtbot, tmp_path, panos_2048):
    _open(window, tmp_path, panos_2048)
    model, panel = window.model, window.stage_panel
    row = panel.rows["sfm"]
    assert row.items_toggle.isHidden() and row.items_view.isHidden()  # no farm: nothing shown
    seen: list = []
    model.itemChanged.connect(lambda s, i: seen.append((s, i)))

    def item(name, state, fraction=0.0, peer="", message="", run="r1", total=3):
        return ItemProgress("sfm", name, state, fraction, message, peer, run, total)

    _feed(model, StageChanged("sfm", StageState.RUNNING),
          *(item(f"sift-{i:03d}", ItemState.QUEUED) for i in range(3)),
          item("sift-000", ItemState.RUNNING, 0.0, "studio/gpu0"),
          item("sift-001", ItemState.RUNNING, 0.0, "laptop/cpu"),
          item("sift-000", ItemState.RUNNING, 0.5, "studio/gpu0", "SIFT 9/18"),
          item("sift-001", ItemState.RETRIED, 0.0, "studio/gpu1"),
          item("sift-000", ItemState.DONE, 1.0, "studio/gpu0", "done in 4.2 s"))
    assert seen[0] == ("sfm", "") and ("sfm", "sift-001") in seen  # first of a run: rebuild
    view = row.items_view
    assert list(view.rows) == ["sift-000", "sift-001", "sift-002"]
    r0, r1, r2 = (view.rows[k] for k in ("sift-000", "sift-001", "sift-002"))
    assert (r0.state_label.text(), r0.peer_label.text(), r0.progress.value()) == \
        ("done", "studio/gpu0", 1000)
    assert r0.message_label.text() == "done in 4.2 s"
    assert (r1.state_label.text(), r1.peer_label.text()) == ("retried", "studio/gpu1")
    assert r1.state_label.property("state") == "retried"  # the style sheet's badge colour
    assert (r2.state_label.text(), r2.peer_label.text(), r2.progress.value()) == \
        ("queued", "—", 0)
    assert not view.isHidden() and not row.items_toggle.isHidden()  # open while running
    assert row.items_toggle.text() == ("farm: 1/3 items done  ·  1 running on 1 peer  ·  "
                                       "1 retried")
    # a peer-less update keeps the peer known
    _feed(model, item("sift-001", ItemState.RETRIED, 0.25, "", "SIFT 4/18"))
    assert r1.peer_label.text() == "studio/gpu1" and r1.progress.value() == 250

    # the next dispatch of the stage (matching) replaces the SIFT rows
    _feed(model, ItemProgress("sfm", "match-000", ItemState.QUEUED, run="r2", total=1),
          ItemProgress("sfm", "match-000", ItemState.RUNNING, 0.3, "pairs 30/100",
                       "laptop/cpu", run="r2", total=1))
    assert list(view.rows) == ["match-000"] and list(model.stages["sfm"].items) == ["match-000"]
    assert view.rows["match-000"].state_label.text() == "running"

    # the stage ends: the rows fold away behind the toggle, which opens them again
    _feed(model, ItemProgress("sfm", "match-000", ItemState.DONE, 1.0, "", "laptop/cpu",
                              run="r2", total=1),
          StageChanged("sfm", StageState.DONE))
    assert view.isHidden() and not row.items_toggle.isHidden()
    assert row.items_toggle.text() == "farm: 1/1 items done"
    row.items_toggle.click()
    assert not view.isHidden() and view.rows["match-000"].state_label.text() == "done"
    row.items_toggle.click()
    assert view.isHidden()

    # a new run of the stage starts without the last run's items
    _feed(model, StageChanged("sfm", StageState.RUNNING))
    assert model.stages["sfm"].items == {} and view.rows == {}
    assert row.items_toggle.isHidden() and view.isHidden()
    # another stage's rows are untouched by all this
    assert panel.rows["train"].items_view.rows == {}


@pytest.mark.slow
def test_block_training_on_a_loopback_farm_shows_its_items(window, qtbot, tmp_path, monkeypatch):
    """The real path: the train stage's worker process dispatches 2 blocks x 2 segments to two
    loopback workers; the Dispatcher's ItemProgress messages cross the runner's process queue
    into the model and the panel."""
    pytest.importorskip("distributed")
    pytest.importorskip("gsplat")
    import contextlib
    import socket

    from helpers.tiny_project import tiny_georef_project
    from pytestqt.exceptions import TimeoutError as WaitTimeout

    from splatstudio.farm.host import FarmHost
    from splatstudio.gui.main_window import TAB_STAGES

    project = tiny_georef_project(tmp_path / "p", views=8, size=(40, 30), gaussians=300,
                                  steps=200, checkpoint_every=100, eval_every=0,
                                  preview_every=100, blocks=2)
    window.open_project(project.root)
    window.tabs.setCurrentIndex(TAB_STAGES)
    model, row = window.model, window.stage_panel.rows["train"]

    def items():
        return model.stages["train"].items

    with FarmHost(loopback=True, workers=[["--cpu-train"], ["--cpu-train"]]) as host:
        client = host.client()
        host.wait_for_workers(client, 3)
        client.close()
        for k, v in host.environment().items():
            monkeypatch.setenv(k, v)  # the stage's worker process inherits it
        model.run(["train"], device="cpu", grace_s=5.0)
        qtbot.waitUntil(lambda: len(items()) == 2 and all(
            i.state.is_active for i in items().values()), timeout=300_000)
        with contextlib.suppress(WaitTimeout):  # for the picture: both well under way
            qtbot.waitUntil(lambda: all(0.15 < i.fraction < 1 for i in items().values())
                            or not all(i.state.is_active for i in items().values()),
                            timeout=90_000)
        assert not row.items_view.isHidden()
        shown = {k: (r.state_label.text(), r.peer_label.text())
                 for k, r in row.items_view.rows.items()}
        assert sorted(shown) == sorted(items())
        assert all(s in ("running", "done") for s, _ in shown.values()), shown
        assert len({p for _, p in shown.values()}) == 2  # one block on each peer
        if os.environ.get("SPLATSTUDIO_SCREENSHOTS"):
            window.resize(1360, 860)
            window.tabs.setCurrentIndex(TAB_STAGES)  # the train stage opened its own tab
            qtbot.wait(300)
            window.grab().save(os.environ["SPLATSTUDIO_SCREENSHOTS"] + "/farm_items.png")
        qtbot.waitUntil(lambda: not model.is_running, timeout=300_000)
    assert model.stages["train"].state == StageState.DONE
    assert sorted(items()) == ["block01-to0000200", "block02-to0000200"]  # the last round
    host_name = socket.gethostname()
    assert all(i.state == ItemState.DONE and i.fraction == 1.0 and i.peer.startswith(host_name)
               for i in items().values())
    assert row.items_view.isHidden() and row.items_toggle.text() == "farm: 2/2 items done"
    logs = [m for _, m in model.stages["train"].log]
    assert any(m.startswith("[block01-to0000100@") and "/cpu] " in m for m in logs), logs[-20:]
