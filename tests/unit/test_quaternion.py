"""The one quaternion converter pair (``splatstudio.quaternion``) against the two it replaced,
an independent reader (scipy), the torch twin, and the rotations of real data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from splatstudio.quaternion import quat_to_rotmat, rotmat_to_quat

DONUT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "splats" / "donut_fused.ply"


# -- the two converters this module replaced, frozen here as they were (pano/equirect.py
# -- rotation_to_quat_wxyz and splats/model.py rotation_to_quat / quat_to_rotation)
def old_equirect_rotation_to_quat_wxyz(r):
    r = np.asarray(r, dtype=np.float64)
    t = np.trace(r)
    if t > 0:
        s = np.sqrt(t + 1.0) * 2
        q = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
    elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
        s = np.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2]) * 2
        q = [(r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
    elif r[1, 1] > r[2, 2]:
        s = np.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2]) * 2
        q = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s]
    else:
        s = np.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1]) * 2
        q = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s]
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def old_splats_rotation_to_quat(r):
    r = np.asarray(r, dtype=np.float64)
    tr = np.trace(r)
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        q = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(r)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(max(1.0 + r[i, i] - r[j, j] - r[k, k], 0.0))
        q = [0.0, 0.0, 0.0, 0.0]
        q[0] = (r[k, j] - r[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (r[j, i] + r[i, j]) / s
        q[1 + k] = (r[k, i] + r[i, k]) / s
    q = np.asarray(q)
    return q / np.linalg.norm(q)


def old_splats_quat_to_rotation(q):
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], axis=-2)  # fmt: skip


def random_rotations(n: int, seed: int) -> np.ndarray:
    """``[n, 3, 3]`` rotations: random ones, plus the ones that take each Shepperd branch
    with w near 0 (half turns about the axes and diagonals) and the identity."""
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n, 4))
    special = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 1, 1, 0],
                        [0, 0, 1, 1], [0, 1, 0, 1], [1e-9, 1, 0, 0], [-1e-9, 0, 1, 0],
                        [1e-9, 0.3, -0.4, 0.8]], np.float64)  # fmt: skip
    return old_splats_quat_to_rotation(np.concatenate([q, special]))


def test_rotmat_to_quat_equals_both_old_converters():
    rots = random_rotations(2000, 0)
    new = rotmat_to_quat(rots)
    assert new.shape == (len(rots), 4) and new.dtype == np.float64
    for r, q in zip(rots, new, strict=True):
        # the pano rig's converter: the same quaternion, w >= 0 included
        np.testing.assert_allclose(q, old_equirect_rotation_to_quat_wxyz(r), atol=1e-12)
        # the splat model's: the same up to sign (it did not fix one; transform() and the
        # gaussians' quats are sign-free)
        old = old_splats_rotation_to_quat(r)
        np.testing.assert_allclose(q, old * np.sign(old @ q), atol=1e-12)
    assert (new[:, 0] >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(new, axis=1), 1.0, atol=1e-15)


def test_quat_to_rotmat_equals_the_old_one_and_inverts_rotmat_to_quat():
    rng = np.random.default_rng(1)
    q = rng.normal(size=(5, 7, 4)) * rng.uniform(0.1, 10, size=(5, 7, 1))  # not unit
    np.testing.assert_array_equal(quat_to_rotmat(q), old_splats_quat_to_rotation(q))
    r = quat_to_rotmat(q)
    assert r.shape == (5, 7, 3, 3)
    np.testing.assert_allclose(r @ np.swapaxes(r, -1, -2), np.broadcast_to(np.eye(3), r.shape),
                               atol=1e-12)  # fmt: skip
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-12)
    back = rotmat_to_quat(r)  # batched [..., 3, 3]
    unit = q / np.linalg.norm(q, axis=-1, keepdims=True)
    np.testing.assert_allclose(back, unit * np.sign(unit[..., :1]), atol=1e-12)
    np.testing.assert_allclose(quat_to_rotmat(-q), r, atol=1e-15)


def test_against_scipy_and_the_torch_twin():
    import torch
    from scipy.spatial.transform import Rotation

    from splatstudio.render.torch_impl import quat_to_rotmat as torch_quat_to_rotmat

    rots = random_rotations(300, 2)
    xyzw = Rotation.from_matrix(rots).as_quat()
    ref = np.concatenate([xyzw[:, 3:], xyzw[:, :3]], axis=1)
    ref *= np.where(ref[:, :1] < 0, -1.0, 1.0)
    np.testing.assert_allclose(rotmat_to_quat(rots), ref, atol=1e-9)
    q = np.random.default_rng(3).normal(size=(50, 4))
    np.testing.assert_allclose(torch_quat_to_rotmat(torch.from_numpy(q)).numpy(),
                               quat_to_rotmat(q), atol=1e-12)  # fmt: skip


def test_float32_real_splat_quats_round_trip():
    """The quats of a real trained splat (float32, not unit): rotmat_to_quat(quat_to_rotmat)
    gives them back, normalised, up to sign."""
    from splatstudio.splats.io import load_splats

    if not DONUT.exists():
        pytest.skip(f"shared sample {DONUT} is missing (shared data not mounted)")
    s = load_splats(DONUT)
    q = s.quats[:20000]
    r = quat_to_rotmat(q)
    back = rotmat_to_quat(r.astype(np.float32))  # float32 round-off: nearly orthonormal
    unit = q.astype(np.float64) / np.linalg.norm(q.astype(np.float64), axis=1, keepdims=True)
    np.testing.assert_allclose(np.abs(np.sum(back * unit, axis=1)), 1.0, atol=1e-6)


def test_bad_shape_is_refused():
    with pytest.raises(ValueError, match=r"\[\.\.\., 3, 3\]"):
        rotmat_to_quat(np.eye(4))


def test_import_is_numpy_only():
    code = ("import sys, splatstudio.quaternion\n"
            "bad = [m for m in ('torch', 'scipy', 'PySide6') if m in sys.modules]\n"
            "sys.exit(1 if bad else 0)")  # fmt: skip
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
