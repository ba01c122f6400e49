"""The stages' declared outputs: README's project-folder list and the typed readers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from splatstudio.config import STAGES
from splatstudio.errors import InputError
from splatstudio.pipeline import artifacts as A

ROOT = Path(__file__).resolve().parents[2]
# the project's, not a stage's (masks/: the GUI's mask editor, an input of reproject)
OWN = {"project.json", "<stage>/status.json", ".lock", ".worker.lock", "masks/platform-<hash>.png"}


def _readme_paths() -> set[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## The project folder\n", 1)[1]
    block = section.split("```", 2)[1]
    paths = set()
    for line in block.splitlines()[1:]:
        if not line.startswith("  ") or line.startswith("   "):
            continue  # PROJECT/ and continuation lines
        head = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
        for tok in head.split(", "):
            if "/" in tok or tok in OWN or "." in tok and tok.startswith("."):
                paths.add(tok.rstrip("/"))
    return paths


def _covers(rel: str, path: str) -> bool:
    return path == rel or path.startswith(rel + "/")


def test_readme_project_folder_lists_every_declared_output_and_nothing_else():
    listed = _readme_paths() - OWN
    missing = [o.rel for o in A.OUTPUTS if not any(_covers(o.rel, p) for p in listed)]
    assert not missing, f"README 'The project folder' lacks {missing}"
    undeclared = [p for p in listed if not any(_covers(o.rel, p) for o in A.OUTPUTS)]
    assert not undeclared, f"README lists {undeclared}, not declared in pipeline/artifacts.py"


def test_every_stage_declares_outputs_in_its_own_folder():
    from splatstudio.project import STAGE_DIRS

    for s in STAGES:
        outs = A.outputs(s)
        assert outs, s
        for o in outs:
            assert o.rel.split("/")[0] == STAGE_DIRS[s], o


def test_manifest_reader(tmp_path):
    with pytest.raises(InputError, match="run the ingest stage first"):
        A.read_manifest(tmp_path)
    p = A.MANIFEST.path(tmp_path)
    p.parent.mkdir()
    p.write_text(json.dumps({"input_dir": "/in", "images": [{"id": "1"}],
                             "origin": {"lat_deg": 55.7, "lon_deg": 13.2, "h_m": 70.0}}))
    m = A.read_manifest(tmp_path)
    assert m.images == [{"id": "1"}] and m.input_dir == Path("/in")
    assert (m.origin.lat_deg, m.origin.lon_deg, m.origin.h_m) == (55.7, 13.2, 70.0)
    p.write_text(json.dumps({"origin": {"lat_deg": 1.0}}))
    with pytest.raises(InputError, match="malformed origin"):
        _ = A.read_manifest(tmp_path).origin


def test_model_accepts_binary_and_text(tmp_path):
    """The disagreement the stage contracts removed: render --view refused a text model that
    training accepted; both now ask :class:`Model`."""
    m = A.georef_model(tmp_path)
    assert not m.exists()
    with pytest.raises(InputError, match="run the georef stage first"):
        m.require()
    m.path.mkdir(parents=True)
    (m.path / "images.txt").write_text("")
    assert m.exists() and m.require() is m


def test_model_cameras_of_a_text_model(tmp_path):
    pytest.importorskip("pycolmap")
    from tests.helpers.tiny_project import tiny_georef_project

    project = tiny_georef_project(tmp_path / "p", views=4, size=(32, 24), gaussians=50)
    model = A.georef_model(project.root)
    assert (model.path / "images.txt").exists() and not (model.path / "images.bin").exists()
    cams = model.cameras()
    assert [c.name for c in cams] == [f"photos/v{i:02d}.jpg" for i in range(4)]
    assert cams[0].camera.viewmat.shape == (4, 4) and cams[0].camera.width == 32


def test_frames_reader(tmp_path):
    with pytest.raises(InputError, match="run the reproject stage first"):
        A.read_frames(tmp_path)
    fj = A.FRAMES.path(tmp_path)
    fj.parent.mkdir()
    fj.write_text(json.dumps({"frames": [{"id": "1", "kind": "equirect"}], "rig": "rig.json",
                              "origin": None}))
    with pytest.raises(InputError, match="rig.json"):
        A.read_frames(tmp_path)
    A.RIG.path(tmp_path).write_text(json.dumps({"views": []}))
    f = A.read_frames(tmp_path)
    assert f.rig == {"views": []} and f.frames[0]["id"] == "1" and f.origin is None


def test_preview_camera_round_trip_and_curve(tmp_path):
    from splatstudio.render.camera import PinholeCamera, intrinsics_from_fov, look_at

    vm = look_at([3.0, -2.0, 1.5], [0.0, 0.0, 0.5])
    K = intrinsics_from_fov(60.0, 64, 32)
    cam = PinholeCamera(vm, K, 64, 32)
    path = A.write_preview_camera(tmp_path, cam)
    # the file format the trainer and earlier GUIs read and write, unchanged
    assert json.loads(path.read_text()) == {"viewmat": vm.tolist(), "K": K.tolist(),
                                            "width": 64, "height": 32}  # fmt: skip
    back = A.read_preview_camera(tmp_path)
    assert isinstance(back, PinholeCamera) and (back.width, back.height) == (64, 32)
    np.testing.assert_array_equal(back.viewmat, vm)
    np.testing.assert_array_equal(back.K, K)
    for broken in ('{"width": 0}', "{not json", "[1, 2]", '"text"',
                   json.dumps({**cam.to_dict(), "width": 0}),
                   json.dumps({**cam.to_dict(), "K": [[1, 0], [0, 1]]}),
                   json.dumps({**cam.to_dict(), "viewmat": [[float("nan")] * 4] * 4})):
        path.write_text(broken)
        assert A.read_preview_camera(tmp_path) is None, broken
    path.unlink()
    assert A.read_preview_camera(tmp_path) is None
    curve = tmp_path / "curve.jsonl"
    curve.write_text('{"step": 20, "loss": 1}\n{"step": 10, "loss": 2}\nbroken\n'
                     '{"step": 20, "loss": 3}\n')
    assert A.read_curve(curve) == [{"step": 10, "loss": 2}, {"step": 20, "loss": 3}]
    assert A.read_curve(curve, max_step=15) == [{"step": 10, "loss": 2}]
    assert A.read_evals(tmp_path) == []


def test_image_paths_fall_back_to_the_nadir_mask_of_an_old_project(tmp_path):
    from splatstudio.pipeline.train import image_paths

    assert image_paths("03/7.jpg") == ("reproject/views/7/03.jpg", "reproject/masks/03.keep.png")
    # a project reprojected before platform masks has only the nadir mask
    assert image_paths("03/7.jpg", tmp_path)[1] == "reproject/masks/03.nadir.png"
    (tmp_path / "reproject/masks").mkdir(parents=True)
    (tmp_path / "reproject/masks/03.keep.png").write_bytes(b"")
    assert image_paths("03/7.jpg", tmp_path)[1] == "reproject/masks/03.keep.png"
    assert image_paths("photos/a.jpg", tmp_path) == ("reproject/photos/a.jpg", None)
