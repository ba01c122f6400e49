"""Format-independent loading, saving and conversion of splat files.

Formats (name: usual extension, source):

* ``"ply"``: ``.ply``, the standard INRIA 3DGS PLY (lossless) -- :mod:`.ply`
* ``"compressed_ply"``: ``.compressed.ply``, SuperSplat / PlayCanvas engine chunked PLY
  (~4x smaller, quantised) -- :mod:`.compressed_ply`
* ``"splat"``: ``.splat``, antimatter15/splat (32 B per gaussian, no higher SH) --
  :mod:`.splat`
* ``"spz"``: ``.spz``, nianticlabs/spz (~10x smaller, quantised) -- :mod:`.spz`
* ``"sog"``: ``.sog`` (a ZIP bundle) or ``meta.json`` beside its WebP images, PlayCanvas SOG
  v2 (~15-20x smaller, quantised; needs Pillow) -- :mod:`.sog`
* ``"glb_splat"``: ``.glb``, binary glTF with Khronos ``KHR_gaussian_splatting`` (float
  attributes, lossless) or, with ``spz=True``, ``KHR_gaussian_splatting_compression_spz_2``
  (an SPZ v3/v2 payload, as CesiumJS reads it) -- :mod:`.gltf`. A ``.glb`` is always read as
  a splat here (a textured-mesh GLB is refused with a message).

A ``.ply`` whose header has a ``chunk`` element is a compressed PLY whatever its name; when
reading, the content (PLY header, gzip or ``NGSP`` magic, ZIP magic) decides before the
extension.
"""

from __future__ import annotations

import inspect
import os
import time
from pathlib import Path

from .filters import FILTER_OPTIONS, apply_filters
from .formats import FORMATS, REGISTRY
from .model import SplatFormatError, Splats
from .ply import read_ply_header

__all__ = ["FORMATS", "SplatFormatError", "detect_format", "format_from_name", "load_splats",
           "save_splats", "convert"]  # fmt: skip


def format_from_name(path: str | os.PathLike) -> str:
    """Format implied by a file name alone: ``.compressed.ply`` -> ``"compressed_ply"``,
    ``.ply`` -> ``"ply"``, ``.splat`` -> ``"splat"``, ``.spz`` -> ``"spz"``, ``.sog`` or
    ``meta.json`` -> ``"sog"``, ``.glb`` -> ``"glb_splat"`` (case-insensitive).

    Raises:
        ValueError: for any other extension.
    """
    name = Path(path).name.lower()
    # the longest matching suffix wins (.compressed.ply before .ply)
    suffixes = sorted(((s, f.name) for f in REGISTRY.values() for s in f.read_suffixes),
                      key=lambda sf: -len(sf[0]))
    for ext, fmt in suffixes:
        if name.endswith(ext):
            return fmt
    raise ValueError(
        f"{path}: cannot tell the splat format from the extension (expected .ply, "
        f".compressed.ply, .splat, .spz, .sog, meta.json or .glb; or pass format= one of "
        f"{FORMATS})"
    )


def detect_format(path: str | os.PathLike) -> str:
    """Detect the format of a splat file, from its content when it exists, else its name.

    Content rules: a PLY header with a ``chunk`` element -> ``"compressed_ply"``, any other
    PLY -> ``"ply"``; gzip (``1f 8b``) or ``NGSP`` magic -> ``"spz"``; ZIP (``PK 03 04``)
    magic -> ``"sog"``; ``glTF`` magic -> ``"glb_splat"``; otherwise the extension decides (``.splat`` has no magic).

    Returns:
        One of :data:`FORMATS`.

    Raises:
        ValueError: if neither the content nor the name identifies a format.
    """
    p = Path(path)
    if p.is_file():
        with open(p, "rb") as f:
            head = f.read(4)
        if head[:3] == b"ply":
            header = read_ply_header(p)
            return "compressed_ply" if header.element("chunk") is not None else "ply"
        if head[:2] == b"\x1f\x8b" or head == b"NGSP":
            return "spz"
        if head == b"PK\x03\x04":
            return "sog"
        if head == b"glTF":
            return "glb_splat"
    return format_from_name(p)


def _check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown splat format {fmt!r}; expected one of {FORMATS}")
    return fmt


def _check_options(func, fmt: str, options: dict) -> None:
    params = inspect.signature(func).parameters
    accepted = [n for n, p in params.items() if p.kind == p.KEYWORD_ONLY]
    unknown = [k for k in options if k not in accepted]
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for format {fmt!r} "
            f"(accepted: {', '.join(accepted) or 'none'})"
        )


def load_splats(path: str | os.PathLike, *, format: str | None = None, **options) -> Splats:
    """Load a splat file of any supported format.

    Args:
        path: input file.
        format: force a format (one of :data:`FORMATS`) instead of detecting it.
        **options: reader options, e.g. ``coordinate_system=`` for SPZ and glb_splat (the
            axis convention wanted in memory, default ``"RDF"``; see
            :mod:`splatstudio.splats.spz` and :mod:`splatstudio.splats.gltf`).

    Returns:
        :class:`Splats`.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: for an unknown format or option, or a malformed file
            (:class:`~splatstudio.splats.model.SplatFormatError`, message naming the file).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such splat file")
    fmt = _check_format(format) if format else detect_format(p)
    reader = REGISTRY[fmt].reader
    _check_options(reader, fmt, options)
    return reader(p, **options)


def save_splats(
    splats: Splats, path: str | os.PathLike, *, format: str | None = None, **options
) -> dict:
    """Save splats in any supported format, atomically (temporary file + rename).

    Args:
        splats: gaussians to save (validated first).
        path: output file; parent directories are created.
        format: one of :data:`FORMATS`; default from the extension (``.compressed.ply`` ->
            compressed PLY).
        **options: writer options, e.g. ``include_normals`` (ply), ``sort`` (splat,
            compressed_ply, sog), ``version``, ``coordinate_system``, ``sh1_bits``,
            ``sh_rest_bits``, ``compression_level``, ``fractional_bits`` (spz),
            ``iterations`` (sog), ``coordinate_system``, ``spz``, ``spz_version``,
            ``spz_axes``, ``color_space`` (glb_splat).

    Returns:
        ``{"path", "format", "n", "sh_degree" (as written), "bytes", "bytes_per_gaussian",
        "seconds"}``.

    Raises:
        ValueError: for an unknown format or option, an unrecognised extension without
            ``format=``, or splats failing :meth:`Splats.validate`.
        OSError: on write errors (no partial file is left at ``path``).
    """
    p = Path(path)
    fmt = _check_format(format) if format else format_from_name(p)
    writer = REGISTRY[fmt].writer
    _check_options(writer, fmt, options)
    splats.validate()
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
    t0 = time.perf_counter()
    try:
        nbytes = writer(splats, tmp, **options)
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    seconds = time.perf_counter() - t0
    return {
        "path": str(p),
        "format": fmt,
        "n": splats.n,
        "sh_degree": 0 if fmt == "splat" else splats.sh_degree,
        "bytes": int(nbytes),
        "bytes_per_gaussian": nbytes / splats.n if splats.n else 0.0,
        "seconds": seconds,
    }


def convert(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    format: str | None = None,
    src_format: str | None = None,
    load_options: dict | None = None,
    save_options: dict | None = None,
    **filter_options,
) -> dict:
    """Load ``src``, apply filters, save ``dst`` (backs ``splatstudio convert IN OUT``).

    Args:
        src: input splat file (format detected, or ``src_format``).
        dst: output file (format from its extension, or ``format``).
        format: output format name.
        src_format: input format name.
        load_options: reader options (see :func:`load_splats`).
        save_options: writer options (see :func:`save_splats`).
        **filter_options: any of :data:`~splatstudio.splats.filters.FILTER_OPTIONS`:
            ``crop_min``/``crop_max`` (``[3]`` metres, the splats' frame -- ENU for
            SplatStudio scenes), ``min_opacity`` (on ``sigmoid(opacity)``),
            ``remove_floaters`` (bool), ``floater_k``, ``floater_std_ratio``,
            ``max_sh_degree``.

    Returns:
        ``{"src", "dst", "src_format", "filters": {step: removed count, "input", "output"},
        **save_splats info}``.

    Raises:
        ValueError: for unknown filter options or anything :func:`load_splats` /
            :func:`save_splats` reject.
        FileNotFoundError: if ``src`` does not exist.
    """
    unknown = [k for k in filter_options if k not in FILTER_OPTIONS]
    if unknown:
        raise ValueError(
            f"unknown filter option(s) {', '.join(unknown)} (accepted: {', '.join(FILTER_OPTIONS)})"
        )
    src_fmt = _check_format(src_format) if src_format else detect_format(src)
    splats = load_splats(src, format=src_fmt, **(load_options or {}))
    filtered, report = apply_filters(splats, **filter_options)
    info = save_splats(filtered, dst, format=format, **(save_options or {}))
    return {"src": str(src), "src_format": src_fmt, "dst": str(dst), "filters": report, **info}
