"""Every splat format SplatStudio writes, read by an independent implementation: PlayCanvas
``@playcanvas/splat-transform`` (npm) converts our file to a standard PLY, which is compared
gaussian by gaussian with the source PLY within the format's quantisation, and with our own
reader's decoding of the same file.

Axis conventions (what each reader assumes; SplatStudio writes the same):

* PLY, .splat, compressed PLY, SOG: no axis convention in the file; splat-transform, like
  SplatStudio, keeps the arrays (PLY's x right, y down, z forward) and SuperSplat shows them
  upright by turning them 180 degrees about z. SplatStudio's ENU exports keep ENU arrays.
* SPZ: the file holds RUB (x right, y up, z back: the nianticlabs/spz README), converted
  from the PLY's RDF by SplatStudio's writer; splat-transform 3.10 reads the stored arrays
  *unconverted* as PLY axes (like Niantic's own PLY converter writes them, nianticlabs/spz
  issue 84), so it sees ``(x, -y, -z)`` of the source: the test compares against that, and
  such an SPZ opens upside down in SuperSplat (three.js/Spark and SplatStudio follow the
  spec). ``save_splats(..., coordinate_system=None)`` writes what SuperSplat expects.
* glb_splat: glTF axes; splat-transform 3.10 writes but does not read GLB, so the check runs
  the other way: its GLB of the source PLY must equal ours attribute by attribute and read
  back as the source PLY (both map PLY to glTF by ``(x, y, z) -> (-x, -y, z)``). One
  difference: its ``COLOR_0`` fallback holds the sRGB colour, ours the linear colour the
  ``KHR_gaussian_splatting`` text asks for (compared after decoding theirs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from splatstudio.quaternion import quat_to_rotmat
from splatstudio.splats import load_splats, save_splats
from splatstudio.splats.compressed_ply import morton_order
from splatstudio.splats.formats import _chunk_range
from splatstudio.splats.gltf import _read_accessor, parse_glb
from splatstudio.splats.model import SH_C0, sigmoid
from splatstudio.splats.sog import read_sog_meta
from splatstudio.splats.splat import importance_order

pytestmark = pytest.mark.slow

SPLAT = (
    Path(__file__).resolve().parents[3] / "shared" / "data" / "splats" / "fruit_drops_minimal.ply"
)


@pytest.fixture(scope="module")
def source():
    if not SPLAT.exists():
        pytest.skip(f"{SPLAT} not present")
    return load_splats(SPLAT)


def _nearest(v: np.ndarray, book: list) -> np.ndarray:
    b = np.asarray(book, np.float64)
    flat = v.reshape(-1).astype(np.float64)
    i = np.clip(np.searchsorted(b, flat), 1, b.size - 1)
    return np.minimum(np.abs(flat - b[i - 1]), np.abs(flat - b[i])).reshape(v.shape)


def _colour(s):
    return 0.5 + SH_C0 * s.sh0[:, 0].astype(np.float64)


# format -> (file name, writer options, tolerances vs the source: positions m, colour,
# opacity, log-scale); see each module's docstring for the quantisation.
CASES = {
    "ply": ("s.ply", {}, (1e-7, 1e-6, 1e-6, 1e-6)),
    "splat": ("s.splat", {}, (1e-6, 0.5 / 255 + 1e-4, 0.5 / 255 + 1e-4, 1e-4)),
    "spz_v4": ("s.spz", {}, (2.0**-13 + 1e-6, SH_C0 * 0.5 / (0.15 * 255) + 1e-4, 0.5 / 255 + 1e-4,
                             1 / 32 + 1e-5)),
    "spz_v3": ("s3.spz", {"version": 3}, (2.0**-13 + 1e-6, SH_C0 * 0.5 / (0.15 * 255) + 1e-4,
                                          0.5 / 255 + 1e-4, 1 / 32 + 1e-5)),
    "compressed_ply": ("s.compressed.ply", {}, (None, None, 0.5 / 255 + 1e-4, None)),
    "sog": ("s.sog", {}, (None, None, 0.5 / 255 + 1e-4, None)),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_splat_transform_reads_our_file(case, source, splat_transform, tmp_path):
    name, opts, (tol_pos, tol_col, tol_op, tol_scale) = CASES[case]
    path = tmp_path / name
    save_splats(source, path, **opts)
    out = tmp_path / "splat_transform.ply"
    splat_transform(path, out)
    theirs = load_splats(out, format="ply")
    ours = load_splats(path)
    assert theirs.n == ours.n == source.n
    src = source
    flip = np.array([1.0, -1.0, -1.0]) if case.startswith("spz") else np.ones(3)
    if case.startswith("spz"):  # splat-transform reads the stored RUB arrays as PLY axes
        src = source.transformed(np.diag(flip))
    if case == "splat":
        src = source.subset(importance_order(source))
    elif case in ("compressed_ply", "sog"):
        src = source.subset(morton_order(source.means))
    extent = float(np.ptp(src.means, axis=0).max())
    if case == "compressed_ply":  # per 256-gaussian chunk: range / 2046 (11-bit), / 510 colour
        tol_pos = _chunk_range(src.means.astype(np.float64)) / 2046 + 1e-6
        tol_col = _chunk_range(_colour(src)) / 510 + 1e-4
        tol_scale = _chunk_range(np.clip(src.scales, -20, 20).astype(np.float64)) / 2046 + 1e-5
    elif case == "sog":  # 16-bit positions of log(1 + |x|) over the bounds
        span = np.ptp(np.sign(src.means) * np.log1p(np.abs(src.means)), axis=0)
        tol_pos = (np.abs(src.means) + 1) * span / 131070 * 1.001 + 1e-6
        meta = read_sog_meta(path)  # codebooks: each value decodes to its nearest level
        tol_scale = _nearest(src.scales, meta["scales"]["codebook"]) + 1e-5
        tol_col = SH_C0 * _nearest(src.sh0[:, 0], meta["sh0"]["codebook"]) + 1e-4
    col_t, col_s = _colour(theirs), _colour(src)
    scale_s = np.clip(src.scales, -10, 5.9375) if case.startswith("spz") else src.scales
    checks = {
        "positions": (np.abs(theirs.means.astype(np.float64) - src.means),
                      np.asarray(tol_pos) + 1e-7 * extent),
        "colour": (np.abs(np.clip(col_t, 0, 1) - np.clip(col_s, 0, 1)), tol_col),
        "opacity": (np.abs(sigmoid(theirs.opacities) - sigmoid(src.opacities)), tol_op),
        "log_scale": (np.abs(theirs.scales - scale_s), tol_scale),
    }  # fmt: skip
    errs = {k: float(np.max(e)) for k, (e, _) in checks.items()}
    tols = {k: float(np.min(t)) for k, (_, t) in checks.items()}
    over = {k: (errs[k], tols[k]) for k, (e, t) in checks.items() if np.any(e > t)}
    assert not over, f"{case}: splat-transform's reading differs from the source: {over}"
    # the two decoders agree (up to float32 rounding of the activations)
    assert np.abs(theirs.means - ours.means * flip).max() <= 1e-5 * max(extent, 1.0)
    assert np.abs(sigmoid(theirs.opacities) - sigmoid(ours.opacities)).max() <= 2e-3
    assert np.abs(_colour(theirs) - _colour(ours)).max() <= 2e-3
    # which way up: splat-transform keeps the PLY's y axis (flipped for SPZ, see above)
    assert np.corrcoef(theirs.means[:, 1], src.means[:, 1])[0, 1] > 0.999


def test_splat_transform_glb_equals_ours(source, splat_transform, tmp_path):
    theirs_path = tmp_path / "theirs.glb"
    splat_transform(SPLAT, theirs_path)
    ours_path = tmp_path / "ours.glb"
    save_splats(source, ours_path)
    g_t, bin_t = parse_glb(theirs_path.read_bytes())
    g_o, bin_o = parse_glb(ours_path.read_bytes())
    a_t = g_t["meshes"][0]["primitives"][0]["attributes"]
    a_o = g_o["meshes"][0]["primitives"][0]["attributes"]
    assert set(a_t) == set(a_o)
    ext_t = g_t["meshes"][0]["primitives"][0]["extensions"]["KHR_gaussian_splatting"]
    ext_o = g_o["meshes"][0]["primitives"][0]["extensions"]["KHR_gaussian_splatting"]
    assert ext_t["kernel"] == ext_o["kernel"] == "ellipse"
    assert ext_t["colorSpace"] == ext_o["colorSpace"]
    for sem in a_o:
        v_t = _read_accessor(g_t, bin_t, a_t[sem], "theirs")
        v_o = _read_accessor(g_o, bin_o, a_o[sem], "ours")
        if sem.endswith("ROTATION"):  # compared as covariances below: theirs are not unit
            continue  # quaternions, and an axis flip has two equivalent rotations
        if sem == "COLOR_0":  # splat-transform stores the sRGB value; the spec (and we) linear
            v_t[:, :3] = np.where(v_t[:, :3] <= 0.04045, v_t[:, :3] / 12.92,
                                  ((v_t[:, :3] + 0.055) / 1.055) ** 2.4)  # fmt: skip
        tol = 2 / 255 if sem == "COLOR_0" else 1e-5
        assert np.abs(v_t - v_o).max() <= tol * max(1.0, np.abs(v_o).max()), sem

    def cov(g, b, a):
        q = _read_accessor(g, b, a["KHR_gaussian_splatting:ROTATION"], "")[:, [3, 0, 1, 2]]
        sc = _read_accessor(g, b, a["KHR_gaussian_splatting:SCALE"], "").astype(np.float64)
        r = quat_to_rotmat(q)
        return np.einsum("nij,nj,nkj->nik", r, sc * sc, r)

    c_t, c_o = cov(g_t, bin_t, a_t), cov(g_o, bin_o, a_o)
    assert np.abs(c_t - c_o).max() <= 1e-5 * np.abs(c_o).max()
    back = load_splats(theirs_path)  # our reader on their writer: the source PLY again
    assert np.abs(back.means - source.means).max() <= 1e-6
    assert np.abs(back.shN - source.shN).max() <= 1e-6


# --------------------------------------------------------------------------- upright in viewers
def _marker_scene():
    """Four clusters of 64 gaussians in ENU metres: white at the origin, red 6 m east, green
    6 m north, blue 6 m up (SH degree 1, so the files carry rotated SH too)."""
    from splatstudio.splats.model import Splats

    rng = np.random.default_rng(3)
    centres = {"origin": (0, 0, 0), "east": (6, 0, 0), "north": (0, 6, 0), "up": (0, 0, 6)}
    rgb = {"origin": (1, 1, 1), "east": (1, 0, 0), "north": (0, 1, 0), "up": (0, 0, 1)}
    means, cols = [], []
    for name, c in centres.items():
        means.append(np.float32(c) + rng.normal(0, 0.2, (64, 3)).astype(np.float32))
        cols.append(np.repeat(np.float32([rgb[name]]), 64, 0))
    n = 4 * 64
    return Splats(
        means=np.concatenate(means), quats=np.tile(np.float32([1, 0, 0, 0]), (n, 1)),
        scales=np.full((n, 3), np.log(0.05), np.float32), opacities=np.full(n, 3.0, np.float32),
        sh0=((np.concatenate(cols) - 0.5) / SH_C0)[:, None, :].astype(np.float32),
        shN=rng.normal(0, 0.05, (n, 3, 3)).astype(np.float32),
    )  # fmt: skip


def _playcanvas_world(theirs) -> dict[str, np.ndarray]:
    """Cluster centres as SuperSplat / the PlayCanvas viewer place them: a PLY-convention file
    (splat-transform's output) under their ``Transform.PLY``, 180 degrees about z (world y up)."""
    world = theirs.means.astype(np.float64) * [-1.0, -1.0, 1.0]
    col = np.clip(_colour(theirs), 0, 1)
    pick = {"origin": col.min(1) > 0.7, "east": (col[:, 0] > 0.7) & (col[:, 1] < 0.3),
            "north": (col[:, 1] > 0.7) & (col[:, 0] < 0.3), "up": (col[:, 2] > 0.7) & (col[:, 0] < 0.3)}
    assert all(m.sum() == 64 for m in pick.values()), {k: int(m.sum()) for k, m in pick.items()}
    return {k: world[m].mean(0) for k, m in pick.items()}


@pytest.mark.parametrize("axes", ["viewer", "enu"])
def test_exports_open_upright_in_supersplat(axes, splat_transform, tmp_path):
    """The export stage's files as splat-transform reads them and SuperSplat/PlayCanvas shows
    them: with ``axes = viewer`` ENU up is the viewer's up (+y) and the map is a rotation (no
    mirror image); with ``enu`` the scene lies on its side (up along the viewer's z) and the
    spec-conforming RUB SPZ is upside down (what the default avoids)."""
    from helpers import tiny_project

    from splatstudio.config import ExportConfig, update_config
    from splatstudio.events import null_emitter
    from splatstudio.pipeline.export import run_export

    scene = tmp_path / "scene.ply"
    save_splats(_marker_scene(), scene)
    project = tiny_project.splat_project(tmp_path / "proj", scene)
    fmts = ["ply", "splat", "spz", "compressed_ply", "sog"]
    cfg = update_config(ExportConfig(), {"formats": ",".join(fmts), "axes": axes})
    manifest = run_export(project, cfg, null_emitter("export"))
    for entry in manifest["files"]:
        out = tmp_path / f"{entry['format']}.ply"
        splat_transform(project.root / "exports" / entry["path"], out)
        c = _playcanvas_world(load_splats(out, format="ply"))
        axes_seen = np.stack([c[k] - c["origin"] for k in ("east", "north", "up")], 1) / 6.0
        if axes == "viewer":  # shown as (west, up, north): upright
            want = [[-1, 0, 0], [0, 0, 1], [0, 1, 0]]
        elif entry["format"] == "spz":  # the spec's RUB read as PLY axes: upside down
            want = [[-1, 0, 0], [0, 0, -1], [0, -1, 0]]
        else:  # ENU read as PLY axes: on its side, up along the viewer's z
            want = [[-1, 0, 0], [0, -1, 0], [0, 0, 1]]
        assert np.abs(axes_seen - want).max() < 0.05, (entry["format"], axes_seen.round(2))
        assert np.linalg.det(axes_seen) > 0.9  # a rotation, not a mirror image
