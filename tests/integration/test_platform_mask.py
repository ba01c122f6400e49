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
