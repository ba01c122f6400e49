"""PlayCanvas SOG ("Spatially Ordered Gaussians", meta.json version 2), the format SuperSplat
and splat-transform write and the PlayCanvas engine loads.

Written from the public specification (developer.playcanvas.com, "The SOG Format") and
checked against what splat-transform's reader decodes (its ``read-sog.ts``, which settles
two points the specification leaves open: quaternion components are in the PLY's
``rot_0..rot_3`` = w, x, y, z order, and the scale codebook holds log-scales, the PLY's
``scale_*`` values). A SOG is ``meta.json`` plus lossless WebP images (8-bit RGBA, one pixel
per gaussian, row-major from the top-left, ``W`` and ``H`` multiples of 4 with
``W = ceil(sqrt(N) / 4) * 4``), either as files in one folder or zipped at the root of a
``.sog`` bundle:

* ``means_l.webp`` / ``means_u.webp``: low / high byte of a 16-bit quantisation of
  ``n = sign(x) * ln(|x| + 1)`` per axis between ``means.mins`` and ``means.maxs`` (RGB).
* ``quats.webp``: smallest three of the unit quaternion (wxyz, made positive in its largest
  component), ``round((q * sqrt(2) + 1) / 2 * 255)`` in RGB (ascending component index),
  ``252 + index of the largest`` in A.
* ``scales.webp``: per axis an index into ``scales.codebook`` (256 log-scales).
* ``sh0.webp``: per channel an index into ``sh0.codebook`` (256 DC coefficients ``f_dc``) in
  RGB, ``sigmoid(opacity) * 255`` in A.
* ``shN_centroids.webp`` / ``shN_labels.webp`` (degree >= 1): a palette of ``shN.count``
  entries, 64 per row, each ``K`` pixels (coefficient ``j`` of entry ``e`` at
  ``x = (e % 64) * K + j, y = e // 64``) whose RGB are indices into ``shN.codebook`` (256
  values shared by all coefficients); per gaussian a 16-bit palette index (R low, G high).

The writer sorts the gaussians in Morton order of their centres (as splat-transform does;
the reader returns file order), quantises scales and DC colours to 256 levels by a
density-weighted 1-D k-means (:func:`kmeans_1d`) and builds the SH palette by two-level k-means
(256 coarse clusters, then each split in proportion to its size) -- simpler than
splat-transform's, same file layout. The palette has ``min(64, 2 ** floor(log2(N / 1024)))
* 1024`` entries (splat-transform's rule), at most ``N``.

Axes: coordinates are stored as given (splat-transform converts PLY to SOG without changing
them); SplatStudio's exports are ENU metres like its PLY and compressed PLY.

Per-gaussian decode error: centres ``(|x| + 1) * (maxs - mins) / 131070`` per axis (half a
16-bit step in the log domain); the three stored quaternion components ``sqrt(2) / 510``
(the rotation within 1.2 degrees; 0.5-0.6 degrees at the 99th percentile on the shared
samples);
``sigmoid(opacity)`` ``0.5 / 255``; scales, DC and higher SH: the distance to the nearest
codebook entry (plus, for higher SH, the gaussian's distance to its palette entry).

Needs Pillow with WebP support (``pip install 'splatstudio[sog]'``).
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from pathlib import Path

import numpy as np

from .compressed_ply import morton_order
from .model import (
    ALPHA_DECODE_MAX,
    ALPHA_DECODE_MIN,
    QUAT_OTHERS,
    SplatFormatError,
    Splats,
    num_sh_coeffs,
    sigmoid,
)

__all__ = ["SOG_VERSION", "read_sog", "read_sog_meta", "sog_palette_size", "write_sog"]

SOG_VERSION = 2


def _pil(path: object):
    try:
        from PIL import Image, features
    except ImportError:
        raise SplatFormatError(
            path, "SOG needs Pillow with WebP support: pip install 'splatstudio[sog]'"
        ) from None
    if not features.check("webp"):
        raise SplatFormatError(path, "this Pillow was built without WebP support (SOG)")
    return Image


def _encode_webp(path: object, rgba: np.ndarray) -> bytes:
    """Lossless WebP of an ``[H, W, 4]`` uint8 image; ``exact`` keeps the RGB of pixels whose
    alpha is 0 (libwebp would otherwise change them). Effort ``quality=75, method=2``:
    measured on biker.spz as small as the maximum effort (11.75 vs 11.77 bytes per gaussian)
    in 1.5 s instead of 50 s."""
    Image = _pil(path)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba), "RGBA").save(
        buf, "WEBP", lossless=True, quality=75, method=2, exact=True
    )
    return buf.getvalue()


def _decode_webp(path: object, name: str, data: bytes) -> np.ndarray:
    Image = _pil(path)
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGBA"))
    except Exception as e:  # PIL.UnidentifiedImageError, OSError, ...
        raise SplatFormatError(path, f"{name} is not a readable image ({e})") from None


def kmeans_1d(values: np.ndarray, k: int = 256, *, bins: int = 4096, alpha: float = 0.5,
              iterations: int = 50) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """A 256-level (`k`) codebook for `values` and each value's nearest level.

    The values are binned (`bins` bins placed half by rank and half by value, so both the
    dense middle and the tails get bins), each bin weighted by ``count ** alpha`` -- with
    ``alpha < 1`` sparse tails keep levels, so outliers are not crushed (the idea of
    splat-transform's ``quantize1d``, which solves the same weighted problem exactly by
    dynamic programming) -- then weighted Lloyd iterations on the bin means, started at
    weighted quantiles.

    Returns:
        ``(codebook [k] float32 ascending (padded with its last level), labels)`` with
        labels shaped like `values`, int64 in ``0..k-1``.
    """
    v = np.asarray(values, np.float64)
    flat = v.ravel()
    if flat.size == 0:
        return np.zeros(k, np.float32), np.zeros(v.shape, np.int64)
    srt = np.sort(flat)
    lo, hi = srt[0], srt[-1]
    if hi - lo < 1e-20:
        return np.full(k, lo, np.float32), np.zeros(v.shape, np.int64)
    rank = np.arange(srt.size) / srt.size
    pos = 0.5 * rank + 0.5 * (srt - lo) / (hi - lo)
    b = np.minimum((pos * bins).astype(np.int64), bins - 1)
    cnt = np.bincount(b, minlength=bins)
    tot = np.bincount(b, weights=srt, minlength=bins)
    keep = cnt > 0
    x, wgt = tot[keep] / cnt[keep], cnt[keep] ** alpha
    if x.size <= k:
        c = x
    else:
        cw = np.cumsum(wgt) / wgt.sum()
        c = np.unique(x[np.minimum(np.searchsorted(cw, (np.arange(k) + 0.5) / k), x.size - 1)])
        for _ in range(iterations):
            lab = np.searchsorted(0.5 * (c[1:] + c[:-1]), x)
            sw = np.bincount(lab, weights=wgt, minlength=c.size)
            sx = np.bincount(lab, weights=wgt * x, minlength=c.size)
            new = np.unique(np.where(sw > 0, sx / np.maximum(sw, 1e-300), c))
            if new.size == c.size and np.array_equal(new, c):
                break
            c = new
    book = np.full(k, c[-1], np.float32)
    book[: c.size] = c
    mids = 0.5 * (book[1:].astype(np.float64) + book[:-1])
    labels = np.minimum(np.searchsorted(mids, flat), c.size - 1).reshape(v.shape)
    return book, labels


def sog_palette_size(n: int) -> int:
    """Entries of the higher-SH palette for `n` gaussians: splat-transform's
    ``min(64, 2 ** floor(log2(n / 1024))) * 1024``, at most `n`, at least 1."""
    if n <= 0:
        return 1
    size = int(min(64.0, 2.0 ** math.floor(math.log2(n / 1024.0))) * 1024)
    return max(1, min(size, n))


def _nearest(x: np.ndarray, c: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Index of the nearest row of ``c [K, D]`` for each row of ``x [N, D]`` (squared L2)."""
    cc = np.einsum("kd,kd->k", c, c)
    out = np.empty(x.shape[0], np.int64)
    for s in range(0, x.shape[0], chunk):
        xb = x[s : s + chunk]
        out[s : s + chunk] = np.argmin(cc[None, :] - 2.0 * (xb @ c.T), axis=1)
    return out


def _kmeans(x: np.ndarray, k: int, iterations: int, rng: np.random.Generator) -> tuple:
    """Lloyd's k-means of ``x [N, D]`` float32 into ``k`` clusters (random initial rows,
    empty clusters keep their centre). Returns ``(centres [k, D], labels [N])``."""
    n = x.shape[0]
    k = max(1, min(k, n))
    c = x[rng.choice(n, k, replace=False)].astype(np.float32)
    lab = np.zeros(n, np.int64)
    for _ in range(iterations):
        lab = _nearest(x, c)
        cnt = np.bincount(lab, minlength=k).astype(np.float32)
        tot = np.stack([np.bincount(lab, weights=x[:, d], minlength=k) for d in range(x.shape[1])],
                       axis=1).astype(np.float32)  # fmt: skip
        nz = cnt > 0
        c[nz] = tot[nz] / cnt[nz, None]
    return c, _nearest(x, c)


def _palette(shn: np.ndarray, size: int, iterations: int, seed: int) -> tuple:
    """Two-level k-means palette of ``shn [N, D]``: 256 coarse clusters, each split into a
    share of `size` proportional to its members. Returns ``(palette [P, D], labels [N])``
    with ``P <= size``."""
    n = shn.shape[0]
    rng = np.random.default_rng(seed)
    x = shn.astype(np.float32)
    if size >= n:
        return x.copy(), np.arange(n)
    k1 = min(256, size)
    fit = x if n <= 200_000 else x[rng.choice(n, 200_000, replace=False)]
    coarse, _ = _kmeans(fit, k1, iterations, rng)
    top = _nearest(x, coarse)
    counts = np.bincount(top, minlength=coarse.shape[0])
    share = np.floor(counts / n * size).astype(np.int64)
    share = np.where(counts > 0, np.maximum(share, 1), 0)
    while share.sum() > size:  # rounding up the small clusters can overshoot
        share[np.argmax(share)] -= 1
    palette, labels, base = [], np.zeros(n, np.int64), 0
    order = np.argsort(top, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    for c in range(coarse.shape[0]):
        if counts[c] == 0:
            continue
        members = order[starts[c] : starts[c + 1]]
        centres, lab = _kmeans(x[members], int(share[c]), iterations, rng)
        palette.append(centres)
        labels[members] = lab + base
        base += centres.shape[0]
    return np.concatenate(palette), labels


def _grid(n: int) -> tuple[int, int]:
    w = max(4, int(math.ceil(math.sqrt(n) / 4.0)) * 4)
    h = max(4, int(math.ceil(n / w / 4.0)) * 4)
    return w, h


def _image(cols: list[np.ndarray], n: int, w: int, h: int, fill_alpha: int = 255) -> np.ndarray:
    """``[H, W, 4]`` uint8 image whose first ``n`` pixels hold the channels `cols` (1..4
    arrays of ``n`` values); missing channels 0 (alpha `fill_alpha`)."""
    img = np.zeros((w * h, 4), np.uint8)
    img[:, 3] = fill_alpha
    for ch, v in enumerate(cols):
        img[:n, ch] = v
    return img.reshape(h, w, 4)


def encode_sog(splats: Splats, *, sort: bool = True, iterations: int = 10,
               seed: int = 0) -> dict[str, bytes]:  # fmt: skip
    """The files of a SOG (``{"meta.json": ..., "means_l.webp": ...}``) for `splats`.

    Args:
        splats: gaussians (validated first), any frame (stored as given).
        sort: Morton order of the centres (splat-transform's layout); False keeps the input
            order.
        iterations: Lloyd iterations of the SH palette's k-means.
        seed: random seed of the palette's k-means.

    Raises:
        ValueError: `splats` fails :meth:`Splats.validate`.
    """
    splats.validate()
    s = splats.subset(morton_order(splats.means)) if sort and splats.n > 1 else splats
    n = s.n
    w, h = _grid(n)
    files: dict[str, bytes] = {}

    # centres: 16 bits per axis of the symmetric log transform
    m = s.means.astype(np.float64)
    lg = np.sign(m) * np.log1p(np.abs(m))
    mins = lg.min(axis=0) if n else np.zeros(3)
    maxs = lg.max(axis=0) if n else np.zeros(3)
    span = np.where(maxs > mins, maxs - mins, 1.0)
    q = np.clip(np.round((lg - mins) / span * 65535.0), 0, 65535).astype(np.uint16)
    files["means_l.webp"] = _encode_webp("means_l", _image([q[:, i] & 0xFF for i in range(3)],
                                                           n, w, h))  # fmt: skip
    files["means_u.webp"] = _encode_webp("means_u", _image([q[:, i] >> 8 for i in range(3)],
                                                           n, w, h))  # fmt: skip

    # quaternions: smallest three, largest made positive
    qt = s.normalized_quats().astype(np.float64)
    rows = np.arange(n)
    big = np.argmax(np.abs(qt), axis=1) if n else np.zeros(0, np.int64)
    qt = np.where((qt[rows, big] < 0)[:, None], -qt, qt)
    three = [np.clip(np.round((qt[rows, QUAT_OTHERS[big, j]] * math.sqrt(2) + 1.0) * 127.5),
                     0, 255).astype(np.uint8) for j in range(3)]  # fmt: skip
    files["quats.webp"] = _encode_webp("quats", _image(three + [252 + big], n, w, h))

    # scales (log) and DC colours: 256-level codebooks
    scale_book, scale_lab = kmeans_1d(s.scales)
    files["scales.webp"] = _encode_webp("scales", _image([scale_lab[:, i] for i in range(3)],
                                                         n, w, h))  # fmt: skip
    dc_book, dc_lab = kmeans_1d(s.sh0[:, 0, :])
    alpha = np.clip(np.round(sigmoid(s.opacities).astype(np.float64) * 255.0), 0, 255)
    files["sh0.webp"] = _encode_webp("sh0", _image([dc_lab[:, 0], dc_lab[:, 1], dc_lab[:, 2],
                                                    alpha.astype(np.uint8)], n, w, h))  # fmt: skip
    meta: dict = {
        "version": SOG_VERSION,
        "asset": {"generator": "SplatStudio"},
        "count": n,
        "antialias": bool(s.antialiased),
        "means": {
            "mins": [float(v) for v in mins],
            "maxs": [float(v) for v in maxs],
            "files": ["means_l.webp", "means_u.webp"],
        },  # fmt: skip
        "scales": {"codebook": [float(v) for v in scale_book], "files": ["scales.webp"]},
        "quats": {"files": ["quats.webp"]},
        "sh0": {"codebook": [float(v) for v in dc_book], "files": ["sh0.webp"]},
    }

    k = s.shN.shape[1]
    if k and n:
        bands, coeffs = s.sh_degree, k
        # per gaussian the PLY's channel-major f_rest order: [R coeffs, G coeffs, B coeffs]
        flat = s.shN.transpose(0, 2, 1).reshape(n, 3 * coeffs)
        palette, labels = _palette(flat, sog_palette_size(n), iterations, seed)
        book, plab = kmeans_1d(palette)
        p = palette.shape[0]
        rows_c = -(-p // 64)
        cent = np.zeros((rows_c, 64 * coeffs, 4), np.uint8)
        cent[..., 3] = 255
        e = np.arange(p)
        for j in range(coeffs):
            for ch in range(3):
                cent[e // 64, (e % 64) * coeffs + j, ch] = plab[:, ch * coeffs + j]
        files["shN_centroids.webp"] = _encode_webp("shN_centroids", cent)
        files["shN_labels.webp"] = _encode_webp(
            "shN_labels", _image([labels & 0xFF, labels >> 8], n, w, h)
        )
        meta["shN"] = {"count": int(p), "bands": int(bands),
                       "codebook": [float(v) for v in book],
                       "files": ["shN_centroids.webp", "shN_labels.webp"]}  # fmt: skip
    files = {"meta.json": json.dumps(meta, separators=(",", ":")).encode()} | files
    return files


def write_sog(splats: Splats, path: str | os.PathLike, *, sort: bool = True,
              iterations: int = 10) -> int:  # fmt: skip
    """Write a bundled SOG (a ZIP holding ``meta.json`` and the WebP images at its root,
    stored uncompressed: the images are compressed already).

    Args:
        splats: gaussians (validated first).
        path: output ``.sog`` file.
        sort: Morton order of the centres; False keeps the input order.
        iterations: Lloyd iterations of the SH palette's k-means.

    Returns:
        Number of bytes written.

    Raises:
        ValueError: `splats` fails :meth:`Splats.validate`.
        SplatFormatError: Pillow or its WebP support is missing.
        OSError: on write errors.
    """
    files = encode_sog(splats, sort=sort, iterations=iterations)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return Path(path).stat().st_size


def _read_files(path: Path) -> tuple[dict, callable]:
    """``(meta, load(name) -> bytes)`` of a ``.sog`` bundle or a ``meta.json`` folder."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:  # every member is used: read them all, then close
            blobs = {Path(n).name: z.read(n) for n in z.namelist() if not n.endswith("/")}
        if "meta.json" not in blobs:
            raise SplatFormatError(path, "SOG bundle has no meta.json at its root")

        def load(name: str) -> bytes:
            if name not in blobs:
                raise SplatFormatError(path, f"SOG bundle lacks {name}, named in meta.json")
            return blobs[name]

        raw = load("meta.json")
    else:
        folder = path.parent

        def load(name: str) -> bytes:
            p = folder / name
            if not p.is_file():
                raise SplatFormatError(path, f"SOG file {p} (named in meta.json) is missing")
            return p.read_bytes()

        raw = path.read_bytes()
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SplatFormatError(path, f"SOG meta.json is not JSON ({e})") from None
    if not isinstance(meta, dict):
        raise SplatFormatError(path, "SOG meta.json is not an object")
    return meta, load


def read_sog_meta(path: str | os.PathLike) -> dict:
    """The parsed ``meta.json`` of a SOG (``.sog`` bundle or the ``meta.json`` itself): means
    mins/maxs, codebooks, file names, count.

    Raises:
        SplatFormatError: naming the file, if there is no meta.json or it is not a JSON object.
        OSError: if the file cannot be read.
    """
    return _read_files(Path(path))[0]


def read_sog(path: str | os.PathLike) -> Splats:
    """Read a SOG: a ``.sog`` bundle (ZIP) or a ``meta.json`` with its images beside it.

    Returns:
        :class:`Splats` in file order; log-scales and DC coefficients from the codebooks,
        opacity logits from the 8-bit ``sigmoid(opacity)`` (bytes 0 and 255 decode to
        0.25/255 and 254.75/255, finite logits), SH degree ``shN.bands`` (0 without shN).

    Raises:
        SplatFormatError (a ValueError): naming the file, if meta.json is missing or not
            version 2 (version 1, from older splat-transform releases, is not read), a
            named image is missing, unreadable or smaller than ``count`` pixels, a quats
            alpha is outside 252..255, a codebook is not 256 numbers, or an SH palette
            index is out of range.
        OSError: if the file cannot be read.
    """
    path = Path(path)
    meta, load = _read_files(path)
    version = meta.get("version")
    if version != SOG_VERSION:
        what = "version 1 (no 'version' key)" if version is None else f"version {version!r}"
        raise SplatFormatError(path, f"SOG meta.json is {what}; only version 2 is read")
    try:
        n = int(meta["count"])
        means, quats, scales, sh0 = meta["means"], meta["quats"], meta["scales"], meta["sh0"]
        mins = np.asarray(means["mins"], np.float64).reshape(3)
        maxs = np.asarray(means["maxs"], np.float64).reshape(3)
        scale_book = np.asarray(scales["codebook"], np.float32).reshape(-1)
        dc_book = np.asarray(sh0["codebook"], np.float32).reshape(-1)
        shn = meta.get("shN")
    except (KeyError, TypeError, ValueError) as e:
        raise SplatFormatError(path, f"SOG meta.json is malformed ({e!r})") from None
    for name, book in (("scales", scale_book), ("sh0", dc_book)):
        if book.size != 256:
            raise SplatFormatError(path, f"SOG {name}.codebook has {book.size} entries, not 256")

    def image(name: str) -> np.ndarray:
        img = _decode_webp(path, name, load(name)).reshape(-1, 4)
        if img.shape[0] < n:
            raise SplatFormatError(path, f"SOG image {name} has {img.shape[0]} pixels for "
                                         f"{n} gaussians")  # fmt: skip
        return img[:n]

    lo, hi = image(means["files"][0]), image(means["files"][1])
    q16 = lo[:, :3].astype(np.float64) + 256.0 * hi[:, :3]
    lg = mins + (maxs - mins) * (q16 / 65535.0)
    xyz = np.sign(lg) * np.expm1(np.abs(lg))

    qi = image(quats["files"][0])
    tag = qi[:, 3].astype(np.int64)
    if n and (tag.min() < 252 or tag.max() > 255):
        bad = int(np.argmax((tag < 252) | (tag > 255)))
        raise SplatFormatError(path, f"SOG quats alpha {tag[bad]} of gaussian {bad} is not "
                                     "in 252..255")  # fmt: skip
    big = tag - 252
    comp = (qi[:, :3].astype(np.float64) / 255.0 * 2.0 - 1.0) / math.sqrt(2.0)
    q = np.zeros((n, 4))
    rows = np.arange(n)
    for j in range(3):
        q[rows, QUAT_OTHERS[big, j]] = comp[:, j]
    q[rows, big] = np.sqrt(np.maximum(0.0, 1.0 - (comp * comp).sum(axis=1)))

    si = image(scales["files"][0])
    ci = image(sh0["files"][0])
    a = np.clip(ci[:, 3].astype(np.float64) / 255.0, ALPHA_DECODE_MIN, ALPHA_DECODE_MAX)
    out = Splats(
        means=xyz.astype(np.float32),
        quats=q.astype(np.float32),
        scales=scale_book[si[:, :3]],
        opacities=np.log(a / (1.0 - a)).astype(np.float32),
        sh0=dc_book[ci[:, :3]][:, None, :],
        antialiased=bool(meta.get("antialias", False)),
    )
    if shn:
        try:
            bands, count = int(shn["bands"]), int(shn["count"])
            book = np.asarray(shn["codebook"], np.float32).reshape(-1)
            cent_name, lab_name = shn["files"][0], shn["files"][1]
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise SplatFormatError(path, f"SOG meta.json shN is malformed ({e!r})") from None
        if bands not in (1, 2, 3):
            raise SplatFormatError(path, f"SOG shN.bands is {bands}, not 1, 2 or 3")
        if book.size != 256:
            raise SplatFormatError(path, f"SOG shN.codebook has {book.size} entries, not 256")
        coeffs = num_sh_coeffs(bands)
        cent = _decode_webp(path, cent_name, load(cent_name))
        if cent.shape[1] != 64 * coeffs or cent.shape[0] * 64 < count:
            raise SplatFormatError(path, f"SOG {cent_name} is {cent.shape[1]}x{cent.shape[0]}"
                                         f", expected {64 * coeffs} wide for {count} entries "
                                         f"of {bands} bands")  # fmt: skip
        li = image(lab_name)
        labels = li[:, 0].astype(np.int64) | (li[:, 1].astype(np.int64) << 8)
        if n and labels.max() >= count:
            bad = int(np.argmax(labels >= count))
            raise SplatFormatError(path, f"SOG shN label {labels[bad]} of gaussian {bad} is "
                                         f"not below shN.count {count}")  # fmt: skip
        e = np.arange(count)
        pal = np.zeros((count, coeffs, 3), np.float32)
        for j in range(coeffs):
            px = cent[e // 64, (e % 64) * coeffs + j, :3]
            pal[:, j, :] = book[px]
        out.shN = pal[labels]
    return out
