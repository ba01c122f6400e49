"""The OpenGL splat viewer under Xvfb (Mesa llvmpipe): donut_fused.ply (SH0), view-dependent
colour (SH degree 1..3) against the CPU reference renderer, fruit_drops_minimal.ply (SH3); and
the SH texture layout the vertex shader reads (no OpenGL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gui
HERE = Path(__file__).resolve().parent


def test_viewer_renders_under_xvfb(xdisplay, tmp_path):
    env = {**os.environ, "DISPLAY": xdisplay, "QT_QPA_PLATFORM": "xcb",
           "VIEWER_CHECK_OUT": str(tmp_path / "report.json")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         "-rs", str(HERE / "viewer_xcb.py")],
        cwd=HERE.parents[1], env=env, capture_output=True, text=True, timeout=300,
    )
    if "could not connect to display" in proc.stderr + proc.stdout:
        pytest.skip(f"cannot open X display {xdisplay}")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    if " passed" not in proc.stdout:
        pytest.skip(proc.stdout.strip().splitlines()[-1])
    report = json.loads((tmp_path / "report.json").read_text())
    print(json.dumps(report, indent=1))
    # the synthetic SH scene needs no shared data: its checks always run
    sh = report["sh_vs_reference"]
    assert all(v["centre_max"] <= 2 for k, v in sh.items() if k[-4:-1] == "_sh"), sh
    assert report["sh_cap0"]["cap0_vs_sh0_file_max"] == 0, report["sh_cap0"]
    if "donut" in report:
        assert report["donut"]["std"] > 20 and report["donut"]["covered"] > 0.05
    if "glb" in report:  # the donut as a splat GLB draws what its PLY draws
        assert report["glb"]["max_diff"] <= 2, report["glb"]


def _basis(d: np.ndarray) -> np.ndarray:
    import torch

    from splatstudio.render.sh import sh_basis

    return sh_basis(3, torch.from_numpy(d)).numpy()[:, 1:]


def test_sh_texture_layout_is_what_the_shader_reads():
    """pack_sh puts coefficient j, channel c of gaussian i at scalar 3 j + c of texels
    ``(i % per_row) * T ..`` of row ``i // per_row``, the layout splat.vert's sh_bands reads
    (its swizzles themselves are checked against the CPU renderer under Xvfb); the half-float
    coefficients read back from there give eval_sh's colours within 2e-3."""
    import torch

    from splatstudio.gui.viewer.gaussians import SH_ROW_TEXELS, SH_TEXELS, pack_gaussians
    from splatstudio.render.sh import eval_sh
    from splatstudio.splats.model import Splats

    rng = np.random.default_rng(0)
    for degree, k in ((1, 3), (2, 8), (3, 15)):
        n = 3000  # more than one row of the SH texture at every degree
        s = Splats.empty(n, sh_degree=degree)
        s.shN[:] = rng.normal(0, 0.5, s.shN.shape)
        p = pack_gaussians(s)
        t = SH_TEXELS[degree]
        assert p.sh_degree == degree and p.sh_texels == t
        assert p.sh_texture.dtype == np.float16 and p.sh_texture.shape[1] == SH_ROW_TEXELS
        assert p.bytes_per_gaussian == 64 + 8 * t
        assert p.sh_texture.shape[0] == -(-n // p.sh_per_row)
        i = np.arange(n)
        cols = (i % p.sh_per_row)[:, None] * t + np.arange(t)
        texels = p.sh_texture[(i // p.sh_per_row)[:, None], cols].astype(np.float64)
        scal = texels.reshape(n, 4 * t)  # s0.xyzw s1.xyzw ...: coefficient j at 3 j .. 3 j + 2
        coeffs = scal[:, : 3 * k].reshape(n, k, 3)
        np.testing.assert_allclose(coeffs, s.shN, rtol=2**-10, atol=1e-7)
        d = rng.normal(size=(n, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        got = np.einsum("nk,nkc->nc", _basis(d)[:, :k], coeffs)
        ref = eval_sh(degree, torch.from_numpy(d),
                      torch.from_numpy(np.concatenate([np.zeros((n, 1, 3)), s.shN], 1))).numpy()
        assert np.abs(got - ref).max() < 2e-3  # half-float coefficients
    p0 = pack_gaussians(Splats.empty(10))
    assert p0.sh_texture is None and p0.sh_degree == 0 and p0.bytes_per_gaussian == 64
