"""The platform mask on real panoramas: the shared walk with a dashboard pasted into every
panorama (tests/helpers/dashboard.py), and the clean walk."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from splatstudio.pano.platform import estimate_platform_mask, sphere_fraction, sphere_weights

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
NADIR_DEG = 45.0


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory, panos_2048):
    from helpers.dashboard import make_dashboard_capture

    picture = sorted((DATA / "photos" / "lund").glob("*.jpg"))[3]
    return make_dashboard_capture(panos_2048, picture, tmp_path_factory.mktemp("dash") / "in")


def _load(folder: Path) -> list[np.ndarray]:
    return [cv2.imread(str(p)) for p in sorted(folder.glob("*.jpg"))]


def _nadir_cap(h: int, w: int) -> np.ndarray:
    lat = 90 - (np.arange(h) + 0.5) / h * 180
    return np.repeat((lat < -90 + NADIR_DEG)[:, None], w, axis=1)


def test_dashboard_is_found_and_little_else(dashboard):
    from helpers.dashboard import truth_mask

    found = estimate_platform_mask(_load(dashboard))
    assert found.reason is None and found.frames == 5
    h, w = found.mask.shape
    truth = truth_mask(w, h)
    wts = sphere_weights(h, w)
    iou = (wts * (found.mask & truth)).sum() / (wts * (found.mask | truth)).sum()
    assert iou >= 0.8, iou  # the target
    # outside the pasted picture and the nadir cap (the operator): under 5 % of the sphere
    assert sphere_fraction(found.mask & ~truth & ~_nadir_cap(h, w)) < 0.05


def test_clean_walk_has_almost_no_platform(panos_2048):
    found = estimate_platform_mask(_load(panos_2048))
    h, w = found.mask.shape
    # the operator moves against the camera (not rigid): the nadir cap covers them, and the
    # statistic finds under 2 % of the sphere elsewhere (a patch of sky near the sun, whose
    # place barely changes over this short walk)
    assert sphere_fraction(found.mask & ~_nadir_cap(h, w)) < 0.02


def test_too_few_or_identical_panoramas_give_no_mask(panos_2048):
    ims = _load(panos_2048)
    assert estimate_platform_mask(ims[:2]).reason.startswith("2 panoramas")
    still = estimate_platform_mask([ims[0]] * 4)
    assert "did not move" in still.reason and not still.mask.any()


def _georef(tmp_path: Path, src: Path, name: str, **reproject) -> tuple[object, dict]:
    import json

    from splatstudio.config import ProjectConfig, update_config
    from splatstudio.pipeline.runner import PipelineRunner
    from splatstudio.project import Project

    cfg = ProjectConfig.from_preset("test")
    cfg.reproject = update_config(cfg.reproject, reproject)
    project = Project.create(tmp_path / name, src, cfg)
    result = PipelineRunner(project).run(until="georef")
    report = project.root / "georef" / "georef.json"
    return result, json.loads(report.read_text()) if report.exists() else {}


@pytest.mark.slow
def test_dashboard_capture_breaks_sfm_without_the_mask_and_not_with_it(
        tmp_path, dashboard, panos_2048):
    pytest.importorskip("pycolmap")
    clean_res, clean = _georef(tmp_path, panos_2048, "clean")
    assert clean_res.ok, clean_res.reason
    # without the platform mask: the dashboard glues the panoramas, and the GPS check says so
    # (measured: one panorama thrown 22 m away, model path 5.1x the GPS track's)
    off_res, off = _georef(tmp_path, dashboard, "off", platform_mask=False)
    if off_res.ok:  # recovered (the sfm stage's incremental retry; RMS measured 1.28 m and,
        # on CI, 3.11 m with 4 of 5 frames within 5 m): what the GPS check promises, and no more
        # (consumer GPS on a 9 m walk cannot tell 1 m from 3 m): its verdict, no frames glued,
        # the RMS within its tolerance, a path of the GPS track's length
        check = off["check"]
        assert check["verdict"] == "pass", check
        assert off["rms_residual_all_m"] <= check["tolerance_m"], (off["rms_residual_all_m"], check)
        assert check["collapsed_pairs"] == 0 and 0.67 < check["path_ratio"] < 1.5, check
    elif off_res.stopped_at == "sfm":  # neither mapper built a model (global failed 1 run in 6)
        assert "no model could be built" in off_res.reason, off_res.reason
    else:  # a model glued by the dashboard: called what it is, never "georeferenced"
        assert off_res.stopped_at == "georef", (off_res.stopped_at, off_res.reason)
        assert "contradicts its GPS" in off_res.reason and off["status"].startswith("rejected")
    # with it: the frame positions of the clean panoramas
    on_res, on = _georef(tmp_path, dashboard, "on")
    assert on_res.ok, on_res.reason
    assert on["check"]["verdict"] == "pass" and on["rms_residual_all_m"] <= 1.5
    for fid, f in clean["frames"].items():
        d = np.linalg.norm(np.subtract(on["frames"][fid]["sfm_enu_m"], f["sfm_enu_m"]))
        # panorama 3 has two places 0.6 m apart along the walk that thread timing picks
        # between (test_sfm); the others stay within the 0.3 m
        assert d < (0.8 if fid == "3" else 0.3), (fid, d)
