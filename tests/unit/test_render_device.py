"""Device choice (auto | cpu | cuda | mps) and the torch path's dtype rules.

This machine has neither an Apple GPU nor an AMD one: MPS and ROCm are exercised through
:class:`splatstudio.render.device.Backends` values (and monkeypatched probes for the
callers), the CPU for real.
"""

from __future__ import annotations

import pytest
import torch

from splatstudio.errors import StageError
from splatstudio.render import device as dv
from splatstudio.render import intrinsics_from_fov, look_at, rasterize
from splatstudio.render.image import resolve_device

NONE = dv.Backends(cuda=False, hip=False, mps=False)
NVIDIA = dv.Backends(cuda=True, hip=False, mps=False)
ROCM = dv.Backends(cuda=True, hip=True, mps=False)
APPLE = dv.Backends(cuda=False, hip=False, mps=True)


@pytest.mark.parametrize(
    "want,backends,reason,expected",
    [
        ("cpu", NVIDIA, None, ("cpu", "torch")),
        ("auto", NONE, None, ("cpu", "torch")),
        ("", NONE, None, ("cpu", "torch")),
        ("AUTO", APPLE, None, ("mps", "torch")),
        ("mps", APPLE, None, ("mps", "torch")),
        ("auto", NVIDIA, None, ("cuda", "gsplat")),
        ("cuda", NVIDIA, None, ("cuda", "gsplat")),
        ("auto", ROCM, "no ROCm kernels", ("cuda", "torch")),
        ("cuda", ROCM, "no ROCm kernels", ("cuda", "torch")),
        ("cpu", ROCM, None, ("cpu", "torch")),
    ],
)
def test_choose_device(want, backends, reason, expected):
    c = dv.choose_device(want, backends, reason)
    assert (c.device, c.rasterizer) == expected
    assert c.warning is None


def test_auto_falls_back_with_a_warning_when_gsplat_cannot_run():
    c = dv.choose_device("auto", NVIDIA, "no nvcc")
    assert (c.device, c.rasterizer) == ("cpu", "torch")
    assert "no nvcc" in c.warning and "CPU" in c.warning


@pytest.mark.parametrize(
    "want,backends,reason,match",
    [
        ("mps", NONE, None, "MPS"),
        ("mps", NVIDIA, None, "Apple silicon"),
        ("cuda", NONE, None, "no CUDA GPU"),
        ("cuda", NVIDIA, "nvcc missing", "nvcc missing"),
        ("vulkan", NONE, None, "auto, cpu, cuda, mps"),
    ],
)
def test_choose_device_errors(want, backends, reason, match):
    with pytest.raises(ValueError, match=match):
        dv.choose_device(want, backends, reason)


def test_uses_gsplat_only_on_nvidia_cuda():
    assert dv.uses_gsplat(torch.device("cuda"), hip=False)
    assert not dv.uses_gsplat(torch.device("cuda"), hip=True)
    assert not dv.uses_gsplat(torch.device("cpu"), hip=False)
    assert not dv.uses_gsplat(torch.device("mps"), hip=False)


def test_dtype_rules():
    f32, f64 = torch.float32, torch.float64
    assert dv.torch_path_dtype_error("cpu", {f32}) is None
    assert dv.torch_path_dtype_error("cpu", {f64}) is None
    assert dv.torch_path_dtype_error("mps", {f32}) is None
    assert dv.torch_path_dtype_error("cuda", {f64}) is None  # ROCm has float64
    assert "MPS has no float64" in dv.torch_path_dtype_error("mps", {f64})
    assert "float32 or all in float64" in dv.torch_path_dtype_error("cpu", {f32, f64})
    assert "float16" in dv.torch_path_dtype_error("cpu", {torch.float16})
    assert "bfloat16" in dv.torch_path_dtype_error("mps", {torch.bfloat16})


def _scene(dtype):
    g = torch.Generator().manual_seed(0)
    n = 20
    means = torch.randn(n, 3, generator=g) * 0.3
    quats = torch.randn(n, 4, generator=g)
    scales = torch.rand(n, 3, generator=g) * 0.1 + 0.02
    opac = torch.rand(n, generator=g)
    colors = torch.rand(n, 3, generator=g)
    vm = torch.as_tensor(look_at([0.0, -2.0, 0.3], [0.0, 0.0, 0.0]), dtype=torch.float32)[None]
    K = torch.as_tensor(intrinsics_from_fov(60.0, 32, 24), dtype=torch.float32)[None]
    return [t.to(dtype) for t in (means, quats, scales, opac, colors, vm, K)]


def test_rasterize_applies_the_rules_on_the_cpu():
    img, _, _ = rasterize(*_scene(torch.float32), 32, 24)
    assert img.shape == (1, 24, 32, 3) and float(img.max()) > 0
    with pytest.raises(ValueError, match="float32 or all in float64"):
        rasterize(*_scene(torch.float16), 32, 24)
    with pytest.raises(NotImplementedError, match="NVIDIA CUDA"):
        rasterize(*_scene(torch.float32), 32, 24, backend="gsplat")


def test_callers_resolve_mps_and_rocm(monkeypatch):
    from splatstudio.pipeline.train import resolve_device as train_device

    monkeypatch.setenv("SPLATSTUDIO_DEVICE", "mps")
    if not dv.torch_backends().mps:
        with pytest.raises(StageError, match="MPS"):
            train_device()
        with pytest.raises(RuntimeError, match="MPS"):
            resolve_device("mps")
    monkeypatch.setenv("SPLATSTUDIO_DEVICE", "opencl")
    with pytest.raises(StageError, match="auto, cpu, cuda, mps"):
        train_device()
    monkeypatch.setattr(dv, "torch_backends", lambda: APPLE)
    monkeypatch.setenv("SPLATSTUDIO_DEVICE", "auto")
    assert train_device() == torch.device("mps")
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(dv, "torch_backends", lambda: ROCM)
    for want in ("auto", "cuda"):
        monkeypatch.setenv("SPLATSTUDIO_DEVICE", want)
        assert train_device() == torch.device("cuda")  # no gsplat probe: the torch path
        assert resolve_device(want) == torch.device("cuda")
    monkeypatch.setenv("SPLATSTUDIO_DEVICE", "cpu")
    assert train_device() == torch.device("cpu")
