"""SplatStudio's torch rasterizer vs gsplat's CUDA rasterizer (needs a CUDA GPU).

Renders the same random scenes with ``gsplat.rasterization`` on CUDA (through
``splatstudio.render.rasterize``) and with SplatStudio's differentiable torch
implementation on the CPU and on the GPU (``backend="torch"``), then compares images,
alphas and the gradients w.r.t. means, quats, scales, opacities and colours / SH.

Tolerances: both sides compute in float32 with different operation orders (and fast-math
``__expf`` in CUDA), so a (pixel, Gaussian) pair whose alpha lies within float rounding of
the 1/255 cut-off -- or a pixel whose transmittance lies at the 1e-4 stop -- can be
decided differently, changing that pixel by up to ~1/255 of a colour (depth channels are
compared relative to the largest depth). The image check is
therefore on the max (< 1e-2), the 99.9th percentile (< 1e-4) and the mean (< 1e-5) of
the absolute difference; gradients are compared by relative L2 error (< 1e-2; gsplat
recomputes transmittances back to front by division, which loses a little precision).
The measured numbers go to ``benchmarks/results/render_cpu_vs_cuda.json`` (with device
name and date) whether or not the assertions pass.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import time
from pathlib import Path

import pytest
import torch

from splatstudio.render import intrinsics_from_fov, look_at, rasterize

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

OUT = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "render_cpu_vs_cuda.json"
IMG_MAX, IMG_P999, IMG_MEAN, GRAD_REL = 1e-2, 1e-4, 1e-5, 1e-2
RESULTS: list[dict] = []


@pytest.fixture(scope="module", autouse=True)
def _write_results():
    yield
    if not RESULTS:
        return
    import gsplat

    doc = {
        "test": "tests/gpu/test_render_vs_gsplat.py",
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(0),
        "machine": {"node": platform.node(), "processor": platform.processor()},
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gsplat": getattr(gsplat, "__version__", "?"),
        "tolerances": {"img_max": IMG_MAX, "img_p99.9": IMG_P999, "img_mean": IMG_MEAN,
                       "grad_rel_l2": GRAD_REL},  # fmt: skip
        "results": RESULTS,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=2) + "\n")


def make_scene(seed, n, w, h, n_cams=1, sh_degree=None):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g) * torch.tensor([1.0, 1.0, 0.6])
    quats = torch.randn(n, 4, generator=g)
    scales = torch.exp(torch.randn(n, 3, generator=g) * 0.6) * (1.2 / n ** (1 / 3))
    opac = torch.sigmoid(torch.randn(n, generator=g) * 2)
    if sh_degree is None:
        colors = torch.rand(n, 3, generator=g)
    else:
        colors = torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g) * 0.3
    eyes = [[0.3, -4.0, 1.0], [3.0, 2.0, 0.5], [-2.0, 2.5, 3.0]][:n_cams]
    vms = torch.stack([torch.as_tensor(look_at(e, [0, 0, 0]), dtype=torch.float32) for e in eyes])
    Ks = torch.as_tensor(intrinsics_from_fov(60.0, w, h), dtype=torch.float32)[None]
    return [means, quats, scales, opac, colors], vms, Ks.repeat(n_cams, 1, 1)


def render(params, vms, Ks, w, h, device, backend, kw):
    ps = [p.to(device).clone().requires_grad_() for p in params]
    bg = kw.pop("backgrounds", None)
    if bg is not None:
        bg = bg.to(device)
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    img, alp, info = rasterize(*ps, vms.to(device), Ks.to(device), w, h, backend=backend,
                               backgrounds=bg, **kw)  # fmt: skip
    if device == "cuda":
        torch.cuda.synchronize()
    t_fwd = time.perf_counter() - t
    g = torch.Generator().manual_seed(123)
    wimg = torch.randn(img.shape, generator=g).to(device)
    walp = torch.randn(alp.shape, generator=g).to(device)
    t = time.perf_counter()
    ((img * wimg).sum() + (alp * walp).sum()).backward()
    if device == "cuda":
        torch.cuda.synchronize()
    t_bwd = time.perf_counter() - t
    grads = {n: p.grad.detach().cpu() for n, p in
             zip(["means", "quats", "scales", "opacities", "colors"], ps, strict=True)}  # fmt: skip
    return img.detach().cpu(), alp.detach().cpu(), grads, (t_fwd, t_bwd)


CASES = {
    "rgb": dict(),
    "antialiased": dict(rasterize_mode="antialiased"),
    "sh3": dict(sh_degree=3),
    # "+D" rather than "+ED": ED = D / alpha amplifies differences at nearly empty pixels
    "rgb+d_bg": dict(render_mode="RGB+D", backgrounds=torch.tensor([[0.2, 0.4, 0.8]])),
    "two_cameras": dict(n_cams=2),
    "dense": dict(n=20000),
}


@pytest.mark.parametrize("ours_device", ["cpu", "cuda"])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_gsplat(case, ours_device):
    kw = dict(CASES[case])
    n = kw.pop("n", 3000)
    n_cams = kw.pop("n_cams", 1)
    w, h = 160, 120
    params, vms, Ks = make_scene(list(CASES).index(case), n, w, h, n_cams, kw.get("sh_degree"))
    if "backgrounds" in kw:
        kw["backgrounds"] = kw["backgrounds"].repeat(n_cams, 1)
    ref = render(params, vms, Ks, w, h, "cuda", "gsplat", dict(kw))
    ours = render(params, vms, Ks, w, h, ours_device, "torch", dict(kw))
    # channels are compared in units of their range (1 for colours, max depth for "+D")
    scale = ref[0].abs().amax(dim=(0, 1, 2)).clamp(min=1.0)
    d = ((ours[0] - ref[0]).abs() / scale).flatten()
    da = (ours[1] - ref[1]).abs()
    res = {
        "case": case,
        "ours_device": ours_device,
        "n": n,
        "cameras": n_cams,
        "size": [w, h],
        "img_max_abs": float(d.max()),
        "img_p99.9_abs": float(torch.quantile(d.double(), 0.999)),
        "img_mean_abs": float(d.mean()),
        "alpha_max_abs": float(da.max()),
        "mean_alpha": float(ref[1].mean()),
        "time_gsplat_cuda_s": {"forward": ref[3][0], "backward": ref[3][1]},
        f"time_ours_{ours_device}_s": {"forward": ours[3][0], "backward": ours[3][1]},
    }
    for k in ours[2]:
        a, b = ours[2][k], ref[2][k]
        res[f"grad_rel_{k}"] = float((a - b).norm() / b.norm().clamp(min=1e-30))
    RESULTS.append(res)
    assert res["img_max_abs"] < IMG_MAX, res
    assert res["img_p99.9_abs"] < IMG_P999, res
    assert res["img_mean_abs"] < IMG_MEAN, res
    assert res["alpha_max_abs"] < IMG_MAX, res
    for k in ours[2]:
        assert res[f"grad_rel_{k}"] < GRAD_REL, (k, res)

