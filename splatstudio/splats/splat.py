"""antimatter15 ``.splat`` files (format of the antimatter15/splat web viewer).

No header: ``N`` records of 32 bytes, little endian:

==========  =========  ==================================================================
offset      type       content
==========  =========  ==================================================================
0           f32 x 3    centre (metres; file's frame, stored unconverted)
12          f32 x 3    linear scale ``exp(log_scale)``
24          u8 x 4     colour R, G, B = ``clip((0.5 + SH_C0 * sh0) * 255)``,
                       A = ``sigmoid(opacity) * 255`` (rounded to nearest)
28          u8 x 4     rotation w, x, y, z of the unit quaternion as
                       ``clip(q * 128 + 128, 0, 255)`` (rounded to nearest)
==========  =========  ==================================================================

Records are written in decreasing "importance" ``exp(sum(log_scale)) * sigmoid(opacity)``
(the order the viewer expects for progressive loading). Higher-order SH are not stored
(the read splats have SH degree 0), colours are clipped to ``[0, 1]``.

Per-gaussian decode error inside the representable ranges: centres exact, log-scales
~1e-7 (float32 ``log(exp(.))``), base colour ``0.5/255`` (``sh0`` ``0.5 / 255 / SH_C0 =
0.00695``), sigmoid(opacity) ``0.5/255``, quaternion components ``0.5/128`` before
renormalisation.
"""

from __future__ import annotations

import os

import numpy as np

from .model import ALPHA_DECODE_MAX, ALPHA_DECODE_MIN, SH_C0, SplatFormatError, Splats, sigmoid

__all__ = ["RECORD_SIZE", "importance_order", "read_splat", "write_splat", "encode_splat"]

RECORD_SIZE = 32
_DTYPE = np.dtype([("pos", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])


def importance_order(splats: Splats) -> np.ndarray:
    """Indices sorting gaussians by decreasing ``exp(sum(scales)) * sigmoid(opacity)``.

    Ties keep their input order (stable sort).

    Returns:
        ``[N] int64`` permutation.
    """
    volume = np.exp(splats.scales.astype(np.float64).sum(axis=1))
    key = volume * sigmoid(splats.opacities).astype(np.float64)
    return np.argsort(-key, kind="stable")


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


def encode_splat(splats: Splats, *, sort: bool = True) -> bytes:
    """Encode splats as ``.splat`` bytes (see :func:`write_splat`).

    Raises:
        ValueError: if ``splats`` fails :meth:`Splats.validate`.
    """
    splats.validate()
    s = splats.subset(importance_order(splats)) if sort else splats
    rec = np.empty(s.n, dtype=_DTYPE)
    rec["pos"] = s.means
    rec["scale"] = np.exp(np.clip(s.scales, -80.0, 80.0))  # keep float32 finite and > 0
    rec["rgba"][:, :3] = _to_u8((0.5 + SH_C0 * s.sh0[:, 0, :].astype(np.float64)) * 255.0)
    rec["rgba"][:, 3] = _to_u8(sigmoid(s.opacities).astype(np.float64) * 255.0)
    q = s.normalized_quats().astype(np.float64)
    rec["rot"] = _to_u8(q * 128.0 + 128.0)
    return rec.tobytes()


def write_splat(splats: Splats, path: str | os.PathLike, *, sort: bool = True) -> int:
    """Write an antimatter15 ``.splat`` file.

    Args:
        splats: gaussians (validated first); SH beyond degree 0 is dropped.
        path: output file.
        sort: order records by decreasing importance (see :func:`importance_order`), as the
            format's reference converter does. ``False`` keeps the input order.

    Returns:
        Number of bytes written (``32 * N``).

    Raises:
        ValueError: if ``splats`` fails :meth:`Splats.validate`.
        OSError: on write errors.
    """
    data = encode_splat(splats, sort=sort)
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


def read_splat(path: str | os.PathLike) -> Splats:
    """Read an antimatter15 ``.splat`` file.

    Returns:
        :class:`Splats` with SH degree 0, in file order: ``scales = log(scale)``,
        ``sh0 = (rgb / 255 - 0.5) / SH_C0``, ``opacities = logit(a / 255)`` (bytes 0 and 255
        decode to opacities 0.25/255 and 254.75/255 to keep logits finite), ``quats`` the
        stored wxyz, renormalised.

    Raises:
        SplatFormatError (a ValueError): naming the file, if its size is not a multiple of
            32 bytes (truncated or not a .splat file) or a record holds non-finite or
            non-positive values.
        OSError: if the file cannot be read.
    """
    size = os.path.getsize(path)
    if size % RECORD_SIZE:
        raise SplatFormatError(
            path,
            f"size {size} bytes is not a multiple of the 32-byte .splat record "
            f"(truncated or not a .splat file)",
        )
    rec = np.fromfile(path, dtype=_DTYPE)
    n = rec.shape[0]
    if n and not (np.isfinite(rec["pos"]).all() and np.isfinite(rec["scale"]).all()):
        raise SplatFormatError(path, "non-finite position or scale (not a .splat file?)")
    scale = rec["scale"]
    if n and (scale <= 0).any():
        bad = int(np.argmax((scale <= 0).any(axis=1)))
        raise SplatFormatError(path, f"non-positive scale in record {bad} (not a .splat file?)")
    rgba = rec["rgba"].astype(np.float32)
    a = np.clip(rgba[:, 3] / 255.0, ALPHA_DECODE_MIN, ALPHA_DECODE_MAX).astype(np.float64)
    q = (rec["rot"].astype(np.float32) - 128.0) / 128.0
    norm = np.linalg.norm(q, axis=1, keepdims=True)
    q = np.divide(q, norm, out=np.zeros_like(q), where=norm > 0)
    q[norm[:, 0] == 0, 0] = 1.0
    return Splats(
        means=rec["pos"],
        quats=q,
        scales=np.log(scale),
        opacities=np.log(a / (1.0 - a)),
        sh0=((rgba[:, :3] / 255.0 - 0.5) / SH_C0).reshape(n, 1, 3),
        shN=np.zeros((n, 0, 3), np.float32),
    )
