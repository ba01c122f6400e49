"""The stage runner on real processes: events, cancel (both tiers), SIGKILL, crash, resume."""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil
import pytest

from splatstudio.config import ProjectConfig, update_config
from splatstudio.events import Progress
from splatstudio.pipeline.runner import PipelineRunner, StageJob
from splatstudio.project import Project
from splatstudio.status import StageState

pytestmark = pytest.mark.slow


def _project(tmp_path, src, preset="test", **reproject):
    cfg = ProjectConfig.from_preset(preset)
    cfg.reproject = update_config(cfg.reproject, reproject)
    return Project.create(tmp_path / "proj", src, cfg)


def _run_in_thread(job: StageJob):
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("state", job.wait()))
    job.start()
    t.start()
    return t, out


def test_ingest_and_reproject_emit_events_and_write_status(tmp_path, panos_2048):
    project = _project(tmp_path, panos_2048)
    events = []
    result = PipelineRunner(project, events.append).run(until="reproject")
    assert result.states == {"ingest": StageState.DONE, "reproject": StageState.DONE} and result.ok
    kinds = {e.kind for e in events}
    assert {"progress", "log", "metric", "artifact", "stagechanged"} <= kinds
    assert [e.fraction for e in events if isinstance(e, Progress)][-1] == 1.0
    st = project.read_status("reproject")
    assert st.state == StageState.DONE and st.seconds > 0 and st.metrics["views"] == 90
    assert "reproject/frames.json" in st.artifacts
    # nothing to do on a second run
    again = PipelineRunner(project).run(until="reproject")
    assert again.states == {"ingest": StageState.SKIPPED, "reproject": StageState.SKIPPED}


def test_sigkill_leaves_stage_failed_and_the_next_run_resumes(tmp_path, panos_full):
    # Full-resolution panoramas, one worker: about a second per panorama.
    project = _project(tmp_path, panos_full, "balanced", workers=1, size=1200)
    assert PipelineRunner(project).run(until="ingest").ok
    manifest_before = (project.root / "ingest" / "manifest.json").read_bytes()

    first_pano = threading.Event()

    def on_event(e):
        if isinstance(e, Progress) and e.stage == "reproject" and "1/5" in e.message:
            first_pano.set()

    job = StageJob(project, "reproject", on_event)
    t, out = _run_in_thread(job)
    assert first_pano.wait(120), "no panorama finished"
    children = psutil.Process(job.pid).children(recursive=True)
    os.kill(job.pid, signal.SIGKILL)
    t.join(60)
    assert out["state"] == StageState.FAILED
    st = project.summary()["stages"]
    assert st["reproject"]["state"] == StageState.FAILED and "SIGKILL" in st["reproject"]["error"]
    assert st["ingest"]["state"] == StageState.DONE
    assert (project.root / "ingest" / "manifest.json").read_bytes() == manifest_before
    time.sleep(0.5)
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)

    result = PipelineRunner(project).run(until="reproject")
    assert result.states == {"ingest": StageState.SKIPPED, "reproject": StageState.DONE}
    m = project.read_status("reproject").metrics
    assert 0 < m["rendered"] < 5, "finished panoramas are not rendered again"
    assert m["views"] == 90


def test_cooperative_cancel(tmp_path, panos_2048):
    project = _project(tmp_path, panos_2048)
    job = StageJob(project, "ingest", target="helpers.stages:cooperative")
    started = threading.Event()
    job.on_event = lambda e: started.set() if isinstance(e, Progress) else None
    t, out = _run_in_thread(job)
    assert started.wait(30)
    t0 = time.monotonic()
    job.cancel()
    t.join(30)
    assert out["state"] == StageState.CANCELLED
    assert time.monotonic() - t0 < 5, "cooperative cancel should not wait for the grace period"
    assert project.read_status("ingest").state == StageState.CANCELLED


def test_cancel_kills_a_stubborn_process_tree_after_the_grace_period(tmp_path, panos_2048):
    project = _project(tmp_path, panos_2048)
    job = StageJob(project, "ingest", target="helpers.stages:stubborn", grace_s=1.0)
    started = threading.Event()
    job.on_event = lambda e: started.set() if isinstance(e, Progress) else None
    t, out = _run_in_thread(job)
    assert started.wait(30)
    child_pid = int((project.root / "ingest" / "child.pid").read_text())
    assert psutil.pid_exists(child_pid)
    t0 = time.monotonic()
    job.cancel()
    t.join(30)
    assert out["state"] == StageState.CANCELLED
    assert 0.9 < time.monotonic() - t0 < 10
    time.sleep(0.3)
    assert not psutil.pid_exists(child_pid) or psutil.Process(child_pid).status() == "zombie"


def test_a_crashing_stage_reports_its_traceback(tmp_path, panos_2048):
    project = _project(tmp_path, panos_2048)
    result = PipelineRunner(project, functions={"ingest": "helpers.stages:crashing"}).run(
        until="ingest"
    )
    assert result.states == {"ingest": StageState.FAILED} and not result.ok
    err = project.read_status("ingest").error
    assert "ZeroDivisionError: boom" in err and "crashing" in err


def test_a_second_runner_on_the_same_project_is_refused(tmp_path, panos_2048):
    from splatstudio.errors import ProjectError
    from splatstudio.pipeline.runner import project_lock

    project = _project(tmp_path, panos_2048)
    with project_lock(project):
        with pytest.raises(ProjectError, match="another SplatStudio run of this project is still running"):
            PipelineRunner(project).run(until="ingest")


@pytest.mark.parametrize("parent_env, expected", [
    ({}, 1000.0),  # ours: libgomp's 300,000 makes CPU training crawl beside busy processes
    ({"GOMP_SPINCOUNT": "50"}, 50.0),  # the user's choice wins
    ({"OMP_WAIT_POLICY": "PASSIVE"}, -1.0),  # so does a wait policy
])
def test_workers_limit_openmp_spinning_before_torch_loads(tmp_path, panos_2048, monkeypatch,
                                                         parent_env, expected):
    for k in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY"):
        monkeypatch.delenv(k, raising=False)
    for k, v in parent_env.items():
        monkeypatch.setenv(k, v)
    project = _project(tmp_path, panos_2048)
    metrics = {}
    job = StageJob(project, "ingest", target="helpers.stages:openmp_env")
    job.on_event = lambda e: metrics.__setitem__(e.name, e.value) if hasattr(e, "value") else None
    job.start()
    assert job.wait() == StageState.DONE
    assert metrics == {"gomp_spincount": expected, "torch_loaded": 0.0}
