"""Gaussian-splat model and file formats.

* :class:`Splats` -- the in-memory model (numpy arrays; see :mod:`.model` for shapes,
  frames and units).
* :func:`load_splats`, :func:`save_splats`, :func:`convert`, :func:`detect_format` --
  format-independent I/O for the standard INRIA PLY, the SuperSplat/PlayCanvas compressed
  PLY, the antimatter15 ``.splat``, the Niantic ``.spz``, PlayCanvas SOG and glTF
  ``KHR_gaussian_splatting`` GLB (:mod:`.gltf`) formats.
* :mod:`.tiles3d` -- 3D Tiles 1.1 tilesets of splat GLBs, georeferenced (for CesiumJS).
* :mod:`.filters` -- crop box, opacity threshold, floater removal, SH-degree cap.

Importing this package imports numpy only (scipy and zstandard are imported lazily when
needed; never torch or Qt).
"""

from .filters import apply_filters, cap_sh_degree, crop_box, drop_transparent, remove_floaters
from .io import FORMATS, convert, detect_format, load_splats, save_splats
from .model import SH_C0, SplatFormatError, Splats

__all__ = [
    "FORMATS",
    "SH_C0",
    "SplatFormatError",
    "Splats",
    "apply_filters",
    "cap_sh_degree",
    "convert",
    "crop_box",
    "detect_format",
    "drop_transparent",
    "load_splats",
    "remove_floaters",
    "save_splats",
]
