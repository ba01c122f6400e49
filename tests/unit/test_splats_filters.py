"""Tests of the splat clean-up filters (splatstudio.splats.filters)."""

from __future__ import annotations

import numpy as np
import pytest

from splatstudio.splats.filters import (
    apply_filters,
    cap_sh_degree,
    crop_box,
    drop_transparent,
    remove_floaters,
)
from splatstudio.splats.model import Splats, sigmoid


def grid_with_floaters() -> tuple[Splats, np.ndarray]:
    """A dense 10x10x10 grid (0.1 m spacing) plus 5 isolated points far away."""
    g = np.stack(np.meshgrid(*[np.arange(10) * 0.1] * 3, indexing="ij"), -1).reshape(-1, 3)
    far = np.array([[5, 5, 5], [-4, 0, 0], [0, 6, 0], [3, -3, 3], [0, 0, -7]], float)
    s = Splats.empty(len(g) + len(far), 2)
    s.means[:] = np.concatenate([g, far])
    s.opacities[:] = np.linspace(-6, 6, s.n)
    return s, np.arange(len(g), s.n)


def test_crop_box_inclusive_and_invert():
    s, _ = grid_with_floaters()
    c = crop_box(s, [0, 0, 0], [0.45, 0.45, 0.45])
    assert c.n == 125 and np.all(c.means <= 0.45) and np.all(c.means >= 0)
    edge = crop_box(s, [0, 0, 0], [0.1, 0.1, 0.1])
    assert edge.n == 8  # bounds inclusive: 0.0 and 0.1 on each axis
    outside = crop_box(s, [0, 0, 0], [0.45, 0.45, 0.45], invert=True)
    assert outside.n == s.n - 125
    open_axis = crop_box(s, [-np.inf, -np.inf, 0.85], [np.inf, np.inf, np.inf])
    assert open_axis.n == 100 + 2  # top layer plus two far points with z >= 0.85
    with pytest.raises(ValueError, match="exceeds"):
        crop_box(s, [1, 0, 0], [0, 1, 1])
    with pytest.raises(ValueError, match="3 numbers"):
        crop_box(s, [0, 0], [1, 1])


def test_drop_transparent_uses_sigmoid():
    s, _ = grid_with_floaters()
    out = drop_transparent(s, 0.5)
    assert np.all(sigmoid(out.opacities) >= 0.5)
    assert out.n == int(np.sum(sigmoid(s.opacities) >= 0.5))
    assert drop_transparent(s, 0.0).n == s.n
    with pytest.raises(ValueError):
        drop_transparent(s, 1.5)


def test_remove_floaters_statistical_outliers():
    s, far = grid_with_floaters()
    out = remove_floaters(s, k=8, std_ratio=2.0)
    kept = {tuple(np.round(p, 3)) for p in out.means}
    assert all(tuple(np.round(s.means[i], 3)) not in kept for i in far)
    assert out.n == s.n - len(far)
    assert remove_floaters(s.subset(np.arange(5)), k=8).n == 5  # too few points: unchanged
    with pytest.raises(ValueError):
        remove_floaters(s, k=0)
    with pytest.raises(ValueError):
        remove_floaters(s, std_ratio=0)


def test_cap_sh_degree_and_input_untouched():
    s, _ = grid_with_floaters()
    before = s.means.copy()
    c = cap_sh_degree(s, 1)
    assert c.sh_degree == 1 and s.sh_degree == 2
    crop_box(s, [0, 0, 0], [1, 1, 1])
    assert np.array_equal(s.means, before)


def test_apply_filters_report():
    s, far = grid_with_floaters()
    out, rep = apply_filters(
        s, crop_max=[10, 10, 10], min_opacity=0.01, remove_floaters=True, floater_k=8,
        floater_std_ratio=2.0, max_sh_degree=0,
    )  # fmt: skip
    assert rep["input"] == s.n and rep["output"] == out.n
    assert rep["input"] - rep["min_opacity"] - rep["crop"] - rep["floaters"] == out.n
    assert rep["max_sh_degree"] == 0 and out.sh_degree == 0
    same, rep = apply_filters(s)
    assert same.n == s.n and rep == {"input": s.n, "output": s.n}
