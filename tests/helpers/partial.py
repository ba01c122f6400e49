"""A capture of partial panoramas: the shared walk's panoramas cropped to a horizontal band (as
GoPro MAX frames cropped to 4096 x 1344 are), EXIF (GPS) kept, GPano cropped-area fields
rewritten for the band at the original camera's scale (5760 x 2880), as such files carry them."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from helpers.dashboard import _app_segments

#: The band, as fractions of the full panorama's height: 1890 of 2880 rows from row 495.
TOP, HEIGHT = 495 / 2880, 1890 / 2880
FULL = (5760, 2880)


def _xmp_segment(seg: bytes, top: int, height: int) -> bytes:
    head = b"http://ns.adobe.com/xap/1.0/\x00"
    xmp = seg[4 + len(head):].decode("utf-8")
    values = {"CroppedAreaTopPixels": top, "CroppedAreaImageHeightPixels": height,
              "CroppedAreaImageWidthPixels": FULL[0], "CroppedAreaLeftPixels": 0,
              "FullPanoWidthPixels": FULL[0], "FullPanoHeightPixels": FULL[1]}
    for k, v in values.items():
        xmp = re.sub(rf"<GPano:{k}>[^<]*</GPano:{k}>", f"<GPano:{k}>{v}</GPano:{k}>", xmp)
    body = head + xmp.encode("utf-8")
    return b"\xff\xe1" + (len(body) + 2).to_bytes(2, "big") + body


def make_partial_capture(src: Path, dst: Path) -> Path:
    """Copy the panoramas of `src` into `dst` cropped to the band TOP..TOP+HEIGHT."""
    import cv2

    dst.mkdir(parents=True, exist_ok=True)
    for p in sorted(src.glob("*.jpg")):
        raw = p.read_bytes()
        img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
        h = img.shape[0]
        y0, y1 = round(TOP * h), round((TOP + HEIGHT) * h)
        ok, enc = cv2.imencode(".jpg", img[y0:y1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        assert ok
        enc = enc.tobytes()
        body, i = enc, 2
        while body[i] == 0xFF and 0xE0 <= body[i + 1] <= 0xEF:
            i += 2 + int.from_bytes(body[i + 2:i + 4], "big")
        segs = [_xmp_segment(s, round(TOP * FULL[1]), round(HEIGHT * FULL[1]))
                if s[4:33] == b"http://ns.adobe.com/xap/1.0/\x00" else s
                for s in _app_segments(raw)]
        (dst / p.name).write_bytes(b"\xff\xd8" + b"".join(segs) + body[i:])
    return dst
