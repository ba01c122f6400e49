"""PlayCanvas SOG v2: round trips of the shared splats with per-attribute error bounds, the
file layout the specification asks for, bytes of a hand-made splat decoded by the
specification's formulas, and clear errors."""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest

from splatstudio.splats import SplatFormatError, Splats, load_splats, save_splats
from splatstudio.splats.compressed_ply import morton_order
from splatstudio.splats.model import sigmoid
from splatstudio.splats.sog import kmeans_1d, read_sog, sog_palette_size, write_sog

PIL = pytest.importorskip("PIL")
from PIL import Image, features  # noqa: E402

if not features.check("webp"):  # pragma: no cover
    pytest.skip("Pillow without WebP", allow_module_level=True)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "splats"
SAMPLES = ["fruit_drops_minimal.ply", "donut_fused.ply", "guitar.compressed.ply", "biker.spz"]


def sample(name: str) -> Path:
    p = DATA / name
    if not p.is_file():
        pytest.skip(f"{p} missing")
    return p


def angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.degrees(2 * np.arccos(np.clip(np.abs((a * b).sum(1)), 0, 1)))


def nearest_dist(v: np.ndarray, book: np.ndarray) -> np.ndarray:
    return np.abs(v.reshape(-1, 1).astype(np.float64) - book[None, :]).min(axis=1).reshape(v.shape)


@pytest.mark.parametrize("name", SAMPLES)
def test_round_trip_error_bounds(tmp_path, name):
    src = load_splats(sample(name))
    out = tmp_path / "scene.sog"
    info = save_splats(src, out)
    assert info["format"] == "sog" and info["bytes"] == out.stat().st_size
    back = load_splats(out)  # detected from the ZIP magic
    assert back.n == src.n and back.sh_degree == src.sh_degree
    ref = src.subset(morton_order(src.means))  # the file is in Morton order
    meta = json.loads(zipfile.ZipFile(out).read("meta.json"))

    # centres: half a 16-bit step of the log transform, times d|x|/dn = |x| + 1
    span = np.asarray(meta["means"]["maxs"]) - np.asarray(meta["means"]["mins"])
    m = ref.means.astype(np.float64)
    tol = (np.abs(m) + 1.0) * span / 131070 * 1.001 + np.abs(m) * 2.4e-7 + 1e-7
    assert (np.abs(back.means - m) <= tol).all()
    assert angle_deg(ref.quats.astype(np.float64), back.quats.astype(np.float64)).max() < 1.2
    assert np.abs(sigmoid(ref.opacities) - sigmoid(back.opacities)).max() <= 0.5 / 255 + 1e-6
    # codebooks: every value decodes to its nearest level; most levels are close
    for key, attr in (("scales", "scales"), ("sh0", "sh0")):
        book = np.asarray(meta[key]["codebook"], np.float64)
        assert book.size == 256 and np.all(np.diff(book) >= 0)
        err = np.abs(getattr(back, attr) - getattr(ref, attr).astype(np.float64))
        assert (err <= nearest_dist(getattr(ref, attr), book) + 1e-6).all()
        assert np.quantile(err, 0.99) < 0.1
    if src.sh_degree:
        assert meta["shN"]["bands"] == src.sh_degree
        assert meta["shN"]["count"] <= sog_palette_size(src.n)
        rms = np.sqrt(((back.shN - ref.shN) ** 2).mean() / (ref.shN**2).mean())
        assert rms < 0.2
    # size per gaussian well below the float PLY's 4 bytes per number
    assert info["bytes_per_gaussian"] < (60 if src.sh_degree == 3 else 16)


def test_layout_follows_the_specification(tmp_path):
    src = load_splats(sample("fruit_drops_minimal.ply"))
    out = tmp_path / "fruit.sog"
    write_sog(src, out)
    z = zipfile.ZipFile(out)
    meta = json.loads(z.read("meta.json"))
    assert meta["version"] == 2 and meta["count"] == src.n
    names = ["means_l.webp", "means_u.webp", "quats.webp", "scales.webp", "sh0.webp",
             "shN_centroids.webp", "shN_labels.webp"]  # fmt: skip
    assert sorted(z.namelist()) == sorted(["meta.json", *names])
    w = math.ceil(math.sqrt(src.n) / 4) * 4
    h = math.ceil(src.n / w / 4) * 4
    for name in names:
        data = z.read(name)
        assert data[:4] == b"RIFF" and data[8:16] == b"WEBPVP8L"  # lossless WebP
        img = Image.open(io.BytesIO(data))
        if name == "shN_centroids.webp":
            assert img.size == (64 * 15, math.ceil(meta["shN"]["count"] / 64))
        else:
            assert img.size == (w, h)
    quats = np.asarray(Image.open(io.BytesIO(z.read("quats.webp"))).convert("RGBA"))
    assert set(np.unique(quats.reshape(-1, 4)[: src.n, 3])) <= {252, 253, 254, 255}
    # the folder layout reads the same as the bundle
    folder = tmp_path / "unbundled"
    z.extractall(folder)
    a, b = read_sog(out), load_splats(folder / "meta.json")
    assert np.array_equal(a.means, b.means) and np.array_equal(a.shN, b.shN)


def test_bytes_decode_by_the_specification_formulas(tmp_path):
    """Three hand-made gaussians, decoded from the raw pixels with the formulas of the spec
    (section 3), without our reader."""
    q = np.array([[1, 0, 0, 0], [0, 0, 0, -2], [0.6, 0, 0.8, 0]], np.float32)  # wxyz
    s = Splats(means=np.array([[0, 0, 0], [1.5, -2, 3], [-4, 0.25, 10]], np.float32), quats=q,
               scales=np.log(np.array([[0.1, 0.2, 0.3]] * 3, np.float32)),
               opacities=np.array([0.0, 3.0, -3.0], np.float32),
               sh0=np.array([[[0.5, -0.5, 1.0]]] * 3, np.float32))  # fmt: skip
    out = tmp_path / "t.sog"
    write_sog(s, out, sort=False)
    z = zipfile.ZipFile(out)
    meta = json.loads(z.read("meta.json"))

    def px(name):
        return np.asarray(Image.open(io.BytesIO(z.read(name))).convert("RGBA")).reshape(-1, 4)

    lo, hi = px("means_l.webp")[:3].astype(int), px("means_u.webp")[:3].astype(int)
    qn = (hi[:, :3] << 8) | lo[:, :3]
    mins, maxs = np.array(meta["means"]["mins"]), np.array(meta["means"]["maxs"])
    n = mins + (maxs - mins) * qn / 65535
    xyz = np.sign(n) * (np.exp(np.abs(n)) - 1)
    assert np.allclose(xyz, s.means, atol=2e-3)
    qp = px("quats.webp")[:3]
    assert list(qp[:, 3]) == [252, 255, 254]  # largest: w, z, y (wxyz index)
    assert list(qp[0, :3]) == [128, 128, 128]  # the other three are 0
    comp = (qp[:, :3] / 255 - 0.5) * 2 / math.sqrt(2)
    assert np.allclose(comp[1], [0, 0, 0], atol=3e-3)  # -z made positive: w, x, y = 0
    assert np.allclose(comp[2], [0.6, 0, 0], atol=3e-3)  # (w, x, z) around the largest y
    c = px("sh0.webp")[:3]
    assert list(c[:, 3]) == [round(255 * float(sigmoid(np.float32(o)))) for o in (0, 3, -3)]
    book = np.asarray(meta["sh0"]["codebook"])
    assert np.allclose(book[c[:, :3]], [[0.5, -0.5, 1.0]] * 3, atol=1e-6)
    sc = px("scales.webp")[:3]
    assert np.allclose(np.asarray(meta["scales"]["codebook"])[sc[:, :3]], np.log([0.1, 0.2, 0.3]),
                       atol=1e-6)  # fmt: skip


def test_kmeans_1d_keeps_tails_and_is_exact_for_few_values():
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.normal(0, 1, 100_000), [40.0, -35.0]])
    book, lab = kmeans_1d(v)
    assert book.shape == (256,) and np.all(np.diff(book) >= 0)
    assert np.abs(book[lab] - v)[-2:].max() < 1.0  # the outliers keep nearby levels
    few = np.array([3.0, -1.0, 3.0, 7.5])
    book, lab = kmeans_1d(few)
    assert np.array_equal(book[lab], few)


def test_errors_name_the_file(tmp_path):
    src = load_splats(sample("donut_fused.ply")).subset(slice(0, 500))
    out = tmp_path / "d.sog"
    write_sog(src, out)
    files = {n: zipfile.ZipFile(out).read(n) for n in zipfile.ZipFile(out).namelist()}

    def variant(name, **change):
        p = tmp_path / name
        with zipfile.ZipFile(p, "w") as z:
            for k, v in files.items():
                if k in change:
                    v = change[k]
                if v is not None:
                    z.writestr(k, v)
        return p

    meta = json.loads(files["meta.json"])
    v1 = variant("v1.sog", **{"meta.json": json.dumps({k: v for k, v in meta.items()
                                                       if k != "version"})})  # fmt: skip
    with pytest.raises(SplatFormatError, match=r"v1\.sog: .*version 1"):
        read_sog(v1)
    with pytest.raises(SplatFormatError, match=r"noquats\.sog: .*lacks quats\.webp"):
        read_sog(variant("noquats.sog", **{"quats.webp": None}))
    with pytest.raises(SplatFormatError, match=r"bad\.sog: .*scales\.webp is not a readable"):
        read_sog(variant("bad.sog", **{"scales.webp": b"not an image"}))
    small = dict(meta, count=10**6)
    with pytest.raises(SplatFormatError, match=r"count\.sog: .*pixels for 1000000"):
        read_sog(variant("count.sog", **{"meta.json": json.dumps(small)}))
    nometa = variant("nometa.sog", **{"meta.json": None})
    with pytest.raises(SplatFormatError, match="no meta.json"):
        read_sog(nometa)
