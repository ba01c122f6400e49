"""Ingest throughput in panoramas per second (header, EXIF, XMP, EOI check, ENU; no pixels).

Builds a folder of N distinct panoramas from the real 2048x1024 GoPro MAX captures (each copy
gets a unique JPEG comment, so no two files are equal: the duplicate check runs as on real
data), then times the ingest stage function on it (warm file cache, best of 3). Also times a
folder where every file has the same size, which forces the content hashing of the duplicate
check. Writes benchmarks/results/ingest.json. Usage: python benchmarks/bench_ingest.py [--n 500]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, write_result  # noqa: E402


def _with_comment(data: bytes, text: bytes) -> bytes:
    seg = b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text
    return data[:2] + seg + data[2:]


def _time_ingest(folder: Path, repeats: int) -> float:
    from splatstudio.config import IngestConfig
    from splatstudio.events import null_emitter
    from splatstudio.pipeline.ingest import run_ingest
    from splatstudio.project import Project

    best = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            project = Project.create(Path(tmp) / f"p{r}", folder)
            t0 = time.perf_counter()
            run_ingest(project, IngestConfig(), null_emitter("ingest"))
            best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    srcs = [p.read_bytes() for p in sorted((DATA / "panos" / "geovisio-gopromax-2048").glob("*.jpg"))]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        distinct = Path(tmp) / "distinct"
        same = Path(tmp) / "same_size"
        distinct.mkdir()
        same.mkdir()
        for i in range(args.n):
            data = srcs[i % len(srcs)]
            (distinct / f"{i:05d}.jpg").write_bytes(_with_comment(data, b"x" * (i + 1)))
            # same size for all copies of one source: the duplicate check must hash them
            (same / f"{i:05d}.jpg").write_bytes(_with_comment(data, f"{i:08d}".encode()))
        for name, folder in (("distinct_sizes", distinct), ("equal_sizes_hashed", same)):
            t = _time_ingest(folder, args.repeats)
            results[name] = {"panoramas": args.n, "seconds": round(t, 4),
                             "panoramas_per_s": round(args.n / t, 1)}
    path = write_result("ingest", {
        "input": f"{args.n} copies of panos/geovisio-gopromax-2048 (2048x1024, ~0.6 MB each)",
        "results": results,
        "target_panoramas_per_s": 200,
    })
    print(path.read_text())


if __name__ == "__main__":
    main()
