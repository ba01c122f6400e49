"""Start, reach and stop a farm: :class:`FarmHost` and :func:`farm_status`.

A :class:`FarmHost` runs the scheduler (:mod:`splatstudio.farm.scheduler`) and this machine's
workers (:mod:`splatstudio.farm.worker`) as subprocesses, each in its own session and tied to
this process (they die with it), on the farm's LAN address from ``coordinator.json``, or on
127.0.0.1 with a throwaway authority (``loopback=True``: partitioned work without a farm, and the
tests). Farming is on exactly while a host is started: the scheduler listens only then.

Its state is written to ``runtime.json`` in the farm folder: scheduler address and pid, worker
pids.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import FarmError, settings
from .pki import JoinFile, farm_dir, init_farm, load_join, write_private

__all__ = ["FARM_ENV", "FarmHost", "connect", "farm_from_env", "farm_status"]

#: Environment variable a stage process finds its farm in (JSON: address, credentials).
FARM_ENV = "SPLATSTUDIO_FARM"


def farm_from_env() -> tuple[JoinFile, str] | None:
    """The farm this process was started for: ``(credentials, scheduler address)``, or None
    without one (:data:`FARM_ENV` unset).

    Raises:
        FarmError: the variable is set but unreadable, or its credentials are.
    """
    raw = os.environ.get(FARM_ENV)
    if not raw:
        return None
    try:
        data = json.loads(raw)
        return load_join(data["credentials"]), str(data["address"])
    except (ValueError, KeyError, TypeError) as e:
        raise FarmError(f"${FARM_ENV} is not a farm description ({e}): {raw[:200]}") from None


def _spawn(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "NUMBA_NUM_THREADS": os.environ.get("NUMBA_NUM_THREADS", "1")}
    with open(log, "ab") as f:
        return subprocess.Popen([sys.executable, "-m", *args], stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, env=env)


def _stop(proc: subprocess.Popen, grace_s: float) -> None:
    from ..lifeline import kill_process_tree

    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
    kill_process_tree(proc.pid)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass


#: Packages whose versions must agree on every farm machine (``Client.get_versions``).
SAME_VERSIONS = ("splatstudio", "pycolmap", "numpy", "torch")


def check_versions(client: Any) -> None:
    """Refuse a farm whose machines run other versions of SplatStudio or its engines (their
    results would differ from a local run).

    Raises:
        FarmError: naming the package and the versions.
    """
    try:
        client.get_versions(check=True, packages=list(SAME_VERSIONS))
    except ValueError as e:
        raise FarmError(f"the farm's machines run different versions; install the same "
                        f"SplatStudio everywhere:\n{e}") from None


def connect(join: JoinFile, address: str | None = None, timeout_s: float = 15.0) -> Any:
    """A ``distributed.Client`` of the farm of `join` (mutual TLS with its certificate).

    Raises:
        FarmError: no scheduler answers at the address within `timeout_s`, or the handshake is
            refused (a scheduler of another farm).
    """
    from distributed import Client

    settings.apply()
    addr = address or join.scheduler[0]
    try:
        return Client(addr, security=join.security(), timeout=timeout_s, set_as_default=False)
    except (OSError, TimeoutError) as e:
        raise FarmError(f"no farm scheduler answers at {addr} ({type(e).__name__}: {e}); is "
                        "farming switched on at the coordinator, and is it the same farm?") from None


class FarmHost:
    """The scheduler and this machine's workers of a farm, as subprocesses.

    Args:
        directory: the farm folder (``farm init``); ignored with `loopback`.
        loopback: a farm of this machine only: 127.0.0.1, a throwaway authority in a temporary
            folder (deleted by :meth:`stop`).
        workers: worker argument lists, one subprocess each (``splatstudio worker`` options
            after ``--join``, e.g. ``["--cpu-train"]``); default one worker with this machine's
            slots.
        home: also serve the coordinator's files (a ``HOME`` slot).

    Raises:
        FarmError: from :meth:`start`: no credentials (run ``farm init``), or the scheduler did
            not come up (its log is named).
    """

    def __init__(self, directory: str | os.PathLike | None = None, *, loopback: bool = False,
                 workers: list[list[str]] | None = None, home: bool = True):
        self.loopback = loopback
        self._tmp: Path | None = None
        self.dir = farm_dir(directory) if not loopback else None
        self.worker_args = [[]] if workers is None else workers
        self.home = home
        self.address: str | None = None
        self.scheduler: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.credentials: JoinFile | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout_s: float = 90.0) -> FarmHost:
        """Start the scheduler and the workers; returns once the scheduler listens."""
        if self.loopback:
            self._tmp = Path(tempfile.mkdtemp(prefix="splatstudio-farm-"))
            init_farm(self._tmp, "127.0.0.1:0")
            self.dir = self._tmp
        assert self.dir is not None
        coord = self.dir / "coordinator.json"
        if not coord.is_file():
            raise FarmError(f"{self.dir}: no farm here yet: run `splatstudio farm init` first")
        self.credentials = load_join(coord)
        listen = self.credentials.scheduler[0].removeprefix("tls://")
        state = self.dir / "scheduler.state.json"
        state.unlink(missing_ok=True)
        log = self.dir / "scheduler.log"
        self.scheduler = _spawn(["splatstudio.farm.scheduler", "--credentials", str(coord),
                                 "--address", listen, "--state", str(state), "--tie"], log)
        deadline = time.monotonic() + timeout_s
        while not state.exists():
            if self.scheduler.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                self.stop()
                raise FarmError(f"the farm scheduler did not start on {listen} (log "
                                f"{log}):\n{tail}")
            time.sleep(0.1)
        self.address = json.loads(state.read_text())["address"]
        for i, extra in enumerate(self.worker_args):
            args = ["splatstudio.farm.worker", "--join", str(coord), "--scheduler", self.address,
                    "--tie", "--name", f"{socket.gethostname()}-{i}",
                    *(["--home"] if self.home and i == 0 else []), *extra]
            self.workers.append(_spawn(args, self.dir / f"worker{i}.log"))
        write_private(self.dir / "runtime.json", json.dumps({
            "scheduler": {"address": self.address, "pid": self.scheduler.pid},
            "workers": [p.pid for p in self.workers], "started": time.time(),
            "loopback": self.loopback}, indent=1) + "\n")  # fmt: skip
        return self

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop the workers, then the scheduler (SIGTERM, then SIGKILL of each process tree
        after `grace_s`); remove a loopback farm's folder."""
        for p in self.workers:
            _stop(p, grace_s)
        if self.scheduler is not None:
            _stop(self.scheduler, grace_s)
        self.workers, self.scheduler = [], None
        if self.dir is not None:
            (self.dir / "runtime.json").unlink(missing_ok=True)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> FarmHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def environment(self) -> dict[str, str]:
        """``{FARM_ENV: JSON}`` for stage processes: the scheduler address and the
        coordinator's credentials (read by :func:`farm_from_env`)."""
        if self.address is None or self.dir is None:
            raise FarmError("the farm host is not started")
        return {FARM_ENV: json.dumps({"address": self.address,
                                      "credentials": str(self.dir / "coordinator.json")})}

    # ------------------------------------------------------------------ use
    def client(self, timeout_s: float = 30.0) -> Any:
        """A client with the coordinator's credentials."""
        if self.credentials is None or self.address is None:
            raise FarmError("the farm host is not started")
        return connect(self.credentials, self.address, timeout_s)

    def wait_for_workers(self, client: Any, n: int, timeout_s: float = 120.0) -> None:
        """Block until `n` workers joined.

        Raises:
            FarmError: fewer after `timeout_s` (the worker logs are named).
        """
        try:
            client.wait_for_workers(n, timeout=timeout_s)
        except TimeoutError:
            logs = ", ".join(str(self.dir / f"worker{i}.log") for i in range(len(self.workers)))
            raise FarmError(f"{len(client.scheduler_info()['workers'])} of {n} farm workers "
                            f"joined in {timeout_s:.0f} s (logs: {logs})") from None


def farm_status(join: JoinFile, address: str | None = None,
                timeout_s: float = 10.0) -> dict[str, Any]:
    """What a farm is made of now.

    Returns:
        ``{"farm_id", "scheduler", "expires", "workers": [{"name", "address", "resources",
        "nthreads", "memory_limit", "gpu", "processing"}]}``; ``gpu`` is ``{"name",
        "memory_bytes"}`` or None, from each worker (``torch.cuda``).

    Raises:
        FarmError: the scheduler cannot be reached (farming is off).
    """
    client = connect(join, address, timeout_s)
    try:
        info = client.scheduler_info(n_workers=-1)
        processing = client.processing()
        gpus = client.run(_gpu_info)
        workers = []
        for addr, w in sorted(info.get("workers", {}).items(), key=lambda kv: str(kv[1].get("name"))):
            workers.append({
                "name": str(w.get("name")), "address": addr,
                "resources": w.get("resources", {}), "nthreads": w.get("nthreads"),
                "memory_limit": w.get("memory_limit"), "gpu": gpus.get(addr),
                "processing": [str(k) for k in processing.get(addr, ())],
            })  # fmt: skip
        return {"farm_id": join.farm_id, "scheduler": address or join.scheduler[0],
                "expires": join.expires, "workers": workers}  # fmt: skip
    finally:
        client.close()


def _gpu_info() -> dict[str, Any] | None:
    """On a worker: its visible GPU's name and memory (read-only; the only function the farm
    runs with ``client.run``)."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        p = torch.cuda.get_device_properties(0)
        return {"name": p.name, "memory_bytes": int(p.total_memory)}
    except Exception:  # noqa: BLE001 - no torch: no GPU to report
        return None
