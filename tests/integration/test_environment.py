"""The environment fails clearly: a full disk (before and during a stage), a project path
under a file. One message naming the path and what is needed, exit code 2 (bad input) or 1
(stage failed), the status file saying the same, no traceback, and the resume after freeing
space."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from splatstudio.config import ProjectConfig
from splatstudio.pipeline.preflight import MB, check_disk, estimate
from splatstudio.pipeline.runner import PipelineRunner
from splatstudio.project import Project
from splatstudio.status import StageState

pytestmark = pytest.mark.slow


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "splatstudio", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of 8 MB (root only: skipped elsewhere); yields (mount point, resize(mb))."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8M", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}); the patched-writer test "
                    "covers the message")

    def resize(mb: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={mb}M", str(mnt)], check=True)

    yield mnt, resize
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_mid_stage_is_one_clear_message_and_resumes(small_disk, panos_2048):
    mnt, resize = small_disk
    proj = mnt / "p"
    # 8 MB: enough for the preflight's minimum (5.9 MB), not for the 9.4 MB of views
    out = cli("run", panos_2048, "-p", proj, "--preset", "test", "--until", "reproject")
    assert out.returncode == 1, out.stderr
    assert "no space left on the disk" in out.stderr and "Traceback" not in out.stderr
    assert "run again" in out.stderr
    st = json.loads(cli("status", "-p", proj, "--json").stdout)["stages"]["reproject"]
    assert st["state"] == StageState.FAILED
    resize(40)
    out = cli("run", panos_2048, "-p", proj, "--until", "reproject")
    assert out.returncode == 0, out.stderr
    st = json.loads(cli("status", "-p", proj, "--json").stdout)["stages"]["reproject"]
    assert st["state"] == StageState.DONE and st["metrics"]["views"] == 90
    assert st["metrics"]["rendered"] < 5  # what was written before the disk filled was kept


def test_preflight_refuses_a_stage_the_disk_cannot_hold(small_disk, panos_2048):
    mnt, resize = small_disk
    resize(3)
    proj = mnt / "p"
    out = cli("run", panos_2048, "-p", proj, "--preset", "test", "--until", "reproject")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "the reproject stage needs at least" in out.stderr and str(proj) in out.stderr
    status = json.loads((proj / "reproject" / "status.json").read_text())
    assert status["state"] == StageState.FAILED and "needs at least" in status["error"]
    assert not (proj / "reproject" / "views").exists()  # refused before it wrote anything
    resize(40)
    assert cli("run", panos_2048, "-p", proj, "--until", "reproject").returncode == 0


def test_disk_full_inside_a_stage_names_the_file(tmp_path, panos_2048):
    """Without root (no tmpfs): a stage whose write fails with ENOSPC."""
    project = Project.create(tmp_path / "p", panos_2048, ProjectConfig.from_preset("test"))
    result = PipelineRunner(project, functions={"ingest": "helpers.stages:disk_full"}).run(
        until="ingest")
    assert result.states == {"ingest": StageState.FAILED}
    err = project.read_status("ingest").error
    assert err.startswith(f"{project.root / 'ingest' / 'part.bin'}: no space left on the disk")
    assert "Traceback" not in err and "run again" in err


def test_project_path_under_a_file(tmp_path, panos_2048):
    blocker = tmp_path / "some_file"
    blocker.write_text("not a folder")
    for args in (("run", panos_2048, "-p", blocker / "p"), ("status", "-p", blocker / "p"),
                 ("run", panos_2048, "-p", blocker)):
        out = cli(*args)
        assert out.returncode == 2, out
        assert "is a file, not a folder" in out.stderr and "Traceback" not in out.stderr
        assert str(blocker) in out.stderr


def test_preflight_estimates_from_the_manifest(tmp_path, panos_2048):
    project = Project.create(tmp_path / "p", panos_2048, ProjectConfig.from_preset("test"))
    assert PipelineRunner(project).run(until="ingest").ok
    need = estimate(project, "reproject")
    # measured 9.4 MB of views for this capture: the typical estimate is above, the minimum below
    assert need.minimum < 9.4 * MB < need.typical < 20 * MB
    assert check_disk(project, "reproject", free=100 * MB).message is None
    warn = check_disk(project, "reproject", free=12 * MB)
    assert warn.ok and "may need about" in warn.message
    refuse = check_disk(project, "reproject", free=1 * MB)
    assert not refuse.ok and "needs at least" in refuse.message
    sfm = estimate(project, "sfm")
    assert sfm.minimum < 6.3 * MB < sfm.typical < 30 * MB  # measured database: 6.3 MB
