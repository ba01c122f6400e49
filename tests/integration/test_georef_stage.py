"""The georef stage on a model with a known SfM frame: the fit, the GPS check's refusal, too
little GPS, and what each writes (fast; the real captures go through it in test_sfm)."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from helpers import tiny_project

from splatstudio.config import GeorefConfig, update_config
from splatstudio.errors import StageError
from splatstudio.events import Emitter
from splatstudio.project import write_json_atomic

pycolmap = pytest.importorskip("pycolmap")

from splatstudio.pipeline.georef import run_georef  # noqa: E402

SCALE = 2.5
"""ENU metres per SfM unit of the test model."""
HEADING = math.radians(40.0)


def _sfm_project(tmp_path, shift_gps=(), gps=None):
    """A tiny project whose ``sfm/sparse`` is its ENU model moved into an SfM frame (scale
    1/SCALE, turned by HEADING about z, shifted), with ``reproject/frames.json`` giving each
    photo its true ENU centre as GPS (the fix of the k-th frame, when in `shift_gps`, moved
    12 k metres east; only the first `gps` frames have GPS when given). Returns (project, true ENU centres by frame id)."""
    project = tiny_project.tiny_georef_project(tmp_path / "p", views=8, size=(32, 24),
                                               gaussians=60)  # fmt: skip
    rec = pycolmap.Reconstruction(str(project.root / "georef" / "sparse"))
    enu = {im.name.split("/")[1][:-4]: np.asarray(im.projection_center())
           for im in rec.images.values()}  # fmt: skip
    c, s = math.cos(HEADING), math.sin(HEADING)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    rec.transform(pycolmap.Sim3d(1 / SCALE, pycolmap.Rotation3d(rot),
                                 np.array([[5.0], [-3.0], [2.0]])))  # fmt: skip
    (project.root / "sfm" / "sparse").mkdir(parents=True)
    rec.write(str(project.root / "sfm" / "sparse"))
    shutil.rmtree(project.root / "georef")
    frames = []
    for k, fid in enumerate(sorted(enu)):
        pos = enu[fid] + (np.array([12.0 * k, 0, 0]) if fid in shift_gps else 0)
        has = gps is None or k < gps
        frames.append({"id": fid, "kind": "photo", "images": [f"photos/{fid}.jpg"],
                       "enu_m": pos.tolist() if has else None})  # fmt: skip
    write_json_atomic(project.root / "reproject" / "frames.json",
                      {"origin": tiny_project.ORIGIN, "frames": frames})  # fmt: skip
    return project, enu


def _run(project, **options):
    events = []
    em = Emitter("georef", events.append, min_interval_s=0)
    try:
        return run_georef(project, update_config(GeorefConfig(), options), em), em, None
    except StageError as e:
        return None, em, e


def _centres(folder) -> dict[str, np.ndarray]:
    rec = pycolmap.Reconstruction(str(folder))
    return {im.name.split("/")[1][:-4]: np.asarray(im.projection_center())
            for im in rec.images.values()}  # fmt: skip


@pytest.mark.parametrize("mode", ["gravity", "sim3"])
def test_the_fit_recovers_the_known_frame_and_writes_every_output(tmp_path, mode):
    project, enu = _sfm_project(tmp_path)
    report, em, err = _run(project, mode=mode)
    assert err is None
    out = project.root / "georef"
    assert json.loads((out / "georef.json").read_text()) == report
    assert report["status"] == "georeferenced" and report["mode"] == mode
    assert ("levelled_by" in report) == (mode == "gravity")
    sim = report["sim3_enu_from_sfm"]
    assert sim["scale"] == pytest.approx(SCALE, rel=1e-6)
    assert report["rms_residual_all_m"] < 1e-5 and report["inliers"] == 8
    assert report["check"]["verdict"] == "pass"
    assert list(report["frames"]) == sorted(enu) and all(
        f["registered"] and f["inlier"] and f["agrees"] for f in report["frames"].values())
    assert report["images"] == {"registered": 8, "frames_registered": sorted(enu)}
    for fid, c in _centres(out / "sparse").items():  # the model is in ENU metres now
        np.testing.assert_allclose(c, enu[fid], atol=1e-5)
    assert em.artifacts == ["georef/sparse", "georef/sparse_text", "georef/transforms.json",
                            "georef/georef.json"]  # fmt: skip
    assert (out / "sparse_text" / "images.txt").is_file()
    tf = json.loads((out / "transforms.json").read_text())
    assert len(tf["frames"]) == 8
    assert em.metrics["georeferenced"] == 1 and em.metrics["scale"] == pytest.approx(SCALE)
    assert not em.warnings


def test_gps_that_contradicts_the_model_is_refused_unless_the_check_is_off(tmp_path):
    project, enu = _sfm_project(tmp_path, shift_gps={"v01", "v03", "v05", "v07", "v06"})
    report, em, err = _run(project)
    assert report is None and "the SfM model contradicts its GPS" in str(err)
    assert "scale 2.500 m/unit" in str(err) and "georef.check=false" in str(err)
    assert "frames off by more than 5 m: v01, v03, v05, v06, v07." in str(err)
    out = project.root / "georef"
    written = json.loads((out / "georef.json").read_text())
    assert written["status"].startswith("rejected: only 3 of 8 frames lie within 5 m")
    assert not (out / "sparse").exists()  # a refused model is not written
    assert em.artifacts == ["georef/georef.json"] and em.metrics["inliers"] == 3
    # the user trusts the model: georeferenced, with the check's verdict as a warning
    report, em, err = _run(project, check=False)
    assert err is None and report["status"] == "georeferenced"
    assert report["check"]["verdict"] == "reject"
    assert em.warnings[0].startswith("GPS check failed but georef.check is off: only 3 of 8")
    assert em.warnings[1] == "GPS outliers (residual > 5 m): v01, v03, v05, v06, v07"
    assert [f["inlier"] for f in report["frames"].values()] == [
        fid not in {"v01", "v03", "v05", "v07", "v06"} for fid in sorted(enu)]


def test_too_little_gps_keeps_the_sfm_frame(tmp_path):
    project, enu = _sfm_project(tmp_path, gps=2)
    sfm = _centres(project.root / "sfm" / "sparse")
    report, em, err = _run(project)
    assert err is None
    assert report["status"] == ("not georeferenced: 2 registered frames with GPS, 3 needed; "
                                "the model keeps its SfM frame")  # fmt: skip
    assert report["sim3_enu_from_sfm"] is None and report["check"]["verdict"] == "no-check"
    assert em.metrics == {"georeferenced": 0.0, "gps_frames": 2.0}
    frames = report["frames"]
    assert all(f["registered"] and f["residual_m"] is None for f in frames.values())
    assert [f["gps_enu_m"] is not None for f in frames.values()] == [True, True] + [False] * 6
    for fid, c in _centres(project.root / "georef" / "sparse").items():
        np.testing.assert_allclose(c, sfm[fid], atol=1e-9)
