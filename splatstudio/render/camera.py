"""Camera helpers: look-at view matrices, pinhole intrinsics and automatic framing.

Conventions (the same as gsplat and COLMAP/OpenCV):

* A *view matrix* ``viewmat`` is the 4x4 **world-to-camera** rigid transform,
  ``p_cam = R @ p_world + t`` with ``viewmat = [[R, t], [0, 0, 0, 1]]``.
* The camera frame is **OpenCV**: +x right, +y down, +z forward (optical axis); a point is
  in front of the camera when its camera-frame z is positive.
* Intrinsics ``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` are in **pixels**; pixel
  ``(col, row)`` covers ``[col, col + 1) x [row, row + 1)`` so its centre is at
  ``(col + 0.5, row + 0.5)`` (gsplat's convention) and the image centre is
  ``(width / 2, height / 2)``.
* World units are whatever the scene uses (metres for SplatStudio's georeferenced
  scenes, which are z-up ENU; hence ``up=(0, 0, 1)`` defaults).

Every function accepts NumPy arrays or torch tensors and returns the same kind
(torch results keep the dtype and device of the first tensor input). Computation is done
in float64 NumPy; these helpers are not differentiable.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Cameras", "PinholeCamera", "camera_centres", "frame_points", "horizontal_basis",
           "intrinsics_from_fov", "look_at", "pixel_ray"]


def _is_torch(x: Any) -> bool:
    mod = type(x).__module__
    return mod.startswith("torch") and hasattr(x, "detach")


def _to_np(x: Any) -> np.ndarray:
    if _is_torch(x):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _like(arr: np.ndarray, ref: Any) -> Any:
    """Return ``arr`` as the same kind of array as ``ref`` (torch tensor or NumPy)."""
    if ref is not None and _is_torch(ref):
        import torch

        dtype = ref.dtype if ref.is_floating_point() else torch.float32
        return torch.as_tensor(arr, dtype=dtype, device=ref.device)
    return arr


def pixel_ray(viewmat: Any, K: Any, x: float, y: float) -> tuple[np.ndarray, np.ndarray]:
    """World-space ray through image point (`x`, `y`) (pixels, continuous: pixel (col, row)
    covers ``[col, col + 1) x [row, row + 1)``, so its centre is ``(col + 0.5, row + 0.5)``).

    Args:
        viewmat: ``[4, 4]`` world-to-camera (OpenCV: x right, y down, z forward).
        K: ``[3, 3]`` intrinsics in pixels.
        x, y: image point in pixels.

    Returns:
        ``(origin [3], direction [3] unit)`` in world units, NumPy float64; the origin is the
        camera centre.
    """
    vm, k = _to_np(viewmat), _to_np(K)
    r = vm[:3, :3]
    d = r.T @ np.array([(x - k[0, 2]) / k[0, 0], (y - k[1, 2]) / k[1, 1], 1.0])
    return camera_centres(vm), d / np.linalg.norm(d)


def camera_centres(viewmats: Any) -> np.ndarray:
    """Camera centres ``[..., 3]`` in the world frame, ``-R^T t``, of world-to-camera
    `viewmats` ``[..., 4, 4]`` (NumPy float64 whatever the input)."""
    vm = _to_np(viewmats)
    r, t = vm[..., :3, :3], vm[..., :3, 3]
    return -np.einsum("...ji,...j->...i", r, t)


@dataclass(eq=False)
class PinholeCamera:
    """One pinhole camera: the single camera record of SplatStudio (training views, the
    preview camera, mesh fusion, the viewer's capture positions).

    Attributes:
        viewmat: ``[4, 4]`` world-to-camera, OpenCV axes (x right, y down, z forward),
            world = the scene's frame (ENU metres for a project), float64.
        K: ``[3, 3]`` intrinsics in pixels, pixel centres at +0.5 (gsplat's convention),
            float64.
        width, height: image size in pixels (positive).

    Raises:
        ValueError: (at construction) arrays of another shape, a size that is not positive,
            or non-finite numbers.
    """

    viewmat: np.ndarray
    K: np.ndarray
    width: int
    height: int

    def __post_init__(self) -> None:
        self.viewmat = _to_np(self.viewmat).reshape(4, 4).copy()
        self.K = _to_np(self.K).reshape(3, 3).copy()
        self.width, self.height = int(self.width), int(self.height)
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"camera size must be positive, got {self.width}x{self.height}")
        if not (np.isfinite(self.viewmat).all() and np.isfinite(self.K).all()):
            raise ValueError("camera viewmat or K holds non-finite numbers")

    @property
    def centre(self) -> np.ndarray:
        """``[3]`` camera centre in the world frame (``-R^T t``)."""
        return camera_centres(self.viewmat)

    def pixel_ray(self, x: float, y: float) -> tuple[np.ndarray, np.ndarray]:
        """``(origin [3], unit direction [3])`` of the world-space ray through image point
        (`x`, `y`) in pixels (see :func:`pixel_ray`)."""
        return pixel_ray(self.viewmat, self.K, x, y)

    @property
    def forward(self) -> np.ndarray:
        """``[3]`` unit viewing direction (the camera's +z) in the world frame."""
        return self.viewmat[2, :3] / np.linalg.norm(self.viewmat[2, :3])

    def resized(self, width: int, height: int) -> PinholeCamera:
        """The same camera for an image of `width` x `height` pixels (the image scaled as a
        whole, e.g. a training downscale): K's rows scale by ``width / self.width`` and
        ``height / self.height`` (pixel centres at +0.5 keep their place)."""
        K = self.K.copy()
        K[0] *= width / self.width
        K[1] *= height / self.height
        return PinholeCamera(self.viewmat, K, width, height)

    def downscaled(self, factor: float) -> PinholeCamera:
        """:meth:`resized` to ``max(1, round(size / factor))`` pixels (factor >= 1), the
        rounding of a training downscale."""
        if factor <= 1.0:
            return PinholeCamera(self.viewmat, self.K, self.width, self.height)
        return self.resized(max(1, round(self.width / factor)), max(1, round(self.height / factor)))

    def to_dict(self) -> dict[str, Any]:
        """``{"viewmat": 4x4 list, "K": 3x3 list, "width", "height"}`` (JSON-ready)."""
        return {"viewmat": self.viewmat.tolist(), "K": self.K.tolist(),
                "width": self.width, "height": self.height}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PinholeCamera:
        """The camera of :meth:`to_dict`'s object.

        Raises:
            ValueError: a missing key, arrays of another shape, a bad size or non-finite
                numbers (KeyError and TypeError are turned into ValueError).
        """
        try:
            return cls(np.asarray(d["viewmat"], np.float64), np.asarray(d["K"], np.float64),
                       int(d["width"]), int(d["height"]))
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a camera: {e}") from None


@dataclass(eq=False)
class Cameras:
    """A batch of C pinhole cameras, as the rasterizer and mesh fusion take them.

    Attributes:
        viewmats: ``[C, 4, 4]`` world-to-camera (OpenCV axes), float64.
        Ks: ``[C, 3, 3]`` intrinsics in pixels (pixel centres at +0.5), float64.
        sizes: ``[C, 2]`` int64 image ``(width, height)`` in pixels.
    """

    viewmats: np.ndarray
    Ks: np.ndarray
    sizes: np.ndarray

    def __post_init__(self) -> None:
        self.viewmats = _to_np(self.viewmats).reshape(-1, 4, 4)
        c = self.viewmats.shape[0]
        self.Ks = _to_np(self.Ks).reshape(c, 3, 3)
        self.sizes = np.asarray(self.sizes, np.int64).reshape(c, 2)

    @classmethod
    def stack(cls, cameras: Sequence[PinholeCamera]) -> Cameras:
        """The batch of `cameras` (in order); an empty sequence gives C = 0."""
        return cls(np.array([c.viewmat for c in cameras]).reshape(-1, 4, 4),
                   np.array([c.K for c in cameras]).reshape(-1, 3, 3),
                   np.array([(c.width, c.height) for c in cameras], np.int64).reshape(-1, 2))

    def __len__(self) -> int:
        return int(self.viewmats.shape[0])

    def __getitem__(self, i: int) -> PinholeCamera:
        w, h = self.sizes[i]
        return PinholeCamera(self.viewmats[i], self.Ks[i], int(w), int(h))

    def __iter__(self) -> Iterator[PinholeCamera]:
        return (self[i] for i in range(len(self)))

    @property
    def centres(self) -> np.ndarray:
        """``[C, 3]`` camera centres in the world frame (``-R^T t``)."""
        return camera_centres(self.viewmats)


def look_at(eye: Any, target: Any, up: Any = (0.0, 0.0, 1.0)) -> Any:
    """World-to-camera view matrix of a camera at ``eye`` looking at ``target``.

    The camera's +z (forward) axis points from ``eye`` to ``target``; +x (right) is
    ``forward x up`` normalised; +y (down) is ``forward x right``, so ``up`` projects onto
    the image's upward direction (-y). OpenCV convention, ready for gsplat/``rasterize``.

    Args:
        eye: ``[3]`` camera centre in world units (e.g. metres).
        target: ``[3]`` world point that will be on the optical axis (image centre).
        up: ``[3]`` world "up" direction (need not be unit or orthogonal to the view
            direction). Default ``(0, 0, 1)``: z-up worlds (ENU). Use ``(0, -1, 0)`` for
            OpenCV/COLMAP-style y-down worlds.

    Returns:
        ``[4, 4]`` world-to-camera matrix ``[[R, -R @ eye], [0, 0, 0, 1]]``, NumPy float64
        or a torch tensor like ``eye`` (or ``target``) when either is a tensor.

    Raises:
        ValueError: bad shapes, ``eye == target``, or ``up`` parallel to the view direction.

    Source: the classic gluLookAt construction, expressed in the OpenCV camera frame.
    """
    e, t, u = _to_np(eye), _to_np(target), _to_np(up)
    for name, v in (("eye", e), ("target", t), ("up", u)):
        if v.shape != (3,):
            raise ValueError(f"{name} must have shape [3], got {v.shape}")
    fwd = t - e
    n = np.linalg.norm(fwd)
    if not np.isfinite(n) or n <= 1e-12:
        raise ValueError("look_at: eye and target coincide")
    fwd = fwd / n
    right = np.cross(fwd, u)
    rn = np.linalg.norm(right)
    if rn <= 1e-9 * max(np.linalg.norm(u), 1e-300):
        raise ValueError("look_at: up is parallel to the viewing direction")
    right = right / rn
    down = np.cross(fwd, right)
    R = np.stack([right, down, fwd], axis=0)
    viewmat = np.eye(4)
    viewmat[:3, :3] = R
    viewmat[:3, 3] = -R @ e
    ref = eye if _is_torch(eye) else (target if _is_torch(target) else None)
    return _like(viewmat, ref)


def intrinsics_from_fov(fov_deg: float, width: int, height: int, *, like: Any = None) -> Any:
    """Pinhole intrinsics from a **horizontal** field of view, square pixels.

    ``fx = fy = (width / 2) / tan(fov / 2)``, principal point at the image centre
    ``(width / 2, height / 2)`` (pixel centres at +0.5, gsplat convention).

    Args:
        fov_deg: horizontal field of view in degrees, in (0, 180).
        width, height: image size in pixels (positive integers).
        like: optional torch tensor; when given the result is a tensor with its dtype
            (floating) and device. Otherwise a NumPy float64 array.

    Returns:
        ``[3, 3]`` intrinsics matrix in pixels.

    Raises:
        ValueError: fov outside (0, 180) or non-positive image size.

    Source: the standard pinhole camera model (Hartley & Zisserman, "Multiple View
    Geometry", 2nd ed., Sec. 6.1); the +0.5 pixel-centre convention of gsplat/3DGS.
    """
    if not (0.0 < float(fov_deg) < 180.0):
        raise ValueError(f"fov_deg must be in (0, 180), got {fov_deg}")
    if int(width) <= 0 or int(height) <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    f = 0.5 * width / math.tan(math.radians(float(fov_deg)) / 2.0)
    K = np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])
    return _like(K, like)


def horizontal_basis(up: Any) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors ``h1, h2`` spanning the plane orthogonal to `up` (deterministic,
    right-handed: ``h1 x h2 = up / |up|``).

    ``h1`` is the world axis least aligned with `up` (the first of x, y, z on a tie) made
    orthogonal to it, so for the usual up axes it is world x: ``(x, y)`` for z-up (ENU),
    ``(x, z)`` for -y up, ``(x, -z)`` for +y up. Azimuths (:func:`frame_points`, the viewer's
    orbit yaw) are measured from ``h1`` towards ``h2``.

    Args:
        up: ``[3]`` world up direction, any non-zero length (NumPy or torch).

    Returns:
        ``(h1 [3], h2 [3])`` NumPy float64 unit vectors.

    Raises:
        ValueError: `up` is not a non-zero, finite ``[3]`` vector.

    Source: one Gram-Schmidt step on the world axis least aligned with `up` (the axis of
    `up`'s smallest component, the choice of Hughes & Moeller, "Building an orthonormal basis
    from a unit vector", J. Graphics Tools 4(4), 1999), then a cross product.
    """
    u = _to_np(up)
    n = float(np.linalg.norm(u)) if u.shape == (3,) else 0.0
    if not (np.isfinite(n) and n > 0.0):
        raise ValueError(f"up must be a non-zero finite [3] vector, got {u.tolist()}")
    u = u / n
    axis = np.eye(3)[int(np.argmin(np.abs(u)))]
    h1 = axis - u * float(axis @ u)
    h1 /= np.linalg.norm(h1)
    return h1, np.cross(u, h1)


def frame_points(
    means: Any,
    fov_deg: float,
    width: int,
    height: int,
    *,
    view_dir: Sequence[float] | Any | None = None,
    up: Sequence[float] | Any = (0.0, 0.0, 1.0),
    azimuth_deg: float = 45.0,
    elevation_deg: float = 30.0,
    percentiles: tuple[float, float] = (2.0, 98.0),
    margin: float = 1.05,
    max_points: int = 1_000_000,
) -> tuple[Any, Any]:
    """Automatic camera that frames a point set (e.g. Gaussian means) in the image.

    The camera looks along ``view_dir`` (or the direction given by azimuth/elevation
    around ``up``). Points are rotated into that camera orientation and the
    ``percentiles`` of each camera axis define a robust box (outliers/floaters beyond
    the percentiles are ignored). The camera is placed on the box centre's optical axis,
    backed off just enough for all eight box corners to lie inside the horizontal and
    vertical field of view, shrunk by ``margin``, and in front of the camera.

    Args:
        means: ``[N, 3]`` world points (NumPy or torch), N >= 1; non-finite rows ignored.
        fov_deg: horizontal field of view in degrees (see :func:`intrinsics_from_fov`).
        width, height: image size in pixels.
        view_dir: optional ``[3]`` world direction the camera looks along. When None it
            is ``cos(el) * (cos(az) h1 + sin(az) h2) - sin(el) * up`` with ``h1, h2`` a fixed
            horizontal basis (:func:`horizontal_basis`: h1 is world x for the usual up
            axes), i.e. an oblique view from above.
        up: ``[3]`` world up direction (default z-up).
        azimuth_deg, elevation_deg: used when ``view_dir`` is None; elevation is the
            downward tilt in degrees (must stay below 90 so ``up`` is not parallel).
        percentiles: lower/upper percentiles (0..100) for the robust bounds.
        margin: >= 1, extra room around the box (1.05 = 5 %).
        max_points: the percentiles use a deterministic subsample of at most this many
            points.

    Returns:
        ``(viewmat [4, 4], K [3, 3])``: world-to-camera (OpenCV) matrix and intrinsics in
        pixels, as NumPy float64 or torch tensors like ``means``.

    Raises:
        ValueError: empty/invalid point set, bad percentiles, margin < 1, or a view
        direction parallel to ``up``.

    Source: SplatStudio's own heuristic (robust percentile box + exact pinhole
    field-of-view fit of its corners); it does not depend on the Gaussians' extents, so
    large splats at the border may be partly cut.
    """
    pts = _to_np(means)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"means must have shape [N, 3], got {pts.shape}")
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) == 0:
        raise ValueError("frame_points: no finite points")
    lo_p, hi_p = percentiles
    if not (0.0 <= lo_p < hi_p <= 100.0):
        raise ValueError(f"bad percentiles {percentiles}")
    if margin < 1.0:
        raise ValueError(f"margin must be >= 1, got {margin}")
    if len(pts) > max_points:
        step = int(math.ceil(len(pts) / max_points))
        pts = pts[::step]
    u = _to_np(up)
    if u.shape != (3,) or np.linalg.norm(u) == 0:
        raise ValueError("up must be a non-zero [3] vector")
    u = u / np.linalg.norm(u)
    if view_dir is None:
        if not (-90.0 < elevation_deg < 90.0):
            raise ValueError("elevation_deg must be in (-90, 90)")
        h1, h2 = horizontal_basis(u)
        az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
        fwd = math.cos(el) * (math.cos(az) * h1 + math.sin(az) * h2) - math.sin(el) * u
    else:
        fwd = _to_np(view_dir)
        if fwd.shape != (3,) or np.linalg.norm(fwd) == 0:
            raise ValueError("view_dir must be a non-zero [3] vector")
    fwd = fwd / np.linalg.norm(fwd)
    # Orientation only (camera at the origin): rows = camera axes in world coordinates.
    R = look_at(np.zeros(3), fwd, u)[:3, :3]
    q = pts @ R.T  # [N, 3] in the camera orientation
    lo = np.percentile(q, lo_p, axis=0)
    hi = np.percentile(q, hi_p, axis=0)
    center = 0.5 * (lo + hi)
    half = 0.5 * (hi - lo)
    tan_x = math.tan(math.radians(float(fov_deg)) / 2.0)
    K = intrinsics_from_fov(fov_deg, width, height)
    tan_y = tan_x * height / width
    # corners relative to the box centre; camera at centre - d * z_axis (in this frame)
    corners = np.array(
        [[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64
    ) * half
    need_x = np.abs(corners[:, 0]) * margin / tan_x - corners[:, 2]
    need_y = np.abs(corners[:, 1]) * margin / tan_y - corners[:, 2]
    need_z = half[2] + 1e-3 * max(float(np.max(half)), 1e-6)  # all corners in front
    extent = max(float(np.max(half)), 1e-6)
    d = max(float(np.max(need_x)), float(np.max(need_y)), need_z, 1e-3 * extent)
    center_world = R.T @ center
    eye = center_world - d * fwd
    viewmat = look_at(eye, center_world, u)
    return _like(viewmat, means), _like(K, means)
