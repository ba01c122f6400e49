"""Tests of the standard INRIA 3DGS PLY reader/writer (splatstudio.splats.ply)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.splats import random_splats as make_random_splats

from splatstudio.splats.model import SplatFormatError, Splats, num_sh_coeffs
from splatstudio.splats.ply import (
    ply_property_names,
    read_ply,
    read_ply_elements,
    read_ply_header,
    write_ply,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "splats"
FIELDS = ("means", "quats", "scales", "opacities", "sh0", "shN")


def sample(name: str) -> Path:
    path = DATA / name
    if not path.is_file():
        pytest.skip(f"shared sample {path} is missing (shared data not mounted)")
    return path


def random_splats(n: int = 100, degree: int = 3, seed: int = 0) -> Splats:
    return make_random_splats(n, degree, seed)


def assert_identical(a: Splats, b: Splats) -> None:
    for f in FIELDS:
        assert np.array_equal(getattr(a, f), getattr(b, f)), f


def test_read_fruit_sh3_with_extra_transform_property():
    path = sample("fruit_drops_minimal.ply")
    header = read_ply_header(path)
    assert "transform" in header.element("vertex").names
    s = read_ply(path)
    assert s.n == 4721 and s.sh_degree == 3
    s.validate()
    # f_rest is channel-major in the file: f_rest_{c*15+k} == shN[:, k, c]
    raw = read_ply_elements(path, ["vertex"])["vertex"]
    for c in range(3):
        for k in (0, 7, 14):
            assert np.array_equal(raw[f"f_rest_{c * 15 + k}"], s.shN[:, k, c])
    assert np.array_equal(raw["rot_0"], s.quats[:, 0])  # w first
    assert np.array_equal(raw["opacity"], s.opacities)


def test_read_donut_sh0_without_normals():
    path = sample("donut_fused.ply")
    assert "nx" not in read_ply_header(path).element("vertex").names
    s = read_ply(path)
    assert s.n == 45624 and s.sh_degree == 0 and s.shN.shape == (45624, 0, 3)
    s.validate()


@pytest.mark.parametrize("name", ["fruit_drops_minimal.ply", "donut_fused.ply"])
@pytest.mark.parametrize("normals", [True, False])
def test_sample_round_trip_is_exact(tmp_path, name, normals):
    s = read_ply(sample(name))
    out = tmp_path / "rt.ply"
    nbytes = write_ply(s, out, include_normals=normals)
    assert nbytes == out.stat().st_size
    back = read_ply(out)
    assert_identical(s, back)
    per = (3 + 3 * normals + 3 + 3 * s.shN.shape[1] + 8) * 4
    assert out.stat().st_size - s.n * per < 2048  # header only on top of the table


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_every_sh_degree_round_trips_and_layout(tmp_path, degree):
    s = random_splats(57, degree, seed=degree)
    out = tmp_path / f"d{degree}.ply"
    write_ply(s, out)
    header = read_ply_header(out)
    assert header.format == "binary_little_endian"
    assert header.element("vertex").names == ply_property_names(degree)
    assert all(t == "f4" for _, t in header.element("vertex").properties)
    assert_identical(s, read_ply(out))
    k = num_sh_coeffs(degree)
    raw = read_ply_elements(out)["vertex"]
    for c in range(3):
        for j in range(k):
            assert np.array_equal(raw[f"f_rest_{c * k + j}"], s.shN[:, j, c])


def test_empty_splats_round_trip(tmp_path):
    s = Splats.empty(0, 2)
    write_ply(s, tmp_path / "e.ply")
    back = read_ply(tmp_path / "e.ply")
    assert back.n == 0 and back.sh_degree == 2


def test_other_encodings_via_plyfile(tmp_path):
    plyfile = pytest.importorskip("plyfile")
    s = random_splats(20, 1)
    names = ply_property_names(1, include_normals=False)
    cols = [s.means, s.sh0[:, 0], s.shN.transpose(0, 2, 1).reshape(20, 9),
            s.opacities[:, None], s.scales, s.quats]  # fmt: skip
    table = np.concatenate(cols, axis=1)
    # doubles, big endian and ASCII, plus an extra uchar property and a face element
    arr = np.empty(20, dtype=[(n, ">f8") for n in names] + [("red", "u1")])
    for j, n in enumerate(names):
        arr[n] = table[:, j]
    arr["red"] = 7
    faces = np.array([([0, 1, 2],)], dtype=[("vertex_indices", "O")])
    for text, byte_order in ((False, ">"), (True, "=")):
        el = plyfile.PlyElement.describe(arr, "vertex")
        fe = plyfile.PlyElement.describe(faces, "face")
        path = tmp_path / f"t{int(text)}.ply"
        plyfile.PlyData([el, fe], text=text, byte_order=byte_order).write(str(path))
        back = read_ply(path)
        for f in FIELDS:
            assert np.allclose(getattr(back, f), getattr(s, f), atol=1e-6), f


def test_degree4_file_is_truncated_to_degree3(tmp_path):
    s = random_splats(5, 0)
    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(72)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    rest = np.arange(5 * 72, dtype=np.float32).reshape(5, 72)
    table = np.concatenate(
        [s.means, s.sh0[:, 0], rest, s.opacities[:, None], s.scales, s.quats], axis=1
    ).astype("<f4")
    header = "ply\nformat binary_little_endian 1.0\nelement vertex 5\n"
    header += "".join(f"property float {n}\n" for n in names) + "end_header\n"
    path = tmp_path / "deg4.ply"
    path.write_bytes(header.encode() + table.tobytes())
    with pytest.warns(UserWarning, match="degree 4"):
        back = read_ply(path)
    assert back.sh_degree == 3
    assert np.array_equal(back.shN[:, :, 1], rest[:, 24:39])  # channel G, first 15 coeffs


# --------------------------------------------------------------------------- bad input
def test_truncated_file_names_the_file(tmp_path):
    s = random_splats(50, 3)
    path = tmp_path / "cut.ply"
    write_ply(s, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(ValueError, match="truncated") as exc:
        read_ply(path)
    assert str(path) in str(exc.value)
    assert isinstance(exc.value, SplatFormatError)


def test_wrong_magic_names_the_file(tmp_path):
    path = tmp_path / "bad.ply"
    path.write_bytes(b"PNG\x00" + b"\x00" * 100)
    with pytest.raises(ValueError, match="not a PLY") as exc:
        read_ply(path)
    assert str(path) in str(exc.value)


@pytest.mark.parametrize(
    "header, message",
    [
        ("ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float x\n",
         "end_header"),
        ("ply\nformat binary_middle_endian 1.0\nend_header\n", "format"),
        ("ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float128 x\n"
         "end_header\n", "property"),
        ("ply\nformat binary_little_endian 1.0\nelement face 0\nend_header\n", "vertex"),
        ("ply\nformat binary_little_endian 1.0\nelement vertex 0\nproperty float x\n"
         "property float y\nproperty float z\nend_header\n", "f_dc_0"),
    ],
)  # fmt: skip
def test_malformed_headers(tmp_path, header, message):
    path = tmp_path / "h.ply"
    path.write_bytes(header.encode())
    with pytest.raises(ValueError, match=message) as exc:
        read_ply(path)
    assert str(path) in str(exc.value)


def test_compressed_ply_is_rejected_with_a_hint():
    with pytest.raises(ValueError, match="compressed"):
        read_ply(sample("guitar.compressed.ply"))


def test_write_rejects_invalid_splats(tmp_path):
    s = random_splats(3, 1)
    s.means[0, 0] = np.inf
    with pytest.raises(ValueError, match="means has non-finite"):
        write_ply(s, tmp_path / "x.ply")


def test_header_with_crlf_and_end_header_in_a_comment(tmp_path):
    s = random_splats(4, 0)
    path = tmp_path / "c.ply"
    write_ply(s, path, comments=("mentions end_header inside", "second"))
    assert read_ply_header(path).comments == ("mentions end_header inside", "second")
    assert_identical(s, read_ply(path))
    data = path.read_bytes()
    head, body = data.split(b"end_header\n", 1)
    path.write_bytes(head.replace(b"\n", b"\r\n") + b"end_header\r\n" + body)
    assert_identical(s, read_ply(path))
