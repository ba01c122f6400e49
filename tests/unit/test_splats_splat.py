"""Tests of the antimatter15 .splat reader/writer (splatstudio.splats.splat)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.splats import random_splats as make_random_splats

from splatstudio.splats.model import SH_C0, SplatFormatError, Splats, sigmoid
from splatstudio.splats.ply import read_ply
from splatstudio.splats.splat import RECORD_SIZE, importance_order, read_splat, write_splat

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "splats"

SCALE_TOL = 1e-6  # float32 log(exp(x))
ALPHA_TOL = 0.5 / 255 + 1e-6
SH0_TOL = 0.5 / 255 / SH_C0 + 1e-5  # 0.00695
QUAT_TOL = 0.008  # 0.5/128 per component, then renormalised


def sample(name: str) -> Path:
    path = DATA / name
    if not path.is_file():
        pytest.skip(f"shared sample {path} is missing (shared data not mounted)")
    return path


def random_splats(n: int = 300, degree: int = 0, seed: int = 0) -> Splats:
    return make_random_splats(n, degree, seed, means=("normal", 10.0), scales=(-9.0, 2.0),
                              opacity_std=4.0, sh0=("uniform", 2.5))


def quat_error(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.minimum(np.abs(a - b).max(1), np.abs(a + b).max(1)).max())


def assert_within_quantisation(orig: Splats, back: Splats) -> dict:
    assert back.n == orig.n and back.sh_degree == 0
    lim = 0.5 / SH_C0
    e = {
        "means": float(np.abs(orig.means - back.means).max()),
        "scales": float(np.abs(orig.scales - back.scales).max()),
        "alpha": float(np.abs(sigmoid(orig.opacities) - sigmoid(back.opacities)).max()),
        "sh0": float(np.abs(np.clip(orig.sh0, -lim, lim) - back.sh0).max()),
        "quats": quat_error(orig.quats, back.quats),
    }
    assert e["means"] == 0.0
    assert e["scales"] <= SCALE_TOL
    assert e["alpha"] <= ALPHA_TOL
    assert e["sh0"] <= SH0_TOL
    assert e["quats"] <= QUAT_TOL
    return e


def test_round_trip_unsorted_and_layout(tmp_path):
    s = random_splats(500, degree=2)
    path = tmp_path / "r.splat"
    assert write_splat(s, path, sort=False) == 500 * RECORD_SIZE
    raw = path.read_bytes()
    # record 0: position, exp(scale), RGBA, rotation
    assert np.array_equal(np.frombuffer(raw[:12], "<f4"), s.means[0])
    assert np.allclose(np.frombuffer(raw[12:24], "<f4"), np.exp(s.scales[0]), rtol=1e-6)
    rgb = np.clip(np.floor((0.5 + SH_C0 * s.sh0[0, 0].astype(np.float64)) * 255 + 0.5), 0, 255)
    assert list(raw[24:27]) == rgb.astype(int).tolist()
    q = s.quats[0] / np.linalg.norm(s.quats[0])
    assert np.abs(np.frombuffer(raw[28:32], np.uint8) - (q * 128 + 128)).max() <= 0.5 + 1e-5
    back = read_splat(path)
    assert_within_quantisation(s, back)  # SH beyond degree 0 dropped


def test_sorted_by_importance(tmp_path):
    s = random_splats(200)
    write_splat(s, tmp_path / "s.splat")
    back = read_splat(tmp_path / "s.splat")
    order = importance_order(s)
    assert_within_quantisation(s.subset(order), back)
    key = np.exp(s.scales.astype(np.float64).sum(1)) * sigmoid(s.opacities)
    assert np.all(np.diff(key[order]) <= 0)  # decreasing importance


@pytest.mark.parametrize("name", ["fruit_drops_minimal.ply", "donut_fused.ply"])
def test_samples_round_trip(tmp_path, name):
    s = read_ply(sample(name))
    write_splat(s, tmp_path / "x.splat", sort=False)
    assert_within_quantisation(s, read_splat(tmp_path / "x.splat"))


def test_extreme_values_stay_finite(tmp_path):
    s = random_splats(4)
    s.opacities[:] = [-80, 80, 0, 0]
    s.scales[2] = -120.0  # exp underflows float32
    write_splat(s, tmp_path / "e.splat", sort=False)
    back = read_splat(tmp_path / "e.splat")
    back.validate()
    assert sigmoid(back.opacities[0]) < 1 / 255 and sigmoid(back.opacities[1]) > 254 / 255


def test_truncated_names_the_file(tmp_path):
    path = tmp_path / "cut.splat"
    write_splat(random_splats(10), path)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match="multiple of the 32-byte") as exc:
        read_splat(path)
    assert str(path) in str(exc.value) and isinstance(exc.value, SplatFormatError)


def test_garbage_names_the_file(tmp_path):
    path = tmp_path / "junk.splat"
    path.write_bytes(np.full(64, 0xFF, np.uint8).tobytes())  # NaN positions
    with pytest.raises(ValueError, match="not a .splat") as exc:
        read_splat(path)
    assert str(path) in str(exc.value)
