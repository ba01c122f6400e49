"""Tests of the Niantic SPZ reader/writer (splatstudio.splats.spz)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from helpers.splats import random_splats as make_random_splats

from splatstudio.splats.model import SplatFormatError, Splats, sigmoid
from splatstudio.splats.ply import read_ply
from splatstudio.splats.spz import (
    axis_matrix,
    decode_spz,
    encode_spz,
    read_spz,
    read_spz_header,
    write_spz,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "splats"

# Quantisation bounds of the format (half a step; see the module docstring).
POS_TOL = 2.0**-13 + 1e-6  # 12 fraction bits
SCALE_TOL = 1 / 32 + 1e-6
ALPHA_TOL = 0.5 / 255 + 1e-6
SH0_TOL = 0.5 / (0.15 * 255) + 1e-5
QUAT_TOL = 3e-3  # 9-bit smallest-three; the rebuilt largest component dominates
SH1_TOL = 4.5 / 128 + 1e-6  # 5 bits
SHR_TOL = 8.5 / 128 + 1e-6  # 4 bits


def sample(name: str) -> Path:
    path = DATA / name
    if not path.is_file():
        pytest.skip(f"shared sample {path} is missing (shared data not mounted)")
    return path


def random_splats(n: int = 300, degree: int = 3, seed: int = 0) -> Splats:
    return make_random_splats(n, degree, seed, means=("uniform", 50.0), scales=(-9.0, 3.0),
                              opacity_std=4.0, sh0=("uniform", 3.0), shN=("uniform", 0.95))


def quat_error(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.minimum(np.abs(a - b).max(1), np.abs(a + b).max(1)).max())


def errors(orig: Splats, back: Splats) -> dict[str, float]:
    """Per-attribute max abs error against the original clamped to SPZ's ranges."""
    e = {
        "means": np.abs(orig.means - back.means).max(),
        "scales": np.abs(np.clip(orig.scales, -10, 5.9375) - back.scales).max(),
        "alpha": np.abs(sigmoid(orig.opacities) - sigmoid(back.opacities)).max(),
        "sh0": np.abs(np.clip(orig.sh0, -127.5 / 38.25, 127.5 / 38.25) - back.sh0).max(),
        "quats": quat_error(orig.quats, back.quats),
    }
    if orig.shN.shape[1]:
        clipped = np.clip(orig.shN, -1, 1)
        e["sh1"] = np.abs(clipped[:, :3] - back.shN[:, :3]).max()
        if orig.shN.shape[1] > 3:
            e["sh_rest"] = np.abs(clipped[:, 3:] - back.shN[:, 3:]).max()
    return {k: float(v) for k, v in e.items()}


def assert_within_quantisation(orig: Splats, back: Splats, pos_tol: float = POS_TOL) -> dict:
    assert back.n == orig.n and back.shN.shape == orig.shN.shape
    e = errors(orig, back)
    bounds = {"means": pos_tol, "scales": SCALE_TOL, "alpha": ALPHA_TOL, "sh0": SH0_TOL,
              "quats": QUAT_TOL, "sh1": SH1_TOL, "sh_rest": SHR_TOL}  # fmt: skip
    for k, v in e.items():
        assert v <= bounds[k], f"{k}: error {v} exceeds {bounds[k]}"
    return e


# --------------------------------------------------------------------------- biker.spz
def test_biker_header_and_values():
    path = sample("biker.spz")
    h = read_spz_header(path)
    assert (h.version, h.num_points, h.sh_degree, h.fractional_bits) == (4, 152746, 0, 12)
    assert h.num_streams == 5 and h.toc_offset == 32
    s = read_spz(path)
    s.validate()
    assert s.n == 152746 and s.sh_degree == 0
    assert np.allclose(np.linalg.norm(s.quats, axis=1), 1.0, atol=1e-5)
    assert s.scales.min() >= -10 and s.scales.max() <= 5.94
    a = sigmoid(s.opacities)
    assert a.min() > 0 and a.max() < 1 and 0.01 < np.median(a) < 1.0
    assert np.all(np.abs(s.sh0) <= 3.34)
    # plausible object: a few metres across, centred near the origin
    lo, hi = s.means.min(0), s.means.max(0)
    assert np.all(hi - lo > 0.5) and np.all(hi - lo < 10.0)
    assert np.all(np.abs(np.median(s.means, axis=0)) < 3.0)
    # stored in RUB (y up, ground at y = 0): read as RDF by default, so y <= 0
    raw = read_spz(path, coordinate_system=None)
    assert raw.means[:, 1].min() == pytest.approx(0.0, abs=1e-3) and raw.means[:, 1].max() > 1
    assert np.array_equal(s.means, raw.means * np.array([1, -1, -1], np.float32))


def test_biker_reencode_is_byte_identical_for_lossless_streams():
    zstandard = pytest.importorskip("zstandard")
    path = sample("biker.spz")
    orig = path.read_bytes()
    s = read_spz(path)
    mine = encode_spz(s)
    assert mine[:32] == orig[:32]

    def streams(b):
        n = b[15]
        toc = np.frombuffer(b, "<u8", 2 * n, 32)
        off, out = 32 + 16 * n, []
        for i in range(n):
            c = int(toc[2 * i])
            out.append(zstandard.ZstdDecompressor().decompress(b[off : off + c]))
            off += c
        return out

    a, b = streams(orig), streams(mine)
    for i in range(4):  # positions, alphas, colours, scales decode/encode exactly
        assert a[i] == b[i], f"stream {i} differs"
    back, _ = decode_spz(mine)
    assert quat_error(s.quats, back.quats) < 1e-3
    assert np.array_equal(back.means, s.means) and np.array_equal(back.sh0, s.sh0)


# --------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("version", [3, 4])
@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_random_round_trip_within_quantisation(tmp_path, version, degree):
    s = random_splats(400, degree, seed=degree)
    path = tmp_path / "r.spz"
    nbytes = write_spz(s, path, version=version)
    assert nbytes == path.stat().st_size
    head = path.read_bytes()[:4]
    assert head == (b"NGSP" if version == 4 else b"\x1f\x8b\x08\x00")
    assert read_spz_header(path).version == version
    back = read_spz(path)
    assert_within_quantisation(s, back)


def test_sample_round_trips(tmp_path):
    for name in ("fruit_drops_minimal.ply", "donut_fused.ply"):
        s = read_ply(sample(name))
        write_spz(s, tmp_path / "s.spz")
        e = assert_within_quantisation(s, read_spz(tmp_path / "s.spz"))
        assert e["means"] <= POS_TOL
    b = read_spz(sample("biker.spz"))
    write_spz(b, tmp_path / "b.spz", version=3)
    back = read_spz(tmp_path / "b.spz")
    for f in ("means", "scales", "opacities", "sh0"):  # already quantised: exact
        assert np.array_equal(getattr(back, f), getattr(b, f)), f


def test_clamping_outside_the_ranges():
    s = random_splats(10, 1)
    s.scales[0] = [-15, 8, 0]
    s.sh0[1] = 9.0
    s.shN[2] = 3.0
    s.opacities[3] = 50.0
    back, _ = decode_spz(encode_spz(s))
    assert np.allclose(back.scales[0, :2], [-10, 5.9375])
    assert np.allclose(back.sh0[1], 127.5 / 38.25, atol=0.01)
    assert np.allclose(np.abs(back.shN[2]), 1.0, atol=1 / 128)  # range is [-1, 127/128]
    assert np.isfinite(back.opacities).all() and sigmoid(back.opacities[3]) > 0.998


def test_full_precision_sh_bits():
    s = random_splats(50, 3)
    back, _ = decode_spz(encode_spz(s, sh1_bits=8, sh_rest_bits=8))
    assert np.abs(np.clip(s.shN, -1, 1) - back.shN).max() <= 0.5 / 128 + 1e-6


def test_large_coordinates_lower_the_fraction_bits():
    s = random_splats(20, 0)
    s.means[0] = [150_000.0, -20.0, 3.0]  # 150 km: needs 18 integer bits -> 5 fraction bits
    data = encode_spz(s)
    back, h = decode_spz(data)
    assert h.fractional_bits == 5
    assert np.abs(back.means - s.means).max() <= 2.0**-6 + 0.02
    with pytest.raises(ValueError, match="fraction bits"):
        encode_spz(s, fractional_bits=12)
    s.means[0, 0] = 1e7
    with pytest.raises(ValueError, match="too large"):
        encode_spz(s)


def test_antialiased_flag_round_trips():
    s = random_splats(5, 0)
    s.antialiased = True
    back, h = decode_spz(encode_spz(s))
    assert h.antialiased and back.antialiased


def test_empty():
    back, h = decode_spz(encode_spz(Splats.empty(0, 1)))
    assert back.n == 0 and h.num_points == 0


# --------------------------------------------------------------------------- frames
def test_axis_matrices():
    assert np.array_equal(axis_matrix("RDF", "RUB"), np.diag([1.0, -1, -1]))
    assert np.array_equal(axis_matrix("ENU", "RUB"), [[1, 0, 0], [0, 0, 1], [0, -1, 0]])
    assert np.array_equal(axis_matrix(None, "RUB"), np.eye(3))
    m = axis_matrix("LFD", "RUB") @ axis_matrix("RUB", "LFD")
    assert np.array_equal(m, np.eye(3))
    with pytest.raises(ValueError):
        axis_matrix("RRB", "RUB")
    with pytest.raises(ValueError):
        axis_matrix("XYZ", "RUB")


@pytest.mark.parametrize("frame", ["RDF", "RUB", "ENU", "LUF", None])
def test_in_memory_frame_unchanged_on_round_trip(frame):
    s = random_splats(300, 3)
    s.shN *= 0.4  # rotated SH must stay inside SPZ's [-1, 1] range
    back, _ = decode_spz(encode_spz(s, coordinate_system=frame), coordinate_system=frame)
    if frame in ("ENU", "LUF"):  # cross-family: SH bands are rotated before quantisation,
        # so the per-coefficient error may grow by up to sqrt(2l + 1) (orthogonal mixing)
        e = errors(s, back)
        assert e["means"] <= POS_TOL and e["quats"] <= QUAT_TOL and e["alpha"] <= ALPHA_TOL
        assert e["sh1"] <= SH1_TOL * np.sqrt(3) and e["sh_rest"] <= SHR_TOL * np.sqrt(7)
    else:
        assert_within_quantisation(s, back)


def test_stored_frame_is_rub():
    s = random_splats(10, 1)
    raw, _ = decode_spz(encode_spz(s, coordinate_system="ENU"), coordinate_system=None)
    # ENU (x east, y north, z up) -> RUB (x right, y up, z back = south)
    expected = s.means[:, [0, 2, 1]] * np.array([1, 1, -1], np.float32)
    assert np.abs(raw.means - expected).max() <= POS_TOL


# --------------------------------------------------------------------------- legacy versions
def _legacy_file(s: Splats, version: int) -> bytes:
    """Hand-built version 1/2 file: float16 (v1) or 24-bit positions, xyz rotations."""
    n = s.n
    if version == 1:
        pos = s.means.astype("<f2").tobytes()
    else:
        fixed = np.round(s.means.astype(np.float64) * 4096).astype(np.int64).reshape(-1)
        pos = (fixed & 0xFFFFFF).astype("<u4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    alpha = np.round(sigmoid(s.opacities) * 255).astype(np.uint8).tobytes()
    color = np.clip(np.round(s.sh0.reshape(-1) * 0.15 * 255 + 127.5), 0, 255).astype(np.uint8)
    scale = np.clip(np.round((s.scales.reshape(-1) + 10) * 16), 0, 255).astype(np.uint8)
    q = s.normalized_quats()[:, [1, 2, 3, 0]]
    q = np.where(q[:, 3:] < 0, -q, q)
    rot = np.clip(np.round(q[:, :3] * 127.5 + 127.5), 0, 255).astype(np.uint8)
    sh = np.clip(np.round(s.shN.reshape(n, -1) * 128 + 128), 0, 255).astype(np.uint8)
    header = struct.pack("<IIIBBBB", 0x5053474E, version, n, s.sh_degree, 12, 0, 0)
    body = header + pos + alpha + color.tobytes() + scale.tobytes() + rot.tobytes()
    return gzip.compress(body + sh.tobytes())


@pytest.mark.parametrize("version", [1, 2])
def test_reads_legacy_versions(tmp_path, version):
    s = random_splats(100, 1)
    s.means /= 20  # float16 positions need small coordinates
    path = tmp_path / f"v{version}.spz"
    path.write_bytes(_legacy_file(s, version))
    assert read_spz_header(path).version == version
    back = read_spz(path, coordinate_system=None)
    pos_tol = 2e-3 if version == 1 else POS_TOL
    assert np.abs(back.means - s.means).max() <= pos_tol
    assert quat_error(s.quats, back.quats) < 0.1  # 8-bit xyz; w rebuilt (poor when w ~ 0)
    assert np.abs(np.clip(s.shN, -1, 1) - back.shN).max() <= 0.5 / 128 + 1e-6


def test_skips_v4_extension_records():
    s = random_splats(30, 1)
    data = bytearray(encode_spz(s))
    ext = struct.pack("<II", 0xADBE0002, 12) + struct.pack("<fff", 0.1, 0.2, 0.3)
    data[14] |= 0x2  # flags: has extensions
    data[16:20] = struct.pack("<I", 32 + len(ext))  # tocByteOffset
    data = bytes(data[:32]) + ext + bytes(data[32:])
    back, h = decode_spz(data)
    ref, _ = decode_spz(encode_spz(s))
    assert h.toc_offset == 52 and np.array_equal(back.means, ref.means)


# --------------------------------------------------------------------------- bad input
def test_wrong_magic_names_the_file(tmp_path):
    path = tmp_path / "bad.spz"
    path.write_bytes(b"XXXX" + bytes(60))
    with pytest.raises(ValueError, match="wrong magic") as exc:
        read_spz(path)
    assert str(path) in str(exc.value) and isinstance(exc.value, SplatFormatError)
    path.write_bytes(gzip.compress(b"XXXX" + bytes(60)))
    with pytest.raises(ValueError, match="wrong magic"):
        read_spz(path)


@pytest.mark.parametrize("version", [3, 4])
@pytest.mark.parametrize("keep", [0.5, 0.999, 20])
def test_truncated_names_the_file(tmp_path, version, keep):
    data = encode_spz(random_splats(500, 2), version=version)
    cut = int(len(data) * keep) if keep < 1 else keep
    path = tmp_path / "cut.spz"
    path.write_bytes(data[:cut])
    with pytest.raises(ValueError, match="truncated") as exc:
        read_spz(path)
    assert str(path) in str(exc.value)


def test_unsupported_version_and_corrupt_stream(tmp_path):
    data = bytearray(encode_spz(random_splats(20, 0)))
    data[4] = 9
    path = tmp_path / "v9.spz"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="unsupported SPZ version 9") as exc:
        read_spz(path)
    assert str(path) in str(exc.value)
    data[4] = 4
    data[200:260] = bytes(60)  # damage the first ZSTD stream (frames carry checksums)
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError) as exc:
        read_spz(path)
    assert str(path) in str(exc.value)


def test_write_options_are_checked():
    s = random_splats(3, 1)
    with pytest.raises(ValueError, match="version"):
        encode_spz(s, version=1)
    with pytest.raises(ValueError, match="sh1_bits"):
        encode_spz(s, sh1_bits=9)


def test_version_2_writing_three_byte_rotations():
    """SPZ v2 (gzip, rotations as x, y, z bytes with w >= 0), what CesiumJS also reads: the
    file is v2, one byte shorter per gaussian than v3, and reads back within the v2 rounding
    (w rebuilt from the unit norm: coarse where w ~ 0)."""
    s = random_splats(2000, 1)
    v2, v3 = encode_spz(s, version=2), encode_spz(s, version=3)
    back, h = decode_spz(v2)
    assert h.version == 2 and back.n == s.n
    assert len(gzip.decompress(v2)) == len(gzip.decompress(v3)) - s.n
    a, b = back.normalized_quats(), s.normalized_quats()
    ang = np.degrees(2 * np.arccos(np.clip(np.abs((a * b).sum(1)), 0, 1)))
    assert np.median(ang) < 1.0 and ang.max() < 15.0
    np.testing.assert_allclose(back.means, s.means, atol=2.0**-12)
