"""Cancel, close or kill never breaks a project (as a user meets it, with the real CLI).

Each test runs ``splatstudio run`` in a process group of its own on the shared captures, stops it
mid-stage as a user or the system would (SIGKILL of the whole group: the app killed, a crash,
the OOM killer; SIGINT: Ctrl-C), checks that no worker survives its runner, then runs again and
checks that the result is the one an uninterrupted run gives.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from splatstudio.config import ProjectConfig
from splatstudio.errors import ProjectError
from splatstudio.pipeline.runner import PipelineRunner
from splatstudio.project import Project
from splatstudio.status import StageState

pytestmark = pytest.mark.slow
pytest.importorskip("pycolmap")


def _cmd(*args) -> list[str]:
    return [sys.executable, "-m", "splatstudio", *map(str, args)]


def start(tmp_path: Path, *args) -> subprocess.Popen:
    """`splatstudio ARGS` in its own process group (as a terminal or a launcher starts it)."""
    log = open(tmp_path / f"run-{time.monotonic_ns()}.log", "w")
    return subprocess.Popen(_cmd(*args), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def run(*args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(*args), capture_output=True, text=True, timeout=timeout)


def wait_for(cond, proc: subprocess.Popen, timeout: float = 300, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (exit {proc.returncode}) before {what}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def worker_tree(project: Path, stage: str) -> list[int]:
    """Pids of the running stage worker (from its status file) and all its descendants."""
    folder = "exports" if stage == "export" else stage
    st = json.loads((project / folder / "status.json").read_text())
    assert st["state"] == StageState.RUNNING, st
    root = psutil.Process(int(st["pid"]))
    return [root.pid, *(c.pid for c in root.children(recursive=True))]


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_group_and_check_no_worker_left(proc: subprocess.Popen, pids: list[int]) -> float:
    """SIGKILL the run's whole process group, as the system kills an app; return the seconds
    until every process of the stage worker's tree was gone (the issue: at most 5)."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    t0 = time.monotonic()
    while any(alive(p) for p in pids) and time.monotonic() - t0 < 5:
        time.sleep(0.05)
    left = [p for p in pids if alive(p)]
    assert not left, f"workers still running 5 s after their runner was killed: {left}"
    return time.monotonic() - t0


def db_count(db: Path, table: str) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.2)
        try:
            return int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def status(project: Path) -> dict:
    return json.loads(run("status", "-p", project, "--json").stdout)["stages"]


def view_hashes(project: Path) -> dict[str, str]:
    views = project / "reproject" / "views"
    return {p.relative_to(views).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(views.rglob("*.jpg"))}


@pytest.fixture(scope="module")
def reprojected(tmp_path_factory, panos_2048):
    """The 2048 walk through reproject with the test preset (a template to copy)."""
    root = tmp_path_factory.mktemp("resume") / "base"
    project = Project.create(root, panos_2048, ProjectConfig.from_preset("test"))
    assert PipelineRunner(project).run(until="reproject").ok
    return root


def copy_project(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    for name in (".lock", ".worker.lock"):
        (dst / name).unlink(missing_ok=True)
    return dst


def check_georeferenced(project: Path) -> None:
    """What an uninterrupted run of the walk gives (test_sfm: 90/90 views, GPS RMS 0.87-0.94 m
    over 16 fresh runs on two machines)."""
    st = status(project)
    assert st["sfm"]["state"] == StageState.DONE, st["sfm"]
    assert st["sfm"]["metrics"]["registered_images"] == 90
    assert st["georef"]["state"] == StageState.DONE, st["georef"]
    assert st["georef"]["metrics"]["rms_residual_all_m"] < 1.0


def test_kill_during_reproject_leaves_no_worker_and_resumes(tmp_path, panos_full):
    ref = tmp_path / "ref"
    args = ["--preset", "test", "--set", "reproject.max_size=1440", "--until", "reproject"]
    assert run("run", panos_full, "-p", ref, *args).returncode == 0
    proj = tmp_path / "p"
    proc = start(tmp_path, "run", panos_full, "-p", proj, *args)
    views = proj / "reproject" / "views"

    def some_done():  # at least one panorama finished, not all
        done = [d for d in views.glob("*") if (d / "view_set.json").exists()]
        return 1 <= len(done) < 5
    wait_for(some_done, proc, what="the first reprojected panorama")
    pids = worker_tree(proj, "reproject")
    assert len(pids) > 1  # the stage worker and its pool of reprojection processes
    kill_group_and_check_no_worker_left(proc, pids)
    assert status(proj)["reproject"]["state"] == StageState.FAILED  # interrupted, not StageState.RUNNING

    out = run("run", panos_full, "-p", proj, *args)
    assert out.returncode == 0, out.stderr
    st = status(proj)["reproject"]
    assert st["state"] == StageState.DONE and st["metrics"]["views"] == 90
    assert st["metrics"]["rendered"] < 5  # the panoramas finished before the kill were kept
    assert view_hashes(proj) == view_hashes(ref)


@pytest.mark.parametrize("phase", ["features", "matching"])
def test_kill_during_sfm_leaves_no_worker_and_resumes(tmp_path, reprojected, panos_2048, phase):
    proj = copy_project(reprojected, tmp_path / "p")
    db = proj / "sfm" / "database.db"
    proc = start(tmp_path, "run", panos_2048, "-p", proj, "--until", "georef", "-q")
    if phase == "features":
        wait_for(lambda: 5 <= db_count(db, "descriptors") < 85, proc,
                 what="feature extraction under way")
    else:
        wait_for(lambda: db_count(db, "two_view_geometries") > 0, proc,
                 what="matching under way")
    pids = worker_tree(proj, "sfm")
    kill_group_and_check_no_worker_left(proc, pids)
    if phase == "features":
        assert db_count(db, "descriptors") < 90  # really cut short

    out = run("run", panos_2048, "-p", proj, "--until", "georef")
    assert out.returncode == 0, out.stderr
    check_georeferenced(proj)


def test_kill_during_training_resumes_from_the_checkpoint(tmp_path, reprojected, panos_2048):
    proj = copy_project(reprojected, tmp_path / "p")
    assert run("run", panos_2048, "-p", proj, "--until", "georef", "-q").returncode == 0
    proc = start(tmp_path, "run", panos_2048, "-p", proj, "--until", "train", "-q",
                 "--device", "cpu")
    latest = proj / "train" / "checkpoints" / "latest.json"

    def periodic_checkpoint() -> bool:  # past the step-0 checkpoint of a fresh start
        try:
            return json.loads(latest.read_text())["step"] > 0
        except (OSError, ValueError, KeyError):
            return False

    wait_for(periodic_checkpoint, proc, what="the first periodic training checkpoint")
    step = json.loads(latest.read_text())["step"]
    pids = worker_tree(proj, "train")
    kill_group_and_check_no_worker_left(proc, pids)

    out = run("run", panos_2048, "-p", proj, "--until", "train", "--device", "cpu")
    assert out.returncode == 0, out.stderr
    st = status(proj)["train"]
    assert st["state"] == StageState.DONE and st["metrics"]["steps"] == 300
    assert st["metrics"]["resumed_step"] >= step > 0
    steps = [json.loads(line)["step"] for line in
             (proj / "train" / "curve.jsonl").read_text().splitlines() if line.strip()]
    assert steps == sorted(set(steps))  # no step twice after the resume


def test_ctrl_c_during_sfm_says_cancelled_and_resumes(tmp_path, reprojected, panos_2048):
    proj = copy_project(reprojected, tmp_path / "p")
    db = proj / "sfm" / "database.db"
    proc = start(tmp_path, "run", panos_2048, "-p", proj, "--until", "georef", "-q")
    wait_for(lambda: 5 <= db_count(db, "descriptors") < 85, proc, what="feature extraction")
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal goes to the whole group
    assert proc.wait(60) == 130
    st = status(proj)["sfm"]
    assert st["state"] == StageState.CANCELLED, st
    assert "run again to resume" in st["error"]
    out = run("run", panos_2048, "-p", proj, "--until", "georef")
    assert out.returncode == 0, out.stderr
    check_georeferenced(proj)


def test_a_second_run_on_a_busy_project_is_refused(tmp_path, reprojected, panos_2048):
    proj = copy_project(reprojected, tmp_path / "p")
    first = start(tmp_path, "run", panos_2048, "-p", proj, "--until", "georef", "-q")
    wait_for(lambda: (proj / "sfm" / "status.json").exists(), first, what="sfm to start")
    second = run("run", panos_2048, "-p", proj, "--until", "georef")
    assert second.returncode == 2
    assert "another SplatStudio run of this project is still running" in second.stderr
    assert f"pid {first.pid}" in second.stderr and "Traceback" not in second.stderr
    assert first.wait(300) == 0
    check_georeferenced(proj)


def test_an_earlier_runs_live_worker_is_refused(tmp_path, reprojected):
    """A worker that outlived its runner (another machine's, or one started before this
    version) holds the worker lock: no second writer starts beside it."""
    proj = copy_project(reprojected, tmp_path / "p")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; "
        "from splatstudio.pipeline.runner import hold_worker_lock; "
        f"f = hold_worker_lock(Path({str(proj)!r}), 'sfm'); print('held', flush=True); "
        "time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ProjectError) as e:
            PipelineRunner(Project.open(proj)).run(until="sfm")
        msg = str(e.value)
        assert "the sfm stage of an earlier run is still running" in msg
        assert f"pid {holder.pid}" in msg and f"kill {holder.pid}" in msg
    finally:
        holder.kill()
        holder.wait()
    # once it is gone, the run goes on
    assert PipelineRunner(Project.open(proj)).run(until="reproject").ok


def test_inconsistent_database_is_repaired(tmp_path, reprojected, panos_2048):
    """An extra camera row for one view folder (what an interrupted per-folder extraction
    leaves) and an image whose descriptors are missing: sfm repairs both and completes."""
    proj = copy_project(reprojected, tmp_path / "p")
    assert run("run", panos_2048, "-p", proj, "--until", "sfm", "-q").returncode == 0
    db = proj / "sfm" / "database.db"
    con = sqlite3.connect(db)
    with con:
        cam = con.execute("SELECT camera_id, model, width, height, params, prior_focal_length "
                          "FROM cameras c WHERE camera_id = (SELECT camera_id FROM images "
                          "WHERE name = '07/1.jpg')").fetchone()
        cur = con.execute("INSERT INTO cameras (model, width, height, params, "
                          "prior_focal_length) VALUES (?, ?, ?, ?, ?)", cam[1:])
        con.execute("UPDATE images SET camera_id = ? WHERE name IN ('07/2.jpg', '07/3.jpg')",
                    (cur.lastrowid,))
        con.execute("DELETE FROM descriptors WHERE image_id = "
                    "(SELECT image_id FROM images WHERE name = '03/4.jpg')")
    con.close()
    out = run("sfm", "-p", proj, "--force")  # the same features and matches, the database kept
    assert out.returncode == 0, out.stderr
    assert "cameras split by an interrupted extraction merged back" in out.stderr
    assert "03/4.jpg" in out.stderr  # re-extracted, and the log says which
    assert run("georef", "-p", proj).returncode == 0
    check_georeferenced(proj)
