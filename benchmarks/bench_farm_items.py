"""Per-item farm progress: how many ItemProgress messages a real farm run sends, and what they
cost the GUI.

- ``farm``: the tiny synthetic block project of the tests (8 views of 40 x 30 px, 300
  Gaussians; ``train.blocks=2``, ``--steps`` steps in segments of half of them) trained on a
  loopback farm of two ``--cpu-train`` workers; counts the ItemProgress messages per item and
  their highest rate in any one second per item (the coordinator's limit: 4 a second), the
  seconds from an item's ``queued`` to its first ``running`` (how soon the panel names the
  peer), and the train stage's wall time.
- ``gui``: ``--items`` items of one dispatch fed to a ProjectModel with a StagePanel
  (offscreen Qt): ``queued``, then ``--updates`` running updates each, then ``done``;
  microseconds per message in ``ProjectModel.handle_event`` (the panel's slots included), and
  the milliseconds of the first message of a new dispatch (rebuilding the rows).

Writes benchmarks/results/farm_items.json. Usage:
    python benchmarks/bench_farm_items.py [--steps 200] [--items 100] [--updates 50]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _common import write_result  # noqa: E402


def farm_run(steps: int) -> dict:
    from helpers.tiny_project import tiny_georef_project

    from splatstudio.events import Emitter, ItemProgress, ItemState
    from splatstudio.farm.host import FarmHost
    from splatstudio.pipeline.train import run_train

    with tempfile.TemporaryDirectory(prefix="bench_items_") as tmp:
        project = tiny_georef_project(Path(tmp) / "p", views=8, size=(40, 30), gaussians=300,
                                      steps=steps, checkpoint_every=steps // 2, eval_every=0,
                                      preview_every=steps // 2, blocks=2)
        got: list = []
        with FarmHost(loopback=True, workers=[["--cpu-train"], ["--cpu-train"]]) as host:
            client = host.client()
            host.wait_for_workers(client, 3)
            client.close()
            os.environ.update(host.environment())
            os.environ["SPLATSTUDIO_DEVICE"] = "cpu"
            t0 = time.monotonic()
            run_train(project, project.config.train, Emitter("train", got.append))
            wall = time.monotonic() - t0
    items = [e for e in got if isinstance(e, ItemProgress)]
    per_item: dict[str, list] = defaultdict(list)
    for e in items:
        per_item[e.item].append(e)
    peak = 0
    to_running = []
    for evs in per_item.values():
        peak = max(peak, max(Counter(int(e.t - evs[0].t) for e in evs).values()))
        q = next(e.t for e in evs if e.state == ItemState.QUEUED)
        r = next((e.t for e in evs if e.state == ItemState.RUNNING), None)
        if r is not None:
            to_running.append(round(r - q, 3))
    seconds = {k: round(v[-1].t - v[0].t, 2) for k, v in per_item.items()}
    return {
        "steps": steps, "train_wall_s": round(wall, 2), "items": len(per_item),
        "messages": len(items), "messages_per_item": {k: len(v) for k, v in per_item.items()},
        "item_seconds": seconds,
        "messages_per_item_second": round(len(items) / max(1e-9, sum(seconds.values())), 2),
        "peak_messages_in_one_second_per_item": peak,
        "queued_to_running_s": to_running,
        "final_states": {k: str(v[-1].state) for k, v in per_item.items()},
    }


def gui_cost(n_items: int, updates: int) -> dict:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from splatstudio.events import ItemProgress, ItemState, StageChanged
    from splatstudio.gui.app import setup_app
    from splatstudio.gui.model import ProjectModel
    from splatstudio.gui.stage_panel import StagePanel
    from splatstudio.status import StageState

    app = QApplication.instance() or QApplication([])
    setup_app(app)
    model = ProjectModel()
    panel = StagePanel(model)
    panel.resize(1360, 860)
    panel.show()
    model.handle_event(StageChanged("sfm", StageState.RUNNING))
    names = [f"sift-{i:03d}" for i in range(n_items)]
    t0 = time.perf_counter()
    model.handle_event(ItemProgress("sfm", names[0], ItemState.QUEUED, run="a", total=n_items))
    first_ms = (time.perf_counter() - t0) * 1e3
    msgs = [ItemProgress("sfm", n, ItemState.QUEUED, run="a", total=n_items) for n in names[1:]]
    for u in range(updates):
        msgs += [ItemProgress("sfm", n, ItemState.RUNNING, u / updates, f"SIFT {u}/{updates}",
                              f"peer{i % 4}/gpu0", "a", n_items) for i, n in enumerate(names)]
    msgs += [ItemProgress("sfm", n, ItemState.DONE, 1.0, "", f"peer{i % 4}/gpu0", "a", n_items)
             for i, n in enumerate(names)]
    t0 = time.perf_counter()
    for m in msgs:
        model.handle_event(m)
    per_msg_us = (time.perf_counter() - t0) / len(msgs) * 1e6
    app.processEvents()
    assert len(panel.rows["sfm"].items_view.rows) == n_items
    t0 = time.perf_counter()
    model.handle_event(ItemProgress("sfm", "match-000", ItemState.QUEUED, run="b", total=1))
    replace_ms = (time.perf_counter() - t0) * 1e3
    return {"items": n_items, "messages": len(msgs) + 1, "us_per_message": round(per_msg_us, 1),
            "first_message_ms": round(first_ms, 2),
            "new_dispatch_replaces_rows_ms": round(replace_ms, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--items", type=int, default=100)
    ap.add_argument("--updates", type=int, default=50)
    args = ap.parse_args()
    result = {"gui": gui_cost(args.items, args.updates), "farm": farm_run(args.steps)}
    print(write_result("farm_items", result))
    import json

    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
