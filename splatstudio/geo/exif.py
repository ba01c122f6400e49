"""Image headers, EXIF GPS/time/focal length (piexif) and GPano XMP, without decoding pixels.

:func:`read_image_header` walks a JPEG's marker segments up to the start of scan (or a PNG's
chunks up to the first IDAT), keeping the size from the frame header (SOFn / IHDR), the EXIF
block and the XMP packet, and checks that the compressed data ends with an EOI marker, so a
truncated file is caught without decoding it. Sizes always come from these pixel headers, never
from EXIF ``PixelXDimension`` or GPano fields (which describe the original capture).
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import struct
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_EXIF_ID = b"Exif\x00\x00"
_XMP_ID = b"http://ns.adobe.com/xap/1.0/\x00"
_PNG_SIG = b"\x89PNG\r\n\x1a\n"


class HeaderError(ValueError):
    """The file is not a readable image (message says why; the caller adds the path)."""


@dataclass
class ImageHeader:
    """What the header of an image says.

    Attributes:
        format: "jpeg" or "png".
        width, height: pixel size as stored (before EXIF orientation), pixels.
        orientation: EXIF orientation 1..8 (1 when absent).
        exif: raw EXIF (TIFF) block including the "Exif\\0\\0" prefix, or None.
        xmp: the XMP packet as text, or None.
    """

    format: str
    width: int
    height: int
    orientation: int = 1
    exif: bytes | None = None
    xmp: str | None = None

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) after applying the EXIF orientation (swapped for 5..8)."""
        if self.orientation in (5, 6, 7, 8):
            return self.height, self.width
        return self.width, self.height


def _read_jpeg(f, size: int) -> ImageHeader:
    f.seek(2)
    width = height = None
    exif = xmp = None
    sos_end = None
    while True:
        b = f.read(1)
        if not b:
            raise HeaderError("truncated JPEG header (no start of scan)")
        if b != b"\xff":
            raise HeaderError(f"corrupt JPEG: expected a marker at byte {f.tell() - 1}")
        marker = f.read(1)
        while marker == b"\xff":  # fill bytes
            marker = f.read(1)
        if not marker:
            raise HeaderError("truncated JPEG header")
        m = marker[0]
        if m == 0xD8 or 0xD0 <= m <= 0xD7 or m == 0x01:
            continue
        if m == 0xD9:
            raise HeaderError("corrupt JPEG: end of image before any scan")
        raw_len = f.read(2)
        if len(raw_len) < 2:
            raise HeaderError("truncated JPEG header")
        length = struct.unpack(">H", raw_len)[0]
        if length < 2:
            raise HeaderError(f"corrupt JPEG: bad segment length at byte {f.tell() - 2}")
        if m == 0xDA:
            sos_end = f.tell() + length - 2
            break
        if m in _SOF_MARKERS or m == 0xE1:
            payload = f.read(length - 2)
            if len(payload) < length - 2:
                raise HeaderError("truncated JPEG header")
            if m in _SOF_MARKERS:
                if len(payload) < 5:
                    raise HeaderError("corrupt JPEG frame header")
                height, width = struct.unpack(">HH", payload[1:5])
            elif payload.startswith(_EXIF_ID) and exif is None:
                exif = payload
            elif payload.startswith(_XMP_ID) and xmp is None:
                xmp = payload[len(_XMP_ID):].decode("utf-8", errors="replace")
        else:
            f.seek(length - 2, os.SEEK_CUR)
    if not width or not height:
        raise HeaderError("corrupt JPEG: no frame header with the image size")
    # Entropy-coded data never contains FF D9 (FF is byte-stuffed), so an EOI after the start
    # of scan means the image data is complete. Look in the tail first (cheap), then everywhere.
    tail = min(size - sos_end, 1 << 16)
    f.seek(size - tail)
    if b"\xff\xd9" not in f.read(tail):
        f.seek(sos_end)
        if b"\xff\xd9" not in f.read():
            raise HeaderError("truncated JPEG: the image data has no end-of-image marker")
    return ImageHeader("jpeg", int(width), int(height), exif=exif, xmp=xmp)


def _read_png(f, size: int) -> ImageHeader:
    f.seek(8)
    width = height = None
    exif = xmp = None
    while True:
        head = f.read(8)
        if len(head) < 8:
            raise HeaderError("truncated PNG")
        length, ctype = struct.unpack(">I4s", head)
        if ctype == b"IHDR":
            data = f.read(length)
            if len(data) < 8:
                raise HeaderError("truncated PNG header")
            width, height = struct.unpack(">II", data[:8])
            f.seek(4, os.SEEK_CUR)
        elif ctype == b"eXIf":
            exif = _EXIF_ID + f.read(length)
            f.seek(4, os.SEEK_CUR)
        elif ctype == b"iTXt":
            data = f.read(length)
            f.seek(4, os.SEEK_CUR)
            if data.startswith(b"XML:com.adobe.xmp\x00"):
                xmp = data.split(b"\x00", 5)[-1].decode("utf-8", errors="replace")
        elif ctype == b"IDAT":
            break
        else:
            f.seek(length + 4, os.SEEK_CUR)
    if not width or not height:
        raise HeaderError("corrupt PNG: no IHDR chunk")
    f.seek(max(0, size - 12))
    if f.read(12)[4:8] != b"IEND":
        raise HeaderError("truncated PNG: no IEND chunk at the end")
    return ImageHeader("png", int(width), int(height), exif=exif, xmp=xmp)


def read_image_header(path: str | Path) -> ImageHeader:
    """Read the header of a JPEG or PNG file without decoding its pixels.

    Raises:
        HeaderError: not a JPEG/PNG, or a corrupt or truncated one (message says which).
        OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        magic = f.read(8)
        if magic[:2] == b"\xff\xd8":
            header = _read_jpeg(f, size)
        elif magic == _PNG_SIG:
            header = _read_png(f, size)
        elif not magic:
            raise HeaderError("empty file")
        else:
            raise HeaderError("not a JPEG or PNG image")
    if header.exif is not None:
        header.orientation = _orientation(header.exif)
    return header


def _load_exif(exif: bytes) -> dict[str, Any]:
    import piexif

    try:
        return piexif.load(exif)
    except Exception:  # piexif raises assorted errors on malformed blocks
        return {}


def _orientation(exif: bytes) -> int:
    d = _load_exif(exif)
    o = d.get("0th", {}).get(0x0112, 1)
    return int(o) if isinstance(o, int) and 1 <= o <= 8 else 1


def _rational(v: Any) -> float | None:
    try:
        if isinstance(v, tuple) and len(v) == 2:
            num, den = v
            return None if den == 0 else float(Fraction(int(num), int(den)))
        return float(v)
    except (TypeError, ValueError):
        return None


def _dms(v: Any) -> float | None:
    if not isinstance(v, tuple) or len(v) != 3:
        return None
    parts = [_rational(x) for x in v]
    if any(p is None for p in parts):
        return None
    d, m, s = parts
    return d + m / 60.0 + s / 3600.0


def _text(v: Any) -> str | None:
    if isinstance(v, bytes):
        v = v.split(b"\x00", 1)[0].decode("ascii", errors="replace").strip()
    return v or None if isinstance(v, str) else None


@dataclass
class ExifInfo:
    """What SplatStudio uses from EXIF.

    Attributes:
        gps: {lat_deg, lon_deg, h_m} (WGS84 degrees; EXIF altitude in metres, 0 when absent) or
            None when there is no valid fix.
        time: capture time, ISO 8601 (DateTimeOriginal with sub-seconds and offset when given).
        gps_time: UTC time of the GPS fix, ISO 8601, or None.
        focal_35mm: 35 mm-equivalent focal length in mm, or None.
        focal_mm: focal length in mm, or None.
        make, model: camera make and model.
    """

    gps: dict[str, float] | None = None
    time: str | None = None
    gps_time: str | None = None
    focal_35mm: float | None = None
    focal_mm: float | None = None
    make: str | None = None
    model: str | None = None
    problems: list[str] = field(default_factory=list)


def parse_exif(exif: bytes | None) -> ExifInfo:
    """Extract GPS, times, focal length and camera from a raw EXIF block (may be None).

    The GPS altitude is taken as the height of the fix in metres (EXIF calls it altitude above
    sea level; consumer cameras rarely say which datum). A fix with latitude/longitude outside
    their ranges or exactly (0, 0) is treated as no fix and reported in `problems`.
    """
    info = ExifInfo()
    if not exif:
        return info
    d = _load_exif(exif)
    if not d:
        info.problems.append("unreadable EXIF block")
        return info
    gps = d.get("GPS", {})
    lat, lon = _dms(gps.get(2)), _dms(gps.get(4))
    if lat is not None and lon is not None:
        if _text(gps.get(1)) == "S":
            lat = -lat
        if _text(gps.get(3)) == "W":
            lon = -lon
        alt = _rational(gps.get(6)) if 6 in gps else None
        if alt is not None and gps.get(5) == 1:
            alt = -alt
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            info.problems.append(f"GPS position out of range ({lat}, {lon})")
        elif lat == 0 and lon == 0:
            info.problems.append("GPS position is (0, 0), a camera without a fix")
        else:
            info.gps = {"lat_deg": lat, "lon_deg": lon, "h_m": alt if alt is not None else 0.0}
            if alt is None:
                info.problems.append("GPS fix has no altitude (0 m assumed)")
    date, stamp = _text(gps.get(29)), gps.get(7)
    if date and isinstance(stamp, tuple) and len(stamp) == 3:
        hms = [_rational(x) for x in stamp]
        try:
            day = _dt.datetime.strptime(date, "%Y:%m:%d").replace(tzinfo=_dt.UTC)
            if all(x is not None for x in hms):
                t = day + _dt.timedelta(hours=hms[0], minutes=hms[1], seconds=hms[2])
                info.gps_time = t.isoformat()
        except ValueError:
            pass
    ex, zeroth = d.get("Exif", {}), d.get("0th", {})
    raw = _text(ex.get(36867)) or _text(zeroth.get(306))
    if raw:
        try:
            t = _dt.datetime.strptime(raw, "%Y:%m:%d %H:%M:%S")
            sub = _text(ex.get(37521))
            if sub and sub.isdigit():
                t = t.replace(microsecond=int(round(float("0." + sub) * 1e6)) % 1000000)
            off = _text(ex.get(36881))
            if off and re.fullmatch(r"[+-]\d\d:\d\d", off):
                sign = 1 if off[0] == "+" else -1
                tz = _dt.timedelta(hours=int(off[1:3]), minutes=int(off[4:6])) * sign
                t = t.replace(tzinfo=_dt.timezone(tz))
            info.time = t.isoformat()
        except ValueError:
            info.problems.append(f"unreadable capture time {raw!r}")
    if info.time is None:
        info.time = info.gps_time
    f35 = ex.get(41989)
    if isinstance(f35, int) and f35 > 0:
        info.focal_35mm = float(f35)
    fmm = _rational(ex.get(37386)) if 37386 in ex else None
    if fmm and fmm > 0:
        info.focal_mm = fmm
    info.make, info.model = _text(zeroth.get(271)), _text(zeroth.get(272))
    return info


_GPANO_FIELDS = {
    "ProjectionType": str,
    "FullPanoWidthPixels": int,
    "FullPanoHeightPixels": int,
    "CroppedAreaImageWidthPixels": int,
    "CroppedAreaImageHeightPixels": int,
    "CroppedAreaLeftPixels": int,
    "CroppedAreaTopPixels": int,
    "PoseHeadingDegrees": float,
    "PosePitchDegrees": float,
    "PoseRollDegrees": float,
}


def parse_gpano(xmp: str | None) -> dict[str, Any]:
    """GPano fields of an XMP packet (attribute or element form), converted to numbers.

    These describe the original capture; SplatStudio reads the projection type and the pose
    angles, never the image size, from them.
    """
    out: dict[str, Any] = {}
    if not xmp:
        return out
    for name, typ in _GPANO_FIELDS.items():
        m = re.search(rf'GPano:{name}\s*=\s*"([^"]*)"', xmp) or re.search(
            rf"<GPano:{name}>([^<]*)</GPano:{name}>", xmp
        )
        if m:
            try:
                out[name] = typ(m.group(1).strip())
            except ValueError:
                pass
    return out


def focal_px_from_exif(info: ExifInfo, width: int, height: int) -> float | None:
    """Focal length in pixels of a perspective photo from its 35 mm-equivalent focal length.

    f_px = f35 / 36 mm * max(width, height) (the 35 mm frame is 36 mm wide; OpenSfM and COLMAP
    use the same rule). None when EXIF has no 35 mm-equivalent focal length.
    """
    if info.focal_35mm:
        return info.focal_35mm / 36.0 * max(width, height)
    return None
