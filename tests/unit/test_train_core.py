"""The training loop on CPU, on a synthetic scene rendered by our rasterizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from splatstudio.config import TrainConfig
from splatstudio.render import intrinsics_from_fov, look_at, rasterize
from splatstudio.render.camera import PinholeCamera
from splatstudio.train.losses import photometric_loss, psnr, ssim, ssim_map
from splatstudio.train.model import init_splats, to_splats
from splatstudio.train.trainer import Trainer, TrainView

torch.set_num_threads(2)


def _scene(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g) - 0.5) * 2.0
    quats = torch.randn(n, 4, generator=g)
    scales = torch.full((n, 3), 0.08) * torch.exp(0.3 * torch.randn(n, 3, generator=g))
    opac = torch.full((n,), 0.8)
    colors = torch.rand(n, 3, generator=g)
    return means, quats, scales, opac, colors


def _views(scene, n_views=10, size=40):
    means, quats, scales, opac, colors = scene
    K = np.asarray(intrinsics_from_fov(60.0, size, size), np.float32)
    views = []
    for i in range(n_views):
        a = 2 * np.pi * i / n_views
        eye = np.array([3.5 * np.cos(a), 3.5 * np.sin(a), 1.0])
        vm = np.asarray(look_at(eye, np.zeros(3), (0.0, 0.0, 1.0)), np.float32)
        with torch.no_grad():
            img, _, _ = rasterize(means, quats, scales, opac, colors, torch.from_numpy(vm)[None],
                                  torch.from_numpy(K)[None], size, size)
        rgb = (img[0].clamp(0, 1) * 255).round().byte().numpy()
        mask = np.ones((size, size), bool)
        mask[-4:] = False  # a "nadir" strip that must not count
        views.append(TrainView(f"v{i}", PinholeCamera(vm, K, size, size), rgb, mask))
    return views


def test_ssim_and_psnr():
    a = torch.rand(1, 32, 32, 3)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-5)
    assert psnr(a, a) > 100
    b = (a + 0.1).clamp(0, 1)
    assert ssim(b, a) < 1.0 and 15 < psnr(b, a) < 25
    assert ssim_map(a, b).shape == (1, 32, 32)
    mask = torch.zeros(1, 32, 32, dtype=torch.bool)
    mask[:, :16] = True
    c = a.clone()
    c[:, 16:] = 0  # differs only outside the mask
    assert photometric_loss(c, a, mask) < 0.05 < photometric_loss(c, a)


def _ssim_reference(img, ref):
    """SSIM map by plain autograd: the 11x11 2-D Gaussian window (sigma 1.5) of Wang et al.
    2004, zero padding, mean over channels (written from the paper, no shared code)."""
    x, y = img.permute(0, 3, 1, 2), ref.permute(0, 3, 1, 2)
    r = torch.arange(11, dtype=torch.float64) - 5.0
    g = torch.exp(-(r**2) / (2 * 1.5**2))
    g = g / g.sum()
    w = (g[:, None] * g[None, :]).to(x.dtype)[None, None].repeat(3, 1, 1, 1)

    def blur(t):
        return torch.nn.functional.conv2d(t, w, padding=5, groups=3)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = (2 * mx * my + c1) * (2 * sxy + c2) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.mean(1)


def test_fused_ssim_matches_autograd_reference_on_a_real_photo():
    import cv2

    path = Path(__file__).resolve().parents[2].parent / "shared/data/photos/lund"
    bgr = cv2.imread(str(sorted(path.glob("*.jpg"))[0]))
    assert bgr is not None
    ref = torch.from_numpy(bgr[200:296, 300:380, ::-1].copy()).double().div(255)[None]
    noise = torch.randn(ref.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    img = (ref + 0.08 * noise).clamp(0, 1)
    mask = torch.rand(ref.shape[:3], generator=torch.Generator().manual_seed(1)) > 0.3
    a = img.clone().requires_grad_(True)
    b = img.clone().requires_grad_(True)
    sa, sb = ssim_map(a, ref), _ssim_reference(b, ref)
    assert 0.2 < float(sb.mean()) < 0.95
    assert torch.allclose(sa, sb, atol=1e-12)
    wts = torch.rand(sa.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    (sa * wts * mask).sum().backward()
    (sb * wts * mask).sum().backward()
    assert float((a.grad - b.grad).abs().max() / b.grad.abs().max()) < 1e-10
    # float32 as in training: the same up to rounding (E[x^2] - mu^2 cancels digits)
    a32 = img.float().clone().requires_grad_(True)
    b32 = img.float().clone().requires_grad_(True)
    photometric_loss(a32, ref.float(), mask).backward()
    l1 = (b32 - ref.float()).abs()[mask].mean()
    (0.8 * l1 + 0.2 * (1 - _ssim_reference(b32, ref.float())[mask].mean())).backward()
    assert float((a32.grad - b32.grad).abs().max() / b32.grad.abs().max()) < 1e-3


def test_fused_ssim_gradcheck():
    g = torch.Generator().manual_seed(3)
    ref = torch.rand(1, 13, 17, 3, generator=g, dtype=torch.float64)
    img = torch.rand(1, 13, 17, 3, generator=g, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: ssim_map(t, ref), (img,))


def test_init_and_export():
    pts = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    cols = np.full((50, 3), 128, np.uint8)
    p = init_splats(pts, cols, sh_degree=2)
    assert p["shN"].shape == (50, 8, 3) and p["sh0"].shape == (50, 1, 3)
    assert torch.allclose(torch.sigmoid(p["opacities"]), torch.tensor(0.1))
    s = to_splats(p)
    s.validate()
    assert s.n == 50 and s.sh_degree == 2
    with pytest.raises(ValueError):
        init_splats(np.zeros((0, 3)), np.zeros((0, 3)))


@pytest.mark.slow
def test_training_improves_held_out_psnr_and_resumes(tmp_path):
    scene = _scene(150)
    views = _views(scene, size=32)
    train, held_out = [v for i, v in enumerate(views) if i % 5], views[::5]
    rng = np.random.default_rng(1)
    pts = scene[0].numpy() + rng.normal(scale=0.05, size=(150, 3)).astype(np.float32)
    cols = np.full((150, 3), 0.5, np.float32)
    cfg = TrainConfig(steps=150, sh_degree=1, sh_degree_interval=50, refine_start=60,
                        refine_every=40, reset_every=1000, grow_grad2d=0.0001, init_opacity=0.5)
    tr = Trainer(train, held_out, pts, cols, cfg)
    before = tr.evaluate()["psnr"]
    tr.train(steps=75)
    tr.save_checkpoint(tmp_path / "ck.pt")
    tr.train()
    after = tr.evaluate()
    assert after["psnr"] > before + 5.0, (before, after)
    assert len(tr.splats["means"]) > 150  # densification ran
    assert 0 < after["ssim"] <= 1

    # resume from the checkpoint reproduces the same run
    tr2 = Trainer(train, held_out, pts, cols, cfg)
    tr2.load_checkpoint(tmp_path / "ck.pt")
    assert tr2.step == 75
    tr2.train()
    assert tr2.evaluate()["psnr"] == pytest.approx(after["psnr"], abs=0.05)


def test_curve_file_reads_back_cuts_and_survives_a_torn_line(tmp_path):
    import json

    from splatstudio.pipeline.artifacts import read_curve
    from splatstudio.pipeline.train_session import rewrite_curve as _rewrite_curve

    path = tmp_path / "curve.jsonl"
    assert read_curve(path) == []
    rows = [{"step": s, "loss": 1.0 / s} for s in (10, 20, 30, 40)]
    # a replayed step keeps its last value; a torn last line is skipped
    text = "".join(json.dumps(r) + "\n" for r in rows) + json.dumps({"step": 20, "loss": 9.0})
    path.write_text(text + '\n{"step": 50, "lo')
    got = read_curve(path)
    assert [p["step"] for p in got] == [10, 20, 30, 40] and got[1]["loss"] == 9.0
    assert [p["step"] for p in read_curve(path, max_step=25)] == [10, 20]
    _rewrite_curve(path, 30)  # a resume from the checkpoint at step 30
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [10, 20, 30]
