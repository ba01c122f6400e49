"""A capture with a vehicle's dashboard in every panorama: the shared walk's panoramas with one
textured picture pasted at the same place of each (the lower third, as a cabin would be), their
EXIF (GPS) and XMP (GPano) kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Where the picture goes, as fractions of the panorama (x0, y0, x1, y1): lower third.
BOX = (600 / 2048, 650 / 1024, 1300 / 2048, 900 / 1024)


def _app_segments(jpeg: bytes) -> list[bytes]:
    """The APPn segments (EXIF, XMP ...) of a JPEG, in order, up to the start of scan."""
    out, i = [], 2
    while i + 4 <= len(jpeg) and jpeg[i] == 0xFF:
        marker = jpeg[i + 1]
        if marker == 0xDA:  # start of scan
            break
        length = int.from_bytes(jpeg[i + 2:i + 4], "big")
        if 0xE1 <= marker <= 0xEF:
            out.append(jpeg[i:i + 2 + length])
        i += 2 + length
    return out


def truth_mask(width: int, height: int) -> np.ndarray:
    """bool [height, width]: where the picture is, at that equirect size."""
    m = np.zeros((height, width), bool)
    x0, y0, x1, y1 = BOX
    m[round(y0 * height):round(y1 * height), round(x0 * width):round(x1 * width)] = True
    return m


def make_dashboard_capture(src: Path, picture: Path, dst: Path) -> Path:
    """Copy the panoramas of `src` into `dst` with `picture` pasted into BOX of each."""
    import cv2

    dst.mkdir(parents=True, exist_ok=True)
    tile_src = cv2.imread(str(picture))
    for p in sorted(src.glob("*.jpg")):
        raw = p.read_bytes()
        img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
        h, w = img.shape[:2]
        x0, y0, x1, y1 = (round(BOX[0] * w), round(BOX[1] * h), round(BOX[2] * w),
                          round(BOX[3] * h))
        img[y0:y1, x0:x1] = cv2.resize(tile_src, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
        ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        assert ok
        enc = enc.tobytes()
        # keep the original metadata: SOI + original APPn + the new file without its SOI/APP0
        body, i = enc, 2
        while body[i] == 0xFF and 0xE0 <= body[i + 1] <= 0xEF:
            i += 2 + int.from_bytes(body[i + 2:i + 4], "big")
        (dst / p.name).write_bytes(b"\xff\xd8" + b"".join(_app_segments(raw)) + body[i:])
    return dst
