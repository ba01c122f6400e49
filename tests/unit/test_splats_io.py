"""Format-independent I/O (splatstudio.splats.io): every shared sample through every format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from splatstudio.splats import (
    FORMATS,
    SH_C0,
    Splats,
    convert,
    detect_format,
    load_splats,
    save_splats,
)
from splatstudio.splats.compressed_ply import CHUNK_SIZE
from splatstudio.splats.io import format_from_name
from splatstudio.splats.model import sigmoid
from splatstudio.splats.ply import read_ply_elements

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "splats"
SAMPLES = {  # name: (gaussians, SH degree)
    "fruit_drops_minimal.ply": (4721, 3),
    "donut_fused.ply": (45624, 0),
    "guitar.compressed.ply": (90854, 0),
    "biker.spz": (152746, 0),
}
TARGETS = {  # label: (file name, save options)
    "ply": ("out.ply", {}),
    "compressed_ply": ("out.compressed.ply", {"sort": False}),
    "splat": ("out.splat", {"sort": False}),
    "spz": ("out.spz", {}),
    "spz_v3": ("out_v3.spz", {"version": 3}),
}


def sample(name: str) -> Path:
    path = DATA / name
    if not path.is_file():
        pytest.skip(f"shared sample {path} is missing (shared data not mounted)")
    return path


def quat_error(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.minimum(np.abs(a - b).max(1), np.abs(a + b).max(1)).max())


def expected_bounds(label: str, orig: Splats, path: Path) -> dict:
    """Per-attribute bound on |decoded - original| (original clamped to the format's range)."""
    if label == "ply":
        return {"means": 0, "scales": 0, "alpha": 0, "sh0": 0, "quats": 0, "shN": 0}
    if label == "splat":
        return {"means": 0, "scales": 1e-6, "alpha": 0.5 / 255 + 1e-6,
                "sh0": 0.5 / 255 / SH_C0 + 1e-5, "quats": 0.008}  # fmt: skip
    if label.startswith("spz"):
        return {"means": 2.0**-13 + 1e-6, "scales": 1 / 32 + 1e-6, "alpha": 0.5 / 255 + 1e-6,
                "sh0": 0.5 / 38.25 + 1e-5, "quats": 3e-3, "shN": 8.5 / 128 + 1e-6}  # fmt: skip
    # compressed PLY: steps from the widest chunk of the file
    ch = read_ply_elements(path, ["chunk"])["chunk"]
    pos = max(float((ch[f"max_{a}"] - ch[f"min_{a}"]).max()) for a in "xyz")
    scl = max(float((ch[f"max_scale_{a}"] - ch[f"min_scale_{a}"]).max()) for a in "xyz")
    col = max(float((ch[f"max_{a}"] - ch[f"min_{a}"]).max()) for a in "rgb")
    return {"means": pos / 2046 + 1e-6, "scales": scl / 2046 + 1e-5, "alpha": 0.5 / 255 + 1e-6,
            "sh0": col / 510 / SH_C0 + 1e-5, "quats": 3e-3, "shN": 1 / 32 + 1e-6}  # fmt: skip


def clamp_to_format(label: str, s: Splats) -> dict[str, np.ndarray]:
    sh0, scales, shn = s.sh0, s.scales, s.shN
    if label == "splat":
        sh0 = np.clip(sh0, -0.5 / SH_C0, 0.5 / SH_C0)
    elif label.startswith("spz"):
        sh0, scales = np.clip(sh0, -127.5 / 38.25, 127.5 / 38.25), np.clip(scales, -10, 5.9375)
        shn = np.clip(shn, -1, 1)
    elif label == "compressed_ply":
        scales, shn = np.clip(scales, -20, 20), np.clip(shn, -4, 4)
    return {"sh0": sh0, "scales": scales, "shN": shn}


@pytest.mark.parametrize("label", list(TARGETS))
@pytest.mark.parametrize("name", list(SAMPLES))
def test_every_sample_through_every_format(tmp_path, name, label):
    n, degree = SAMPLES[name]
    src = load_splats(sample(name))
    assert src.n == n and src.sh_degree == degree
    fname, options = TARGETS[label]
    info = save_splats(src, tmp_path / fname, **options)
    out = Path(info["path"])
    assert info["n"] == n and info["bytes"] == out.stat().st_size
    assert detect_format(out) == info["format"] == label.split("_v")[0]
    back = load_splats(out)
    assert back.n == n
    assert back.sh_degree == (0 if label == "splat" else degree)
    bounds = expected_bounds(label, src, out)
    ref = clamp_to_format(label, src)
    err = {
        "means": float(np.abs(src.means - back.means).max()),
        "scales": float(np.abs(ref["scales"] - back.scales).max()),
        "alpha": float(np.abs(sigmoid(src.opacities) - sigmoid(back.opacities)).max()),
        "sh0": float(np.abs(ref["sh0"] - back.sh0).max()),
        "quats": 0.0 if label == "ply" else quat_error(src.quats, back.quats),
    }
    if label == "ply":  # lossless: bit-exact arrays
        for f in ("means", "quats", "scales", "opacities", "sh0", "shN"):
            assert np.array_equal(getattr(src, f), getattr(back, f)), f
    if degree and label != "splat":
        err["shN"] = float(np.abs(ref["shN"] - back.shN).max())
    for key, value in err.items():
        assert value <= bounds[key], f"{name} -> {label}: {key} error {value} > {bounds[key]}"


def test_format_detection(tmp_path):
    assert detect_format(sample("guitar.compressed.ply")) == "compressed_ply"
    assert detect_format(sample("donut_fused.ply")) == "ply"
    assert detect_format(sample("biker.spz")) == "spz"
    # content wins over the name
    renamed = tmp_path / "guitar.ply"
    renamed.write_bytes(sample("guitar.compressed.ply").read_bytes())
    assert detect_format(renamed) == "compressed_ply"
    assert load_splats(renamed).n == 90854
    plain = tmp_path / "plain.compressed.ply"
    plain.write_bytes(sample("donut_fused.ply").read_bytes())
    assert detect_format(plain) == "ply"
    spz_named_splat = tmp_path / "x.splat"
    spz_named_splat.write_bytes(sample("biker.spz").read_bytes())
    assert detect_format(spz_named_splat) == "spz"
    # by name for files that do not exist yet
    assert format_from_name("a/B.COMPRESSED.PLY") == "compressed_ply"
    assert [format_from_name(f"x.{e}") for e in ("ply", "splat", "spz")] == ["ply", "splat", "spz"]
    assert format_from_name("x.SOG") == format_from_name("scene/meta.json") == "sog"
    with pytest.raises(ValueError, match="extension"):
        format_from_name("x.obj")
    assert set(FORMATS) == {"ply", "compressed_ply", "splat", "spz", "sog", "glb_splat"}
    assert format_from_name("a/b.GLB") == "glb_splat"


def test_save_is_atomic_and_checks_options(tmp_path):
    s = load_splats(sample("fruit_drops_minimal.ply"))
    with pytest.raises(ValueError, match="unknown option"):
        save_splats(s, tmp_path / "a.spz", bogus=1)
    with pytest.raises(ValueError, match="unknown splat format"):
        save_splats(s, tmp_path / "a.bin", format="obj")
    bad = s.copy()
    bad.means[0, 0] = np.nan
    target = tmp_path / "sub" / "b.ply"
    with pytest.raises(ValueError, match="non-finite"):
        save_splats(bad, target)
    assert not target.exists()
    info = save_splats(s, target, format="ply")
    assert target.exists() and info["bytes_per_gaussian"] > 240
    assert sorted(p.name for p in target.parent.iterdir()) == ["b.ply"]  # no temp files left
    forced = save_splats(s, tmp_path / "c.bin", format="spz", version=3)
    assert load_splats(tmp_path / "c.bin", format="spz").n == s.n and forced["format"] == "spz"
    with pytest.raises(FileNotFoundError):
        load_splats(tmp_path / "missing.ply")
    with pytest.raises(ValueError, match="unknown option"):
        load_splats(sample("biker.spz"), sort=True)


def test_spz_coordinate_option_passes_through(tmp_path):
    raw = load_splats(sample("biker.spz"), coordinate_system=None)
    rdf = load_splats(sample("biker.spz"))
    assert np.array_equal(rdf.means[:, 1], -raw.means[:, 1])


def test_convert_with_filters(tmp_path):
    src = sample("fruit_drops_minimal.ply")
    s = load_splats(src)
    lo, hi = np.percentile(s.means, 10, axis=0), np.percentile(s.means, 90, axis=0)
    report = convert(
        src, tmp_path / "out.spz", crop_min=lo, crop_max=hi, min_opacity=0.05,
        remove_floaters=True, max_sh_degree=1, save_options={"version": 4},
    )  # fmt: skip
    out = load_splats(tmp_path / "out.spz")
    f = report["filters"]
    assert f["input"] == 4721 and f["output"] == out.n == report["n"]
    assert f["input"] - f["min_opacity"] - f["crop"] - f["floaters"] == out.n
    assert out.sh_degree == 1 and report["format"] == "spz" and report["src_format"] == "ply"
    tol = 2.0**-13
    assert np.all(out.means >= lo - tol) and np.all(out.means <= hi + tol)
    assert sigmoid(out.opacities).min() >= 0.05 - 0.5 / 255
    with pytest.raises(ValueError, match="unknown filter option"):
        convert(src, tmp_path / "x.ply", crop=[0, 0, 0])


def test_compressed_chunk_size_constant():
    assert CHUNK_SIZE == 256
