"""The farm's commands: ``splatstudio farm init|status|serve`` and ``splatstudio worker``
(registered by :mod:`splatstudio.cli`)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import Any

TRUST = ("Whoever holds this join file can run code on every machine of the farm, this one "
         "included: keep it private (it is readable by you only), copy it only to your own "
         "machines, and run `splatstudio farm init --rotate` to revoke every copy.")


def add_parsers(sub: Any) -> None:
    """Add ``farm`` and ``worker`` to the CLI's subparsers."""
    from .worker import add_arguments

    p = sub.add_parser("farm", help="the LAN farm: set up, inspect, switch on")
    fsub = p.add_subparsers(dest="farm_command", metavar="ACTION", required=True)
    q = fsub.add_parser("init", help="make this machine the farm's coordinator: a certificate "
                        "authority and the join file for peers")
    q.add_argument("--address", help="IP[:PORT] the scheduler listens on (default: this "
                   "machine's LAN address, port 8786)")
    q.add_argument("--rotate", action="store_true",
                   help="new authority: every join file handed out so far stops working")
    q.add_argument("--farm-dir", help="farm folder (default ~/.config/splatstudio/farm or "
                   "$SPLATSTUDIO_FARM_DIR)")
    q = fsub.add_parser("status", help="the farm's peers, their GPU or CPU, what they run")
    q.add_argument("--farm", metavar="FILE", help="a join file (default: this machine's "
                   "coordinator.json)")
    q.add_argument("--farm-dir", help="farm folder of the coordinator")
    q.add_argument("--json", action="store_true", help="print one JSON object")
    q = fsub.add_parser("serve", help="switch farming on until Ctrl-C: the scheduler and this "
                        "machine's workers (a `run --farm` does this by itself)")
    q.add_argument("--farm-dir", help="farm folder of the coordinator")
    q.add_argument("--cpu-train", action="store_true", help="let this machine's CPU train blocks")

    p = sub.add_parser("worker", help="offer this machine's GPUs (or CPU) to a farm")
    add_arguments(p)


def _coordinator_file(args: argparse.Namespace) -> str:
    from .pki import farm_dir

    return args.farm or str(farm_dir(getattr(args, "farm_dir", None)) / "coordinator.json")


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``farm`` or ``worker`` command; returns the exit code.

    Raises:
        FarmError: as the command's functions (the CLI prints the message).
    """
    if args.command == "worker":
        from .worker import serve_from_args

        return serve_from_args(args)
    if args.farm_command == "init":
        from .pki import init_farm

        r = init_farm(args.farm_dir, args.address, rotate=args.rotate)
        what = "new authority" if r["created"] else "same authority, fresh credentials"
        print(f"farm {r['farm_id']} ({what}); the scheduler will listen on "
              f"{r['scheduler'][0]} while farming is on")
        print(f"join file for peers: {r['join']}")
        print("on each peer: splatstudio worker --join join.json")
        print(TRUST)
        return 0
    if args.farm_command == "status":
        from .host import farm_status
        from .pki import load_join

        st = farm_status(load_join(_coordinator_file(args)))
        if args.json:
            print(json.dumps(st, indent=1))
            return 0
        print(f"farm {st['farm_id']} at {st['scheduler']} (certificate until {st['expires']})")
        for w in st["workers"]:
            gpu = w["gpu"]
            kind = (f"{gpu['name']} {gpu['memory_bytes'] / 2**30:.0f} GiB" if gpu else "CPU")
            res = ", ".join(f"{k}={v:g}" for k, v in sorted(w["resources"].items()))
            doing = ", ".join(w["processing"]) or "idle"
            print(f"  {w['name']:<24} {kind:<22} {res:<28} {doing}")
        if not st["workers"]:
            print("  no workers yet: run `splatstudio worker --join join.json` on a peer")
        return 0
    if args.farm_command == "serve":
        from .host import FarmHost

        host = FarmHost(args.farm_dir, workers=[["--cpu-train"] if args.cpu_train else []])
        host.start()
        print(f"farming on: scheduler {host.address}; Ctrl-C switches it off", flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(0.5):
                if host.scheduler is None or host.scheduler.poll() is not None:
                    print("the farm scheduler stopped", file=sys.stderr)
                    return 1
        except KeyboardInterrupt:
            pass
        finally:
            host.stop()
        print("farming off")
        return 0
    raise AssertionError(args.farm_command)
