"""In-memory 3D Gaussian Splatting model: the :class:`Splats` container.

Conventions (the ones of the INRIA 3DGS reference implementation, gsplat and the
standard PLY file, so that arrays move between them without conversion):

* ``means``      ``[N, 3] float32`` -- gaussian centres in metres, in the scene's world
  frame. For SplatStudio scenes that frame is the local ENU frame of the project
  (x east, y north, z up, metres from the project origin); for splats loaded from
  third-party files it is whatever frame the file used.
* ``quats``      ``[N, 4] float32`` -- rotation quaternions in **wxyz** order (scalar
  first, the order of ``rot_0..rot_3`` in the PLY). Not necessarily normalised; the
  rotation is that of ``quats / |quats|``.
* ``scales``     ``[N, 3] float32`` -- **log** of the per-axis standard deviations
  (metres); the actual scale is ``exp(scales)``.
* ``opacities``  ``[N] float32``    -- opacity **logits**; the opacity is
  ``sigmoid(opacities)``.
* ``sh0``        ``[N, 1, 3] float32`` -- degree-0 (DC) spherical-harmonic coefficient
  per RGB channel; the base colour is ``0.5 + SH_C0 * sh0``.
* ``shN``        ``[N, K, 3] float32`` -- higher-order SH coefficients, ``K`` in
  ``{0, 3, 8, 15}`` for SH degree 0..3, coefficient order as the INRIA PLY stores them
  (band 1 first, then band 2, then band 3; within a band the order of the reference
  CUDA rasteriser), RGB channel last.

Nothing in this module imports torch or Qt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..quaternion import rotmat_to_quat

__all__ = [
    "ALPHA_DECODE_MAX",
    "ALPHA_DECODE_MIN",
    "QUAT_OTHERS",
    "SplatFormatError",
    "SH_C0",
    "Splats",
    "num_sh_coeffs",
    "sh_degree_from_coeffs",
    "sigmoid",
    "logit",
    "sh_basis",
    "sh_transform_matrix",
    "quat_multiply",
]

#: Degree-0 real spherical-harmonic constant, ``1 / (2 * sqrt(pi))``.
SH_C0 = 0.28209479177387814

#: Alpha bytes 0 and 255 of the 8-bit formats (.splat, SPZ, compressed PLY, SOG) decode to these
#: opacities (not 0/1) so that logits stay finite and re-encoding gives the same byte.
ALPHA_DECODE_MIN = 0.25 / 255.0
ALPHA_DECODE_MAX = 254.75 / 255.0

#: Row i: the indices of the three quaternion components other than component i, in order
#: (the "smallest three" packing of compressed PLY and SOG, which drop the largest one).
QUAT_OTHERS = np.array([[j for j in range(4) if j != i] for i in range(4)])

#: Number of higher-order SH coefficients per channel (``K``) for SH degree 0..3.
_K_FOR_DEGREE = (0, 3, 8, 15)


def num_sh_coeffs(degree: int) -> int:
    """Return ``K``, the number of higher-order SH coefficients per channel, for a degree.

    Args:
        degree: SH degree in ``0..3``.

    Returns:
        ``(degree + 1) ** 2 - 1``: 0, 3, 8 or 15.

    Raises:
        ValueError: if ``degree`` is not in ``0..3``.
    """
    if degree not in (0, 1, 2, 3):
        raise ValueError(f"SH degree must be 0..3, got {degree!r}")
    return _K_FOR_DEGREE[degree]


def sh_degree_from_coeffs(k: int) -> int:
    """Return the SH degree (0..3) for ``K`` higher-order coefficients per channel.

    Raises:
        ValueError: if ``k`` is not one of 0, 3, 8, 15.
    """
    try:
        return _K_FOR_DEGREE.index(int(k))
    except ValueError:
        raise ValueError(
            f"number of higher-order SH coefficients per channel must be one of "
            f"{_K_FOR_DEGREE}, got {k}"
        ) from None


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, elementwise, returning float32.

    Args:
        x: array of logits (any shape).

    Returns:
        ``1 / (1 + exp(-x))`` with the same shape, float32, in ``[0, 1]``.
    """
    x = np.asarray(x, dtype=np.float32)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def logit(p: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Inverse of :func:`sigmoid`, elementwise, after clipping ``p`` to ``[eps, 1 - eps]``.

    Args:
        p: probabilities (any shape).
        eps: clipping margin that keeps the result finite.

    Returns:
        ``log(p / (1 - p))`` as float32, same shape as ``p``.
    """
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1.0 - eps)
    return np.log(p / (1.0 - p)).astype(np.float32)


# ---------------------------------------------------------------------------- SH / rotations
_C1 = 0.4886025119029199
_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792,
       0.5462742152960396)  # fmt: skip
_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
       -0.4570457994644658, 1.445305721320277, -0.5900435899266435)  # fmt: skip


def sh_basis(dirs: np.ndarray) -> np.ndarray:
    """Real SH basis of bands 1..3 in the INRIA/gsplat coefficient order and sign convention.

    Args:
        dirs: ``[M, 3]`` unit direction vectors (world frame).

    Returns:
        ``[M, 15]`` float64 basis values ``Y_k(d)``; the colour of a gaussian seen along
        ``d`` is ``0.5 + SH_C0 * sh0 + sum_k Y_k(d) * shN[k]`` (before clamping).
    """
    d = np.asarray(dirs, dtype=np.float64)
    x, y, z = d[:, 0], d[:, 1], d[:, 2]
    xx, yy, zz = x * x, y * y, z * z
    return np.stack(
        [
            -_C1 * y, _C1 * z, -_C1 * x,
            _C2[0] * x * y, _C2[1] * y * z, _C2[2] * (2 * zz - xx - yy), _C2[3] * x * z,
            _C2[4] * (xx - yy),
            _C3[0] * y * (3 * xx - yy), _C3[1] * x * y * z, _C3[2] * y * (4 * zz - xx - yy),
            _C3[3] * z * (2 * zz - 3 * xx - 3 * yy), _C3[4] * x * (4 * zz - xx - yy),
            _C3[5] * z * (xx - yy), _C3[6] * x * (xx - 3 * yy),
        ],
        axis=1,
    )  # fmt: skip


def _sphere_samples(m: int = 64) -> np.ndarray:
    i = np.arange(m) + 0.5
    phi = np.arccos(1 - 2 * i / m)
    theta = np.pi * (1 + 5**0.5) * i
    return np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], axis=1)


def sh_transform_matrix(matrix: np.ndarray, k: int = 15) -> np.ndarray:
    """Matrix ``T`` (``[k, k]``) that re-expresses higher-order SH coefficients under an
    orthogonal change of world axes ``p_new = matrix @ p_old``: ``shN_new[:, i] =
    sum_j T[i, j] * shN_old[:, j]``.

    Works for rotations and reflections (any orthogonal 3x3 matrix); it is block-diagonal
    per band. Computed by least squares on sample directions, exact to ~1e-12 (entries
    within 1e-9 of an integer are snapped, so axis flips give an exact signed identity).

    Args:
        matrix: ``[3, 3]`` orthogonal matrix.
        k: number of coefficients per channel (0, 3, 8 or 15).

    Raises:
        ValueError: if ``matrix`` is not orthogonal (tolerance 1e-5).
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (3, 3) or not np.allclose(m @ m.T, np.eye(3), atol=1e-5):
        raise ValueError(f"matrix must be a 3x3 orthogonal matrix, got\n{m}")
    dirs = _sphere_samples()
    new = sh_basis(dirs)  # Y(d_new)
    old = sh_basis(dirs @ m)  # Y(m^T d_new), row vectors: (m^T d)^T = d^T m
    t = np.zeros((15, 15))
    for lo, hi in ((0, 3), (3, 8), (8, 15)):
        sol, *_ = np.linalg.lstsq(new[:, lo:hi], old[:, lo:hi], rcond=None)
        t[lo:hi, lo:hi] = sol
    near = np.abs(t - np.round(t)) < 1e-9  # snap 0 / +-1 so axis flips are exact
    t[near] = np.round(t[near])
    return t[:k, :k]


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product ``a * b`` of wxyz quaternions (broadcasting ``[..., 4]``)."""
    aw, ax, ay, az = np.moveaxis(np.asarray(a), -1, 0)
    bw, bx, by, bz = np.moveaxis(np.asarray(b), -1, 0)
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        axis=-1,
    )


def _as_f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


@dataclass(eq=False)
class Splats:
    """A set of ``N`` 3D gaussians as numpy arrays (see the module docstring for conventions).

    Attributes:
        means: ``[N, 3] float32``, centres in metres, world frame.
        quats: ``[N, 4] float32``, rotations as wxyz quaternions (not necessarily unit).
        scales: ``[N, 3] float32``, log standard deviations (log-metres).
        opacities: ``[N] float32``, opacity logits.
        sh0: ``[N, 1, 3] float32``, DC SH coefficient per RGB channel.
        shN: ``[N, K, 3] float32`` with ``K`` in ``{0, 3, 8, 15}``, higher-order SH in
            INRIA PLY coefficient order.
        antialiased: whether the splat was trained with anti-aliased (mip-splatting style)
            rasterisation and should be rendered that way. Stored by SPZ only.

    Arrays are converted to contiguous float32 on construction (no copy when they already
    are). Shapes are *not* checked on construction; call :meth:`validate`.
    """

    means: np.ndarray
    quats: np.ndarray
    scales: np.ndarray
    opacities: np.ndarray
    sh0: np.ndarray
    shN: np.ndarray = field(default=None)  # type: ignore[assignment]
    antialiased: bool = False

    def __post_init__(self) -> None:
        self.means = _as_f32(self.means)
        self.quats = _as_f32(self.quats)
        self.scales = _as_f32(self.scales)
        self.opacities = _as_f32(self.opacities)
        self.sh0 = _as_f32(self.sh0)
        if self.sh0.ndim == 2:  # accept [N, 3] for convenience
            self.sh0 = self.sh0.reshape(-1, 1, 3)
        if self.shN is None:
            self.shN = np.zeros((self.means.shape[0], 0, 3), dtype=np.float32)
        else:
            self.shN = _as_f32(self.shN)
        self.antialiased = bool(self.antialiased)

    # ------------------------------------------------------------------ construction
    @classmethod
    def empty(cls, n: int = 0, sh_degree: int = 0) -> Splats:
        """Return ``n`` neutral gaussians: at the origin, identity rotation, unit scale
        (log-scale 0), opacity 0.5 (logit 0), grey (SH 0) and SH degree ``sh_degree``.

        Raises:
            ValueError: if ``sh_degree`` is not 0..3 or ``n`` is negative.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        k = num_sh_coeffs(sh_degree)
        quats = np.zeros((n, 4), np.float32)
        quats[:, 0] = 1.0
        return cls(
            means=np.zeros((n, 3), np.float32),
            quats=quats,
            scales=np.zeros((n, 3), np.float32),
            opacities=np.zeros((n,), np.float32),
            sh0=np.zeros((n, 1, 3), np.float32),
            shN=np.zeros((n, k, 3), np.float32),
        )

    @classmethod
    def concat(cls, parts: Sequence[Splats]) -> Splats:
        """Concatenate several splat sets along ``N``.

        Parts with a lower SH degree are zero-padded to the highest degree among them.
        ``antialiased`` is true if any part is.

        Raises:
            ValueError: if ``parts`` is empty.
        """
        if not parts:
            raise ValueError("concat needs at least one Splats")
        k = max(p.shN.shape[1] for p in parts)
        shn = []
        for p in parts:
            pad = np.zeros((p.n, k, 3), np.float32)
            pad[:, : p.shN.shape[1]] = p.shN
            shn.append(pad)
        return cls(
            means=np.concatenate([p.means for p in parts]),
            quats=np.concatenate([p.quats for p in parts]),
            scales=np.concatenate([p.scales for p in parts]),
            opacities=np.concatenate([p.opacities for p in parts]),
            sh0=np.concatenate([p.sh0 for p in parts]),
            shN=np.concatenate(shn),
            antialiased=any(p.antialiased for p in parts),
        )

    # ------------------------------------------------------------------ properties
    @property
    def n(self) -> int:
        """Number of gaussians ``N``."""
        return int(self.means.shape[0])

    def __len__(self) -> int:
        return self.n

    @property
    def sh_degree(self) -> int:
        """SH degree 0..3 implied by ``shN.shape[1]``.

        Raises:
            ValueError: if ``shN`` has an unsupported number of coefficients.
        """
        return sh_degree_from_coeffs(self.shN.shape[1])

    @property
    def nbytes(self) -> int:
        """Total bytes held by the arrays."""
        return sum(
            a.nbytes
            for a in (self.means, self.quats, self.scales, self.opacities, self.sh0, self.shN)
        )

    def __repr__(self) -> str:
        k = self.shN.shape[1] if self.shN.ndim == 3 else "?"
        deg = _K_FOR_DEGREE.index(k) if k in _K_FOR_DEGREE else f"? (K={k})"
        return f"Splats(n={self.n}, sh_degree={deg}, antialiased={self.antialiased})"

    # ------------------------------------------------------------------ derived values
    def alphas(self) -> np.ndarray:
        """Opacities in ``[0, 1]``: ``sigmoid(opacities)``, ``[N] float32``."""
        return sigmoid(self.opacities)

    def rgb(self) -> np.ndarray:
        """Base (view-independent) colour ``0.5 + SH_C0 * sh0``, ``[N, 3] float32``, not
        clipped (values outside ``[0, 1]`` are legal before the higher bands are added)."""
        return (0.5 + SH_C0 * self.sh0[:, 0, :]).astype(np.float32)

    def linear_scales(self) -> np.ndarray:
        """Per-axis standard deviations in metres, ``exp(scales)``, ``[N, 3] float32``."""
        return np.exp(self.scales).astype(np.float32)

    def normalized_quats(self) -> np.ndarray:
        """Unit wxyz quaternions, ``[N, 4] float32``; zero quaternions become identity."""
        norm = np.linalg.norm(self.quats, axis=1, keepdims=True)
        out = np.divide(self.quats, norm, out=np.zeros_like(self.quats), where=norm > 0)
        out[norm[:, 0] == 0, 0] = 1.0
        return out

    # ------------------------------------------------------------------ transforms
    def subset(self, mask_or_index: np.ndarray | Sequence[int] | slice) -> Splats:
        """Return a new :class:`Splats` with the selected gaussians (arrays copied).

        Args:
            mask_or_index: a boolean mask of shape ``[N]``, an integer index array (any
                order, repeats allowed) or a slice.

        Raises:
            ValueError: if a boolean mask does not have length ``N``.
        """
        sel = mask_or_index
        if not isinstance(sel, slice):
            sel = np.asarray(sel)
            if sel.dtype == bool:
                if sel.shape != (self.n,):
                    raise ValueError(f"boolean mask has shape {sel.shape}, expected ({self.n},)")
            elif sel.size == 0:
                sel = sel.astype(np.intp)
        return Splats(
            means=self.means[sel].copy(),
            quats=self.quats[sel].copy(),
            scales=self.scales[sel].copy(),
            opacities=self.opacities[sel].copy(),
            sh0=self.sh0[sel].copy(),
            shN=self.shN[sel].copy(),
            antialiased=self.antialiased,
        )

    def with_sh_degree(self, degree: int) -> Splats:
        """Return a copy whose SH degree is at most ``degree`` (higher bands dropped).

        A splat of lower degree is returned unchanged (as a copy); the degree is never
        raised.

        Raises:
            ValueError: if ``degree`` is not 0..3.
        """
        k = min(num_sh_coeffs(degree), self.shN.shape[1])
        return Splats(
            means=self.means.copy(),
            quats=self.quats.copy(),
            scales=self.scales.copy(),
            opacities=self.opacities.copy(),
            sh0=self.sh0.copy(),
            shN=self.shN[:, :k].copy(),
            antialiased=self.antialiased,
        )

    def copy(self) -> Splats:
        """Deep copy."""
        return self.subset(slice(None))

    def transformed(
        self,
        matrix: np.ndarray,
        translation: np.ndarray | Sequence[float] | None = None,
        scale: float = 1.0,
    ) -> Splats:
        """Apply a similarity transform ``p_new = scale * matrix @ p_old + translation``.

        Used for changes of world frame (e.g. between the PLY/RDF, SPZ/RUB and ENU axis
        conventions) and for georeferencing. Centres are transformed; rotations are
        composed with ``matrix`` (a reflection, ``det = -1``, is applied to the covariance
        as the equivalent proper rotation ``-matrix``); log-scales are shifted by
        ``log(scale)``; higher-order SH are re-expressed in the new axes (see
        :func:`sh_transform_matrix`). Opacities and ``sh0`` are unchanged.

        For diagonal matrices (axis flips) the quaternion is flipped component-wise, the
        convention of the nianticlabs/spz reference library.

        Args:
            matrix: ``[3, 3]`` orthogonal matrix (rotation or reflection).
            translation: ``[3]`` metres in the new frame (default zero).
            scale: positive uniform scale factor.

        Returns:
            A new :class:`Splats`.

        Raises:
            ValueError: if ``matrix`` is not orthogonal or ``scale`` is not positive.
        """
        m = np.asarray(matrix, dtype=np.float64)
        if m.shape != (3, 3) or not np.allclose(m @ m.T, np.eye(3), atol=1e-5):
            raise ValueError(f"matrix must be a 3x3 orthogonal matrix, got\n{m}")
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        diagonal = np.array_equal(np.abs(m), np.eye(3))
        if diagonal and scale == 1.0:  # axis flips: exact, no float64 round trip
            means = self.means * np.diag(m).astype(np.float32)
        else:
            means = (self.means.astype(np.float64) @ (scale * m).T).astype(np.float32)
        if translation is not None:
            means += np.asarray(translation, dtype=np.float32).reshape(1, 3)
        det = float(np.linalg.det(m))
        if diagonal:
            a, b, c = np.diag(m)
            quats = self.quats * np.asarray([1.0, b * c, a * c, a * b], np.float32)
        else:
            qm = rotmat_to_quat(m * np.sign(det))
            quats = quat_multiply(qm[None, :], self.quats.astype(np.float64)).astype(np.float32)
        k = self.shN.shape[1]
        shn = self.shN.copy()
        if k:
            t = sh_transform_matrix(m, k)
            if np.array_equal(t, np.diag(np.diag(t))):  # axis flips: per-coefficient signs
                shn *= np.diag(t).astype(np.float32)[None, :, None]
            else:
                shn = np.matmul(t.astype(np.float32), self.shN)
        return Splats(
            means=means,
            quats=quats,
            scales=self.scales + np.float32(np.log(scale)),
            opacities=self.opacities.copy(),
            sh0=self.sh0.copy(),
            shN=shn,
            antialiased=self.antialiased,
        )

    # ------------------------------------------------------------------ checks
    def validate(self) -> Splats:
        """Check shapes, dtypes and finiteness; return ``self`` for chaining.

        Raises:
            ValueError: naming the first offending array and the problem (wrong shape,
                wrong dtype, unsupported SH coefficient count, NaN/inf values, or
                all-zero quaternions).
        """
        n = self.means.shape[0] if self.means.ndim >= 1 else -1
        expected = {
            "means": (n, 3),
            "quats": (n, 4),
            "scales": (n, 3),
            "opacities": (n,),
            "sh0": (n, 1, 3),
        }
        if self.means.ndim != 2 or self.means.shape[1] != 3:
            raise ValueError(f"means has shape {self.means.shape}, expected (N, 3)")
        for name, shape in expected.items():
            arr = getattr(self, name)
            if arr.shape != shape:
                raise ValueError(f"{name} has shape {arr.shape}, expected {shape} (N={n})")
        if self.shN.ndim != 3 or self.shN.shape[0] != n or self.shN.shape[2] != 3:
            raise ValueError(f"shN has shape {self.shN.shape}, expected ({n}, K, 3)")
        if self.shN.shape[1] not in _K_FOR_DEGREE:
            raise ValueError(
                f"shN has {self.shN.shape[1]} coefficients per channel, expected one of "
                f"{_K_FOR_DEGREE} (SH degree 0..3)"
            )
        for name in ("means", "quats", "scales", "opacities", "sh0", "shN"):
            arr = getattr(self, name)
            if arr.dtype != np.float32:
                raise ValueError(f"{name} has dtype {arr.dtype}, expected float32")
            if arr.size == 0 or np.isfinite(arr.min() + arr.max()):  # fast path, no temp
                continue
            bad = ~np.isfinite(arr)
            if bad.any():
                rows = np.unique(np.nonzero(bad)[0])
                raise ValueError(
                    f"{name} has non-finite values in {rows.size} gaussian(s), "
                    f"first at index {int(rows[0])}"
                )
        zero = ~np.any(self.quats != 0, axis=1)
        if zero.any():
            raise ValueError(
                f"quats has {int(zero.sum())} all-zero quaternion(s), first at index "
                f"{int(np.argmax(zero))}"
            )
        return self


class SplatFormatError(ValueError):
    """A splat file is malformed, truncated or of an unsupported variant.

    A :class:`ValueError` subclass whose message always starts with the file's path, so
    callers can catch ``ValueError`` and show the message as is.
    """

    def __init__(self, path: object, message: str) -> None:
        self.path = str(path)
        self.reason = message
        super().__init__(f"{self.path}: {message}")
