"""Clean-up filters on :class:`~splatstudio.splats.model.Splats`.

Each filter returns a new :class:`Splats` (the input is not modified) and works on the
arrays in their own frame and units: for SplatStudio scenes centres are ENU metres.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .model import Splats, sigmoid

__all__ = [
    "crop_box",
    "drop_transparent",
    "remove_floaters",
    "cap_sh_degree",
    "apply_filters",
    "FILTER_OPTIONS",
]


def _corner(name: str, value: Sequence[float] | np.ndarray) -> np.ndarray:
    v = np.asarray(value, dtype=np.float64).reshape(-1)
    if v.shape != (3,) or not np.all(np.isfinite(v) | np.isinf(v)):
        raise ValueError(f"{name} must be 3 numbers (x, y, z), got {value!r}")
    return v


def crop_box(
    splats: Splats,
    min_corner: Sequence[float] | np.ndarray,
    max_corner: Sequence[float] | np.ndarray,
    *,
    invert: bool = False,
) -> Splats:
    """Keep the gaussians whose centre lies inside an axis-aligned box (bounds inclusive).

    Args:
        splats: input gaussians.
        min_corner: ``[3]`` lower corner (x, y, z), metres in the splats' frame (ENU for
            SplatStudio scenes); use ``-inf`` to leave an axis open.
        max_corner: ``[3]`` upper corner, same frame and units.
        invert: keep the gaussians *outside* the box instead.

    Returns:
        A new :class:`Splats`.

    Raises:
        ValueError: if a corner is not 3 numbers or ``min_corner > max_corner`` on an axis.
    """
    lo, hi = _corner("min_corner", min_corner), _corner("max_corner", max_corner)
    if np.any(lo > hi):
        raise ValueError(f"min_corner {lo.tolist()} exceeds max_corner {hi.tolist()}")
    lo32, hi32 = lo.astype(np.float32), hi.astype(np.float32)  # compare like the stored values
    inside = np.all((splats.means >= lo32) & (splats.means <= hi32), axis=1)
    return splats.subset(~inside if invert else inside)


def drop_transparent(splats: Splats, min_opacity: float = 1.0 / 255.0) -> Splats:
    """Drop the gaussians whose opacity ``sigmoid(opacities)`` is below ``min_opacity``.

    Args:
        splats: input gaussians.
        min_opacity: threshold in ``[0, 1]`` on the activated opacity (default 1/255, the
            smallest opacity an 8-bit format can show).

    Returns:
        A new :class:`Splats` with the gaussians of opacity ``>= min_opacity``.

    Raises:
        ValueError: if ``min_opacity`` is outside ``[0, 1]``.
    """
    if not 0.0 <= min_opacity <= 1.0:
        raise ValueError(f"min_opacity must be in [0, 1], got {min_opacity}")
    return splats.subset(sigmoid(splats.opacities) >= np.float32(min_opacity))


def remove_floaters(splats: Splats, k: int = 16, std_ratio: float = 3.0) -> Splats:
    """Statistical outlier removal on the centres.

    For each gaussian the mean distance to its ``k`` nearest neighbours (metres) is
    computed with ``scipy.spatial.cKDTree``; gaussians whose mean distance exceeds
    ``mean + std_ratio * std`` of those distances over the whole set are removed.

    Args:
        splats: input gaussians.
        k: number of neighbours (>= 1).
        std_ratio: threshold in standard deviations (> 0); smaller removes more.

    Returns:
        A new :class:`Splats`. Sets with at most ``k`` gaussians are returned unchanged
        (as a copy).

    Raises:
        ValueError: if ``k < 1`` or ``std_ratio <= 0``.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not std_ratio > 0:
        raise ValueError(f"std_ratio must be > 0, got {std_ratio}")
    if splats.n <= k:
        return splats.copy()
    from scipy.spatial import cKDTree  # lazy: scipy is only needed here

    pts = splats.means.astype(np.float64)
    tree = cKDTree(pts)
    dist, _ = tree.query(pts, k=k + 1, workers=-1)
    mean_d = dist[:, 1:].mean(axis=1)  # column 0 is the point itself
    thresh = mean_d.mean() + std_ratio * mean_d.std()
    return splats.subset(mean_d <= thresh)


_remove_floaters = remove_floaters  # apply_filters has a parameter of the same name


def cap_sh_degree(splats: Splats, max_degree: int) -> Splats:
    """Drop SH bands above ``max_degree`` (0..3); lower-degree splats are copied unchanged.

    Raises:
        ValueError: if ``max_degree`` is not 0..3.
    """
    return splats.with_sh_degree(max_degree)


#: Keyword options accepted by :func:`apply_filters` (and by ``io.convert``).
FILTER_OPTIONS = (
    "crop_min",
    "crop_max",
    "min_opacity",
    "remove_floaters",
    "floater_k",
    "floater_std_ratio",
    "max_sh_degree",
)


def apply_filters(
    splats: Splats,
    *,
    crop_min: Sequence[float] | None = None,
    crop_max: Sequence[float] | None = None,
    min_opacity: float | None = None,
    remove_floaters: bool = False,
    floater_k: int = 16,
    floater_std_ratio: float = 3.0,
    max_sh_degree: int | None = None,
) -> tuple[Splats, dict]:
    """Apply the filters in a fixed order: opacity, crop box, floaters, SH cap.

    Args:
        splats: input gaussians.
        crop_min: lower corner of the crop box (metres, splats' frame; ENU for SplatStudio
            scenes); missing axes default to ``-inf`` when only ``crop_max`` is given.
        crop_max: upper corner of the crop box.
        min_opacity: drop gaussians with ``sigmoid(opacity) < min_opacity``.
        remove_floaters: run :func:`remove_floaters` with ``floater_k`` and
            ``floater_std_ratio``.
        floater_k: neighbours for floater removal.
        floater_std_ratio: threshold for floater removal.
        max_sh_degree: cap the SH degree.

    Returns:
        ``(filtered splats, report)`` where ``report`` maps each applied step to the number
        of gaussians it removed (plus ``"input"`` and ``"output"`` counts).

    Raises:
        ValueError: for invalid option values (see the individual filters).
    """
    report: dict = {"input": splats.n}
    out = splats
    if min_opacity is not None:
        before = out.n
        out = drop_transparent(out, min_opacity)
        report["min_opacity"] = before - out.n
    if crop_min is not None or crop_max is not None:
        before = out.n
        lo = crop_min if crop_min is not None else [-np.inf] * 3
        hi = crop_max if crop_max is not None else [np.inf] * 3
        out = crop_box(out, lo, hi)
        report["crop"] = before - out.n
    if remove_floaters:
        before = out.n
        out = _remove_floaters(out, k=floater_k, std_ratio=floater_std_ratio)
        report["floaters"] = before - out.n
    if max_sh_degree is not None:
        out = cap_sh_degree(out, max_sh_degree)
        report["max_sh_degree"] = out.sh_degree
    report["output"] = out.n
    return out, report
