"""Tests of the SuperSplat/PlayCanvas compressed PLY (splatstudio.splats.compressed_ply)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.splats import random_splats as make_random_splats
from numpy.lib.recfunctions import repack_fields

from splatstudio.splats.compressed_ply import (
    CHUNK_SIZE,
    morton_order,
    read_compressed_ply,
    write_compressed_ply,
)
from splatstudio.splats.model import SH_C0, SplatFormatError, Splats, sigmoid
from splatstudio.splats.ply import read_ply, read_ply_elements, read_ply_header

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "splats"
ALPHA_TOL = 0.5 / 255 + 1e-6
QUAT_TOL = 3e-3  # 10-bit smallest three; the rebuilt largest component dominates
SHN_TOL = 1 / 32 + 1e-6  # 1/64 inside, 1/32 in the end buckets


def sample(name: str) -> Path:
    path = DATA / name
    if not path.is_file():
        pytest.skip(f"shared sample {path} is missing (shared data not mounted)")
    return path


def random_splats(n: int = 1000, degree: int = 3, seed: int = 0) -> Splats:
    return make_random_splats(n, degree, seed, means=("normal", 5.0), scales=(-9.0, 1.0),
                              opacity_std=4.0, shN=("uniform", 3.9))


def quat_error(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.minimum(np.abs(a - b).max(1), np.abs(a + b).max(1)).max())


def chunk_bounds(path: Path, n: int) -> dict[str, np.ndarray]:
    """Per-gaussian half quantisation steps implied by the file's chunk ranges."""
    ch = read_ply_elements(path, ["chunk"])["chunk"]
    ci = np.arange(n) // CHUNK_SIZE

    def rng(a, b):
        return np.stack([ch[f"max_{b}{x}"] - ch[f"min_{b}{x}"] for x in a], 1)[ci]

    steps = np.array([2 * 2047, 2 * 1023, 2 * 2047], np.float64)
    return {
        "means": rng("xyz", "") / steps + 1e-6,
        "scales": rng("xyz", "scale_") / steps + 1e-5,
        "rgb": rng("rgb", "") / 510 + 1e-6,
    }


def assert_within_quantisation(orig: Splats, back: Splats, path: Path) -> dict:
    assert back.n == orig.n and back.shN.shape == orig.shN.shape
    b = chunk_bounds(path, orig.n)
    rgb_o = 0.5 + SH_C0 * orig.sh0[:, 0].astype(np.float64)
    rgb_b = 0.5 + SH_C0 * back.sh0[:, 0].astype(np.float64)
    e = {
        "means": np.abs(orig.means - back.means),
        "scales": np.abs(np.clip(orig.scales, -20, 20) - back.scales),
        "rgb": np.abs(rgb_o - rgb_b),
    }
    for k, err in e.items():
        assert np.all(err <= b[k]), f"{k}: error {err.max()} exceeds the chunk step"
    out = {k: float(v.max()) for k, v in e.items()}
    out["alpha"] = float(np.abs(sigmoid(orig.opacities) - sigmoid(back.opacities)).max())
    out["quats"] = quat_error(orig.quats, back.quats)
    assert out["alpha"] <= ALPHA_TOL and out["quats"] <= QUAT_TOL
    if orig.shN.shape[1]:
        out["shN"] = float(np.abs(np.clip(orig.shN, -4, 4) - back.shN).max())
        assert out["shN"] <= SHN_TOL
    return out


def test_read_guitar():
    path = sample("guitar.compressed.ply")
    header = read_ply_header(path)
    assert header.element("chunk").count == 355
    s = read_compressed_ply(path)
    s.validate()
    assert s.n == 90854 and s.sh_degree == 0
    assert np.allclose(np.linalg.norm(s.quats, axis=1), 1.0, atol=1e-5)
    lo, hi = s.means.min(0), s.means.max(0)
    assert np.all(hi - lo > 0.3) and np.all(hi - lo < 10)
    # every centre lies inside its chunk's box
    ch = read_ply_elements(path, ["chunk"])["chunk"]
    ci = np.arange(s.n) // CHUNK_SIZE
    for j, ax in enumerate("xyz"):
        assert np.all(s.means[:, j] >= ch[f"min_{ax}"][ci] - 1e-5)
        assert np.all(s.means[:, j] <= ch[f"max_{ax}"][ci] + 1e-5)


def test_guitar_reencode_reproduces_packed_words(tmp_path):
    path = sample("guitar.compressed.ply")
    s = read_compressed_ply(path)
    out = tmp_path / "g.compressed.ply"
    write_compressed_ply(s, out, sort=False)
    a = read_ply_elements(path, ["vertex"])["vertex"]
    b = read_ply_elements(out, ["vertex"])["vertex"]
    for f in ("packed_position", "packed_scale", "packed_color"):
        assert np.array_equal(a[f], b[f]), f
    assert np.mean(a["packed_rotation"] == b["packed_rotation"]) > 0.99
    back = read_compressed_ply(out)
    assert np.abs(back.means - s.means).max() < 1e-6
    assert quat_error(s.quats, back.quats) < 2e-3


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_random_round_trip_within_quantisation(tmp_path, degree):
    s = random_splats(1000, degree, seed=degree)  # 4 chunks, the last one partial
    path = tmp_path / "r.compressed.ply"
    nbytes = write_compressed_ply(s, path, sort=False)
    assert nbytes == path.stat().st_size
    header = read_ply_header(path)
    assert [e.name for e in header.elements] == ["chunk", "vertex"] + (["sh"] if degree else [])
    assert header.element("chunk").count == 4
    assert_within_quantisation(s, read_compressed_ply(path), path)


@pytest.mark.parametrize("name", ["fruit_drops_minimal.ply", "donut_fused.ply"])
def test_samples_round_trip_morton_sorted(tmp_path, name):
    s = read_ply(sample(name))
    path = tmp_path / "s.compressed.ply"
    write_compressed_ply(s, path)
    assert_within_quantisation(s.subset(morton_order(s.means)), read_compressed_ply(path), path)


def test_morton_sorting_tightens_chunks(tmp_path):
    s = read_ply(sample("donut_fused.ply"))
    sorted_path, raw_path = tmp_path / "a.ply", tmp_path / "b.ply"
    write_compressed_ply(s, sorted_path)
    write_compressed_ply(s.subset(np.random.default_rng(0).permutation(s.n)), raw_path, sort=False)
    a = read_ply_elements(sorted_path, ["chunk"])["chunk"]
    b = read_ply_elements(raw_path, ["chunk"])["chunk"]
    assert np.median(a["max_x"] - a["min_x"]) < 0.25 * np.median(b["max_x"] - b["min_x"])


def test_old_files_without_chunk_colours(tmp_path):
    s = random_splats(300, 0)
    s.sh0 = np.clip(s.sh0, -1.7, 1.7)  # colours inside [0, 1]: no per-chunk colour range
    path = tmp_path / "new.ply"
    write_compressed_ply(s, path, sort=False)
    els = read_ply_elements(path)
    ch, vx = els["chunk"], els["vertex"].copy()
    rgb = 0.5 + SH_C0 * s.sh0[:, 0].astype(np.float64)
    c = np.clip(np.floor(rgb * 255 + 0.5), 0, 255).astype(np.uint32)
    vx["packed_color"] = (
        (c[:, 0] << 24) | (c[:, 1] << 16) | (c[:, 2] << 8) | (vx["packed_color"] & 0xFF)
    )
    names = [n for n in ch.dtype.names if not n.endswith(("_r", "_g", "_b"))]
    header = "ply\nformat binary_little_endian 1.0\n"
    header += f"element chunk {len(ch)}\n" + "".join(f"property float {n}\n" for n in names)
    header += f"element vertex {len(vx)}\n" + "".join(
        f"property uint {n}\n" for n in vx.dtype.names
    )
    old = tmp_path / "old.ply"
    old.write_bytes(
        (header + "end_header\n").encode() + repack_fields(ch[names]).tobytes() + vx.tobytes()
    )
    back = read_compressed_ply(old)
    assert np.abs(0.5 + SH_C0 * back.sh0[:, 0] - rgb).max() <= 0.5 / 255 + 1e-6


def test_empty(tmp_path):
    write_compressed_ply(Splats.empty(0, 1), tmp_path / "e.ply")
    back = read_compressed_ply(tmp_path / "e.ply")
    assert back.n == 0 and back.sh_degree == 1


def _write_header_only(path: Path, chunks: int, vertices: int, sh: int = 0) -> None:
    h = "ply\nformat binary_little_endian 1.0\n"
    props = ["min_x", "min_y", "min_z", "max_x", "max_y", "max_z"]
    props += [f"{m}_scale_{a}" for m in ("min", "max") for a in "xyz"]
    h += f"element chunk {chunks}\n" + "".join(f"property float {p}\n" for p in props)
    h += f"element vertex {vertices}\n" + "".join(
        f"property uint packed_{p}\n" for p in ("position", "rotation", "scale", "color")
    )
    if sh:
        h += f"element sh {vertices}\n" + "".join(f"property uchar f_rest_{i}\n" for i in range(sh))
    path.write_bytes((h + "end_header\n").encode())


@pytest.mark.parametrize(
    "chunks, vertices, sh, message",
    [(3, 256, 0, "3 chunks for 256"), (1, 256, 10, "10 coefficients"), (1, 256, 0, "truncated")],
)
def test_bad_files_name_the_file(tmp_path, chunks, vertices, sh, message):
    path = tmp_path / "bad.compressed.ply"
    _write_header_only(path, chunks, vertices, sh)
    with pytest.raises(ValueError, match=message) as exc:
        read_compressed_ply(path)
    assert str(path) in str(exc.value) and isinstance(exc.value, SplatFormatError)


def test_truncated_and_wrong_magic_name_the_file(tmp_path):
    src = sample("guitar.compressed.ply")
    path = tmp_path / "cut.compressed.ply"
    path.write_bytes(src.read_bytes()[:100_000])
    with pytest.raises(ValueError, match="truncated") as exc:
        read_compressed_ply(path)
    assert str(path) in str(exc.value)
    path.write_bytes(b"PLY?" + src.read_bytes()[4:2000])
    with pytest.raises(ValueError, match="not a PLY") as exc:
        read_compressed_ply(path)
    assert str(path) in str(exc.value)
    with pytest.raises(ValueError, match="chunk"):
        read_compressed_ply(sample("donut_fused.ply"))
