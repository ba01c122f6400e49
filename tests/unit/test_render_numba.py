"""The compiled (numba) compositing kernels vs their torch twin and the brute-force reference.

``tests/unit/test_render_rasterize.py`` runs with the default ``kernel="auto"`` (numba when
installed); here the reference comparisons also run with ``kernel="torch"`` so both twins
stay checked, and the two kernels are compared with each other, images and every gradient,
on random scenes and on real trained scenes (``../shared/data/splats``) rendered at
training-like sizes that the brute-force reference cannot afford.
"""

from __future__ import annotations

import pytest
import torch

from splatstudio.render import frame_points, rasterize
from splatstudio.render import torch_impl as ti
from tests.unit.test_render_rasterize import (
    F32_GRAD,
    F32_IMG,
    F64_GRAD,
    F64_IMG,
    SPLATS,
    assert_close,
    compare,
    load_3dgs_ply,
    make_scene,
)

numba_impl = pytest.importorskip("splatstudio.render.numba_impl")
if not numba_impl.numba_available():
    pytest.skip("numba is not installed", allow_module_level=True)

torch.set_num_threads(2)


@pytest.mark.parametrize("kernel", ["torch", "numba"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed,dense", [(0, False), (1, True), (2, True)])
def test_both_kernels_match_the_brute_force_reference(kernel, dtype, seed, dense):
    scene, wh = make_scene(seed, n=90, dtype=dtype, dense=dense)
    res, info = compare(scene, wh, seed=seed, kw={"kernel": kernel})
    assert info["cpu_stats"]["kernel"] == kernel
    if dtype == torch.float64:
        assert_close(res, F64_IMG, F64_GRAD)
    else:
        assert_close(res, F32_IMG, F32_GRAD)
    if dense:  # early termination and the 0.999 clamp were exercised
        assert res["n_done"] > 0


@pytest.mark.parametrize("kernel", ["torch", "numba"])
def test_both_kernels_match_reference_with_background_sh_and_depth(kernel):
    scene, wh = make_scene(5, n=70, dtype=torch.float64, dense=True, sh_degree=2)
    bg = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    res, _ = compare(scene, wh, rkw={"sh_degree": 2}, kw={"sh_degree": 2, "kernel": kernel},
                     bg=bg)
    assert_close(res, F64_IMG, F64_GRAD)
    res, _ = compare(scene, wh, rkw={"sh_degree": 2}, mode="RGB+ED",
                     kw={"sh_degree": 2, "kernel": kernel})
    assert_close(res, F64_IMG, F64_GRAD)


def _grads(scene, W, H, kernel, **kw):
    """Image, alpha and the gradients of every input of a random-weighted loss."""
    means, quats, scales, opac, colors, vm, K = scene
    ps = [t.detach().clone().requires_grad_() for t in (means, quats, scales, opac, colors)]
    img, alp, info = rasterize(*ps, vm[None], K[None], W, H, kernel=kernel, **kw)
    g = torch.Generator().manual_seed(7)
    wi = torch.randn(img.shape, generator=g, dtype=img.dtype)
    wa = torch.randn(alp.shape, generator=g, dtype=img.dtype)
    ((img * wi).sum() + (alp * wa).sum()).backward()
    return img.detach(), alp.detach(), [p.grad for p in ps], info


def _rel(a, b):
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


@pytest.mark.slow
@pytest.mark.parametrize("tile_size,az", [(8, 0.0), (16, 130.0)])
def test_real_scene_kernels_agree_at_training_size(tile_size, az):
    """donut_fused.ply (45,624 trained Gaussians, SH 0) at 256x192 (training tiles from one
    side, render tiles from another): the numba
    kernel's image, alpha and the gradients of means, quats, scales, opacities and SH equal
    the torch twin's up to float32 rounding."""
    means, quats, scales, opac, sh = load_3dgs_ply(SPLATS / "donut_fused.ply")
    W, H = 256, 192
    vm, K = frame_points(means, 60.0, W, H, up=(0, -1, 0), azimuth_deg=az)
    scene = [means, quats, scales, opac, sh, vm, K]
    i1, a1, g1, info1 = _grads(scene, W, H, "torch", sh_degree=0, tile_size=tile_size)
    i2, a2, g2, info2 = _grads(scene, W, H, "numba", sh_degree=0, tile_size=tile_size)
    assert info2["cpu_stats"]["kernel"] == "numba"
    # the same intersections: the exact ellipse-tile test is shared
    assert info2["cpu_stats"]["n_isects"] == info1["cpu_stats"]["n_isects"]
    assert float((i1 - i2).abs().max()) < 1e-5
    assert float((a1 - a2).abs().max()) < 1e-5
    assert 0.1 < float(a1.mean()) < 0.9  # the donut covers a real share of the view
    for name, x, y in zip(["means", "quats", "scales", "opacities", "sh"], g2, g1,
                          strict=True):
        assert _rel(x, y) < 1e-4, name


def test_real_scene_with_sh3_matches_reference_and_twin():
    """fruit_drops_minimal.ply (4,721 Gaussians, SH degree 3) against the brute force."""
    means, quats, scales, opac, sh = load_3dgs_ply(SPLATS / "fruit_drops_minimal.ply")
    W, H = 32, 24
    vm, K = frame_points(means, 60.0, W, H, up=(0, -1, 0), azimuth_deg=-90, elevation_deg=10)
    scene = [means, quats, scales, opac, sh, vm, K]
    res, info = compare(scene, (W, H), rkw={"sh_degree": 3},
                        kw={"sh_degree": 3, "kernel": "numba"})
    assert info["cpu_stats"]["kernel"] == "numba"
    assert_close(res, F32_IMG, F32_GRAD)


def test_gradcheck_numba_float64():
    from torch.autograd import gradcheck

    (means, quats, scales, opac, colors, vm, K), (W, H) = make_scene(21, n=12, w=13, h=11,
                                                                     dtype=torch.float64)
    ps = [t.clone().requires_grad_() for t in (means, scales, opac, colors)]

    def f(m, s, o, c):
        img, alp, _ = rasterize(m, quats, s, o, c, vm[None], K[None], W, H, kernel="numba")
        return img, alp

    assert gradcheck(f, ps, eps=1e-6, atol=1e-6, rtol=1e-5)


def test_kernel_choice_and_errors(monkeypatch):
    with pytest.raises(ValueError, match="kernel must be one of"):
        ti.RasterConfig(kernel="cuda")
    cfg = ti.RasterConfig()
    assert ti._compositor(cfg, torch.device("cpu")) is numba_impl.RasterizeToPixelsNumba
    assert cfg.stats["kernel"] == "numba"
    # other devices (MPS, ROCm, ...) take the torch twin under "auto"; "numba" refuses them
    assert ti._compositor(ti.RasterConfig(), torch.device("meta")) is ti._RasterizeToPixels
    with pytest.raises(ValueError, match="CPU tensors only"):
        ti._compositor(ti.RasterConfig(kernel="numba"), torch.device("meta"))
    # without numba: "auto" falls back to the twin, "numba" says what is missing
    monkeypatch.setattr(numba_impl, "numba", None)
    assert ti._compositor(ti.RasterConfig(), torch.device("cpu")) is ti._RasterizeToPixels
    with pytest.raises(ImportError, match="needs the numba package"):
        ti._compositor(ti.RasterConfig(kernel="numba"), torch.device("cpu"))


def test_bin_tiles_lists_are_front_to_back_and_match_the_twin():
    """The counting sort keeps the depth order inside each tile and yields the same
    (tile, Gaussian) pairs as the torch twin's binning."""
    (means, quats, scales, opac, colors, vm, K), (W, H) = make_scene(4, n=200, w=61, h=47,
                                                                     dense=True)
    p = ti.project_gaussians(means, quats, scales, opac, vm, K, W, H)
    params = numba_impl._params(p["means2d"], p["conics"], p["opacities"])
    radii = p["radii"].to(torch.int32).numpy()
    offsets, ids, n_box = numba_impl.bin_tiles(params, radii, W, H, 8)
    assert n_box >= ids.shape[0] > 0
    cfg = ti.RasterConfig(tile_size=8)
    packed = ti._pack_params(p["means2d"], p["conics"], p["opacities"])
    twin = {}
    for b in ti._tile_batches(p["means2d"], p["radii"], W, H, cfg, {}, packed):
        for t, row, c in zip(b.tile_ids.tolist(), b.ids.tolist(), b.counts_list, strict=True):
            twin[t] = row[:c]
    for t in range(offsets.shape[0] - 1):
        lst = ids[offsets[t]:offsets[t + 1]].tolist()
        assert lst == sorted(lst)  # V order = front to back
        assert lst == twin.get(t, []), t


def test_numba_ssim_equals_the_torch_twin_on_a_real_photo():
    """The compiled SSIM (forward and gradient) equals losses._FusedSSIM on a 512x384 crop
    of a real photo (float64: to 1e-12; float32: to rounding, which E[x^2] - mu^2 amplifies
    where the window is flat), batch of two."""
    cv2 = pytest.importorskip("cv2")
    from pathlib import Path

    from splatstudio.train.losses import photometric_loss, ssim_map

    path = Path(__file__).resolve().parents[3] / "shared/data/photos/lund"
    bgr = cv2.imread(str(sorted(path.glob("*.jpg"))[0]))
    assert bgr is not None
    ref = torch.from_numpy(bgr[100:484, 200:712, ::-1].copy()).double().div(255)[None]
    ref = torch.cat([ref, ref.flip(2)])
    g = torch.Generator().manual_seed(0)
    img = (ref + 0.1 * torch.randn(ref.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    wts = torch.rand(ref.shape[:3], generator=g, dtype=torch.float64)
    for dt, tol_s, tol_g in ((torch.float64, 1e-12, 1e-10), (torch.float32, 5e-4, 1e-3)):
        a = img.to(dt).clone().requires_grad_(True)
        b = img.to(dt).clone().requires_grad_(True)
        sa = ssim_map(a, ref.to(dt), kernel="numba")
        sb = ssim_map(b, ref.to(dt), kernel="torch")
        assert 0.2 < float(sb.mean()) < 0.95
        assert float((sa - sb).abs().max()) < tol_s
        (sa * wts.to(dt)).sum().backward()
        (sb * wts.to(dt)).sum().backward()
        assert float((a.grad - b.grad).abs().max() / b.grad.abs().max()) < tol_g
    # the training loss takes it by default on the CPU
    x = img.float().requires_grad_(True)
    photometric_loss(x, ref.float()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with pytest.raises(ValueError, match="kernel must be"):
        ssim_map(img, ref, kernel="fast")
    with pytest.raises(ValueError, match="CPU float32"):
        ssim_map(img.half(), ref.half(), kernel="numba")
