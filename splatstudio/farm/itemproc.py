"""The process an item runs in: ``python -m splatstudio.farm.itemproc WORKDIR``.

``WORKDIR`` holds ``item.json`` (:class:`~splatstudio.farm.items.WorkItem`), the inputs under
``in/`` at their project paths, and gets the outputs in ``out/``. The item's events go to stdout
as JSON lines (``Event.to_dict()``) for the supervisor to relay; a file ``WORKDIR/cancel`` is the
cancel flag (``events.check_cancelled()`` raises once it exists, as in a local stage). Exit
codes: 0 done, 3 the item raised a SplatStudio error (message in ``error.json``), 4 cancelled;
anything else (a signal, an out-of-memory kill) is a crash the farm retries elsewhere.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

EXIT_DONE, EXIT_FAILED, EXIT_CANCELLED = 0, 3, 4


class _FlagFile:
    """Cancel token: set once the file exists."""

    def __init__(self, path: Path):
        self.path = path

    def is_set(self) -> bool:
        return self.path.exists()


def main(argv: list[str] | None = None) -> int:
    from ..errors import Cancelled, SplatStudioError
    from ..events import Emitter
    from ..lifeline import tie_to_parent
    from .items import ITEM_FUNCTIONS

    tie_to_parent()
    work = Path((argv if argv is not None else sys.argv[1:])[0])
    item = json.loads((work / "item.json").read_text())
    module, _, name = ITEM_FUNCTIONS[item["kind"]].partition(":")
    fn = getattr(importlib.import_module(module), name)

    def sink(event) -> None:
        print(json.dumps(event.to_dict()), flush=True)

    events = Emitter(item["item_id"], sink, cancel=_FlagFile(work / "cancel"), min_interval_s=0.5)
    out = work / "out"
    out.mkdir(exist_ok=True)
    try:
        fn(item["spec"], work / "in", out, events)
    except Cancelled:
        return EXIT_CANCELLED
    except SplatStudioError as e:
        (work / "error.json").write_text(json.dumps({"error": str(e)}))
        return EXIT_FAILED
    return EXIT_DONE


if __name__ == "__main__":
    raise SystemExit(main())
