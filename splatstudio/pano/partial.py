"""Partial equirectangular panoramas: a band (or any rectangle) of the full sphere, placed by
the GPano cropped-area fields (Google's Photo Sphere XMP metadata: ``FullPanoWidthPixels``,
``FullPanoHeightPixels``, ``CroppedAreaImageWidthPixels``, ``CroppedAreaImageHeightPixels``,
``CroppedAreaLeftPixels``, ``CroppedAreaTopPixels``; developers.google.com/streetview/spherical-
metadata).

The GPano numbers describe the original capture and may be at another scale than the file (a
downscaled copy keeps them): only their ratios are used, scaled to the file's own pixel width.
A partial panorama is padded to its full 2:1 canvas (:func:`pad_to_full`) before the rig views
are rendered, and the part of the sphere it does not cover is masked out of SfM and training
(:func:`valid_mask`), like the platform.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["PanoCrop", "crop_from_gpano", "pad_to_full", "valid_mask"]

_FIELDS = ("FullPanoWidthPixels", "FullPanoHeightPixels", "CroppedAreaImageWidthPixels",
           "CroppedAreaImageHeightPixels", "CroppedAreaLeftPixels", "CroppedAreaTopPixels")


@dataclass(frozen=True)
class PanoCrop:
    """Where an image lies in its full equirectangular panorama, in the image's own pixels.

    Attributes:
        full_width, full_height: the full panorama (2:1).
        left, top: the image's top-left corner in it (``left`` wraps around 360 degrees).
        width, height: the image's size.
    """

    full_width: int
    full_height: int
    left: int
    top: int
    width: int
    height: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PanoCrop:
        return cls(**{k: int(d[k]) for k in ("full_width", "full_height", "left", "top",
                                             "width", "height")})  # fmt: skip

    def scaled(self, width: int, height: int) -> PanoCrop:
        """The same crop for a copy of the image resized to `width` x `height`."""
        s = width / self.width
        return PanoCrop(round(self.full_width * s), round(self.full_height * s),
                        round(self.left * s), round(self.top * s), width, height)

    @property
    def vertical_fov_deg(self) -> tuple[float, float]:
        """Latitudes (degrees) of the image's top and bottom rows' outer edges."""
        return (90.0 - 180.0 * self.top / self.full_height,
                90.0 - 180.0 * (self.top + self.height) / self.full_height)


def crop_from_gpano(width: int, height: int, gpano: dict[str, Any],
                    tolerance: float = 0.02) -> PanoCrop:
    """The crop of a `width` x `height` image from its GPano fields.

    Raises:
        ValueError: a field is missing, the full panorama is not 2:1 (within `tolerance`), the
            file's shape is not the cropped area's, or the area leaves the full panorama (the
            message says which).
    """
    missing = [f for f in _FIELDS if not isinstance(gpano.get(f), int | float)]
    if missing:
        raise ValueError(f"GPano cropped-area fields missing ({', '.join(missing)}), so the "
                         "part of the sphere it covers is unknown")
    fw, fh, cw, ch, cl, ct = (float(gpano[f]) for f in _FIELDS)
    if min(fw, fh, cw, ch) <= 0 or cl < 0 or ct < 0:
        raise ValueError("GPano cropped-area fields are not positive sizes")
    if abs(fw / fh / 2.0 - 1.0) > tolerance:
        raise ValueError(f"GPano full panorama {fw:.0f}x{fh:.0f} is not 2:1")
    if abs((width / height) / (cw / ch) - 1.0) > tolerance:
        raise ValueError(f"the image is {width}x{height} but its GPano cropped area is "
                         f"{cw:.0f}x{ch:.0f} (another shape)")
    if ct + ch > fh * (1 + tolerance) or cw > fw * (1 + tolerance):
        raise ValueError(f"GPano cropped area {cw:.0f}x{ch:.0f} at ({cl:.0f}, {ct:.0f}) leaves "
                         f"the full panorama {fw:.0f}x{fh:.0f}")
    s = width / cw
    full_w = round(fw * s)
    full_h = round(full_w / 2)
    top = min(round(ct * s), max(0, full_h - height))
    return PanoCrop(full_w, full_h, round(cl * s) % full_w, top, width, height)


def pad_to_full(img: np.ndarray, crop: PanoCrop) -> np.ndarray:
    """The image placed in its full panorama: ``[full_height, full_width, ...]``, zeros where
    it has no pixels; columns past the right edge wrap around to the left.

    Raises:
        ValueError: `img` is not ``crop.height`` x ``crop.width``.
    """
    if img.shape[:2] != (crop.height, crop.width):
        raise ValueError(f"image is {img.shape[1]}x{img.shape[0]}, crop expects "
                         f"{crop.width}x{crop.height}")
    out = np.zeros((crop.full_height, crop.full_width, *img.shape[2:]), img.dtype)
    h = min(crop.height, crop.full_height - crop.top)
    w = min(crop.width, crop.full_width)
    cols = (crop.left + np.arange(w)) % crop.full_width
    out[crop.top:crop.top + h, cols] = img[:h, :w]
    return out


def valid_mask(crop: PanoCrop, width: int, height: int) -> np.ndarray:
    """bool ``[height, width]`` equirect (the full sphere at that size): True where the crop
    covers the whole output pixel (its edge pixels are left out, so a resampled border never
    brings black into what is kept)."""
    import cv2

    m = pad_to_full(np.full((crop.height, crop.width), 255, np.uint8), crop)
    small = cv2.resize(m, (width, height), interpolation=cv2.INTER_AREA)
    return small >= 255
