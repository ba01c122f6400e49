"""What the CUDA path of the trainer needs, caught on the CPU (issue 18): the MCMC cap, checkpoints
across devices (a ``meta`` device and a faked CUDA generator), checkpoints that do not load or
are inconsistent, the opacity reset gsplat 1.5.3 skips, and metrics without TF32."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from splatstudio.config import TrainConfig
from splatstudio.train import losses
from splatstudio.train.trainer import (
    CheckpointError,
    Trainer,
    restore_torch_rng,
    torch_rng_states,
)
from tests.unit.test_train_core import _scene, _views

pytest.importorskip("gsplat")
torch.set_num_threads(2)


@pytest.fixture(scope="module")
def data():
    scene = _scene(300)
    views = _views(scene, n_views=6, size=24)
    rng = np.random.default_rng(1)
    pts = scene[0].numpy() + rng.normal(scale=0.05, size=(300, 3)).astype(np.float32)
    cols = np.full((300, 3), 0.5, np.float32)
    return views, pts, cols


def _trainer(data, **cfg) -> Trainer:
    views, pts, cols = data
    base = {"steps": 50, "sh_degree": 1, "sh_degree_interval": 20, "refine_start": 1000}
    return Trainer(views[1:], views[:1], pts, cols, TrainConfig(**{**base, **cfg}))


def test_mcmc_cap_below_the_count_prunes_only_per_gaussian_state(data):
    # `splatstudio train --strategy mcmc --max-gaussians 500` on a model with more points:
    # gsplat's ops.remove indexed MCMC's binoms [51, 51] by Gaussian (IndexError)
    tr = _trainer(data, strategy="mcmc", max_gaussians=200)
    binoms = tr.strategy_state["binoms"].clone()
    for _ in range(3):
        tr.train_step()
    assert len(tr.splats["means"]) == 200
    assert torch.equal(tr.strategy_state["binoms"], binoms)
    assert tr.inconsistency() is None
    tr.set_max_gaussians(150)  # the memory tiers' path
    tr.prune_to(150)
    assert len(tr.splats["means"]) == 150 and tr.strategy_state["binoms"].shape == (51, 51)
    tr.train_step()


def test_default_strategy_prune_cuts_its_running_state(data):
    tr = _trainer(data, refine_start=0, refine_every=1000)
    tr.train_step()  # fills grad2d / count
    assert tr.strategy_state["grad2d"] is not None
    tr.prune_to(120)
    assert len(tr.strategy_state["grad2d"]) == len(tr.strategy_state["count"]) == 120
    assert tr.strategy_state["scene_scale"] == tr.scene_scale
    assert tr.inconsistency() is None


def test_checkpoint_of_a_cpu_run_loads_on_another_device(data, tmp_path):
    # map_location=device moved the CPU RNG state off the CPU; torch.set_rng_state then raised
    # "TypeError: RNG state must be a torch.ByteTensor" (on CUDA; "meta" shows it without one)
    tr = _trainer(data)
    for _ in range(3):
        tr.train_step()
    tr.save_checkpoint(tmp_path / "ck.pt")
    saved_rng = torch.get_rng_state()
    torch.manual_seed(1234)  # something else in between

    other = _trainer(data)
    other.device = torch.device("meta")  # the training device of the resumed run
    other.load_checkpoint(tmp_path / "ck.pt")
    assert other.step == 3
    assert all(p.device.type == "meta" for p in other.splats.values())
    assert len(other.splats["means"]) == len(tr.splats["means"])
    moments = other.optimizers["means"].state[other.splats["means"]]
    assert moments["exp_avg"].device.type == "meta"
    assert torch.equal(torch.get_rng_state(), saved_rng)


def test_rng_states_per_device(monkeypatch):
    # a faked CUDA generator: its state is saved, and restored as a CPU ByteTensor
    cuda_state = torch.arange(16, dtype=torch.uint8)
    calls = []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": cuda_state.clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state",
                        lambda state, device="cuda": calls.append((state, device)))
    cuda = torch.device("cuda")
    states = torch_rng_states(cuda)
    assert torch.equal(states["cuda"], cuda_state) and states["cpu"].dtype == torch.uint8
    assert torch_rng_states(torch.device("cpu"))["cuda"] is None
    restore_torch_rng(states["cpu"], states["cuda"], cuda)
    (state, device), = calls
    assert state.device.type == "cpu" and state.dtype == torch.uint8 and device == cuda
    restore_torch_rng(states["cpu"], None, cuda)  # a CPU run's checkpoint resumed on CUDA
    restore_torch_rng(states["cpu"], states["cuda"], torch.device("cpu"))
    assert len(calls) == 1


def test_checkpoint_resumes_exactly(data, tmp_path):
    tr = _trainer(data)
    for _ in range(4):
        tr.train_step()
    tr.save_checkpoint(tmp_path / "ck.pt")
    expect = [tr.train_step()["loss"] for _ in range(3)]
    again = _trainer(data)
    again.load_checkpoint(tmp_path / "ck.pt")
    assert [again.train_step()["loss"] for _ in range(3)] == pytest.approx(expect, rel=1e-5)


def test_truncated_or_inconsistent_checkpoint_is_refused_and_changes_nothing(data, tmp_path):
    tr = _trainer(data)
    tr.train_step()
    path = tmp_path / "ck.pt"
    tr.save_checkpoint(path)
    fresh = _trainer(data)
    before = {k: v.detach().clone() for k, v in fresh.splats.items()}

    torn = tmp_path / "torn.pt"
    torn.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="torn.pt: does not load"):
        fresh.load_checkpoint(torn)

    ck = torch.load(path, weights_only=False)
    ck["splats"]["means"] = torch.cat([ck["splats"]["means"], ck["splats"]["means"][:7]])
    bad = tmp_path / "bad.pt"
    torch.save(ck, bad)
    with pytest.raises(CheckpointError, match="parameters of different lengths"):
        fresh.load_checkpoint(bad)

    ck = torch.load(path, weights_only=False)
    state = ck["optimizers"]["scales"]["state"][0]
    state["exp_avg"] = state["exp_avg"][:-1]
    torch.save(ck, bad)
    with pytest.raises(CheckpointError, match="Adam exp_avg of scales"):
        fresh.load_checkpoint(bad)

    assert fresh.step == 0
    assert all(torch.equal(fresh.splats[k], before[k]) for k in before)


def test_inconsistency_after_a_half_done_densification(data):
    tr = _trainer(data)
    tr.train_step()
    assert tr.inconsistency() is None
    means = tr.splats["means"]
    tr.splats["means"] = torch.nn.Parameter(torch.cat([means.detach(), means.detach()[:5]]))
    assert "optimizer of means" in tr.inconsistency()
    tr.optimizers["means"].param_groups[0]["params"] = [tr.splats["means"]]
    assert "different lengths" in tr.inconsistency()


def test_default_strategy_resets_opacities(data):
    # gsplat 1.5.3: `step % reset_every == 0 & step > 0` is always False (gsplat #797)
    tr = _trainer(data, reset_every=3, refine_stop=100, init_opacity=0.5)
    for _ in range(3):
        tr.train_step()
    assert torch.sigmoid(tr.splats["opacities"]).min() > 0.3  # steps 0, 1, 2: no reset
    tr.train_step()  # step 3
    reset = 2 * tr.strategy.prune_opa
    assert torch.sigmoid(tr.splats["opacities"]).max() <= reset + 1e-6
    assert torch.count_nonzero(tr.optimizers["opacities"].state[tr.splats["opacities"]]
                               ["exp_avg"]) == 0
    late = _trainer(data, reset_every=3, refine_stop=2, init_opacity=0.5)
    for _ in range(4):
        late.train_step()
    assert torch.sigmoid(late.splats["opacities"]).min() > 0.3  # past refine_stop: none


def test_metrics_run_without_tf32(monkeypatch):
    seen = []
    conv2d = losses.F.conv2d

    def spy(*a, **k):
        seen.append(torch.backends.cudnn.allow_tf32)
        return conv2d(*a, **k)

    monkeypatch.setattr(losses.F, "conv2d", spy)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    # the torch SSIM (what CUDA runs) calls conv2d; on the CPU the numba twin would run
    from splatstudio.render import numba_impl

    monkeypatch.setattr(numba_impl, "_USABLE", False)
    a = torch.rand(1, 16, 16, 3)
    losses.ssim(a, a)
    assert seen and not any(seen)
    assert torch.backends.cudnn.allow_tf32  # restored
    seen.clear()
    losses.photometric_loss(a, a)  # the training loss keeps torch's setting (speed)
    assert all(seen)
