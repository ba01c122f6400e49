"""The training loop on CPU, on a synthetic scene rendered by our rasterizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from splatstudio.render import intrinsics_from_fov, look_at, rasterize
from splatstudio.train.losses import photometric_loss, psnr, ssim, ssim_map
from splatstudio.train.model import init_splats, to_splats
from splatstudio.train.trainer import Trainer, TrainerConfig, TrainView

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
        views.append(TrainView(f"v{i}", vm, K, rgb, mask))
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
    cfg = TrainerConfig(steps=150, sh_degree=1, sh_degree_interval=50, refine_start=60,
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

    from splatstudio.pipeline.train import _rewrite_curve, read_curve

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
