"""Benchmark of the splat file formats (splatstudio.splats).

For each shared sample: bytes per gaussian in every format (standard PLY, SuperSplat
compressed PLY, antimatter15 .splat, Niantic SPZ v4 and v3, PlayCanvas SOG, glTF
KHR_gaussian_splatting GLB with float attributes and with its SPZ v3 compression) and
write/read times, and for SOG the largest and 99th-percentile read-back error per
attribute; then the standard PLY write/read throughput on a synthetic 1M-gaussian
SH-degree-3 splat (plus the plyfile package writing the same table, for reference), every
other format's size and times on that splat, and a 3D Tiles tileset of it (tiles, bytes,
write time).

Writes ``benchmarks/results/splat_formats.json``. CPU only; run with
``.venv/bin/python benchmarks/bench_splat_formats.py``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from splatstudio.splats import Splats, load_splats, save_splats  # noqa: E402
from splatstudio.splats.ply import ply_property_names, read_ply, write_ply  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "splats"
SAMPLES = ["fruit_drops_minimal.ply", "donut_fused.ply", "guitar.compressed.ply", "biker.spz"]
TARGETS = {
    "ply": ("out.ply", {}),
    "compressed_ply": ("out.compressed.ply", {}),
    "splat": ("out.splat", {}),
    "spz_v4": ("out.spz", {"version": 4}),
    "spz_v3": ("out_v3.spz", {"version": 3}),
    "sog": ("out.sog", {}),
    "glb_splat": ("out.glb", {}),
    "glb_splat_spz": ("out_spz.glb", {"spz": True}),
}
OUT = ROOT / "benchmarks" / "results" / "splat_formats.json"


def synthetic(n: int, degree: int = 3, seed: int = 0) -> Splats:
    """Random splat with plausible ranges (N gaussians, SH degree ``degree``)."""
    rng = np.random.default_rng(seed)
    k = (degree + 1) ** 2 - 1
    return Splats(
        means=rng.normal(size=(n, 3)).astype(np.float32) * 20,
        quats=rng.normal(size=(n, 4)).astype(np.float32),
        scales=rng.uniform(-7, -1, size=(n, 3)).astype(np.float32),
        opacities=rng.normal(size=n).astype(np.float32) * 3,
        sh0=rng.normal(size=(n, 1, 3)).astype(np.float32),
        shN=(rng.normal(size=(n, k, 3)) * 0.2).astype(np.float32),
    )


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def sog_errors(src: Splats, back: Splats) -> dict:
    """Max and 99th-percentile read-back error of a SOG per attribute (file in Morton
    order): centres (m), rotation (degrees), sigmoid(opacity), log-scales, DC, higher SH
    (and its RMS relative to the SH's own RMS)."""
    from splatstudio.splats.compressed_ply import morton_order
    from splatstudio.splats.model import sigmoid

    ref = src.subset(morton_order(src.means))
    a = ref.normalized_quats().astype(np.float64)
    b = back.normalized_quats().astype(np.float64)
    ang = np.degrees(2 * np.arccos(np.clip(np.abs((a * b).sum(1)), 0, 1)))
    errs = {
        "means_m": np.abs(ref.means - back.means),
        "rotation_deg": ang,
        "opacity": np.abs(sigmoid(ref.opacities) - sigmoid(back.opacities)),
        "log_scales": np.abs(ref.scales - back.scales),
        "sh0": np.abs(ref.sh0 - back.sh0),
    }
    if ref.shN.size:
        errs["shN"] = np.abs(ref.shN - back.shN)
    out = {k: {"max": float(v.max()), "p99": float(np.quantile(v, 0.99))} for k, v in errs.items()}
    if ref.shN.size:
        out["shN_relative_rms"] = float(
            np.sqrt(((ref.shN - back.shN) ** 2).mean() / (ref.shN**2).mean())
        )
    return out


def bench_samples(tmp: Path) -> dict:
    results = {}
    for name in SAMPLES:
        src = DATA / name
        if not src.is_file():
            results[name] = {"skipped": f"{src} missing"}
            continue
        t_load = timed(lambda src=src: load_splats(src), 3)
        s = load_splats(src)
        entry = {"n": s.n, "sh_degree": s.sh_degree, "source_bytes": src.stat().st_size,
                 "source_load_s": min(t_load), "formats": {}}  # fmt: skip
        for label, (fname, opts) in TARGETS.items():
            path = tmp / fname
            t_write = timed(lambda s=s, path=path, opts=opts: save_splats(s, path, **opts), 3)
            t_read = timed(lambda path=path: load_splats(path), 3)
            size = path.stat().st_size
            entry["formats"][label] = {
                "bytes": size,
                "bytes_per_gaussian": round(size / s.n, 3),
                "write_s": round(min(t_write), 5),
                "read_s": round(min(t_read), 5),
            }
            if label == "sog":
                entry["formats"][label]["error"] = sog_errors(s, load_splats(path))
        ply_b = entry["formats"]["ply"]["bytes"]
        for v in entry["formats"].values():
            v["ratio_vs_ply"] = round(ply_b / v["bytes"], 2)
        results[name] = entry
        print(name, {k: v["bytes_per_gaussian"] for k, v in entry["formats"].items()})
    return results


def bench_ply_throughput(tmp: Path, n: int = 1_000_000, repeat: int = 5) -> dict:
    s = synthetic(n)
    path = tmp / "big.ply"

    def fresh(fn, target=path):  # time writes into a new file (the unlink is not timed)
        def run():
            if target.exists():
                target.unlink()
            t0 = time.perf_counter()
            fn()
            return time.perf_counter() - t0

        return [run() for _ in range(repeat)]

    write_s = fresh(lambda: write_ply(s, path))
    size = path.stat().st_size
    save_s = fresh(lambda: save_splats(s, path))  # atomic: temp file + rename, validates

    def write_fsync():
        if path.exists():
            path.unlink()
        write_ply(s, path)
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    fsync_s = timed(write_fsync, 2)
    read_s = timed(lambda: read_ply(path), repeat)
    back = read_ply(path)
    assert np.array_equal(back.shN, s.shN) and np.array_equal(back.means, s.means)

    # reference: plyfile writing the same float32 table (one structured array)
    plyfile_s = None
    try:
        from plyfile import PlyData, PlyElement

        names = ply_property_names(3)
        table = np.zeros(n, dtype=[(nm, "<f4") for nm in names])
        flat = table.view("<f4").reshape(n, len(names))
        flat[:, 0:3] = s.means
        flat[:, 6:9] = s.sh0[:, 0]
        flat[:, 9:54] = s.shN.transpose(0, 2, 1).reshape(n, 45)
        flat[:, 54] = s.opacities
        flat[:, 55:58] = s.scales
        flat[:, 58:62] = s.quats
        ref_path = tmp / "big_plyfile.ply"

        def plyfile_write():
            PlyData([PlyElement.describe(table, "vertex")]).write(str(ref_path))

        plyfile_s = fresh(plyfile_write, ref_path)
    except ImportError:  # pragma: no cover
        pass

    mb = size / 1e6
    res = {
        "n": n,
        "sh_degree": 3,
        "bytes": size,
        "bytes_per_gaussian": size / n,
        "write_s": [round(t, 4) for t in write_s],
        "write_MBps_best": round(mb / min(write_s), 1),
        "write_MBps_median": round(mb / statistics.median(write_s), 1),
        "save_splats_MBps_best": round(mb / min(save_s), 1),
        "save_splats_MBps_median": round(mb / statistics.median(save_s), 1),
        "write_with_fsync_MBps_best": round(mb / min(fsync_s), 1),
        "read_MBps_best": round(mb / min(read_s), 1),
        "read_MBps_median": round(mb / statistics.median(read_s), 1),
        "note": "MB = 1e6 bytes; write = validate + build the float32 table + header + "
        "write() into a new file, page cache (no fsync) unless stated; save_splats adds the "
        "temp-file + rename; read includes building the Splats arrays; plyfile = the "
        "plyfile package writing an already built structured array (table build not timed)",
    }
    if plyfile_s:
        res["plyfile_write_MBps_best"] = round(mb / min(plyfile_s), 1)
        res["plyfile_write_MBps_median"] = round(mb / statistics.median(plyfile_s), 1)
    # the compressed formats on the same 1M splat
    for label, (fname, opts) in TARGETS.items():
        if label == "ply":
            continue
        p = tmp / fname
        t = timed(lambda p=p, opts=opts: save_splats(s, p, **opts), 1)[0]
        r = timed(lambda p=p: load_splats(p), 1)[0]
        res[f"{label}_write_s"] = round(t, 3)
        res[f"{label}_read_s"] = round(r, 3)
        res[f"{label}_bytes_per_gaussian"] = round(p.stat().st_size / n, 3)
    print("PLY 1M SH3:", {k: v for k, v in res.items() if "MBps" in k})
    return res


def bench_tiles(tmp: Path, n: int = 1_000_000) -> dict:
    """3D Tiles tileset of the synthetic SH-3 splat (ENU metres, +-60 m) at a fixed origin:
    write time (octree, merged parent levels, SPZ GLB per tile), files, bytes."""
    from splatstudio.geo.enu import GeoOrigin, enu_to_ecef_matrix
    from splatstudio.splats.tiles3d import write_tileset

    s = synthetic(n)
    m = enu_to_ecef_matrix(GeoOrigin(49.0069, 1.9192, 92.86))
    res = {"n": n, "sh_degree": 3}
    for max_per_tile in (65536,):
        folder = tmp / f"tiles_{max_per_tile}"
        info = write_tileset(s, folder, m, max_per_tile=max_per_tile)
        res[f"max_per_tile_{max_per_tile}"] = {
            "write_s": round(info["seconds"], 2),
            "tiles": info["tiles"],
            "leaves": info["leaves"],
            "depth": info["depth"],
            "bytes": info["bytes"],
            "bytes_per_gaussian": round(info["bytes"] / n, 3),
            "content_gaussians": info["content_gaussians"],
            "geometric_error_m": round(info["geometric_error"], 3),
        }
    res["note"] = ("write_s includes building the octree, merging the parent levels and "
                   "encoding every tile (SPZ v3, gzip level 6); bytes = all tiles + tileset.json")
    print("3D Tiles 1M SH3:", res)
    return res


def main() -> None:
    import zstandard

    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_splats_") as d:
        tmp = Path(d)
        samples = bench_samples(tmp)
        ply = bench_ply_throughput(tmp)
        tiles = bench_tiles(tmp)
    result = {
        "benchmark": "splat_formats",
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "device": "cpu",
        "machine": {
            "node": platform.node(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "zstandard": zstandard.__version__,
            "load_avg_1min_at_start": round(load0, 2),
            "load_avg_1min_at_end": round(os.getloadavg()[0], 2),
        },
        "samples": samples,
        "ply_throughput_1M_sh3": ply,
        "tiles3d_1M_sh3": tiles,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
