"""Rasterizer speed on a CUDA GPU: gsplat's CUDA kernels, our torch rasterizer on the GPU and on
the CPU, forward and backward, 100k Gaussians at 640x480 with SH degree 3 (timing only; the
agreement of the three is tested by ``tests/gpu/test_render_vs_gsplat.py``, which this
timing used to be part of).

Each backend renders once to warm up, then ``--repeats`` times; the medians are written to
``benchmarks/results/render_cuda_speed.json`` with the machine, the GPU, the load and the date.
Needs a CUDA GPU and gsplat: ``.venv/bin/python benchmarks/bench_render_cuda.py``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests" / "gpu"))  # the scene and render helpers of the test


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gaussians", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("bench_render_cuda: needs a CUDA GPU (torch.cuda.is_available() is False)",
              file=sys.stderr)
        return 1
    from _common import write_result
    from test_render_vs_gsplat import make_scene, render

    w, h, sh = 640, 480, 3
    params, vms, Ks = make_scene(7, args.gaussians, w, h, 1, sh)
    rows = {}
    for device, backend in (("cuda", "gsplat"), ("cuda", "torch"), ("cpu", "torch")):
        render(params, vms, Ks, w, h, device, backend, {"sh_degree": sh})  # warm-up
        times = [render(params, vms, Ks, w, h, device, backend, {"sh_degree": sh})[3]
                 for _ in range(args.repeats)]
        rows[f"{backend}_{device}"] = {
            "forward_s": statistics.median(t[0] for t in times),
            "backward_s": statistics.median(t[1] for t in times),
        }
    path = write_result("render_cuda_speed", {
        "device": torch.cuda.get_device_name(0),
        "case": f"{args.gaussians} gaussians, {w}x{h}, SH degree {sh}, median of "
                f"{args.repeats}",
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "results": rows,
    })
    print(path.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
