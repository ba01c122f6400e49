"""The farm's dask scheduler process: ``python -m splatstudio.farm.scheduler``.

It listens with mutual TLS on one address (``--address IP:PORT``; port 0 picks a free one), its
HTTP server on 127.0.0.1 with ``/health`` only, writes ``{"address", "pid", "farm_id"}`` to
``--state`` once it accepts connections, and stops on SIGTERM or SIGINT, or when the process that
started it dies (``--tie``, :func:`splatstudio.lifeline.tie_to_parent`), so a farm never outlives
the app that switched it on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from pathlib import Path

from . import settings
from .pki import load_join, parse_address, write_private


async def serve(credentials: Path, address: str, state: Path | None) -> None:
    """Run the scheduler until a stop signal.

    Args:
        credentials: the coordinator's credentials (``coordinator.json``, a join file layout).
        address: ``IP:PORT`` to listen on (never all interfaces; port 0: any free port).
        state: file written with the listening address once the scheduler is up.

    Raises:
        FarmError: bad credentials or address.
    """
    from distributed import Scheduler

    settings.apply()
    creds = load_join(credentials)
    host, port = parse_address(address)
    async with Scheduler(host=host, port=port, protocol="tls", security=creds.security(),
                         dashboard=False, dashboard_address="127.0.0.1:0") as sched:  # fmt: skip
        if state is not None:
            write_private(state, json.dumps({"address": sched.address, "pid": os.getpid(),
                                             "farm_id": creds.farm_id}) + "\n")  # fmt: skip
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m splatstudio.farm.scheduler")
    ap.add_argument("--credentials", required=True, type=Path, help="coordinator.json")
    ap.add_argument("--address", required=True, help="IP:PORT to listen on")
    ap.add_argument("--state", type=Path, help="write the listening address here")
    ap.add_argument("--tie", action="store_true", help="exit when the parent process dies")
    args = ap.parse_args(argv)
    if args.tie:
        from ..lifeline import tie_to_parent

        tie_to_parent()
    asyncio.run(serve(args.credentials, args.address, args.state))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
