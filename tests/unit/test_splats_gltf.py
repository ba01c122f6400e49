"""glTF KHR_gaussian_splatting GLB (float attributes or an SPZ payload) and 3D Tiles tilesets:
structure as the specifications state it, round trips within each encoding's precision, axes,
errors on bad input, and the merged levels of detail."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from helpers.splats import random_splats as make_random_splats

from splatstudio.geo.enu import GeoOrigin, enu_to_ecef_matrix
from splatstudio.quaternion import quat_to_rotmat
from splatstudio.splats import detect_format, load_splats, save_splats
from splatstudio.splats.gltf import (
    EXT_SPLAT,
    EXT_SPZ,
    _read_accessor,
    decode_glb_splat,
    encode_glb_splat,
    gltf_matrix,
    parse_glb,
)
from splatstudio.splats.model import SplatFormatError, Splats, sigmoid
from splatstudio.splats.spz import decode_spz
from splatstudio.splats.tiles3d import merge_gaussians, read_tileset, tileset_leaves, write_tileset

ORIGIN = GeoOrigin(49.00688961988304, 1.9191854417991367, 92.8606)


def _splats(n=500, degree=3, seed=0, spread=10.0) -> Splats:
    return make_random_splats(n, degree, seed, means=("normal", spread), scales=(-4.0, -1.0),
                              sh0=("normal", 0.8), shN=("normal", 0.2))


def test_float_glb_structure_and_values_follow_the_spec(tmp_path):
    s = _splats(degree=2)
    path = tmp_path / "a.glb"
    save_splats(s, path, coordinate_system="ENU")
    assert detect_format(path) == "glb_splat"
    gltf, binary = parse_glb(path.read_bytes())
    assert gltf["asset"]["version"] == "2.0" and gltf["extensionsUsed"] == [EXT_SPLAT]
    prim = gltf["meshes"][0]["primitives"][0]
    assert prim["mode"] == 0  # POINTS
    ext = prim["extensions"][EXT_SPLAT]
    assert ext["kernel"] == "ellipse" and ext["colorSpace"] == "srgb_rec709_display"
    attrs = prim["attributes"]
    # SH degree 2: 3 + 5 coefficients after the DC, none of degree 3
    assert {f"{EXT_SPLAT}:SH_DEGREE_{b}_COEF_{c}" for b, n in ((1, 3), (2, 5))
            for c in range(n)} <= set(attrs)  # fmt: skip
    assert f"{EXT_SPLAT}:SH_DEGREE_3_COEF_0" not in attrs

    def acc(sem):
        return _read_accessor(gltf, binary, attrs[sem], "a")

    m = gltf_matrix("ENU")  # x east, y up, z south
    assert np.array_equal(m, [[1, 0, 0], [0, 0, 1], [0, -1, 0]])
    g = s.transformed(m)
    np.testing.assert_array_equal(acc("POSITION"), g.means)
    pos_acc = gltf["accessors"][attrs["POSITION"]]
    np.testing.assert_allclose(pos_acc["min"], g.means.min(0))
    np.testing.assert_allclose(acc(f"{EXT_SPLAT}:SCALE"), np.exp(s.scales), rtol=1e-6)  # linear
    np.testing.assert_allclose(acc(f"{EXT_SPLAT}:OPACITY")[:, 0], sigmoid(s.opacities), atol=1e-7)
    rot = acc(f"{EXT_SPLAT}:ROTATION")  # unit xyzw
    np.testing.assert_allclose(np.linalg.norm(rot, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(quat_to_rotmat(rot[:, [3, 0, 1, 2]]),
                               quat_to_rotmat(g.quats), atol=1e-6)  # fmt: skip
    np.testing.assert_array_equal(acc(f"{EXT_SPLAT}:SH_DEGREE_0_COEF_0"), s.sh0[:, 0])
    np.testing.assert_array_equal(acc(f"{EXT_SPLAT}:SH_DEGREE_2_COEF_4"), g.shN[:, 7])
    col = acc("COLOR_0")  # linear fallback colour, alpha = opacity
    assert col.shape == (s.n, 4)
    np.testing.assert_allclose(col[:, 3], sigmoid(s.opacities), atol=0.5 / 255 + 1e-6)
    # read back: the same splat in ENU
    back = load_splats(path, coordinate_system="ENU")
    np.testing.assert_array_equal(back.means, s.means)
    np.testing.assert_allclose(back.shN, s.shN, atol=1e-6)
    np.testing.assert_allclose(sigmoid(back.opacities), sigmoid(s.opacities), atol=1e-6)


def test_enu_up_is_gltf_up_and_ply_maps_like_splat_transform():
    up = np.array([0.0, 0.0, 1.0])
    assert np.array_equal(gltf_matrix("ENU") @ up, [0, 1, 0])  # ENU up -> +Y
    north = np.array([0.0, 1.0, 0.0])
    assert np.array_equal(gltf_matrix("ENU") @ north, [0, 0, -1])  # 3D Tiles: -Z is north
    assert np.array_equal(gltf_matrix("RDF"), np.diag([-1.0, -1.0, 1.0]))
    assert np.array_equal(gltf_matrix(None), np.eye(3))


@pytest.mark.parametrize("version", [2, 3])
def test_spz_glb_payload_and_accessors(version):
    s = _splats(n=800)
    data = encode_glb_splat(s, coordinate_system="ENU", spz=True, spz_version=version)
    gltf, binary = parse_glb(data)
    assert gltf["extensionsUsed"] == [EXT_SPLAT, EXT_SPZ]
    assert gltf["extensionsRequired"] == [EXT_SPLAT, EXT_SPZ]
    prim = gltf["meshes"][0]["primitives"][0]
    spz = prim["extensions"][EXT_SPLAT]["extensions"][EXT_SPZ]
    assert spz["bufferView"] == 0  # CesiumJS reads the blob from bufferView 0
    for sem, i in prim["attributes"].items():
        a = gltf["accessors"][i]
        assert "bufferView" not in a and a["count"] == s.n, sem
    assert f"{EXT_SPLAT}:SH_DEGREE_3_COEF_6" in prim["attributes"]
    view = gltf["bufferViews"][0]
    blob = binary[view.get("byteOffset", 0) : view["byteOffset"] + view["byteLength"]]
    assert blob[:2] == b"\x1f\x8b"  # gzip: SPZ v2/v3
    raw, header = decode_spz(blob, coordinate_system=None)
    assert header.version == version
    # the payload holds glTF-axis values, as CesiumJS uses them
    np.testing.assert_allclose(raw.means, s.transformed(gltf_matrix("ENU")).means, atol=2.0**-12)
    back, info = decode_glb_splat(data, coordinate_system="ENU")
    assert info["compression"] == "spz" and info["spz_version"] == version
    np.testing.assert_allclose(back.means, s.means, atol=2.0**-12)
    a, b = back.normalized_quats(), s.normalized_quats()
    ang = np.degrees(2 * np.arccos(np.clip(np.abs((a * b).sum(1)), 0, 1)))
    # v3: smallest three, 9 bits; v2: x, y, z in 8 bits and w rebuilt, poor when w ~ 0
    assert ang.max() < (0.25 if version == 3 else 15.0) and np.median(ang) < 1.0
    # the extension text's LUF option negates x and z in the payload
    luf = encode_glb_splat(s, coordinate_system="ENU", spz=True, spz_axes="LUF")
    g2, bin2 = parse_glb(luf)
    raw2, _ = decode_spz(bin2[: g2["bufferViews"][0]["byteLength"]], coordinate_system=None)
    np.testing.assert_allclose(raw2.means[:, [0, 2]], -raw.means[:, [0, 2]], atol=2.0**-11)


def test_bad_glb_files_are_refused_with_the_file_name(tmp_path):
    p = tmp_path / "x.glb"
    p.write_bytes(b"glTF" + struct.pack("<II", 1, 20) + b"\0" * 8)
    with pytest.raises(SplatFormatError, match="x.glb.*version 1"):
        load_splats(p)
    # a mesh GLB (no splat extension)
    gltf = {"asset": {"version": "2.0"}, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
            "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
            "accessors": [], "bufferViews": [], "buffers": []}  # fmt: skip
    from splatstudio.splats.gltf import build_glb

    p.write_bytes(build_glb(gltf, b""))
    with pytest.raises(SplatFormatError, match="x.glb.*KHR_gaussian_splatting"):
        load_splats(p)
    # negative scales are invalid
    data = encode_glb_splat(_splats(n=10), coordinate_system=None)
    g, binary = parse_glb(data)
    i = g["meshes"][0]["primitives"][0]["attributes"][f"{EXT_SPLAT}:SCALE"]
    off = g["bufferViews"][g["accessors"][i]["bufferView"]]["byteOffset"]
    binary = bytearray(binary)
    binary[off : off + 4] = struct.pack("<f", -1.0)
    p.write_bytes(build_glb(g, bytes(binary)))
    with pytest.raises(SplatFormatError, match="negative SCALE"):
        load_splats(p)
    with pytest.raises(ValueError, match="spz_version"):
        encode_glb_splat(_splats(n=10), spz=True, spz_version=4)


def test_merge_gaussians_keeps_mass_centre_and_coverage():
    rng = np.random.default_rng(1)
    s = _splats(n=4000, degree=1, spread=5.0)
    s.opacities[:] = 2.0
    merged, cell = merge_gaussians(s, 500)
    assert merged.n <= 500 and cell > 0
    w = sigmoid(s.opacities) * np.pi * np.sort(np.exp(s.scales), 1)[:, 1:].prod(1)
    centre = (s.means * w[:, None]).sum(0) / w.sum()
    wm = sigmoid(merged.opacities) * np.pi * np.sort(np.exp(merged.scales), 1)[:, 1:].prod(1)
    centre_m = (merged.means * wm[:, None]).sum(0) / wm.sum()
    assert np.linalg.norm(centre - centre_m) < 0.5  # the weighted centre barely moves
    # merged gaussians are larger, inside the bounds, and cover the same extent
    assert np.exp(merged.scales).max(1).mean() > np.exp(s.scales).max(1).mean()
    assert np.all(merged.means >= s.means.min(0) - 1e-3)
    assert np.all(merged.means <= s.means.max(0) + 1e-3)
    same, zero = merge_gaussians(s.subset(np.arange(10)), 500)
    assert same.n == 10 and zero == 0.0
    _ = rng


def test_tileset_structure_georeference_and_leaves(tmp_path):
    s = _splats(n=6000, degree=2, spread=30.0)
    m = enu_to_ecef_matrix(ORIGIN)
    info = write_tileset(s, tmp_path / "t", m, max_per_tile=1000, sh_degree=1, min_opacity=0.2)
    kept = sigmoid(s.opacities) >= 0.2
    assert info["gaussians"] == int(kept.sum()) and info["splats"].sh_degree == 1
    assert info["tiles"] > info["leaves"] > 1
    ts = read_tileset(tmp_path / "t" / "tileset.json")
    raw = json.loads((tmp_path / "t" / "tileset.json").read_text())
    assert raw["asset"]["version"] == "1.1"
    assert raw["extensionsUsed"] == ["3DTILES_content_gltf"]
    assert set(raw["extensions"]["3DTILES_content_gltf"]["extensionsRequired"]) == {EXT_SPLAT,
                                                                                    EXT_SPZ}  # fmt: skip
    np.testing.assert_array_equal(ts["root_transform"], m)  # float64, column-major on disk
    assert raw["root"]["transform"][12:15] == list(m[:3, 3])
    leaves = tileset_leaves(tmp_path / "t" / "tileset.json")
    backs = [load_splats(p, coordinate_system="ENU") for _, p in leaves]
    assert sum(b.n for b in backs) == info["gaussians"]
    written = info["splats"].subset(info["order"])
    np.testing.assert_allclose(np.concatenate([b.means for b in backs]), written.means,
                               atol=2.0**-12 + 1e-6)  # fmt: skip

    def walk(tile, parent_err):
        assert tile["geometricError"] <= parent_err
        for c in tile.get("children", []):
            walk(c, tile["geometricError"])

    walk(raw["root"], raw["geometricError"])
    root_content = load_splats(tmp_path / "t" / raw["root"]["content"]["uri"])
    assert root_content.n <= 1000


def test_tileset_refuses_bad_input(tmp_path):
    s = _splats(n=50)
    with pytest.raises(ValueError, match="rigid"):
        write_tileset(s, tmp_path / "t", np.eye(4) * 2)
    with pytest.raises(ValueError, match="min_opacity removed them all"):
        write_tileset(s, tmp_path / "t", enu_to_ecef_matrix(ORIGIN), min_opacity=1.0)
    with pytest.raises(ValueError, match="sh_degree"):
        write_tileset(s, tmp_path / "t", enu_to_ecef_matrix(ORIGIN), sh_degree=5)
