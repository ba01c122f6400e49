"""``splatstudio worker --join FILE``: this machine's slots as dask workers of a farm.

One dask ``Nanny`` (with its worker process) per slot, the one-worker-per-GPU pattern of
dask-cuda: a GPU slot declares ``GPU=1, TRAIN=1`` and sees only its device
(``CUDA_VISIBLE_DEVICES``); the first slot of a machine also declares ``MACHINE=1`` (whole-machine
CPU work such as SIFT); a machine without an NVIDIA GPU has one CPU slot (``TRAIN=1`` only with
``--cpu-train``). The coordinator's own file server is a slot with ``HOME=1000``. Tasks are placed
by these resources, never by worker address (FARM.md section 2.3).

Workers listen on `bind` (one address) with mutual TLS, their HTTP servers on 127.0.0.1 with
``/health`` only. When the scheduler goes away (the coordinator switched farming off), the
slots join again with a backoff of 2 to 30 s until the worker is stopped (SIGTERM, SIGINT).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
from dataclasses import dataclass, field
from typing import Any

from . import FarmError, settings
from .pki import JoinFile

log = logging.getLogger(__name__)

__all__ = ["Slot", "plan_slots", "run_worker"]


@dataclass(frozen=True)
class Slot:
    """One dask worker of this machine.

    Attributes:
        name: short name, e.g. ``gpu0``, ``cpu``, ``home``; the worker is named ``HOST/name``.
        resources: dask resources it declares (``GPU``, ``TRAIN``, ``MACHINE``, ``HOME``).
        nthreads: task threads (1 for compute slots: one item at a time).
        env: environment of its worker process (``CUDA_VISIBLE_DEVICES``, thread counts).
    """

    name: str
    resources: dict[str, float]
    nthreads: int = 1
    env: dict[str, str] = field(default_factory=dict)


def cuda_device_count() -> int:
    """NVIDIA GPUs torch sees here (0 without torch or CUDA)."""
    try:
        import torch

        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - no torch, a broken driver: no GPU slots
        return 0


def plan_slots(gpus: int | str = "all", *, cpu_train: bool = False, home: bool = False,
               n_gpus: int | None = None) -> list[Slot]:
    """The slots of this machine.

    Args:
        gpus: how many GPUs to offer (``"all"``, or a count; 0: CPU only).
        cpu_train: let a CPU slot take training blocks (``TRAIN=1``; slow, for CPU-only farms
            and tests).
        home: add the coordinator's file-server slot (``HOME=1000``, 4 threads).
        n_gpus: GPUs present (default :func:`cuda_device_count`).

    Raises:
        FarmError: `gpus` is neither ``all`` nor a count, or asks for more GPUs than present.
    """
    have = cuda_device_count() if n_gpus is None else n_gpus
    if gpus == "all":
        want = have
    else:
        try:
            want = int(gpus)
        except ValueError:
            raise FarmError(f"--gpus {gpus!r}: expected a number or 'all'") from None
        if not 0 <= want <= have:
            raise FarmError(f"--gpus {want}: this machine has {have} NVIDIA GPU(s)")
    slots = [Slot(f"gpu{i}", {"GPU": 1, "TRAIN": 1, **({"MACHINE": 1} if i == 0 else {})},
                  env={"CUDA_VISIBLE_DEVICES": str(i)}) for i in range(want)]  # fmt: skip
    if not slots:
        res: dict[str, float] = {"MACHINE": 1, **({"TRAIN": 1} if cpu_train else {})}
        slots.append(Slot("cpu", res, env={"CUDA_VISIBLE_DEVICES": ""}))
    if home:
        slots.append(Slot("home", {"HOME": 1000}, nthreads=4))
    return slots


def root_cause(e: BaseException) -> str:
    """``Type: message`` of the innermost exception `e` was raised from (dask wraps a refused
    TLS handshake in "Nanny failed to start")."""
    seen = set()
    while (e.__cause__ or e.__context__) is not None and id(e) not in seen:
        seen.add(id(e))
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    return f"{type(e).__name__}: {e}"


async def _run_slot(join: JoinFile, scheduler: str, slot: Slot, bind: str, machine: str,
                    stop: asyncio.Event, ports: tuple[Any, Any]) -> None:
    from distributed import Nanny

    backoff = 2.0
    while not stop.is_set():
        nanny = Nanny(scheduler, nthreads=slot.nthreads, name=f"{machine}/{slot.name}",
                      resources=slot.resources, security=join.security(), host=bind,
                      port=ports[0], worker_port=ports[1], protocol="tls",
                      env={"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), **slot.env},
                      dashboard_address="127.0.0.1:0", silence_logs=logging.WARNING)  # fmt: skip
        try:
            await nanny
        except Exception as e:  # noqa: BLE001 - scheduler not there (yet): try again
            log.warning("%s: cannot join %s (%s); again in %.0f s", slot.name, scheduler,
                        root_cause(e), backoff)
        else:
            backoff = 2.0
            finished = asyncio.ensure_future(nanny.finished())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({finished, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
        with contextlib.suppress(Exception):
            await nanny.close(timeout=10)
        if stop.is_set():
            break
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), backoff)
        backoff = min(30.0, backoff * 2)


async def run_worker(join: JoinFile, slots: list[Slot], *, bind: str, name: str | None = None,
                     scheduler: str | None = None, ports: tuple[Any, Any] = (0, 0)) -> None:
    """Serve `slots` to the farm of `join` until SIGTERM / SIGINT.

    Args:
        join: the farm's join file.
        slots: :func:`plan_slots`.
        bind: the one address the workers listen on.
        name: machine name in worker names (default the host name).
        scheduler: scheduler address (default the join file's first).
        ports: nanny and worker port (or ``"LO:HI"`` range) each; 0: any free port.

    Raises:
        FarmError: the join file was written by another SplatStudio version.
    """
    from .. import __version__

    if join.splatstudio and join.splatstudio != __version__:
        raise FarmError(f"{join.path}: written by SplatStudio {join.splatstudio}, this is "
                        f"{__version__}: every farm machine needs the same version")
    settings.apply()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    machine = name or socket.gethostname()
    address = scheduler or join.scheduler[0]
    await asyncio.gather(*(_run_slot(join, address, s, bind, machine, stop, ports) for s in slots))


def default_bind(scheduler: str) -> str:
    """The address to listen on: 127.0.0.1 for a scheduler on loopback, else this machine's
    default-route address (:func:`splatstudio.farm.pki.default_address`)."""
    import ipaddress

    from .pki import default_address, parse_address

    host, _ = parse_address(scheduler)
    return "127.0.0.1" if ipaddress.ip_address(host).is_loopback else default_address()


def main(argv: list[str] | None = None) -> int:
    """``python -m splatstudio.farm.worker`` (the same as ``splatstudio worker``)."""
    ap = argparse.ArgumentParser(prog="splatstudio worker")
    add_arguments(ap)
    return serve_from_args(ap.parse_args(argv))


def add_arguments(ap: Any) -> None:
    """The options of ``splatstudio worker`` (shared with the CLI)."""
    ap.add_argument("--join", required=True, help="the farm's join file (farm init writes it)")
    ap.add_argument("--gpus", default="all", help="GPUs to offer: a number or 'all' (default)")
    ap.add_argument("--cpu-train", action="store_true",
                    help="let the CPU slot train blocks too (no NVIDIA GPU; slow)")
    ap.add_argument("--bind", help="address to listen on (default: this machine's LAN address, "
                    "127.0.0.1 for a scheduler on loopback)")
    ap.add_argument("--name", help="machine name shown in the farm (default: host name)")
    ap.add_argument("--scheduler", help="scheduler address (default: the join file's)")
    ap.add_argument("--home", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tie", action="store_true", help=argparse.SUPPRESS)


def serve_from_args(args: Any) -> int:
    """Run ``splatstudio worker`` with parsed `args` until SIGTERM / SIGINT."""
    if getattr(args, "tie", False):
        from ..lifeline import tie_to_parent

        tie_to_parent()
    from .pki import load_join

    join = load_join(args.join)
    scheduler = args.scheduler or join.scheduler[0]
    slots = plan_slots(args.gpus, cpu_train=args.cpu_train, home=args.home)
    bind = args.bind or default_bind(scheduler)
    # on a LAN fixed port ranges (one firewall rule, FARM.md section 5); on loopback any port
    ports = (0, 0) if bind == "127.0.0.1" else ("8790:8799", "8800:8809")
    print(f"farm {join.farm_id}: {len(slots)} slot(s) "
          f"({', '.join(f'{s.name} {s.resources}' for s in slots)}) joining {scheduler} "
          f"from {bind}; Ctrl-C stops", flush=True)
    asyncio.run(run_worker(join, slots, bind=bind, name=args.name, scheduler=scheduler,
                           ports=ports))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
