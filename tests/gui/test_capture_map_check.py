"""The capture map shows each frame's agreement with its GPS fix and the GPS check's verdict."""

from __future__ import annotations

import json

import pytest

from splatstudio.gui.capture_map import gps_check_summary, load_captures

pytestmark = pytest.mark.gui


def _project(tmp_path, verdict: str, agrees: dict[str, bool]):
    root = tmp_path / "p"
    (root / "ingest").mkdir(parents=True)
    (root / "georef").mkdir()
    images = [{"id": i, "file": f"{i}.jpg", "enu_m": [float(k), 0.0, 0.0], "kind": "equirect"}
              for k, i in enumerate(agrees)]
    (root / "ingest" / "manifest.json").write_text(json.dumps(
        {"input_dir": str(tmp_path), "images": images}))
    frames = {i: {"registered": True, "residual_m": 0.5 if a else 22.0, "agrees": a,
                  "sfm_enu_m": [0.0, 0.0, 0.0]} for i, a in agrees.items()}
    reason = "the model's path is 49 m long where the GPS track's is 10 m"
    (root / "georef" / "georef.json").write_text(json.dumps(
        {"frames": frames, "check": {"verdict": verdict, "reason": reason}}))
    return root


def test_frames_off_their_fix_and_the_verdict(tmp_path):
    root = _project(tmp_path, "reject", {"1": True, "2": False, "3": True})
    caps, missing = load_captures(root)
    assert missing == 0
    assert {c.id: c.state for c in caps} == {"1": "registered", "2": "off its GPS fix",
                                             "3": "registered"}
    line = gps_check_summary(root)
    assert line.startswith("GPS check: REJECTED") and "49 m" in line


def test_no_georef_no_verdict(tmp_path):
    assert gps_check_summary(tmp_path) is None
