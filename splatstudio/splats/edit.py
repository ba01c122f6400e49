"""Selecting and deleting gaussians, with undo / redo: the array side of the viewer's tools.

Selections are boolean masks ``[N]`` over a scene's gaussians, built from its arrays:

* :func:`select_box` (axis-aligned box), :func:`select_sphere` -- on the centres, world frame;
* :func:`select_screen_rect` and :func:`select_screen_brush` -- the centres projected with a
  world-to-camera ``viewmat`` and pixel intrinsics ``K`` (OpenCV, the convention of
  :mod:`splatstudio.render.camera`) fall in a pixel rectangle / in a stroke of circles. As in
  SuperSplat, every gaussian in front of the camera whose centre projects there is selected,
  also those hidden behind others;
* :func:`select_opacity`, :func:`select_size` -- by activated opacity, by largest standard
  deviation.

:class:`SplatEditor` applies them to a scene (replace / add / subtract / intersect), inverts,
deletes the selection or everything but it (crop to selection), and undoes and redoes each step.
The scene's arrays are never modified: the editor keeps an ``alive`` mask and a ``selected``
mask, and every step is stored as the indices (int32) whose flags it flipped, so undo and redo
are exact (XOR) and cost 4 bytes per gaussian a step changed -- never a copy of the scene.
The history is bounded (:attr:`SplatEditor.max_history_bytes`, oldest steps dropped first).

No Qt, no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .model import Splats, sigmoid

__all__ = [
    "EditStep",
    "SplatEditor",
    "project_points",
    "select_box",
    "select_opacity",
    "select_screen_brush",
    "select_screen_rect",
    "select_size",
    "select_sphere",
]

#: How a new selection combines with the current one.
MODES = ("replace", "add", "subtract", "intersect")


def _vec3(name: str, v: Sequence[float] | np.ndarray) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64).reshape(-1)
    if a.shape != (3,) or not np.all(np.isfinite(a) | np.isinf(a)):
        raise ValueError(f"{name} must be 3 numbers (x, y, z), got {v!r}")
    return a


def select_box(means: np.ndarray, lo: Sequence[float], hi: Sequence[float]) -> np.ndarray:
    """Gaussians whose centre is inside the axis-aligned box ``lo <= p <= hi`` (inclusive).

    Args:
        means: ``[N, 3]`` centres, world units (ENU metres for SplatStudio scenes).
        lo, hi: ``[3]`` corners, same frame; ``-inf`` / ``inf`` leave an axis open.

    Returns:
        ``[N] bool``.

    Raises:
        ValueError: a corner is not 3 numbers or ``lo > hi`` on an axis.
    """
    a, b = _vec3("lo", lo), _vec3("hi", hi)
    if np.any(a > b):
        raise ValueError(f"box corner lo {a.tolist()} exceeds hi {b.tolist()}")
    m = np.asarray(means)
    a32, b32 = a.astype(m.dtype), b.astype(m.dtype)
    return np.all((m >= a32) & (m <= b32), axis=1)


def select_sphere(means: np.ndarray, centre: Sequence[float], radius: float) -> np.ndarray:
    """Gaussians whose centre is within `radius` of `centre` (inclusive), world units.

    Args:
        means: ``[N, 3]`` centres.
        centre: ``[3]``; radius: >= 0.

    Returns:
        ``[N] bool``.

    Raises:
        ValueError: a negative or non-finite radius, or a centre that is not 3 numbers.
    """
    c = _vec3("centre", centre)
    if not np.isfinite(radius) or radius < 0:
        raise ValueError(f"sphere radius must be a finite number >= 0, got {radius!r}")
    m = np.asarray(means)
    d = m - c.astype(m.dtype)
    return np.einsum("ij,ij->i", d, d) <= np.float32(radius) ** 2


def project_points(
    means: np.ndarray, viewmat: np.ndarray, K: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel positions and camera depths of world points.

    Args:
        means: ``[N, 3]`` world points.
        viewmat: ``[4, 4]`` world-to-camera (OpenCV: x right, y down, z forward).
        K: ``[3, 3]`` pinhole intrinsics in pixels (pixel centres at +0.5).

    Returns:
        ``(uv [N, 2] float32 pixels (column, row), z [N] float32 camera depth)``; ``uv`` is
        meaningless where ``z <= 0``.
    """
    vm = np.asarray(viewmat, dtype=np.float32)
    k = np.asarray(K, dtype=np.float32)
    if vm.shape != (4, 4) or k.shape != (3, 3):
        raise ValueError(f"viewmat must be [4, 4] and K [3, 3], got {vm.shape} and {k.shape}")
    cam = np.asarray(means, dtype=np.float32) @ vm[:3, :3].T + vm[:3, 3]
    z = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / np.where(z > 0, z, np.float32(1.0))
    uv = np.empty((len(cam), 2), dtype=np.float32)
    uv[:, 0] = k[0, 0] * cam[:, 0] * inv + k[0, 2]
    uv[:, 1] = k[1, 1] * cam[:, 1] * inv + k[1, 2]
    return uv, z


def select_screen_rect(
    means: np.ndarray,
    viewmat: np.ndarray,
    K: np.ndarray,
    rect: tuple[float, float, float, float],
    *,
    near: float = 0.0,
) -> np.ndarray:
    """Gaussians in front of the camera (depth > `near`) whose centre projects into the pixel
    rectangle `rect` = (x0, y0, x1, y1) (any corner order, inclusive).

    Returns:
        ``[N] bool``.
    """
    uv, z = project_points(means, viewmat, K)
    x0, x1 = sorted((float(rect[0]), float(rect[2])))
    y0, y1 = sorted((float(rect[1]), float(rect[3])))
    return (z > near) & (uv[:, 0] >= x0) & (uv[:, 0] <= x1) & (uv[:, 1] >= y0) & (uv[:, 1] <= y1)


def select_screen_brush(
    means: np.ndarray,
    viewmat: np.ndarray,
    K: np.ndarray,
    stroke: np.ndarray | Sequence[Sequence[float]],
    radius_px: float,
    *,
    width: int,
    height: int,
    near: float = 0.0,
) -> np.ndarray:
    """Gaussians in front of the camera whose centre projects within `radius_px` pixels of a
    brush stroke: the polyline through `stroke` ``[M, 2]`` (pixel x, y), i.e. the union of
    the circles along it (one point is a single dab), inside the `width` x `height` image.

    Method: the stroke is drawn into a ``[height, width]`` pixel mask (``cv2.line`` with
    round caps, thickness ``2 radius``) and each projected centre looks up the pixel it
    falls in, so the cost is one projection of the N centres plus one image, whatever the
    stroke's length; the edge of the stroke is exact to about one pixel.

    Returns:
        ``[N] bool``.

    Raises:
        ValueError: an empty stroke, a radius <= 0 or a bad image size.
    """
    import cv2

    pts = np.asarray(stroke, dtype=np.float64).reshape(-1, 2)
    if len(pts) == 0 or not radius_px > 0:
        raise ValueError(f"brush needs >= 1 point and a radius > 0 px, got {len(pts)} points "
                         f"and radius {radius_px!r}")
    if int(width) <= 0 or int(height) <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    mask = np.zeros((int(height), int(width)), dtype=np.uint8)
    shift = 4  # sub-pixel stroke coordinates (1/16 px); pixel centres at +0.5
    p = np.round((pts - 0.5) * (1 << shift)).astype(np.int64)
    thick = max(1, int(round(2 * radius_px)))
    segs = list(zip(p[:-1], p[1:], strict=True)) or [(p[0], p[0])]
    for a, b in segs:
        cv2.line(mask, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), 1, thick,
                 cv2.LINE_8, shift)
    uv, z = project_points(means, viewmat, K)
    col = np.floor(uv[:, 0])
    row = np.floor(uv[:, 1])
    ok = (z > near) & (col >= 0) & (col < width) & (row >= 0) & (row < height)
    out = np.zeros(len(uv), dtype=bool)
    idx = np.flatnonzero(ok)
    out[idx] = mask[row[idx].astype(np.intp), col[idx].astype(np.intp)] > 0
    return out


def select_opacity(opacities: np.ndarray, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    """Gaussians whose opacity ``sigmoid(opacities)`` is in ``[lo, hi]``.

    Args:
        opacities: ``[N]`` opacity logits (the :class:`Splats` field).

    Raises:
        ValueError: bounds outside [0, 1] or ``lo > hi``.
    """
    if not (0.0 <= lo <= hi <= 1.0):
        raise ValueError(f"opacity bounds must satisfy 0 <= lo <= hi <= 1, got {lo}, {hi}")
    a = sigmoid(opacities)
    return (a >= lo) & (a <= hi)


def select_size(scales: np.ndarray, min_size: float, max_size: float = np.inf) -> np.ndarray:
    """Gaussians whose largest standard deviation ``max(exp(scales))`` is in
    ``[min_size, max_size]`` world units (e.g. the huge blobs of a badly trained sky).

    Args:
        scales: ``[N, 3]`` log standard deviations (the :class:`Splats` field).

    Raises:
        ValueError: ``min_size < 0`` or ``min_size > max_size``.
    """
    if not (0.0 <= min_size <= max_size):
        raise ValueError(f"size bounds must satisfy 0 <= min <= max, got {min_size}, {max_size}")
    s = np.max(np.asarray(scales, dtype=np.float32), axis=1)
    with np.errstate(over="ignore"):
        big = np.exp(s)
    return (big >= min_size) & (big <= max_size)


@dataclass(frozen=True)
class EditStep:
    """One undoable step: the indices whose flags it flipped.

    Attributes:
        label: what the user did ("select box", "delete" ...).
        sel_flip: ``[k] int32`` gaussians whose ``selected`` flag flipped.
        alive_flip: ``[m] int32`` gaussians whose ``alive`` flag flipped.
    """

    label: str
    sel_flip: np.ndarray
    alive_flip: np.ndarray

    @property
    def nbytes(self) -> int:
        """Memory of the step's index arrays in bytes."""
        return int(self.sel_flip.nbytes + self.alive_flip.nbytes)


_EMPTY = np.zeros(0, dtype=np.int32)


class SplatEditor:
    """Selection and deletion on a scene, with undo / redo (see the module docstring).

    Attributes:
        splats: the scene as loaded; never modified.
        alive: ``[N] bool``, gaussians not deleted.
        selected: ``[N] bool``, selected gaussians (always a subset of `alive`).
        max_history_bytes: bound on the undo history's index arrays (default 256 MiB, i.e.
            64M flipped flags; at least the latest step is always kept).
    """

    def __init__(self, splats: Splats, *, max_history_bytes: int = 256 << 20):
        self.splats = splats
        self.alive = np.ones(splats.n, dtype=bool)
        self.selected = np.zeros(splats.n, dtype=bool)
        self.max_history_bytes = int(max_history_bytes)
        self._undo: list[EditStep] = []
        self._redo: list[EditStep] = []

    # -- state -----------------------------------------------------------------------
    @property
    def n_alive(self) -> int:
        """Gaussians not deleted."""
        return int(np.count_nonzero(self.alive))

    @property
    def n_selected(self) -> int:
        """Gaussians selected."""
        return int(np.count_nonzero(self.selected))

    @property
    def history_bytes(self) -> int:
        """Memory held by the undo and redo stacks, bytes."""
        return sum(s.nbytes for s in self._undo) + sum(s.nbytes for s in self._redo)

    @property
    def can_undo(self) -> bool:
        """Whether there is a step to undo."""
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        """Whether there is an undone step to redo (a new step clears them)."""
        return bool(self._redo)

    @property
    def undo_labels(self) -> list[str]:
        """Labels of the undoable steps, oldest first."""
        return [s.label for s in self._undo]

    def result(self) -> Splats:
        """The edited scene: the gaussians still alive, in their original order (a copy)."""
        return self.splats.subset(self.alive)

    # -- steps -----------------------------------------------------------------------
    def _push(self, label: str, sel_flip: np.ndarray, alive_flip: np.ndarray) -> EditStep | None:
        if len(sel_flip) == 0 and len(alive_flip) == 0:
            return None
        step = EditStep(label, sel_flip.astype(np.int32, copy=False),
                        alive_flip.astype(np.int32, copy=False))
        self._undo.append(step)
        self._redo.clear()
        total = sum(s.nbytes for s in self._undo)
        while len(self._undo) > 1 and total > self.max_history_bytes:
            total -= self._undo.pop(0).nbytes
        return step

    def _apply(self, step: EditStep) -> None:
        self.alive[step.alive_flip] ^= True
        self.selected[step.sel_flip] ^= True

    def select(self, mask: np.ndarray, mode: str = "replace", label: str = "select") -> int:
        """Combine `mask` ``[N] bool`` with the selection (`mode`: replace, add, subtract,
        intersect); deleted gaussians are never selected. Returns the selected count.

        Raises:
            ValueError: a mask of another length, or an unknown mode.
        """
        m = np.asarray(mask, dtype=bool)
        if m.shape != self.alive.shape:
            raise ValueError(f"selection mask must be [{len(self.alive)}], got {m.shape}")
        if mode not in MODES:
            raise ValueError(f"unknown selection mode {mode!r} ({', '.join(MODES)})")
        if mode == "replace":
            new = m & self.alive
        elif mode == "add":
            new = self.selected | (m & self.alive)
        elif mode == "subtract":
            new = self.selected & ~m
        else:
            new = self.selected & m
        flip = np.flatnonzero(new ^ self.selected)
        step = self._push(f"{label} ({mode})", flip, _EMPTY)
        if step is not None:
            self._apply(step)
        return self.n_selected

    def select_all(self) -> int:
        """Select every gaussian not deleted."""
        return self.select(self.alive, "replace", "select all")

    def clear_selection(self) -> int:
        """Select nothing."""
        return self.select(np.zeros_like(self.alive), "replace", "select none")

    def invert(self) -> int:
        """Select the alive gaussians that are not selected, and only them."""
        step = self._push("invert", np.flatnonzero(self.alive), _EMPTY)
        if step is not None:
            self._apply(step)
        return self.n_selected

    def delete_selected(self) -> int:
        """Delete the selected gaussians (the selection becomes empty). Returns how many."""
        idx = np.flatnonzero(self.selected)
        step = self._push("delete", idx, idx)
        if step is not None:
            self._apply(step)
        return len(idx)

    def crop_to_selection(self) -> int:
        """Delete every alive gaussian that is not selected (the selection stays). Returns how
        many were deleted; with nothing selected it does nothing (returns 0)."""
        if not self.selected.any():
            return 0
        idx = np.flatnonzero(self.alive & ~self.selected)
        step = self._push("crop to selection", _EMPTY, idx)
        if step is not None:
            self._apply(step)
        return len(idx)

    def undo(self) -> str | None:
        """Undo the latest step; returns its label (None when there is nothing to undo)."""
        if not self._undo:
            return None
        step = self._undo.pop()
        self._apply(step)
        self._redo.append(step)
        return step.label

    def redo(self) -> str | None:
        """Redo the latest undone step; returns its label (None when there is none)."""
        if not self._redo:
            return None
        step = self._redo.pop()
        self._apply(step)
        self._undo.append(step)
        return step.label
