"""CPU rasterizer vs an independent brute-force per-pixel reference.

The reference below evaluates *every* Gaussian at *every* pixel centre of a tiny image
(no tiles, no bounding boxes), sorts by camera depth and composites front to back one
Gaussian at a time with gsplat's rules (skip sigma < 0 or alpha < 1/255, clamp alpha at
0.999, stop -- exclusively -- once the transmittance would reach 1e-4). It is written
from the equations (3DGS, Kerbl et al. 2023; EWA, Zwicker et al. 2001; gsplat's
``_torch_impl.py``), with dense matrices and plain autograd, sharing no code with
``splatstudio.render``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from splatstudio.render import frame_points, intrinsics_from_fov, look_at, rasterize

torch.set_num_threads(2)

# ------------------------------------------------------------------------------------
# Reference implementation
# ------------------------------------------------------------------------------------

C0 = 0.28209479177387814
C1 = 0.4886025119029199
C2 = [1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792,
      0.5462742152960396]  # fmt: skip
C3 = [-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
      -0.4570457994644658, 1.445305721320277, -0.5900435899266435]  # fmt: skip


def ref_sh(deg, sh, dirs):
    """3DGS ``eval_sh`` (utils/sh_utils.py): sh [N, K, 3], dirs unit [N, 3]."""
    res = C0 * sh[:, 0]
    if deg > 0:
        x, y, z = (dirs[:, i : i + 1] for i in range(3))
        res = res - C1 * y * sh[:, 1] + C1 * z * sh[:, 2] - C1 * x * sh[:, 3]
        if deg > 1:
            xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
            res = (res + C2[0] * xy * sh[:, 4] + C2[1] * yz * sh[:, 5]
                   + C2[2] * (2.0 * zz - xx - yy) * sh[:, 6] + C2[3] * xz * sh[:, 7]
                   + C2[4] * (xx - yy) * sh[:, 8])  # fmt: skip
            if deg > 2:
                res = (res + C3[0] * y * (3 * xx - yy) * sh[:, 9] + C3[1] * xy * z * sh[:, 10]
                       + C3[2] * y * (4 * zz - xx - yy) * sh[:, 11]
                       + C3[3] * z * (2 * zz - 3 * xx - 3 * yy) * sh[:, 12]
                       + C3[4] * x * (4 * zz - xx - yy) * sh[:, 13]
                       + C3[5] * z * (xx - yy) * sh[:, 14]
                       + C3[6] * x * (xx - 3 * yy) * sh[:, 15])  # fmt: skip
    return res


def ref_rotmat(q):
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


def reference_render(
    means, quats, scales, opac, colors, viewmat, K, W, H, *, near=0.01, far=1e10,
    eps2d=0.3, antialiased=False, radius_clip=0.0, bg=None, sh_degree=None, mode="RGB",
    stats=None,
):  # fmt: skip
    """One camera. Returns (image [H, W, X], alpha [H, W, 1]); ``stats["n_done"]`` counts
    the pixels that stopped early (transmittance threshold)."""
    R = ref_rotmat(quats)
    S = torch.diag_embed(scales)
    cov = R @ S @ S.transpose(-1, -2) @ R.transpose(-1, -2)
    Rw, t = viewmat[:3, :3], viewmat[:3, 3]
    mc = means @ Rw.T + t
    covc = Rw @ cov @ Rw.T
    x, y, z = mc.unbind(-1)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    tfx, tfy = 0.5 * W / fx, 0.5 * H / fy
    tx = z * torch.clamp(x / z, -(cx / fx + 0.3 * tfx), (W - cx) / fx + 0.3 * tfx)
    ty = z * torch.clamp(y / z, -(cy / fy + 0.3 * tfy), (H - cy) / fy + 0.3 * tfy)
    zero = torch.zeros_like(z)
    J = torch.stack(
        [torch.stack([fx / z, zero, -fx * tx / z**2], -1),
         torch.stack([zero, fy / z, -fy * ty / z**2], -1)], -2
    )  # fmt: skip
    c2 = J @ covc @ J.transpose(-1, -2)
    det0 = c2[:, 0, 0] * c2[:, 1, 1] - c2[:, 0, 1] * c2[:, 1, 0]
    c2 = c2 + eps2d * torch.eye(2, dtype=means.dtype)
    det = c2[:, 0, 0] * c2[:, 1, 1] - c2[:, 0, 1] * c2[:, 1, 0]
    o = opac
    if antialiased:
        o = o * torch.sqrt(torch.clamp(det0 / det, min=1e-30))
    valid = (z >= near) & (z <= far) & (det > 0) & (o >= 1 / 255)
    ext = torch.clamp(torch.sqrt(2 * torch.log(torch.clamp(o.detach(), min=1 / 255) * 255)),
                      max=3.33)  # fmt: skip
    rx = torch.ceil(ext * torch.sqrt(c2[:, 0, 0].detach()))
    ry = torch.ceil(ext * torch.sqrt(c2[:, 1, 1].detach()))
    valid &= ~((rx <= radius_clip) & (ry <= radius_clip))
    inv = torch.linalg.inv(c2)
    m2 = torch.stack([fx * x / z + cx, fy * y / z + cy], -1)
    if sh_degree is not None:
        campos = -Rw.T @ t
        d = means - campos
        d = d / d.norm(dim=-1, keepdim=True)
        colors = torch.clamp_min(ref_sh(sh_degree, colors, d) + 0.5, 0.0)
    if mode in ("D", "ED"):
        feats = z[:, None]
    elif mode in ("RGB+D", "RGB+ED"):
        feats = torch.cat([colors, z[:, None]], -1)
    else:
        feats = colors
    ys, xs = torch.meshgrid(torch.arange(H, dtype=means.dtype) + 0.5,
                            torch.arange(W, dtype=means.dtype) + 0.5, indexing="ij")  # fmt: skip
    p = torch.stack([xs.reshape(-1), ys.reshape(-1)], -1)
    dlt = m2[None] - p[:, None]
    sig = (0.5 * (inv[:, 0, 0] * dlt[..., 0] ** 2 + inv[:, 1, 1] * dlt[..., 1] ** 2)
           + inv[:, 0, 1] * dlt[..., 0] * dlt[..., 1])  # fmt: skip
    alpha = torch.clamp(o * torch.exp(-sig), max=0.999)
    ok = valid[None] & (sig >= 0) & (alpha >= 1 / 255)
    T = torch.ones(p.shape[0], dtype=means.dtype)
    done = torch.zeros(p.shape[0], dtype=torch.bool)
    out = torch.zeros(p.shape[0], feats.shape[-1], dtype=means.dtype)
    for i in torch.argsort(z.detach(), stable=True).tolist():
        a = torch.where(ok[:, i], alpha[:, i], torch.zeros_like(alpha[:, i]))
        stop = (a > 0) & (T * (1 - a) <= 1e-4) & ~done
        a = torch.where(done | stop, torch.zeros_like(a), a)
        out = out + (a * T)[:, None] * feats[i]
        T = T * (1 - a)
        done = done | stop
    if stats is not None:
        stats["n_done"] = int(done.sum())
    if bg is not None and mode not in ("D", "ED"):
        if mode in ("RGB+D", "RGB+ED"):
            bg = torch.cat([bg, bg.new_zeros(1)])
        out = out + T[:, None] * bg
    img, alp = out.reshape(H, W, -1), (1 - T).reshape(H, W, 1)
    if mode in ("ED", "RGB+ED"):
        img = torch.cat([img[..., :-1], img[..., -1:] / alp.clamp(min=1e-10)], -1)
    return img, alp


# ------------------------------------------------------------------------------------
# Scenes and helpers
# ------------------------------------------------------------------------------------

EYE = [0.15, -2.2, 0.5]


def make_scene(seed, n=60, dtype=torch.float32, dense=False, sh_degree=None, w=29, h=23):
    g = torch.Generator().manual_seed(seed)

    def r(*s):
        return torch.rand(*s, generator=g, dtype=torch.float64)

    def rn(*s):
        return torch.randn(*s, generator=g, dtype=torch.float64)

    means = rn(n, 3) * (0.6 if dense else 0.8)
    quats = rn(n, 4)
    scales = r(n, 3) * (0.5 if dense else 0.25) + 0.02
    opac = r(n) * 0.9 + 0.05
    if dense:
        opac[: n // 3] = 0.9995  # exercises the 0.999 clamp and early termination
    if sh_degree is None:
        colors = r(n, 3)
    else:
        colors = rn(n, (sh_degree + 1) ** 2, 3) * 0.4
    vm = torch.as_tensor(look_at(EYE, [0.0, 0.0, 0.0]))
    K = torch.as_tensor(intrinsics_from_fov(65.0, w, h))
    cast = [t.to(dtype) for t in (means, quats, scales, opac, colors, vm, K)]
    return cast, (w, h)


def rel(a, b):
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


def compare(scene, wh, *, seed=0, check_grads=True, rkw=None, kw=None, bg=None, mode="RGB"):
    """Render with both implementations; return (image diff, alpha diff, grad rel diffs)."""
    rkw = dict(rkw or {})
    kw = dict(kw or {})
    means, quats, scales, opac, colors, vm, K = scene
    W, H = wh
    ours = [t.clone().requires_grad_(check_grads) for t in (means, quats, scales, opac, colors)]
    refp = [t.clone().requires_grad_(check_grads) for t in (means, quats, scales, opac, colors)]
    bgo = bgr = None
    if bg is not None:
        bgo = bg.clone().requires_grad_(check_grads)
        bgr = bg.clone().requires_grad_(check_grads)
    img, alp, info = rasterize(
        *ours, vm[None], K[None], W, H, backgrounds=None if bgo is None else bgo[None],
        render_mode=mode, **kw,
    )  # fmt: skip
    st = {}
    rimg, ralp = reference_render(*refp, vm, K, W, H, bg=bgr, mode=mode, stats=st, **rkw)
    out = {
        "img": float((img[0] - rimg).detach().abs().max()),
        "alpha": float((alp[0] - ralp).detach().abs().max()),
        "mean_alpha": float(ralp.detach().mean()),
        "n_done": st["n_done"],
    }
    if check_grads:
        g = torch.Generator().manual_seed(seed + 1000)
        wi = torch.randn(rimg.shape, generator=g, dtype=rimg.dtype)
        wa = torch.randn(ralp.shape, generator=g, dtype=rimg.dtype)
        ((img[0] * wi).sum() + (alp[0] * wa).sum()).backward()
        ((rimg * wi).sum() + (ralp * wa).sum()).backward()
        names = ["means", "quats", "scales", "opacities", "colors"]
        for nm, a, b in zip(names, ours, refp, strict=True):
            assert (a.grad is None) == (b.grad is None), nm
            if b.grad is not None:
                out["grad_" + nm] = rel(a.grad, b.grad)
        if bg is not None:
            assert (bgo.grad is None) == (bgr.grad is None)
            if bgr.grad is not None:
                out["grad_bg"] = rel(bgo.grad, bgr.grad)
    return out, info


F32_IMG, F32_GRAD = 1e-5, 1e-4
F64_IMG, F64_GRAD = 1e-12, 1e-10


def assert_close(res, img_tol, grad_tol):
    assert res["img"] < img_tol, res
    assert res["alpha"] < img_tol, res
    for k, v in res.items():
        if k.startswith("grad_"):
            assert v < grad_tol, (k, res)


# ------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dense", [False, True])
def test_matches_reference_float32(seed, dense):
    scene, wh = make_scene(seed, n=80 if dense else 60, dense=dense)
    res, info = compare(scene, wh, seed=seed)
    assert_close(res, F32_IMG, F32_GRAD)
    if dense:  # saturated pixels: the 0.999 clamp and early termination are exercised
        assert res["mean_alpha"] > 0.9 and res["n_done"] > 20, res


@pytest.mark.parametrize("mode", ["classic", "antialiased"])
def test_matches_reference_float64(mode):
    scene, wh = make_scene(3, n=80, dtype=torch.float64, dense=True)
    res, _ = compare(scene, wh, rkw={"antialiased": mode == "antialiased"},
                     kw={"rasterize_mode": mode})  # fmt: skip
    assert_close(res, F64_IMG, F64_GRAD)


def test_antialiased_float32():
    scene, wh = make_scene(4, n=70)
    res, _ = compare(scene, wh, rkw={"antialiased": True}, kw={"rasterize_mode": "antialiased"})
    assert_close(res, F32_IMG, F32_GRAD)


@pytest.mark.parametrize("deg", [0, 1, 2, 3])
def test_spherical_harmonics_vs_reference(deg):
    scene, wh = make_scene(10 + deg, n=50, sh_degree=deg)
    res, _ = compare(scene, wh, rkw={"sh_degree": deg}, kw={"sh_degree": deg})
    assert_close(res, F32_IMG, F32_GRAD)


def test_sh_degree_lower_than_coefficients():
    scene, wh = make_scene(20, n=40, sh_degree=3)
    res, _ = compare(scene, wh, rkw={"sh_degree": 1}, kw={"sh_degree": 1})
    assert_close(res, F32_IMG, F32_GRAD)


def test_backgrounds_and_gradient():
    scene, wh = make_scene(5, n=50)
    bg = torch.tensor([0.2, 0.5, 0.9])
    res, _ = compare(scene, wh, bg=bg)
    assert_close(res, F32_IMG, F32_GRAD)


@pytest.mark.parametrize("mode", ["D", "ED", "RGB+D", "RGB+ED"])
def test_render_modes(mode):
    scene, wh = make_scene(6, n=50)
    bg = torch.tensor([0.3, 0.1, 0.7])
    res, _ = compare(scene, wh, bg=bg, mode=mode)
    assert_close(res, 5e-5 if "ED" in mode else F32_IMG, F32_GRAD)


def test_render_mode_channels_and_expected_depth():
    (means, quats, scales, opac, colors, vm, K), (W, H) = make_scene(7, n=40)
    args = (means, quats, scales, opac, colors, vm[None], K[None], W, H)
    rgb, a1, _ = rasterize(*args)
    d, a2, _ = rasterize(*args, render_mode="D")
    ed, _, _ = rasterize(*args, render_mode="ED")
    rgbd, _, _ = rasterize(*args, render_mode="RGB+D")
    assert rgb.shape[-1] == 3 and d.shape[-1] == 1 and rgbd.shape[-1] == 4
    torch.testing.assert_close(rgbd[..., :3], rgb)
    torch.testing.assert_close(rgbd[..., 3:], d)
    torch.testing.assert_close(a1, a2)
    m = a1 > 1e-3
    torch.testing.assert_close(ed[m], (d / a1.clamp(min=1e-10))[m])


def test_near_plane_and_behind_camera():
    (means, quats, scales, opac, colors, vm, K), (W, H) = make_scene(8, n=40)
    fwd = torch.tensor([0.0, 0.0, 0.0]) - torch.tensor(EYE)
    fwd = fwd / fwd.norm()
    eye = torch.tensor(EYE)
    extra = torch.stack([eye - 0.5 * fwd, eye - 1e-3 * fwd, eye + 0.005 * fwd,
                         eye + 0.02 * fwd, eye + 0.6 * fwd])  # fmt: skip
    # behind, just behind, in front but nearer than near_plane=0.01, just past it, far
    m = torch.cat([means, extra])
    q = torch.cat([quats, torch.tensor([[1.0, 0, 0, 0]] * 5)])
    s = torch.cat([scales, torch.full((5, 3), 0.004)])
    o = torch.cat([opac, torch.full((5,), 0.8)])
    c = torch.cat([colors, torch.rand(5, 3)])
    scene = [m, q, s, o, c, vm, K]
    res, info = compare(scene, (W, H))
    assert_close(res, F32_IMG, F32_GRAD)
    vis = (info["radii"][0] > 0).all(-1)[-5:].tolist()
    assert vis[:3] == [False, False, False]
    assert vis[3:] == [True, True]
    depths = info["depths"][0, -5:]
    assert depths[0] < 0 and depths[4] > 0
    # far plane culls the far half of the scene, same as the reference
    res, info = compare(scene, (W, H), rkw={"far": 4.0}, kw={"far_plane": 4.0})
    assert_close(res, F32_IMG, F32_GRAD)
    assert not (info["radii"][0][info["depths"][0] > 4.0] > 0).any()


def test_radius_clip_and_eps2d():
    scene, wh = make_scene(9, n=60)
    res, info = compare(scene, wh, rkw={"radius_clip": 3.0, "eps2d": 0.1},
                        kw={"radius_clip": 3.0, "eps2d": 0.1})  # fmt: skip
    assert_close(res, F32_IMG, F32_GRAD)


def test_multiple_cameras_and_per_camera_colors():
    (means, quats, scales, opac, colors, vm, K), (W, H) = make_scene(11, n=50)
    vms = torch.stack([torch.as_tensor(look_at(e, [0.0, 0.0, 0.0]), dtype=torch.float32)
                       for e in ([0.3, -4, 1], [3, 2, 0.5], [-2, 2.5, 3])])  # fmt: skip
    Ks = K[None].repeat(3, 1, 1)
    Ks[1, 0, 2] += 2.5  # off-centre principal point
    bgs = torch.rand(3, 3)
    img, alp, info = rasterize(means, quats, scales, opac, colors, vms, Ks, W, H, backgrounds=bgs)
    assert img.shape == (3, H, W, 3) and alp.shape == (3, H, W, 1)
    assert info["radii"].shape == (3, 50, 2) and info["means2d"].shape == (3, 50, 2)
    assert info["n_cameras"] == 3
    per_cam = colors[None] * torch.tensor([1.0, 0.5, 0.25])[:, None, None]
    img2, _, _ = rasterize(means, quats, scales, opac, per_cam, vms, Ks, W, H)
    for c in range(3):
        rimg, ralp = reference_render(means, quats, scales, opac, colors, vms[c], Ks[c], W, H,
                                      bg=bgs[c])  # fmt: skip
        assert float((img[c] - rimg).abs().max()) < F32_IMG
        assert float((alp[c] - ralp).abs().max()) < F32_IMG
        rimg2, _ = reference_render(means, quats, scales, opac, per_cam[c], vms[c], Ks[c], W, H)
        assert float((img2[c] - rimg2).abs().max()) < F32_IMG


def test_viewmat_gradient_matches_reference():
    (means, quats, scales, opac, colors, vm, K), (W, H) = make_scene(12, n=40, sh_degree=2)
    v1 = vm.clone().requires_grad_()
    v2 = vm.clone().requires_grad_()
    img, _, _ = rasterize(means, quats, scales, opac, colors, v1[None], K[None], W, H,
                          sh_degree=2)  # fmt: skip
    rimg, _ = reference_render(means, quats, scales, opac, colors, v2, K, W, H, sh_degree=2)
    w = torch.randn(rimg.shape, generator=torch.Generator().manual_seed(3))
    (img[0] * w).sum().backward()
    (rimg * w).sum().backward()
    assert rel(v1.grad, v2.grad) < F32_GRAD


@pytest.mark.parametrize("kernel", ["torch", "numba"])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-6), (torch.float64, F64_IMG)])
def test_tiling_parameters_do_not_change_result(dtype, tol, kernel):
    if kernel == "numba":
        pytest.importorskip("numba")
    (means, quats, scales, opac, colors, vm, K), _ = make_scene(13, n=300, dense=True,
                                                                dtype=dtype)
    W, H = 70, 45
    args = (means, quats, scales, opac, colors, vm[None], K[None], W, H)
    base, base_a, info0 = rasterize(*args, kernel=kernel)
    for kw in (
        dict(tile_size=8),
        dict(tile_size=4, chunk_size=5, max_pairs=200, max_isects=64),
        dict(tile_size=32, chunk_size=1000, max_pairs=1 << 22),
        dict(tile_size=16, chunk_size=3, max_pairs=16 * 16 * 3, max_isects=300),
    ):
        img, alp, info = rasterize(*args, kernel=kernel, **kw)
        assert float((img - base).abs().max()) < tol, kw
        assert float((alp - base_a).abs().max()) < tol, kw
        st = info["cpu_stats"]
        assert st["kernel"] == kernel
        if kernel == "numba":  # the block and band knobs are the torch twin's
            continue
        assert st["max_block_pairs"] <= max(kw.get("max_pairs", 1 << 18),
                                            kw.get("tile_size", 16) ** 2)  # fmt: skip
        if "max_isects" in kw:
            assert st["n_bands"] > 1


def test_memory_is_bounded_for_large_n():
    """40k Gaussians into a 320x240 image: N x H x W would be 3.1e9 elements (12 GB);
    blocks stay within max_pairs and the bands within max_isects."""
    g = torch.Generator().manual_seed(0)
    n = 40_000
    means = torch.rand(n, 3, generator=g) * torch.tensor([6.0, 6.0, 2.0]) - torch.tensor(
        [3.0, 3.0, 1.0])
    quats = torch.randn(n, 4, generator=g)
    scales = torch.rand(n, 3, generator=g) * 0.03 + 0.005
    opac = torch.rand(n, generator=g)
    colors = torch.rand(n, 3, generator=g)
    vm = torch.as_tensor(look_at([0.0, -7.0, 4.0], [0.0, 0.0, 0.0]), dtype=torch.float32)
    K = torch.as_tensor(intrinsics_from_fov(60.0, 320, 240), dtype=torch.float32)
    ps = [t.requires_grad_() for t in (means, quats, scales, opac, colors)]
    img, alp, info = rasterize(*ps, vm[None], K[None], 320, 240, max_pairs=1 << 16,
                               max_isects=20_000, kernel="torch")  # fmt: skip
    st = info["cpu_stats"]
    assert st["max_block_pairs"] <= 1 << 16
    assert st["n_bands"] > 3
    assert st["max_band_isects"] <= 20_000 or st["max_band_isects"] <= st["n_isects"] / 5
    (img.sum() + alp.sum()).backward()
    assert torch.isfinite(ps[0].grad).all() and ps[0].grad.abs().sum() > 0
    assert 0.05 < float(alp.detach().mean()) < 1.0


def test_peak_memory_in_subprocess():
    """Forward + backward of 100k Gaussians at 512x512 (N*H*W*4 B = 105 GB if dense)."""
    code = r"""
import resource, torch
torch.set_num_threads(2)
from splatstudio.render import rasterize, look_at, intrinsics_from_fov
g = torch.Generator().manual_seed(0)
n = 100_000
means = (torch.rand(n, 3, generator=g) * 2 - 1) * torch.tensor([4.0, 4.0, 1.0])
ps = [means, torch.randn(n, 4, generator=g), torch.rand(n, 3, generator=g) * 0.02 + 0.003,
      torch.rand(n, generator=g), torch.rand(n, 3, generator=g)]
ps = [p.requires_grad_() for p in ps]
vm = torch.as_tensor(look_at([0.0, -7.0, 4.0], [0.0, 0.0, 0.0]), dtype=torch.float32)
K = torch.as_tensor(intrinsics_from_fov(60.0, 512, 512), dtype=torch.float32)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
img, alp, info = rasterize(*ps, vm[None], K[None], 512, 512)
(img.sum() + alp.sum()).backward()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((peak - base) / 1024.0, info["cpu_stats"]["n_isects"])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True)  # fmt: skip
    extra_mib, n_isects = out.stdout.split()
    assert int(n_isects) > 100_000
    assert float(extra_mib) < 1500.0, out.stdout


def test_gradcheck_float64():
    torch.manual_seed(0)
    W, H = 9, 7
    means = torch.tensor([[0.05, 0.02, 0.0], [-0.15, 0.1, 0.3], [0.12, -0.08, -0.2]],
                         dtype=torch.float64)  # fmt: skip
    quats = torch.randn(3, 4, dtype=torch.float64)
    scales = torch.tensor([[0.12, 0.07, 0.1], [0.09, 0.15, 0.06], [0.1, 0.1, 0.14]],
                          dtype=torch.float64)  # fmt: skip
    opac = torch.tensor([0.6, 0.7, 0.5], dtype=torch.float64)
    sh = torch.randn(3, 4, 3, dtype=torch.float64) * 0.3
    vm = torch.as_tensor(look_at([0.2, -2.0, 0.5], [0.0, 0.0, 0.0]))
    K = torch.as_tensor(intrinsics_from_fov(50.0, W, H))
    bg = torch.tensor([[0.3, 0.2, 0.1]], dtype=torch.float64)

    def f(m, q, s, o, c, v, b):
        img, alp, _ = rasterize(m, q, s, o, c, v[None], K[None], W, H, sh_degree=1,
                                backgrounds=b, render_mode="RGB+D",
                                tile_size=4, chunk_size=2)  # fmt: skip
        return img, alp

    inputs = [t.clone().requires_grad_() for t in (means, quats, scales, opac, sh, vm, bg)]
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_recompute_backward_equals_checkpointed():
    (means, quats, scales, opac, colors, vm, K), (W, H) = make_scene(14, n=120, dense=True)
    grads, saved = [], []
    # the forward's alphas kept for every block, for the first blocks only, for none
    for kw in (dict(save_checkpoints=True), dict(max_saved_pairs=1500),
               dict(save_checkpoints=False)):  # fmt: skip
        ps = [t.clone().requires_grad_() for t in (means, quats, scales, opac, colors)]
        img, alp, info = rasterize(*ps, vm[None], K[None], W, H, chunk_size=4,
                                   kernel="torch", **kw)
        (img.sum() + 2 * alp.sum()).backward()
        grads.append([p.grad for p in ps])
        saved.append(info["cpu_stats"].get("saved_pairs", 0))
    assert saved[0] > saved[1] > 0 == saved[2]
    for g in grads[1:]:
        for a, b in zip(grads[0], g, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_info_means2d_retain_grad_and_layout():
    (means, quats, scales, opac, colors, vm, K), (W, H) = make_scene(15, n=30)
    means.requires_grad_()
    img, alp, info = rasterize(means, quats, scales, opac, colors, vm[None], K[None], W, H)
    info["means2d"].retain_grad()
    img.sum().backward()
    g = info["means2d"].grad
    assert g is not None and g.shape == (1, 30, 2)
    vis = (info["radii"][0] > 0).all(-1)
    assert info["radii"].dtype == torch.int32
    assert g[0][~vis].abs().sum() == 0 and g[0][vis].abs().sum() > 0
    for k in ("width", "height", "n_cameras", "depths", "conics", "opacities"):
        assert k in info
    assert info["width"] == W and info["height"] == H


def test_empty_and_fully_culled_scenes():
    (means, quats, scales, opac, colors, vm, K), (W, H) = make_scene(16, n=10)
    bg = torch.tensor([[0.1, 0.2, 0.3]])
    behind = (torch.tensor(EYE) * 2.0).expand(10, 3).clone().requires_grad_()  # behind camera
    img, alp, info = rasterize(behind, quats, scales, opac, colors, vm[None], K[None], W, H,
                               backgrounds=bg)  # fmt: skip
    assert (alp == 0).all() and torch.allclose(img, bg.expand(1, H, W, 3))
    img.sum().backward()
    assert (behind.grad == 0).all()
    z = torch.zeros(0, 3)
    img, alp, info = rasterize(z, torch.zeros(0, 4), z, torch.zeros(0), z, vm[None], K[None], W, H)
    assert img.shape == (1, H, W, 3) and (img == 0).all() and (alp == 0).all()


def test_argument_errors():
    (means, quats, scales, opac, colors, vm, K), (W, H) = make_scene(17, n=5)
    args = (means, quats, scales, opac, colors, vm[None], K[None], W, H)
    with pytest.raises(ValueError):
        rasterize(means[:, :2], *args[1:])
    with pytest.raises(ValueError):
        rasterize(*args, render_mode="RGBD")
    with pytest.raises(ValueError):
        rasterize(*args, sh_degree=1)  # colors are not SH coefficients
    with pytest.raises(ValueError):
        rasterize(*args, backgrounds=torch.zeros(2, 3))
    with pytest.raises(ValueError):
        rasterize(*args, near_plane=0.0)
    with pytest.raises(ValueError):
        rasterize(*args, near_plane=2.0, far_plane=1.0)
    with pytest.raises(TypeError):
        rasterize(*args, bogus=1)
    with pytest.raises(NotImplementedError):
        rasterize(*args, absgrad=True)
    with pytest.raises(NotImplementedError):
        rasterize(*args, backend="gsplat")
    with pytest.raises(ValueError):
        rasterize(*args[:5], vm[None].double(), *args[6:])
    # accepted and ignored on the torch path
    rasterize(*args, packed=True, channel_chunk=8, camera_model="pinhole")


def test_import_does_not_pull_gsplat_or_qt():
    code = (
        "import sys, splatstudio.render\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('gsplat', 'PySide6', 'pyqtgraph', 'OpenGL')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_numpy_free_inputs_are_rejected():
    (means, quats, scales, opac, colors, vm, K), (W, H) = make_scene(18, n=5)
    with pytest.raises(TypeError):
        rasterize(np.asarray(means), quats, scales, opac, colors, vm[None], K[None], W, H)


# ------------------------------------------------------------------------------------
# Real trained scenes (../shared/data/splats)
# ------------------------------------------------------------------------------------

SPLATS = Path(__file__).resolve().parents[3] / "shared" / "data" / "splats"


def load_3dgs_ply(path):
    """Standard 3DGS PLY -> activated (means, quats, scales, opacities, sh [N, K, 3])."""
    plyfile = pytest.importorskip("plyfile")
    if not path.exists():
        pytest.skip(f"{path} not present (see ../shared/data/README.md)")
    v = plyfile.PlyData.read(str(path))["vertex"]

    def f(k):
        return torch.from_numpy(np.asarray(v[k], dtype=np.float32))

    means = torch.stack([f("x"), f("y"), f("z")], -1)
    quats = torch.stack([f(f"rot_{i}") for i in range(4)], -1)
    scales = torch.exp(torch.stack([f(f"scale_{i}") for i in range(3)], -1))
    opac = torch.sigmoid(f("opacity"))
    sh = torch.stack([f(f"f_dc_{i}") for i in range(3)], -1)[:, None]
    n_rest = sum(k.startswith("f_rest_") for k in v.data.dtype.names) // 3
    if n_rest:
        rest = torch.stack([f(f"f_rest_{i}") for i in range(3 * n_rest)], -1)
        sh = torch.cat([sh, rest.reshape(-1, 3, n_rest).transpose(1, 2)], 1)
    return means, quats, scales, opac, sh


def test_real_scene_matches_reference():
    """fruit_drops_minimal.ply: 4,721 trained Gaussians, SH degree 3, front view."""
    means, quats, scales, opac, sh = load_3dgs_ply(SPLATS / "fruit_drops_minimal.ply")
    W, H = 32, 24
    vm, K = frame_points(means, 60.0, W, H, up=(0, -1, 0), azimuth_deg=-90, elevation_deg=10)
    scene = [means, quats, scales, opac, sh, vm, K]
    res, info = compare(scene, (W, H), rkw={"sh_degree": 3}, kw={"sh_degree": 3})
    assert_close(res, F32_IMG, F32_GRAD)
    assert res["mean_alpha"] > 0.5


def test_real_scene_render_is_consistent_across_tilings():
    """donut_fused.ply: 45,624 trained Gaussians (SH degree 0) rendered at 160x120."""
    means, quats, scales, opac, sh = load_3dgs_ply(SPLATS / "donut_fused.ply")
    W, H = 160, 120
    vm, K = frame_points(means, 60.0, W, H, up=(0, -1, 0))
    args = (means, quats, scales, opac, sh, vm[None], K[None], W, H)
    img, alp, info = rasterize(*args, sh_degree=0, backgrounds=torch.ones(1, 3))
    img2, alp2, _ = rasterize(*args, sh_degree=0, backgrounds=torch.ones(1, 3), tile_size=8,
                              chunk_size=16, max_isects=5000)  # fmt: skip
    assert float((img - img2).abs().max()) < 1e-6 and float((alp - alp2).abs().max()) < 1e-6
    # the donut is opaque in the middle of its ring and the corners are background
    assert 0.2 < float(alp.mean()) < 0.8
    assert float(alp[0, :5, :5].max()) < 1e-3
    assert float(alp.max()) > 0.999


def test_ellipse_tile_test_keeps_every_contributing_tile_and_culls_the_rest():
    """donut_fused.ply at 96x64: every (Gaussian, tile) pair of the bounding-box cover with a
    pixel of alpha >= 1/255 (brute force over the tile's pixels) is kept by the exact
    ellipse-tile test, and pairs are culled (gsplat's 3.33-sigma boxes overlap corners)."""
    from splatstudio.render import project_gaussians
    from splatstudio.render.torch_impl import _pack_params, _tile_hits

    means, quats, scales, opac, _ = load_3dgs_ply(SPLATS / "donut_fused.ply")
    W, H, ts = 96, 64, 8
    vm, K = frame_points(means, 60.0, W, H, up=(0, -1, 0))
    p = project_gaussians(means, quats, scales, opac, vm, K, W, H)
    params = _pack_params(p["means2d"], p["conics"], p["opacities"])
    tw, th = W // ts, H // ts
    m, r = p["means2d"], p["radii"].float()
    x0 = torch.floor((m[:, 0] - r[:, 0]) / ts).clamp(0, tw).long()
    x1 = torch.ceil((m[:, 0] + r[:, 0]) / ts).clamp(0, tw).long()
    y0 = torch.floor((m[:, 1] - r[:, 1]) / ts).clamp(0, th).long()
    y1 = torch.ceil((m[:, 1] + r[:, 1]) / ts).clamp(0, th).long()
    gid, tile = [], []
    for i in range(len(m)):
        for ty in range(int(y0[i]), int(y1[i])):
            for tx in range(int(x0[i]), int(x1[i])):
                gid.append(i)
                tile.append(ty * tw + tx)
    gid, tile = torch.tensor(gid), torch.tensor(tile)
    keep = _tile_hits(params, gid, tile, tw, ts, W, H)
    # brute force: alpha at the tile's 64 pixel centres, float64
    ly, lx = torch.meshgrid(torch.arange(ts) + 0.5, torch.arange(ts) + 0.5, indexing="ij")
    px = (tile % tw)[:, None] * ts + lx.reshape(-1)[None].double()
    py = (tile // tw)[:, None] * ts + ly.reshape(-1)[None].double()
    g = params.double()[:, gid]
    dx, dy = g[0][:, None] - px, g[1][:, None] - py
    sigma = g[2][:, None] * dx * dx + g[3][:, None] * dx * dy + g[4][:, None] * dy * dy
    alpha = torch.clamp(g[5][:, None] * torch.exp(-sigma), max=0.999)
    needed = ((alpha >= 1 / 255) & (sigma >= 0)).any(1)
    assert int(needed.sum()) > 1000
    assert not bool((needed & ~keep).any())  # never drops a contributing tile
    assert float(keep.float().mean()) < 0.9  # and culls a real share of the box cover

