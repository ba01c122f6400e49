"""The trainer on CUDA (issue 18): the MCMC cap, checkpoints that resume on CUDA with the CUDA
random state, a CUDA checkpoint resumed on the CPU, and metrics equal on GPU and CPU with TF32
allowed globally. The CPU twins of these checks run in tests/unit/test_train_cuda_path.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from splatstudio.config import TrainConfig
from splatstudio.train.losses import psnr, ssim
from splatstudio.train.trainer import Trainer
from tests.unit.test_train_core import _scene, _views

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.fixture(scope="module")
def data():
    scene = _scene(300)
    views = _views(scene, n_views=6, size=64)
    rng = np.random.default_rng(1)
    pts = scene[0].numpy() + rng.normal(scale=0.05, size=(300, 3)).astype(np.float32)
    return views, pts, np.full((300, 3), 0.5, np.float32)


def _trainer(data, device="cuda", **cfg) -> Trainer:
    views, pts, cols = data
    base = {"steps": 50, "sh_degree": 1, "sh_degree_interval": 20, "refine_start": 1000}
    return Trainer(views[1:], views[:1], pts, cols, TrainConfig(**{**base, **cfg}), device)


def test_mcmc_cap_on_cuda_then_checkpoint(data, tmp_path):
    tr = _trainer(data, strategy="mcmc", max_gaussians=200)
    for _ in range(3):
        tr.train_step()
    torch.cuda.synchronize()  # a device-side assert would surface here
    assert len(tr.splats["means"]) == 200 and tr.strategy_state["binoms"].shape == (51, 51)
    tr.save_checkpoint(tmp_path / "ck.pt")


def test_checkpoint_resumes_on_cuda_with_its_random_states(data, tmp_path):
    tr = _trainer(data)
    for _ in range(4):
        tr.train_step()
    tr.save_checkpoint(tmp_path / "ck.pt")
    cuda_rng, cpu_rng = torch.cuda.get_rng_state(), torch.get_rng_state()
    expect = [tr.train_step()["loss"] for _ in range(3)]
    torch.manual_seed(99)
    again = _trainer(data)
    again.load_checkpoint(tmp_path / "ck.pt")
    assert torch.equal(torch.cuda.get_rng_state(), cuda_rng)
    assert torch.equal(torch.get_rng_state(), cpu_rng)
    assert all(p.is_cuda for p in again.splats.values())
    got = [again.train_step()["loss"] for _ in range(3)]
    assert got == pytest.approx(expect, rel=1e-4)

    cpu = _trainer(data, device="cpu")  # a CUDA checkpoint resumed on the CPU
    cpu.load_checkpoint(tmp_path / "ck.pt")
    assert cpu.step == 4 and all(p.device.type == "cpu" for p in cpu.splats.values())
    cpu.train_step()


def test_metrics_equal_on_gpu_and_cpu_with_tf32_allowed(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    g = torch.Generator().manual_seed(0)
    a = torch.rand(1, 256, 256, 3, generator=g)
    b = (a + 0.05 * torch.randn(1, 256, 256, 3, generator=g)).clamp(0, 1)
    assert ssim(a.cuda(), b.cuda()) == pytest.approx(ssim(a, b), abs=1e-5)
    assert psnr(a.cuda(), b.cuda()) == pytest.approx(psnr(a, b), abs=1e-4)
