"""Partial panoramas placed on the sphere by their GPano cropped area."""

from __future__ import annotations

import numpy as np
import pytest

from splatstudio.pano.partial import PanoCrop, crop_from_gpano, pad_to_full, valid_mask

GOPRO = {"ProjectionType": "equirectangular", "FullPanoWidthPixels": 5760,
         "FullPanoHeightPixels": 2880, "CroppedAreaImageWidthPixels": 5760,
         "CroppedAreaImageHeightPixels": 1890, "CroppedAreaLeftPixels": 0,
         "CroppedAreaTopPixels": 495}


def test_gpano_fields_are_scaled_to_the_file():
    c = crop_from_gpano(2048, 672, GOPRO)  # a downscaled copy keeps the original's numbers
    assert c == PanoCrop(2048, 1024, 0, 176, 2048, 672)
    top, bottom = c.vertical_fov_deg
    assert top == pytest.approx(59.06, abs=0.01) and bottom == pytest.approx(-59.06, abs=0.01)
    assert PanoCrop.from_dict(c.to_dict()) == c
    assert c.scaled(512, 168) == PanoCrop(512, 256, 0, 44, 512, 168)


@pytest.mark.parametrize("change, message", [
    ({"CroppedAreaTopPixels": None}, "fields missing"),
    ({"FullPanoHeightPixels": 2000}, "is not 2:1"),
    ({"CroppedAreaImageHeightPixels": 1000}, "another shape"),
    ({"CroppedAreaTopPixels": 2000}, "leaves the full panorama"),
])
def test_bad_gpano_fields_say_what_is_wrong(change, message):
    g = {k: v for k, v in {**GOPRO, **change}.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        crop_from_gpano(2048, 672, g)


def test_pad_wraps_around_and_the_valid_mask_excludes_edges():
    img = np.arange(4 * 6, dtype=np.uint8).reshape(4, 6) + 1
    c = PanoCrop(full_width=8, full_height=4, left=5, top=0, width=6, height=4)
    full = pad_to_full(img, c)
    assert full.shape == (4, 8)
    assert np.array_equal(full[:, 5:], img[:, :3]) and np.array_equal(full[:, :3], img[:, 3:])
    assert np.all(full[:, 3:5] == 0)
    band = PanoCrop(64, 32, 0, 8, 64, 16)
    m = valid_mask(band, 32, 16)
    assert m[:4].sum() == 0 and m[12:].sum() == 0 and m[4:12].all()
    with pytest.raises(ValueError, match="crop expects"):
        pad_to_full(np.zeros((3, 6), np.uint8), c)
