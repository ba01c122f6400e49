"""Fly-through videos: camera paths (splatstudio.render.video) and ``splatstudio render --path``
on a small project holding a real splat."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from splatstudio.cli import main
from splatstudio.render.video import (
    capture_path_viewmats,
    catmull_rom,
    keyframe_viewmats,
    load_keyframes,
    resample_by_length,
    smooth_positions,
)
from splatstudio.splats.io import load_splats, save_splats

DONUT = Path(__file__).resolve().parents[3] / "shared" / "data" / "splats" / "donut_fused.ply"


def _read(path: Path) -> list[np.ndarray]:
    import imageio.v2 as imageio

    return [f for f in imageio.get_reader(str(path))]  # the reader has no finite len()


def test_paths_pass_through_their_points_and_look_ahead():
    pts = np.array([[0, 0, 0], [1, 0, 0], [2, 1, 0], [3, 1, 0.5]], float)
    dense = catmull_rom(pts, 10)
    assert len(dense) == 31
    np.testing.assert_allclose(dense[::10], pts)  # through every control point
    even = resample_by_length(dense, 50)
    steps = np.linalg.norm(np.diff(even, axis=0), axis=1)
    assert steps.std() < 0.05 * steps.mean()
    noisy = np.c_[np.arange(20.0), 0.3 * (-1.0) ** np.arange(20), np.zeros(20)]
    sm = smooth_positions(noisy, 1.5)
    assert np.abs(sm[2:-2, 1]).max() < 0.1 and np.allclose(sm[[0, -1]], noisy[[0, -1]])
    vms = capture_path_viewmats(noisy, 12)
    eyes = np.array([-v[:3, :3].T @ v[:3, 3] for v in vms])
    np.testing.assert_allclose(eyes[0], noisy[0], atol=1e-9)
    np.testing.assert_allclose(eyes[-1], noisy[-1], atol=1e-9)
    assert np.all(vms[:, 2, 0] > 0.9)  # every frame looks along +x, the walking direction
    with pytest.raises(ValueError, match="2 distinct"):
        capture_path_viewmats(noisy[:1], 5)
    ring_e = np.array([[3 * math.cos(a), 3 * math.sin(a), 1] for a in (0, 1, 2)])
    k = keyframe_viewmats(ring_e, np.zeros((3, 3)), 7)
    for v in k:  # every frame looks at the origin
        np.testing.assert_allclose((v[:3, :3] @ np.zeros(3) + v[:3, 3])[:2], 0, atol=1e-9)


def test_load_keyframes_errors_name_the_file(tmp_path):
    p = tmp_path / "k.json"
    p.write_text(json.dumps([{"eye": [0, 0, 1], "target": [1, 0, 1]},
                             {"eye": [1, 1, 1], "target": [2, 0, 1]}]))
    e, t = load_keyframes(p)
    assert e.shape == t.shape == (2, 3)
    p.write_text(json.dumps({"keyframes": [{"eye": [0, 0, 1]}, {"eye": [1, 1, 1]}]}))
    with pytest.raises(ValueError, match=r"k\.json: keyframe 0 needs 'eye' and 'target'"):
        load_keyframes(p)
    p.write_text("[1]")
    with pytest.raises(ValueError, match="at least 2 keyframes"):
        load_keyframes(p)


@pytest.fixture
def ring_project(tmp_path):
    """The tiny georeferenced project (8 registered cameras on a ring of 3 m around the
    origin) holding the real donut splat, scaled x10 (about 2 m) and centred on the origin."""
    from helpers.tiny_project import tiny_georef_project

    if not DONUT.exists():
        pytest.skip(f"{DONUT} not present")
    project = tiny_georef_project(tmp_path / "proj", views=8, size=(32, 24), gaussians=50)
    s = load_splats(DONUT)
    c = np.median(s.means, axis=0)
    s.means[:] = (s.means - c) * 10.0
    s.scales[:] += np.log(10.0)
    save_splats(s, project.root / "train" / "splat.ply")
    return project


def test_cli_renders_the_capture_path_and_keyframes(ring_project, tmp_path, capsys):
    out = tmp_path / "capture.mp4"
    rc = main(["render", "-p", str(ring_project.root), "--path", "capture", "--frames", "4",
               "--width", "96", "--height", "64", "--device", "cpu", "-o", str(out)])
    assert rc == 0
    assert "4 frames, 96x64" in capsys.readouterr().out
    frames = _read(out)
    assert len(frames) == 4 and frames[0].shape == (64, 96, 3)

    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps([{"eye": [3, 0, 1], "target": [0, 0, 0]},
                                {"eye": [0, 3, 1], "target": [0, 0, 0]}]))
    out2 = tmp_path / "keys.mp4"
    rc = main(["render", "-p", str(ring_project.root), "--path", str(keys), "--frames", "3",
               "--width", "96", "--height", "64", "--device", "cpu", "-o", str(out2)])
    assert rc == 0
    frames = _read(out2)
    assert len(frames) == 3
    assert all(f.std() > 10 for f in frames)  # the donut is in every frame
    # bad input: odd size, a PNG name, a broken keyframes file -- clear errors, no file
    assert main(["render", "-p", str(ring_project.root), "--path", "capture", "--width", "95",
                 "--height", "64", "-o", str(tmp_path / "x.mp4")]) != 0
    assert main(["render", "-p", str(ring_project.root), "--path", "capture",
                 "-o", str(tmp_path / "x.png")]) != 0
    keys.write_text("{}")
    assert main(["render", "-p", str(ring_project.root), "--path", str(keys),
                 "-o", str(tmp_path / "x.mp4")]) != 0
    err = capsys.readouterr().err
    assert "even" in err and ".mp4" in err and "keys.json" in err
    assert not (tmp_path / "x.mp4").exists()
