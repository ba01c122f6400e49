"""Blocks on the ground plane: an exact partition, expanded cells that contain their cells,
the bisector formula against brute force, balanced counts on a walk, a merge that keeps each
gaussian once."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from splatstudio.farm.partition import in_expanded_cell, make_partition, owner

coords = st.floats(-500, 500, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(coords, coords), min_size=2, max_size=6, unique=True),
       st.lists(st.tuples(coords, coords, coords), min_size=1, max_size=40),
       st.lists(st.floats(-2000, 2000), min_size=6, max_size=6), st.floats(0, 20))
def test_ownership_is_exact_and_expanded_cells_contain_their_cells(sites, pts, w, margin):
    c = np.asarray(sites)
    p = np.asarray(pts)
    w = np.asarray(w[: len(c)])
    lab = owner(p, c, w)
    assert lab.shape == (len(p),) and lab.min() >= 0 and lab.max() < len(c)
    grown = np.stack([in_expanded_cell(p, c, k, margin, w) for k in range(len(c))])
    assert np.all(grown[lab, np.arange(len(p))])  # a block's expanded cell holds what it owns
    # brute force, by geometry: the power bisector of k and j is the line n.x = h with n the
    # unit vector from c_k to c_j and h = (|c_j|^2 - |c_k|^2 - w_j + w_k) / (2 |c_j - c_k|);
    # p is within m of cell k iff n.p - h <= m for every j
    for k in range(len(c)):
        for i, q in enumerate(p[:, :2]):
            want = True
            for j in range(len(c)):
                sep = np.linalg.norm(c[j] - c[k])
                if j == k or sep == 0:
                    continue
                n = (c[j] - c[k]) / sep
                h = ((c[j] @ c[j]) - (c[k] @ c[k]) - w[j] + w[k]) / (2 * sep)
                s = float(n @ q - h)
                if abs(s - margin) < 1e-6 * (1 + abs(s)):
                    want = None  # on the boundary: rounding decides
                    break
                want &= s <= margin
            assert want is None or grown[k, i] == want


def test_a_walk_is_cut_into_runs_of_equal_counts():
    t = np.linspace(0, 300, 100)
    walk = np.stack([t, 0.05 * t + np.sin(t / 10)], 1)
    part = make_partition(walk, 3)
    counts = np.bincount(part.frames, minlength=3)
    assert counts.max() - counts.min() <= 2, counts
    # runs follow the walk: each block's frames are one contiguous stretch
    assert np.count_nonzero(np.diff(part.frames)) == 2
    assert part.margin_m >= 2.0


def test_an_area_is_balanced_within_15_percent():
    rng = np.random.default_rng(1)
    grid = np.concatenate([rng.normal((0, 0), 20, (150, 2)), rng.normal((120, 80), 35, (90, 2))])
    part = make_partition(grid, 4, seed=3)
    counts = np.bincount(part.frames, minlength=4)
    assert counts.max() <= 1.15 * len(grid) / 4 and counts.min() >= 0.85 * len(grid) / 4 - 1, counts


def test_the_merge_keeps_each_gaussian_once():
    rng = np.random.default_rng(2)
    frames = rng.uniform(-100, 100, (40, 2))
    part = make_partition(frames, 3, margin_m=10)
    gaussians = rng.uniform(-120, 120, (5000, 3))
    kept = []
    for b in range(part.k):
        trained = gaussians[part.expanded(gaussians, b)]
        kept.append(trained[part.owner(trained) == b])  # VastGaussian's merge
    merged = np.concatenate(kept)
    assert len(merged) == len(gaussians)
    assert len(np.unique(merged, axis=0)) == len(gaussians)
