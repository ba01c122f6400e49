"""Georeferencing sidecars: the ENU->ECEF matrix agrees with pyproj's geodetic->ECEF."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pyproj import Transformer

from splatstudio.geo.enu import GeoOrigin, enu_to_geodetic
from splatstudio.geo.sidecar import axes_to_enu, build_sidecar, sidecar_path, write_sidecar

ORIGIN = GeoOrigin(55.7047, 13.1910, 73.25)  # Lund, ellipsoidal height


@pytest.mark.parametrize("origin", [ORIGIN, GeoOrigin(-33.86, 151.21, 5.0), GeoOrigin(0, 0, 0)])
def test_matrix_maps_enu_points_to_pyproj_ecef_within_a_millimetre(origin):
    side = build_sidecar(origin)
    m = np.asarray(side["enu_to_ecef"])
    rng = np.random.default_rng(0)
    enu = rng.uniform(-500, 500, size=(50, 3)) * [1, 1, 0.1]
    geo = enu_to_geodetic(enu, origin)  # the same points as WGS84 lat, lon, h
    to_ecef = Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True)
    x, y, z = to_ecef.transform(geo[:, 1], geo[:, 0], geo[:, 2])
    ecef = np.stack([x, y, z], axis=1)
    ours = (m[:3, :3] @ enu.T).T + m[:3, 3]
    assert np.abs(ours - ecef).max() < 1e-3


def test_file_axes_compose_with_the_enu_matrix():
    side = build_sidecar(ORIGIN, axes="RUB", format="spz")
    assert side["crs"] == "EPSG:4979" and side["units"] == "metre" and side["format"] == "spz"
    p_enu = np.array([3.0, 4.0, 5.0])
    p_rub = np.array([3.0, 5.0, -4.0])  # x east, y up, z south
    a = np.asarray(side["file_to_enu"])
    assert np.allclose(a[:3, :3] @ p_rub, p_enu)
    f2e = np.asarray(side["file_to_ecef"])
    e2e = np.asarray(side["enu_to_ecef"])
    assert np.allclose(f2e @ np.r_[p_rub, 1], e2e @ np.r_[p_enu, 1], atol=1e-6)
    assert np.array_equal(axes_to_enu("ENU"), np.eye(3))
    with pytest.raises(ValueError, match="unknown axis"):
        axes_to_enu("XYZ")


def test_write_sidecar_next_to_the_file(tmp_path):
    f = tmp_path / "scene.compressed.ply"
    f.write_bytes(b"x")
    out = write_sidecar(f, ORIGIN, axes="ENU")
    assert out == sidecar_path(f) == tmp_path / "scene.compressed.ply.geo.json"
    data = json.loads(out.read_text())
    assert data["file"] == "scene.compressed.ply"
    assert data["origin"] == ORIGIN.to_dict()
    assert len(data["enu_to_ecef"]) == 4 and data["axes"] == "ENU"
