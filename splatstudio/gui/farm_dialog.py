"""Run → Farm…: set this machine up as a farm's coordinator, switch farming on and off, see the
peers (:mod:`splatstudio.farm`).

:class:`FarmController` owns the running farm (scheduler and this machine's workers, a
:class:`~splatstudio.farm.host.FarmHost`) for the window's lifetime: while farming is on, every
stage the app runs finds it through ``SPLATSTUDIO_FARM`` (as ``splatstudio run --farm`` does), and
closing the window switches it off. Starting, stopping and polling the peers run in threads, so
the window never waits on the network.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..farm.cli import TRUST

POLL_MS = 3000


class FarmController(QObject):
    """Farming on or off for this app.

    Signals:
        stateChanged(str): ``"off"``, ``"starting"``, ``"on"``, ``"stopping"``.
        peersChanged(object): the latest :func:`splatstudio.farm.host.farm_status` dict.
        failed(str): a start or a poll failed (the message says why).
    """

    stateChanged = Signal(str)
    peersChanged = Signal(object)
    failed = Signal(str)

    def __init__(self, farm_dir: str | Path | None = None, parent: QObject | None = None):
        super().__init__(parent)
        from ..farm.pki import farm_dir as default_dir

        self.dir = default_dir(farm_dir)
        self.host: Any = None
        self.state = "off"
        self.status: dict[str, Any] | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self.poll)
        self._polling = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _set(self, state: str) -> None:
        # also called from the farm thread: the signal is queued to the receivers' thread
        self.state = state
        self.stateChanged.emit(state)

    def initialised(self) -> bool:
        return (self.dir / "coordinator.json").is_file()

    def start(self) -> None:
        """Switch farming on (in a thread that lives until :meth:`stop`: the scheduler and
        workers are tied to the thread that started them, see :mod:`splatstudio.lifeline`)."""
        if self.state != "off":
            return
        self._set("starting")
        self._stop = threading.Event()
        stop = self._stop

        def work() -> None:
            from ..farm.host import FARM_ENV, FarmHost

            try:
                host = FarmHost(self.dir).start()
            except Exception as e:  # noqa: BLE001 - shown to the user
                self.failed.emit(str(e))
                self._set("off")
                return
            if not stop.is_set():
                self.host = host
                os.environ.update(host.environment())
                self._set("on")
                stop.wait()
            os.environ.pop(FARM_ENV, None)
            host.stop()
            self._set("off")

        self._thread = threading.Thread(target=work, name="farm", daemon=True)
        self._thread.start()

    def stop(self, wait: bool = False) -> None:
        """Switch farming off (returns at once, or once it is off with `wait`)."""
        from ..farm.host import FARM_ENV

        os.environ.pop(FARM_ENV, None)
        self._timer.stop()
        if self.state not in ("on", "starting"):
            return
        self.host = None
        self._set("stopping")
        self._stop.set()  # a farm still starting is stopped as soon as it is up
        if wait and self._thread is not None:
            self._thread.join(60)

    def poll(self) -> None:
        """Fetch the peers (in a thread); emits :attr:`peersChanged`."""
        if self.host is None or self._polling:
            return
        self._polling = True
        host = self.host

        def work() -> None:
            from ..farm.host import farm_status

            try:
                st = farm_status(host.credentials, host.address, timeout_s=5)
                self.status = st
                self.peersChanged.emit(st)
            except Exception as e:  # noqa: BLE001 - shown to the user
                self.failed.emit(str(e))
            finally:
                self._polling = False

        threading.Thread(target=work, daemon=True).start()

    def watch(self, on: bool) -> None:
        if on:
            self._timer.start()
            self.poll()
        else:
            self._timer.stop()


class FarmDialog(QDialog):
    """The farm's window: set up, the join file and what it means, on/off, the peers."""

    def __init__(self, controller: FarmController, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("LAN farm")
        self.setMinimumWidth(760)
        self.controller = controller
        self.address = QLineEdit()
        self.address.setPlaceholderText("this machine's LAN address, e.g. 192.168.1.10")
        self.init_button = QPushButton("Set up this machine as the coordinator")
        self.init_button.clicked.connect(self._init)
        self.farm_id = QLabel()
        self.join_path = QLineEdit()
        self.join_path.setReadOnly(True)
        copy = QPushButton("Copy path")
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.join_path.text()))
        join_row = QHBoxLayout()
        join_row.addWidget(self.join_path, 1)
        join_row.addWidget(copy)
        trust = QLabel(TRUST + " On each peer: splatstudio worker --join join.json")
        trust.setWordWrap(True)
        trust.setObjectName("warning")
        self.switch = QPushButton()
        self.switch.setCheckable(True)
        self.switch.clicked.connect(self._toggle)
        self.state_label = QLabel()
        self.state_label.setObjectName("muted")
        self.state_label.setWordWrap(True)
        self.peers = QTableWidget(0, 4)
        self.peers.setHorizontalHeaderLabels(["Worker", "GPU or CPU", "Resources", "Running"])
        self.peers.horizontalHeader().setStretchLastSection(True)
        self.peers.verticalHeader().setVisible(False)
        self.peers.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)

        form = QFormLayout()
        setup = QHBoxLayout()
        setup.addWidget(self.address, 1)
        setup.addWidget(self.init_button)
        form.addRow("Address", setup)
        form.addRow("Farm id", self.farm_id)
        form.addRow("Join file", join_row)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(trust)
        row = QHBoxLayout()
        row.addWidget(self.switch)
        row.addWidget(self.state_label, 1)
        lay.addLayout(row)
        lay.addWidget(self.peers, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)

        controller.stateChanged.connect(self._show_state, Qt.ConnectionType.QueuedConnection)
        controller.peersChanged.connect(self._show_peers, Qt.ConnectionType.QueuedConnection)
        controller.failed.connect(self._show_error, Qt.ConnectionType.QueuedConnection)
        self._refresh_setup()
        self._show_state(controller.state)
        if controller.status is not None:
            self._show_peers(controller.status)

    def _refresh_setup(self) -> None:
        from ..farm.pki import load_join

        c = self.controller
        if c.initialised():
            try:
                join = load_join(c.dir / "join.json")
                self.farm_id.setText(f"{join.farm_id}   (scheduler {join.scheduler[0]})")
                self.join_path.setText(str(c.dir / "join.json"))
                self.init_button.setText("New credentials for this address")
            except Exception as e:  # noqa: BLE001 - shown
                self.farm_id.setText(f"unreadable: {e}")
        else:
            self.farm_id.setText("not set up yet")
            self.join_path.setText("")
        if not self.address.text():
            try:
                from ..farm.pki import default_address

                self.address.setText(default_address())
            except Exception:  # noqa: BLE001 - left empty for the user
                pass

    def _init(self) -> None:
        from ..farm.pki import init_farm

        try:
            init_farm(self.controller.dir, self.address.text().strip() or None)
        except Exception as e:  # noqa: BLE001 - shown
            self._show_error(str(e))
            return
        self._refresh_setup()
        self._show_state(self.controller.state)

    def _toggle(self) -> None:
        if self.controller.state == "off":
            self.controller.start()
        else:
            self.controller.stop()

    def _show_state(self, state: str) -> None:
        ready = self.controller.initialised()
        self.switch.setEnabled(ready and state in ("off", "on"))
        self.switch.setChecked(state == "on")
        self.switch.setText("Switch farming off" if state == "on" else "Switch farming on")
        self.init_button.setEnabled(state == "off")
        text = {"off": "Farming is off: nothing listens.",
                "starting": "Starting the scheduler and this machine's workers…",
                "on": f"Farming is on at {getattr(self.controller.host, 'address', '')}: runs "
                      "started from this window spread SfM features and matching over the peers.",
                "stopping": "Stopping…"}[state]  # fmt: skip
        if not ready:
            text = "Set up this machine first (its LAN address above)."
        self.state_label.setText(text)
        self.controller.watch(state == "on" and self.isVisible())
        if state == "off":
            self.peers.setRowCount(0)

    def _show_peers(self, st: dict[str, Any]) -> None:
        self.peers.setRowCount(len(st["workers"]))
        for r, w in enumerate(st["workers"]):
            gpu = w.get("gpu")
            kind = f"{gpu['name']} {gpu['memory_bytes'] / 2**30:.0f} GiB" if gpu else "CPU"
            res = ", ".join(f"{k}={v:g}" for k, v in sorted(w["resources"].items()))
            for c, text in enumerate((w["name"], kind, res, ", ".join(w["processing"]) or "idle")):
                self.peers.setItem(r, c, QTableWidgetItem(text))
        self.peers.resizeColumnsToContents()

    def _show_error(self, message: str) -> None:
        self.state_label.setText(message)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self.controller.watch(self.controller.state == "on")

    def hideEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.controller.watch(False)
        super().hideEvent(event)
