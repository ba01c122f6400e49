"""Training in spatial blocks (issue 13) on the real 2048 walk: the plan, the merge by
ownership, resume, and the same splat here and on a farm of two loopback workers, also when one peer is killed mid-block
(its segment reruns on the other from the last shipped checkpoint) or the run is cancelled."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time

import numpy as np
import pytest

pytest.importorskip("gsplat")
pytest.importorskip("pycolmap")

from splatstudio.errors import Cancelled  # noqa: E402
from splatstudio.events import Emitter  # noqa: E402
from splatstudio.pipeline.train import run_train  # noqa: E402
from splatstudio.project import Project  # noqa: E402
from splatstudio.splats.io import load_splats  # noqa: E402

STEPS = 40


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _item_processes() -> list:
    import psutil

    return [p for p in psutil.process_iter(["cmdline"])
            if "splatstudio.farm.itemproc" in " ".join(p.info["cmdline"] or [])]


@pytest.fixture(scope="module")
def walk(tmp_path_factory, panos_2048):
    """The real 2048 walk through ingest..georef with the test preset (about a minute), set to
    train 2 blocks of STEPS steps in segments of STEPS / 2."""
    from splatstudio.config import ProjectConfig, update_config
    from splatstudio.pipeline.runner import PipelineRunner

    cfg = ProjectConfig.from_preset("test")
    cfg.train = update_config(cfg.train, {"steps": STEPS, "checkpoint_every": STEPS // 2,
                                          "eval_every": 0, "preview_every": STEPS // 2,
                                          "blocks": 2, "allow_slow": True})
    project = Project.create(tmp_path_factory.mktemp("blocks") / "p", panos_2048, cfg)
    result = PipelineRunner(project, device="cpu").run(until="georef")
    assert result.ok, result.reason
    return project


def _copy(project: Project, dst) -> Project:
    shutil.copytree(project.root, dst, symlinks=True)
    shutil.rmtree(dst / "train", ignore_errors=True)
    (dst / ".lock").unlink(missing_ok=True)
    return Project.open(dst)


def _run(project: Project, got: list | None = None, cancel: threading.Event | None = None,
         on_event=None):
    def sink(e):
        if got is not None:
            got.append(e)
        if on_event is not None:
            on_event(e)

    events = Emitter("train", sink, cancel=cancel, min_interval_s=0.0)
    return run_train(project, project.config.train, events)


@pytest.fixture(scope="module")
def local(walk, tmp_path_factory):
    project = _copy(walk, tmp_path_factory.mktemp("local") / "p")
    got: list = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPLATSTUDIO_DEVICE", "cpu")
        result = _run(project, got)
    return project, result, got


def test_blocks_partition_the_capture_and_merge_each_gaussian_once(local):
    project, result, got = local
    root = project.root
    plan = json.loads((root / "train/blocks/plan.json").read_text())
    assert len(plan["blocks"]) == 2 and result["blocks"] == 2
    owned = [set(b["owned_frames"]) for b in plan["blocks"]]
    assert not owned[0] & owned[1] and owned[0] | owned[1] == {"1", "2", "3", "4", "5"}
    views = [set(b["views"]) for b in plan["blocks"]]
    assert len(views[0] | views[1]) == 90 and views[0] & views[1]  # expanded cells overlap
    merged = load_splats(root / "train/splat.ply")
    metrics = json.loads((root / "train/metrics.json").read_text())
    kept = [b["gaussians_kept"] for b in metrics["blocks"]]
    assert len(merged) == sum(kept) == result["gaussians"] and min(kept) > 0
    # ownership of the merged means: exactly the block each came from
    from splatstudio.farm.partition import owner

    own = owner(np.asarray(merged.means)[:, :2], np.asarray(plan["centroids"]),
                np.asarray(plan["weights"]))
    assert np.bincount(own, minlength=2).tolist() == kept
    assert metrics["evals"][0]["merged"] and metrics["evals"][0]["psnr"] == result["psnr"]
    assert all((root / f"train/blocks/b0{b}/splat.ply").exists() for b in (1, 2))
    # a rerun trains nothing again
    again: list = []
    assert _run(project, again)["psnr"] == result["psnr"]
    assert sum("already trained" in getattr(e, "message", "") for e in again) == 2


@pytest.mark.slow
def test_on_a_farm_the_same_splat_even_when_a_peer_dies(local, tmp_path, monkeypatch):
    from splatstudio.farm.host import FarmHost
    from splatstudio.lifeline import kill_process_tree

    want = _sha(local[0].root / "train/splat.ply")
    project = _copy(local[0], tmp_path / "farm")
    got: list = []
    killed: list = []
    with FarmHost(loopback=True, workers=[["--cpu-train"], ["--cpu-train"]]) as host:
        client = host.client()
        host.wait_for_workers(client, 3)
        client.close()
        env = host.environment()

        def on_event(e):  # kill one whole peer once the second segments train
            msg = getattr(e, "message", "")
            if not killed and "to0000040@" in msg and "step" in msg:
                killed.append(msg)
                kill_process_tree(host.workers[1].pid)

        for k, v in env.items():
            monkeypatch.setenv(k, v)
        result = _run(project, got, on_event=on_event)
    assert killed, "no segment was seen training"
    msgs = [getattr(e, "message", "") for e in got]
    # segments resume from the checkpoint shipped back after the first round
    assert any("resuming from checkpoint ckpt_0000020.pt at step 20" in m for m in msgs), msgs
    assert result["gaussians"] == local[1]["gaussians"]
    assert _sha(project.root / "train/splat.ply") == want  # peers never change the result
    rounds = sorted((project.root / "train/blocks/farm").glob("round*.json"))
    assert len(rounds) == 2
    items = json.loads(rounds[-1].read_text())["items"]
    assert all(v["state"] == "done" for v in items.values())
    _check_item_progress(got)


def _check_item_progress(got: list) -> None:
    """The dispatcher's ItemProgress messages: every item queued first, then on a named peer,
    done last; the killed peer's item retried on the other; at most 4 a second per item."""
    import socket

    from splatstudio.events import ItemProgress, ItemState

    by_item: dict[str, list] = {}
    for e in got:
        if isinstance(e, ItemProgress):
            assert e.stage == "train" and e.total == 2
            by_item.setdefault(e.item, []).append(e)
    assert sorted(by_item) == ["block01-to0000020", "block01-to0000040",
                               "block02-to0000020", "block02-to0000040"]
    host = socket.gethostname()
    for evs in by_item.values():
        assert evs[0].state == ItemState.QUEUED and evs[0].peer == ""
        assert evs[-1].state == ItemState.DONE and evs[-1].fraction == 1.0
        assert evs[-1].peer.startswith(f"{host}-"), evs[-1]  # FarmHost names HOST-i/SLOT
        assert len({e.run for e in evs}) == 1
        states = [e.state for e in evs]
        assert ItemState.RUNNING in states
        for a, b in zip(evs, evs[1:], strict=False):  # throttled per item and state
            assert a.state != b.state or b.t - a.t > 0.2, (a, b)
    assert {e.run for e in by_item["block01-to0000020"]} != {e.run for e in
                                                           by_item["block01-to0000040"]}
    retried = [evs for evs in by_item.values() if ItemState.RETRIED in [e.state for e in evs]]
    assert len(retried) == 1, {k: [e.state for e in v] for k, v in by_item.items()}
    evs = retried[0]
    first = next(e.peer for e in evs if e.state == ItemState.RUNNING)
    again = next(e.peer for e in evs if e.state == ItemState.RETRIED)
    assert first != again and first.startswith(f"{host}-1")  # the killed one
    assert evs[-1].peer == again


@pytest.mark.slow
def test_cancel_on_the_farm_ends_every_item_and_a_rerun_keeps_finished_segments(local, tmp_path,
                                                                                monkeypatch):
    from splatstudio.farm.host import FarmHost

    project = _copy(local[0], tmp_path / "cancel")
    token = threading.Event()

    def on_event(e):
        if "to0000040@" in getattr(e, "message", ""):
            token.set()  # the second round has started

    with FarmHost(loopback=True, workers=[["--cpu-train"], ["--cpu-train"]]) as host:
        client = host.client()
        host.wait_for_workers(client, 3)
        client.close()
        for k, v in host.environment().items():
            monkeypatch.setenv(k, v)
        stopped: list = []
        with pytest.raises(Cancelled):
            _run(project, stopped, cancel=token, on_event=on_event)
        from splatstudio.events import ItemProgress, ItemState

        last = {e.item: e.state for e in stopped if isinstance(e, ItemProgress)}
        assert {k: v for k, v in last.items() if k.endswith("40")} == {
            "block01-to0000040": ItemState.CANCELLED, "block02-to0000040": ItemState.CANCELLED}
        t0 = time.monotonic()
        while _item_processes() and time.monotonic() - t0 < 20:  # grace 10 s, then killed
            time.sleep(0.2)
        assert not _item_processes()
        # the first round's checkpoints are in the project; a rerun starts from them
        for b in (1, 2):
            latest = json.loads((project.root / f"train/blocks/b0{b}/checkpoints/latest.json")
                                .read_text())
            assert latest["step"] == 20
        _run(project)
    rounds = sorted((project.root / "train/blocks/farm").glob("round*.json"))
    assert len(rounds) == 3  # round 1, the cancelled round 2, the rerun's round
    items = json.loads(rounds[-1].read_text())["items"]
    assert sorted(items) == ["block01-to0000040", "block02-to0000040"]  # round 1 not redone
    assert all(v["state"] == "done" for v in items.values())
    assert _sha(project.root / "train/splat.ply") == _sha(local[0].root / "train/splat.ply")
