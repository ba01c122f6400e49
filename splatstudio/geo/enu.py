"""WGS84 geodetic coordinates <-> local ENU (east, north, up) metres, with pyproj.

The conversion is geodetic (EPSG:4979: latitude, longitude in degrees, ellipsoidal height in
metres) -> geocentric ECEF (EPSG:4978, metres) -> topocentric ENU about an origin, done by PROJ's
``cart`` and ``topocentric`` operations. The origin is kept in double precision; ENU values are
float64 metres.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class GeoOrigin:
    """Origin of a local ENU frame: WGS84 latitude/longitude (degrees), ellipsoidal height (m)."""

    lat_deg: float
    lon_deg: float
    h_m: float

    def to_dict(self) -> dict[str, float]:
        return {"lat_deg": self.lat_deg, "lon_deg": self.lon_deg, "h_m": self.h_m}


@lru_cache(maxsize=16)
def _transformer(lat0: float, lon0: float, h0: float):
    from pyproj import Transformer

    pipeline = (
        "+proj=pipeline "
        "+step +proj=axisswap +order=2,1 "  # lat, lon -> lon, lat
        "+step +proj=unitconvert +xy_in=deg +xy_out=rad "
        "+step +proj=cart +ellps=WGS84 "
        f"+step +proj=topocentric +ellps=WGS84 +lat_0={lat0!r} +lon_0={lon0!r} +h_0={h0!r}"
    )
    return Transformer.from_pipeline(pipeline)


def geodetic_to_enu(lat_deg, lon_deg, h_m, origin: GeoOrigin) -> np.ndarray:
    """Convert WGS84 geodetic coordinates to ENU metres about `origin`.

    Args:
        lat_deg, lon_deg: latitude and longitude in degrees, scalars or arrays of shape [N].
        h_m: ellipsoidal height in metres, same shape.
        origin: the ENU origin.

    Returns:
        float64 array [N, 3] (or [3] for scalars) of (east, north, up) in metres.
    """
    lat = np.asarray(lat_deg, dtype=np.float64)
    lon = np.asarray(lon_deg, dtype=np.float64)
    h = np.asarray(h_m, dtype=np.float64)
    t = _transformer(float(origin.lat_deg), float(origin.lon_deg), float(origin.h_m))
    e, n, u = t.transform(lat, lon, h)
    return np.stack([np.asarray(e), np.asarray(n), np.asarray(u)], axis=-1).astype(np.float64)


def enu_to_geodetic(enu_m, origin: GeoOrigin) -> np.ndarray:
    """Inverse of :func:`geodetic_to_enu`: ENU metres [N,3] -> [N,3] (lat_deg, lon_deg, h_m)."""
    enu = np.asarray(enu_m, dtype=np.float64)
    t = _transformer(float(origin.lat_deg), float(origin.lon_deg), float(origin.h_m))
    lat, lon, h = t.transform(enu[..., 0], enu[..., 1], enu[..., 2], direction="INVERSE")
    return np.stack([np.asarray(lat), np.asarray(lon), np.asarray(h)], axis=-1)


def enu_to_ecef_matrix(origin: GeoOrigin) -> np.ndarray:
    """The 4x4 rigid transform taking ENU metres about `origin` to ECEF (EPSG:4978) metres.

    Columns 0..2 of the rotation are the east, north and up unit vectors in ECEF; column 3 is
    the origin in ECEF. float64 [4, 4].
    """
    from pyproj import Transformer

    to_ecef = Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True)
    x, y, z = to_ecef.transform(origin.lon_deg, origin.lat_deg, origin.h_m)
    lat, lon = np.radians(origin.lat_deg), np.radians(origin.lon_deg)
    east = np.array([-np.sin(lon), np.cos(lon), 0.0])
    north = np.array([-np.sin(lat) * np.cos(lon), -np.sin(lat) * np.sin(lon), np.cos(lat)])
    up = np.array([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = east, north, up, (x, y, z)
    return m
