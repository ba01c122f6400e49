"""`splatstudio doctor` as a user runs it (a subprocess): on a machine without CUDA it says so,
estimates the presets with the train stage's formula, and its exit code follows what was asked."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow
torch = pytest.importorskip("torch")


def doctor(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.pop("QT_QPA_PLATFORM", None)  # no display: the OpenGL line says so, no probe
    return subprocess.run([sys.executable, "-m", "splatstudio", "doctor", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only report")
def test_doctor_on_a_cpu_machine(tmp_path):
    out = doctor("--json", "--projects-dir", str(tmp_path), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    rep = json.loads(out.stdout)
    checks = {c["key"]: c for c in rep["checks"]}
    assert checks["cuda"]["state"] == "missing" and "no CUDA" in checks["cuda"]["summary"]
    assert "CPU" in checks["cuda"]["impact"]
    assert checks["resources"]["state"] == "ok" and checks["torch"]["state"] == "ok"
    assert checks["opengl"]["state"] == "missing" and "no display" in checks["opengl"]["summary"]
    assert checks["disk"]["details"]["path"] == str(tmp_path)
    presets = {p["preset"]: p for p in rep["cpu_presets"]}
    assert set(presets) == {"test", "fast", "balanced", "quality"}
    # the stage's own formula, from the measured cost per pixel and step
    from splatstudio.pipeline.train_session import estimate_seconds, preset_train_config

    per_px = rep["cpu_measure"]["seconds_per_pixel_step"]
    for name, p in presets.items():
        est = estimate_seconds(preset_train_config(name), per_px, p["view_pixels"])
        assert p["estimate_s"] == pytest.approx(est) and p["refused"] == (est > p["limit_s"])
    assert presets["quality"]["refused"]  # 30,000 steps at 2.56 MP on a CPU
    text = doctor("--projects-dir", str(tmp_path), cwd=tmp_path)
    assert text.returncode == 0
    assert "refused: over cpu_limit_s" in text.stdout and "[--  ] GPU" in text.stdout

    # what the user asks for decides the exit code
    out = doctor("--preset", "quality", cwd=tmp_path)
    assert out.returncode == 1 and "cannot work: preset quality: refused" in out.stdout
    out = doctor("--no-measure", "--require", "cuda", cwd=tmp_path)
    assert out.returncode == 1 and "cannot work: cuda: needs cuda" in out.stdout
    out = doctor("--no-measure", "--require", "sfm,train", cwd=tmp_path)
    assert out.returncode == 0, out.stdout
    out = doctor("--no-measure", "--require", "nonsense", cwd=tmp_path)
    assert out.returncode == 2 and "unknown --require nonsense" in out.stderr
