"""WGS84 -> ENU against an independent computation, and EXIF/XMP/header parsing."""

from __future__ import annotations

import io
import struct

import numpy as np
import piexif
import pytest

from splatstudio.geo.enu import GeoOrigin, enu_to_ecef_matrix, enu_to_geodetic, geodetic_to_enu
from splatstudio.geo.exif import (
    HeaderError,
    parse_exif,
    parse_gpano,
    read_image_header,
)

A = 6378137.0
F = 1 / 298.257223563
E2 = F * (2 - F)


def ecef(lat_deg, lon_deg, h):
    """Geodetic -> ECEF with the closed-form WGS84 formulas (independent of PROJ)."""
    lat, lon = np.radians(lat_deg), np.radians(lon_deg)
    n = A / np.sqrt(1 - E2 * np.sin(lat) ** 2)
    return np.stack(
        [
            (n + h) * np.cos(lat) * np.cos(lon),
            (n + h) * np.cos(lat) * np.sin(lon),
            (n * (1 - E2) + h) * np.sin(lat),
        ],
        axis=-1,
    )


def enu_reference(lat, lon, h, o: GeoOrigin):
    d = ecef(lat, lon, h) - ecef(o.lat_deg, o.lon_deg, o.h_m)
    la, lo = np.radians(o.lat_deg), np.radians(o.lon_deg)
    r = np.array(
        [
            [-np.sin(lo), np.cos(lo), 0],
            [-np.sin(la) * np.cos(lo), -np.sin(la) * np.sin(lo), np.cos(la)],
            [np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)],
        ]
    )
    return d @ r.T


def _real_fixes(folder):
    fixes = []
    for p in sorted(folder.glob("*.jpg")):
        info = parse_exif(read_image_header(p).exif)
        if info.gps:
            fixes.append((info.gps["lat_deg"], info.gps["lon_deg"], info.gps["h_m"]))
    return np.array(fixes)


@pytest.mark.parametrize("which", ["panos", "lund"])
def test_enu_matches_independent_computation_on_real_gps(which, panos_2048, lund):
    fixes = _real_fixes(panos_2048 if which == "panos" else lund)
    assert len(fixes) >= 5
    o = GeoOrigin(*fixes[0])
    ours = geodetic_to_enu(fixes[:, 0], fixes[:, 1], fixes[:, 2], o)
    ref = enu_reference(fixes[:, 0], fixes[:, 1], fixes[:, 2], o)
    assert np.abs(ours - ref).max() < 1e-3  # under 1 mm
    assert np.allclose(ours[0], 0.0, atol=1e-6)


def test_enu_far_points_and_inverse():
    o = GeoOrigin(-33.8688, 151.2093, 58.0)  # southern and eastern hemisphere
    lat = np.array([-33.8, -34.0, -33.86])
    lon = np.array([151.1, 151.3, 151.21])
    h = np.array([0.0, 500.0, 60.0])
    enu = geodetic_to_enu(lat, lon, h, o)
    assert np.abs(enu - enu_reference(lat, lon, h, o)).max() < 1e-3
    back = enu_to_geodetic(enu, o)
    assert np.abs(back[:, :2] - np.stack([lat, lon], 1)).max() < 1e-10
    assert np.abs(back[:, 2] - h).max() < 1e-4


def test_enu_to_ecef_matrix():
    o = GeoOrigin(49.0068896, 1.9191854, 92.86)
    m = enu_to_ecef_matrix(o)
    assert np.allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3))
    lat, lon, h = 49.0069, 1.9193, 95.0
    enu = geodetic_to_enu(lat, lon, h, o)
    assert np.abs(m[:3, :3] @ enu + m[:3, 3] - ecef(lat, lon, h)).max() < 1e-3


def _jpeg_with_exif(exif: dict | None, size=(64, 32), xmp: str | None = None) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", np.zeros((size[1], size[0], 3), np.uint8))
    data = buf.tobytes()
    out = io.BytesIO()
    if exif is not None:
        piexif.insert(piexif.dump(exif), data, out)
        data = out.getvalue()
    if xmp is not None:
        payload = b"http://ns.adobe.com/xap/1.0/\x00" + xmp.encode()
        seg = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
        data = data[:2] + seg + data[2:]
    return data


def test_exif_gps_signs_altitude_and_time(tmp_path):
    gps = {
        piexif.GPSIFD.GPSLatitudeRef: b"S",
        piexif.GPSIFD.GPSLatitude: ((33, 1), (52, 1), (780, 100)),
        piexif.GPSIFD.GPSLongitudeRef: b"W",
        piexif.GPSIFD.GPSLongitude: ((70, 1), (30, 1), (0, 1)),
        piexif.GPSIFD.GPSAltitudeRef: 1,
        piexif.GPSIFD.GPSAltitude: (125, 10),
        piexif.GPSIFD.GPSDateStamp: b"2024:03:01",
        piexif.GPSIFD.GPSTimeStamp: ((10, 1), (5, 1), (30, 1)),
    }
    ex = {
        piexif.ExifIFD.DateTimeOriginal: b"2024:03:01 07:05:29",
        piexif.ExifIFD.SubSecTimeOriginal: b"25",
        piexif.ExifIFD.OffsetTimeOriginal: b"-03:00",
        piexif.ExifIFD.FocalLengthIn35mmFilm: 28,
    }
    p = tmp_path / "a.jpg"
    p.write_bytes(_jpeg_with_exif({"GPS": gps, "Exif": ex}))
    h = read_image_header(p)
    assert (h.width, h.height, h.format) == (64, 32, "jpeg")
    info = parse_exif(h.exif)
    assert info.gps["lat_deg"] == pytest.approx(-(33 + 52 / 60 + 7.8 / 3600))
    assert info.gps["lon_deg"] == pytest.approx(-70.5)
    assert info.gps["h_m"] == pytest.approx(-12.5)
    assert info.time == "2024-03-01T07:05:29.250000-03:00"
    assert info.gps_time == "2024-03-01T10:05:30+00:00"
    assert info.focal_35mm == 28


def test_zero_gps_is_no_fix(tmp_path):
    gps = {
        piexif.GPSIFD.GPSLatitudeRef: b"N",
        piexif.GPSIFD.GPSLatitude: ((0, 1), (0, 1), (0, 1)),
        piexif.GPSIFD.GPSLongitudeRef: b"E",
        piexif.GPSIFD.GPSLongitude: ((0, 1), (0, 1), (0, 1)),
    }
    p = tmp_path / "z.jpg"
    p.write_bytes(_jpeg_with_exif({"GPS": gps}))
    info = parse_exif(read_image_header(p).exif)
    assert info.gps is None and "without a fix" in info.problems[0]


def test_gpano_both_forms_and_size_from_pixels(tmp_path, panos_2048):
    attr = '<rdf:Description GPano:ProjectionType="equirectangular" GPano:FullPanoWidthPixels="5760"/>'
    elem = "<GPano:ProjectionType>equirectangular</GPano:ProjectionType>"
    assert parse_gpano(attr) == {"ProjectionType": "equirectangular", "FullPanoWidthPixels": 5760}
    assert parse_gpano(elem) == {"ProjectionType": "equirectangular"}
    # The downscaled set keeps EXIF PixelXDimension 5760: the size must come from the pixels.
    h = read_image_header(panos_2048 / "1.jpg")
    assert (h.width, h.height) == (2048, 1024)
    assert parse_gpano(h.xmp)["ProjectionType"] == "equirectangular"


def test_truncated_and_corrupt_jpeg(tmp_path, panos_2048):
    data = (panos_2048 / "2.jpg").read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(HeaderError, match="truncated"):
        read_image_header(cut)
    head_only = tmp_path / "head.jpg"
    head_only.write_bytes(data[:300])
    with pytest.raises(HeaderError, match="truncated"):
        read_image_header(head_only)
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"\xff\xd8" + bytes(range(256)) * 4)
    with pytest.raises(HeaderError, match="corrupt|truncated"):
        read_image_header(garbage)
    text = tmp_path / "notes.jpg"
    text.write_text("hello")
    with pytest.raises(HeaderError, match="not a JPEG or PNG"):
        read_image_header(text)


def test_png_header(tmp_path):
    import cv2

    p = tmp_path / "a.png"
    cv2.imwrite(str(p), np.zeros((10, 30, 3), np.uint8))
    h = read_image_header(p)
    assert (h.format, h.width, h.height) == ("png", 30, 10)
    p.write_bytes(p.read_bytes()[:-12])
    with pytest.raises(HeaderError, match="truncated PNG"):
        read_image_header(p)
