"""Run → Farm…: set this machine up, switch farming on (a real scheduler and worker on
loopback), see the peers, switch it off; closing the window switches it off too."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("distributed")
pytest.importorskip("cryptography")
pytestmark = [pytest.mark.gui, pytest.mark.slow]


def test_farm_dialog_sets_up_switches_on_lists_peers_and_off(window, qtbot, tmp_path, monkeypatch):
    import psutil

    from splatstudio.farm.host import FARM_ENV

    monkeypatch.setenv("SPLATSTUDIO_FARM_DIR", str(tmp_path / "farm"))
    monkeypatch.delenv(FARM_ENV, raising=False)
    window.farm_action.trigger()
    dlg = window.farm_window
    assert not dlg.switch.isEnabled() and "Set up this machine" in dlg.state_label.text()
    dlg.address.setText("127.0.0.1:0")
    dlg.init_button.click()
    assert len(dlg.farm_id.text().split()[0]) == 16
    assert dlg.join_path.text() == str(tmp_path / "farm" / "join.json")
    assert dlg.switch.isEnabled()

    dlg.switch.click()
    qtbot.waitUntil(lambda: window.farm.state == "on", timeout=90_000)
    assert FARM_ENV in os.environ  # runs started from the window find the farm
    window.farm.poll()
    qtbot.waitUntil(lambda: dlg.peers.rowCount() == 2, timeout=60_000)  # CPU and home slots
    names = sorted(dlg.peers.item(r, 0).text() for r in range(2))
    assert names[0].endswith("/cpu") and names[1].endswith("/home")
    assert dlg.peers.item(0, 1).text() == "CPU" and "Farming is on" in dlg.state_label.text()
    pids = [window.farm.host.scheduler.pid] + [p.pid for p in window.farm.host.workers]

    if os.environ.get("SPLATSTUDIO_SCREENSHOTS"):
        dlg.grab().save(os.environ["SPLATSTUDIO_SCREENSHOTS"] + "/farm.png")

    dlg.switch.click()
    qtbot.waitUntil(lambda: window.farm.state == "off", timeout=60_000)
    assert FARM_ENV not in os.environ and dlg.peers.rowCount() == 0
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids)

    # on again, then the window closes: farming ends with it
    dlg.switch.click()
    qtbot.waitUntil(lambda: window.farm.state == "on", timeout=90_000)
    pids = [window.farm.host.scheduler.pid] + [p.pid for p in window.farm.host.workers]
    window.close()
    assert window.farm.state == "off" and FARM_ENV not in os.environ
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids)
