"""Selection, deletion and undo on splat arrays (splatstudio.splats.edit)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from splatstudio.render.camera import intrinsics_from_fov, look_at
from splatstudio.splats.edit import (
    SplatEditor,
    project_points,
    select_box,
    select_opacity,
    select_screen_brush,
    select_screen_rect,
    select_size,
    select_sphere,
)
from splatstudio.splats.model import Splats, logit

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def grid() -> Splats:
    """10x10x10 centres on a 0.1 m grid, opacities and sizes varying along the index."""
    g = np.stack(np.meshgrid(*[np.arange(10) * 0.1] * 3, indexing="ij"), -1).reshape(-1, 3)
    s = Splats.empty(len(g), 1)
    s.means[:] = g
    s.opacities[:] = logit(np.linspace(0.01, 0.99, s.n))
    s.scales[:] = np.log(np.linspace(0.001, 1.0, s.n))[:, None]
    s.shN[:] = np.arange(s.n)[:, None, None]
    return s


def test_world_selections():
    s = grid()
    assert select_box(s.means, [0, 0, 0], [0.45, 0.45, 0.45]).sum() == 125
    assert select_box(s.means, [0, 0, 0], [0.1, 0.1, 0.1]).sum() == 8  # inclusive
    assert select_box(s.means, [-np.inf] * 3, [np.inf, np.inf, 0.05]).sum() == 100
    sph = select_sphere(s.means, [0.45, 0.45, 0.45], 0.1)  # the 8 nearest grid points
    assert sph.sum() == 8 and np.all(np.abs(s.means[sph] - 0.45) < 0.06)
    with pytest.raises(ValueError, match="exceeds"):
        select_box(s.means, [1, 0, 0], [0, 1, 1])
    with pytest.raises(ValueError, match="radius"):
        select_sphere(s.means, [0, 0, 0], -1)
    op = select_opacity(s.opacities, 0.5, 1.0)
    assert op.sum() == 500 and op[-1] and not op[0]
    big = select_size(s.scales, 0.5)
    np.testing.assert_array_equal(big, np.exp(s.scales.max(1)) >= 0.5)
    with pytest.raises(ValueError, match="opacity bounds"):
        select_opacity(s.opacities, 0.8, 0.2)


def test_screen_selections_match_projection():
    s = grid()
    w, h = 200, 100
    K = intrinsics_from_fov(60, w, h)
    vm = look_at([0.45, -3.0, 0.45], [0.45, 0.45, 0.45])
    uv, z = project_points(s.means, vm, K)
    assert np.all(z > 0)
    # the target (0.45, 0.45, 0.45) projects to the image centre
    np.testing.assert_allclose(project_points(np.array([[0.45] * 3]), vm, K)[0][0],
                               [w / 2, h / 2], atol=1e-4)
    rect = select_screen_rect(s.means, vm, K, (w / 2, h / 2, 0, 0))  # corners any order
    np.testing.assert_array_equal(rect, (uv[:, 0] <= w / 2) & (uv[:, 1] <= h / 2))
    stroke = np.array([[20.0, 50.0], [180.0, 50.0]])
    brush = select_screen_brush(s.means, vm, K, stroke, 6.0, width=w, height=h)
    # distance of each projected centre to the stroke segment; the mask's edge is exact to
    # about a pixel (pixel-quantised raster of the stroke)
    dx = np.clip(uv[:, 0], 20, 180) - uv[:, 0]
    dist = np.hypot(dx, uv[:, 1] - 50)
    assert brush[dist <= 6.0 - 1.5].all() and brush[dist <= 6.0 - 1.5].sum() > 10
    assert not brush[dist > 6.0 + 1.5].any()
    dab = select_screen_brush(s.means, vm, K, [[100, 50]], 3.0, width=w, height=h)
    d1 = np.hypot(uv[:, 0] - 100, uv[:, 1] - 50)
    assert dab[d1 <= 1.5].all() and not dab[d1 > 4.5].any()
    behind = look_at([0.45, 3.0, 0.45], [0.45, 6.0, 0.45])  # looking away: nothing in front
    assert not select_screen_rect(s.means, behind, K, (0, 0, w, h)).any()
    with pytest.raises(ValueError, match="brush"):
        select_screen_brush(s.means, vm, K, np.zeros((0, 2)), 5, width=w, height=h)


def test_editor_delete_crop_undo_redo_exact():
    s = grid()
    ed = SplatEditor(s)
    ed.select(select_box(s.means, [0, 0, 0], [0.45, 0.45, 0.45]))
    assert ed.n_selected == 125
    ed.select(select_sphere(s.means, [0.9, 0.9, 0.9], 0.01), "add")
    assert ed.n_selected == 126
    ed.select(select_box(s.means, [0, 0, 0], [0.0, 0.45, 0.45]), "subtract")
    assert ed.n_selected == 126 - 25
    assert ed.delete_selected() == 101 and ed.n_alive == 899 and ed.n_selected == 0
    out = ed.result()
    assert out.n == 899
    kept = np.flatnonzero(ed.alive)
    np.testing.assert_array_equal(out.means, s.means[kept])
    np.testing.assert_array_equal(out.shN, s.shN[kept])
    # the deleted ones can never be selected again
    ed.select_all()
    assert ed.n_selected == 899
    ed.invert()
    assert ed.n_selected == 0
    ed.invert()
    ed.select(select_opacity(s.opacities, 0.9, 1.0), "intersect")
    n_crop = ed.n_alive - ed.n_selected
    assert ed.crop_to_selection() == n_crop and ed.n_alive == ed.n_selected
    # undo everything: exactly the original flags, and the original arrays were not touched
    snapshots = []
    while ed.can_undo:
        snapshots.append((ed.alive.copy(), ed.selected.copy()))
        ed.undo()
    assert ed.alive.all() and not ed.selected.any()
    np.testing.assert_array_equal(ed.result().means, s.means)
    # redo everything: the same states in reverse order
    for alive, sel in reversed(snapshots):
        ed.redo()
        np.testing.assert_array_equal(ed.alive, alive)
        np.testing.assert_array_equal(ed.selected, sel)
    assert not ed.can_redo and ed.redo() is None
    # a new step clears the redo stack
    ed.undo()
    ed.clear_selection()
    assert not ed.can_redo


def test_history_is_indices_and_bounded():
    s = Splats.empty(100_000)
    s.means[:] = np.random.default_rng(0).normal(size=(s.n, 3))
    ed = SplatEditor(s, max_history_bytes=1_000_000)
    ed.select(s.means[:, 0] > 0)
    step_bytes = ed.history_bytes
    assert step_bytes == 4 * ed.n_selected  # int32 indices of the flipped flags, no copies
    for _ in range(10):
        ed.invert()
    assert ed.history_bytes <= 1_000_000 and len(ed.undo_labels) < 11
    with pytest.raises(ValueError, match="mask"):
        ed.select(np.ones(3, bool))
    with pytest.raises(ValueError, match="mode"):
        ed.select(np.ones(s.n, bool), "xor")


def test_real_splat_brush_delete_undo():
    """On a real trained scene (donut_fused.ply, 45,624 gaussians): a brush stroke across the
    view deletes what it covers, undo gives back the file's gaussians exactly."""
    from splatstudio.splats.io import load_splats

    path = DATA / "splats" / "donut_fused.ply"
    if not path.exists():
        pytest.skip(f"{path} not present")
    s = load_splats(path)
    from splatstudio.render.camera import frame_points

    w, h = 320, 240
    vm, K = frame_points(s.means, 60, w, h)
    ed = SplatEditor(s)
    n = ed.select(select_screen_brush(s.means, vm, K, [[40, 120], [280, 120]], 20,
                                                width=w, height=h))
    assert 0 < n < s.n
    ed.delete_selected()
    out = ed.result()
    assert out.n == s.n - n
    uv, z = project_points(out.means, vm, K)
    on_stroke = (np.abs(uv[:, 1] - 120) < 19) & (uv[:, 0] > 41) & (uv[:, 0] < 279) & (z > 0)
    assert not on_stroke.any()
    ed.undo()
    back = ed.result()
    for f in ("means", "quats", "scales", "opacities", "sh0", "shN"):
        np.testing.assert_array_equal(getattr(back, f), getattr(s, f))
