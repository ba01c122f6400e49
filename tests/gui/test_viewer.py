"""The OpenGL splat viewer under Xvfb (Mesa llvmpipe): loads donut_fused.ply, draws it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gui
HERE = Path(__file__).resolve().parent


def test_viewer_renders_a_non_blank_frame_under_xvfb(xdisplay, tmp_path):
    env = {**os.environ, "DISPLAY": xdisplay, "QT_QPA_PLATFORM": "xcb",
           "VIEWER_CHECK_OUT": str(tmp_path / "report.json")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         str(HERE / "viewer_xcb.py")],
        cwd=HERE.parents[1], env=env, capture_output=True, text=True, timeout=180,
    )
    if "could not connect to display" in proc.stderr + proc.stdout:
        pytest.skip(f"cannot open X display {xdisplay}")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    if "1 skipped" in proc.stdout:
        pytest.skip(proc.stdout.strip().splitlines()[-1])
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["std"] > 20 and report["covered"] > 0.05
