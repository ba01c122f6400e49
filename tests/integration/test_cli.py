"""The ``splatstudio`` command on the real captures (as a user runs it, in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from splatstudio.config import STAGES
from splatstudio.status import STORED_STATES, StageState

pytestmark = pytest.mark.slow

SPLATS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "splats"


def cli(*args, check=True, timeout=600):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "splatstudio", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if check and out.returncode != 0:
        raise AssertionError(f"exit {out.returncode}\n{out.stdout}\n{out.stderr}")
    return out


def test_run_panoramas_then_status_json(tmp_path, panos_2048):
    proj = tmp_path / "proj"
    out = cli("run", panos_2048, "-p", proj, "--preset", "test", "--until", "reproject")
    assert "reproject  done" in out.stdout
    assert "ingest" in out.stderr and "%" in out.stderr  # progress bars on stderr
    status = json.loads(cli("status", "-p", proj, "--json").stdout)
    assert set(status["stages"]) == set(STAGES)
    for st in status["stages"].values():
        assert set(st) >= {"state", "started", "finished", "seconds", "metrics", "artifacts"}
        assert st["state"] in STORED_STATES
    ing, rep = status["stages"]["ingest"], status["stages"]["reproject"]
    assert ing["state"] == rep["state"] == StageState.DONE
    assert ing["artifacts"] == ["ingest/manifest.json"]
    assert rep["metrics"]["views"] == 90 and rep["seconds"] > 0
    for a in rep["artifacts"]:
        assert (proj / a).exists() and not Path(a).is_absolute()
    assert status["stages"]["sfm"]["state"] == StageState.PENDING
    # a second run is a no-op; a changed option re-runs reproject only
    out = cli("run", panos_2048, "-p", proj, "--until", "reproject", "--set", "reproject.fov_deg=100")
    assert "[ingest] up to date, skipped" in out.stderr and "reproject  done" in out.stdout
    cfg = json.loads((proj / "project.json").read_text())["config"]
    assert cfg["reproject"]["fov_deg"] == 100 and cfg["preset"] == "test"


def test_photos_run_and_status(tmp_path, lund):
    proj = tmp_path / "lund"
    out = cli("run", lund, "-p", proj, "--preset", "test", "-q", "--until", "reproject")
    assert out.returncode == 0
    status = json.loads(cli("status", "-p", proj, "--json").stdout)["stages"]
    assert status["ingest"]["metrics"]["perspective"] == 29
    assert status["reproject"]["metrics"]["photos"] == 29
    for stage in STAGES:
        if status[stage]["state"] != StageState.DONE:
            assert status[stage]["state"] == StageState.PENDING, status[stage]
    human = cli("status", "-p", proj).stdout
    assert "ingest" in human and str(StageState.DONE) in human


def test_single_stage_commands_and_options(tmp_path, panos_2048):
    proj = tmp_path / "p"
    out = cli("reproject", "-p", proj, check=False)
    assert out.returncode == 2 and "not a project yet" in out.stderr
    cli("ingest", "--input", panos_2048, "-p", proj, "-q")
    out = cli("reproject", "-p", proj, "--rig", "colmap12", "--max-size", "256", "-q")
    status = json.loads(cli("status", "-p", proj, "--json").stdout)["stages"]
    assert status["reproject"]["metrics"]["views"] == 60
    assert status["reproject"]["metrics"]["view_size"] == 256
    out = cli("reproject", "-p", proj, "--rig", "nope", check=False)
    assert out.returncode == 2 and "invalid choice" in out.stderr


def test_bad_input_names_the_folder(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = cli("run", empty, "-p", tmp_path / "proj", check=False)
    assert out.returncode == 1
    assert str(empty) in out.stderr and "empty" in out.stderr
    missing = tmp_path / "missing"
    out = cli("run", missing, "-p", tmp_path / "proj2", check=False)
    assert out.returncode == 2 and str(missing) in out.stderr
    other = tmp_path / "other"
    other.mkdir()
    out = cli("run", other, "-p", tmp_path / "proj", check=False)
    assert out.returncode == 2 and "was made from" in out.stderr


def test_version_and_help():
    assert cli("--version").stdout.startswith("splatstudio ")
    assert "render" in cli("--help").stdout


@pytest.mark.parametrize("name", ["donut_fused.ply", "fruit_drops_minimal.ply", "biker.spz"])
def test_render_any_splat_file_to_png(tmp_path, name):
    import cv2

    src = SPLATS / name
    if not src.exists():
        pytest.skip(f"{src} missing")
    png = tmp_path / "out.png"
    cli("render", src, "-o", png, "--width", "160", "--height", "120", "--up", "0", "-1", "0")
    img = cv2.imread(str(png))
    assert img.shape == (120, 160, 3)
    assert img.std() > 5, "the render is blank"
    png2 = tmp_path / "eye.png"
    cli("render", src, "-o", png2, "--width", "160", "--height", "120",
        "--eye", "0", "0", "-3", "--target", "0", "0", "0", "--up", "0", "-1", "0")
    assert not np.array_equal(cv2.imread(str(png2)), img)


def test_render_and_convert_errors(tmp_path):
    bad = tmp_path / "bad.ply"
    bad.write_text("ply\nformat ascii 1.0\nelement vertex 3\nend_header\n")
    out = cli("render", bad, "-o", tmp_path / "x.png", check=False)
    assert out.returncode == 2 and "bad.ply" in out.stderr
    out = cli("convert", tmp_path / "missing.ply", tmp_path / "x.spz", check=False)
    assert out.returncode == 2 and "missing.ply" in out.stderr


def test_convert(tmp_path):
    src = SPLATS / "fruit_drops_minimal.ply"
    if not src.exists():
        pytest.skip(f"{src} missing")
    dst = tmp_path / "fruit.spz"
    info = json.loads(cli("convert", src, dst, "--max-sh-degree", "1").stdout)
    assert info["format"] == "spz" and info["sh_degree"] == 1 and dst.stat().st_size > 0


@pytest.mark.parametrize("name", ["fruit_drops_minimal.ply", "guitar.compressed.ply", "biker.spz"])
def test_convert_to_glb_is_read_back_and_checked(tmp_path, name):
    src = SPLATS / name
    if not src.exists():
        pytest.skip(f"{src} missing")
    dst = tmp_path / "out.glb"
    args = ["--glb-spz"] if name.endswith(".spz") else []
    info = json.loads(cli("convert", src, dst, *args).stdout)
    assert info["format"] == "glb_splat" and info["verified"]["ok"]
    assert info["verified"]["gaussians"] == info["n"] > 0
    assert dst.read_bytes()[:4] == b"glTF"
