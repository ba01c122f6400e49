"""Resources as package data, `splatstudio PATH` classification, `render --view list` without
`-o`, and the doctor report's logic (no subprocess; the CLI runs are in
tests/integration/test_install.py)."""

from __future__ import annotations

import shutil
import sys
import types
from pathlib import Path

import pytest

from splatstudio import doctor, resources
from splatstudio.cli import COMMANDS, build_parser, main, open_target
from splatstudio.errors import InputError
from splatstudio.render.gsplat_ext import GsplatStatus

ROOT = Path(__file__).resolve().parents[2]
SPLATS = ROOT.parent / "shared" / "data" / "splats"


def test_packaged_resources_are_found_inside_the_package(monkeypatch):
    monkeypatch.delenv(resources.ENV_VAR, raising=False)
    root = resources.resources_dir()
    assert root == Path(resources.__file__).parent  # inside splatstudio/, not next to it
    for rel in resources.REQUIRED:
        assert (root / rel).is_file()
    assert "gl_Position" in resources.read_text("shaders", "splat.vert")
    assert not (ROOT / "resources").exists()  # the old top-level folder is gone


def test_resources_override_and_its_errors(monkeypatch, tmp_path):
    copy = tmp_path / "res"
    shutil.copytree(Path(resources.__file__).parent, copy)
    (copy / "style.qss").write_text("/* mine */", encoding="utf-8")
    monkeypatch.setenv(resources.ENV_VAR, str(copy))
    assert resources.resources_dir() == copy
    assert resources.read_text("style.qss") == "/* mine */"
    (copy / "shaders" / "splat.frag").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing shaders/splat.frag.*SPLATSTUDIO_RESOURCES"):
        resources.resources_dir()


def test_resources_from_a_zip_traversable_are_copied_to_a_folder(tmp_path):
    """A package imported from a zip has no folder: the files are copied out once."""
    import zipfile

    src = Path(resources.__file__).parent
    zpath = tmp_path / "r.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for f in src.rglob("*"):
            if f.is_file() and "__pycache__" not in f.parts:
                z.write(f, f"res/{f.relative_to(src).as_posix()}")
    out = tmp_path / "out"
    resources._copy_tree(zipfile.Path(zpath, "res/"), out)
    assert resources._check(out, "test") == out
    assert not (out / "__init__.py").exists()


def test_commands_list_matches_the_parser():
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    assert set(COMMANDS) == set(sub.choices)


def test_open_target_kinds_and_messages(tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "project.json").write_text("{}")
    assert open_target(proj) == "project"
    imgs = tmp_path / "imgs" / "sub"
    imgs.mkdir(parents=True)
    (imgs.parent / "notes.txt").write_text("not an image")
    import cv2
    import numpy as np

    cv2.imwrite(str(imgs / "a.jpg"), np.zeros((8, 16, 3), np.uint8))
    assert open_target(imgs.parent) == "images"  # found in a sub-folder
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "x.txt").write_text("hello")
    with pytest.raises(InputError, match="neither a SplatStudio project.*1 files, none an image"):
        open_target(empty)
    with pytest.raises(InputError, match="no such file or folder"):
        open_target(tmp_path / "missing")
    with pytest.raises(InputError, match="not a splat file"):
        open_target(empty / "x.txt")
    if (SPLATS / "donut_fused.ply").exists():
        assert open_target(SPLATS / "donut_fused.ply") == "splat"
        assert open_target(SPLATS / "biker.spz") == "splat"


def test_path_argument_errors_exit_2_before_any_window(tmp_path, capsys):
    (tmp_path / "x.txt").write_text("hello")
    assert main([str(tmp_path / "x.txt")]) == 2
    assert "not a splat file" in capsys.readouterr().err
    assert main(["gui", str(tmp_path / "nope")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_render_view_list_needs_no_output(tmp_path, capsys):
    pycolmap = pytest.importorskip("pycolmap")
    sys.path.insert(0, str(ROOT / "tests"))
    from helpers.tiny_project import tiny_georef_project

    project = tiny_georef_project(tmp_path / "p", views=4)
    sparse = project.root / "georef" / "sparse"
    pycolmap.Reconstruction(str(sparse)).write(str(sparse))  # the binary model render reads
    assert main(["render", "-p", str(project.root), "--view", "list"]) == 0
    names = capsys.readouterr().out.split()
    assert len(names) == 4 and all(n.startswith("photos/") for n in names)
    assert main(["render", "-p", str(project.root), "--view", names[0]]) == 2
    assert "-o/--output PNG is required" in capsys.readouterr().err
    # a registered view at another width: the height keeps the aspect, the eye is the view's
    import cv2
    from helpers.splats import random_splats

    from splatstudio.pipeline.artifacts import georef_model
    from splatstudio.splats.io import save_splats

    save_splats(random_splats(200, 0), project.root / "train" / "splat.ply")
    png = tmp_path / "v.png"
    assert main(["render", "-p", str(project.root), "--view", names[0], "-o", str(png),
                 "--width", "32", "--device", "cpu"]) == 0
    assert cv2.imread(str(png)).shape[:2] == (24, 32)  # the 64x48 view, halved
    vm = next(c for c in georef_model(project.root).cameras() if c.name == names[0]).camera.viewmat
    eye = -vm[:3, :3].T @ vm[:3, 3]  # -R^T t, written out: an independent check of .centre
    assert f"32x24, 200 gaussians, eye {eye.round(3).tolist()}" in capsys.readouterr().out


# -- doctor ---------------------------------------------------------------------------------
def test_cpu_presets_use_the_train_stage_estimate():
    from splatstudio.config import PRESETS
    from splatstudio.pipeline.train_session import estimate_seconds, preset_train_config

    per_px = 1e-6
    got = doctor.cpu_presets(per_px)
    assert [p.preset for p in got] == list(PRESETS)
    for p in got:
        cfg = preset_train_config(p.preset)
        assert p.estimate_s == pytest.approx(estimate_seconds(cfg, per_px, p.view_pixels))
        assert p.refused == (p.estimate_s > cfg.cpu_limit_s) and p.limit_s == cfg.cpu_limit_s
        assert p.steps == cfg.steps
    by = {p.preset: p for p in got}
    assert not by["test"].refused and by["quality"].refused
    # a CPU a thousand times faster refuses nothing
    assert not any(p.refused for p in doctor.cpu_presets(per_px / 1000))


def test_report_text_unmet_requirements_and_json():
    r = doctor.Report([
        doctor.Check("torch", "torch", doctor.OK, "2.x"),
        doctor.Check("cuda", "GPU", doctor.MISSING, "no CUDA: CPU-only torch", "CPU training"),
        doctor.Check("qt", "Qt", doctor.OK, "6"),
        doctor.Check("resources", "Resources", doctor.OK, "/x"),
        doctor.Check("opengl", "OpenGL", doctor.FAIL, "no context", "no viewer"),
    ], presets=doctor.cpu_presets(1e-6),
        cpu_measure={"steps": 5, "seconds_per_step": 0.06, "width": 256, "height": 256,
                     "gaussians": 1000})
    assert r.unmet(["train"]) == []
    assert r.unmet(["cuda"]) == ["cuda: needs cuda (no CUDA: CPU-only torch)"]
    assert r.unmet(["gui"]) == ["gui: needs opengl (no context)"]
    assert r.unmet(["sfm"]) == ["sfm: needs pycolmap (not checked)"]
    text = r.to_text()
    assert "[--  ] GPU" in text and "-> CPU training" in text and "[FAIL] OpenGL" in text
    assert "quality" in text and "refused: over cpu_limit_s = 60 min" in text
    assert "allow_slow" in text
    d = r.to_dict()
    assert d["cpu_presets"][0]["preset"] == "test" and d["checks"][1]["state"] == "missing"


def test_gl_check_states():
    assert doctor.gl_check({"error": "x", "no_display": True}).state == doctor.MISSING
    assert doctor.gl_check({"error": "no context"}).state == doctor.FAIL
    old = {"version": "2.1 Mesa", "renderer": "r", "vendor": "v", "major": 2, "minor": 1}
    assert doctor.gl_check(old).state == doctor.FAIL
    soft = {"version": "4.5", "renderer": "llvmpipe (LLVM 15)", "vendor": "Mesa", "major": 4,
            "minor": 5}
    assert doctor.gl_check(soft).state == doctor.WARN
    hw = {**soft, "renderer": "NVIDIA GeForce RTX 4090/PCIe/SSE2", "vendor": "NVIDIA"}
    assert doctor.gl_check(hw).state == doctor.OK


def test_gsplat_check_without_and_with_the_build_probe(monkeypatch):
    pytest.importorskip("gsplat")
    import splatstudio.render as render_pkg

    name = "splatstudio.render.gsplat_ext"
    # an installation without the probe module: ImportError (the attribute of the package,
    # set once another test imported the module, would be found before sys.modules)
    monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delattr(render_pkg, "gsplat_ext", raising=False)
    c = doctor.check_gsplat(None)
    assert doctor.GSPLAT_PROBE_MISSING in c.summary and c.state == doctor.OK

    calls = []
    status = {"probe": GsplatStatus(True, "12.8", "1.5.3", "12.8", False, True, "/c", None),
              "build": GsplatStatus(True, "12.8", "1.5.3", "12.8", True, True, "/c", None)}
    fake = types.SimpleNamespace(
        probe=lambda load=False: calls.append("probe") or status["probe"],
        build=lambda progress=None, cancelled=None: calls.append("build") or status["build"])
    monkeypatch.setitem(sys.modules, name, fake)
    monkeypatch.setattr(render_pkg, "gsplat_ext", fake, raising=False)
    c = doctor.check_gsplat(None)
    assert c.state == doctor.WARN and "not compiled" in c.summary and "--build-gsplat" in c.impact
    c = doctor.check_gsplat(None, build=True)
    assert c.state == doctor.OK and "compiled" in c.summary and calls == ["probe", "build"]
    status["probe"] = GsplatStatus(True, "12.8", "1.5.3", None, False, False, None, "no nvcc found")
    c = doctor.check_gsplat(None)
    assert c.state == doctor.FAIL and "no nvcc found" in c.impact
    status["probe"] = GsplatStatus(False, None, "1.5.3", None, False, False, None, "no CUDA")
    assert doctor.check_gsplat(None).state == doctor.OK  # not needed without CUDA


def test_torch_check_reports_a_cuda_device(monkeypatch):
    """The CUDA branch (no GPU here): name, memory, compute capability from torch."""
    torch = pytest.importorskip("torch")
    props = types.SimpleNamespace(name="NVIDIA H100 80GB HBM3", total_memory=80 * 1024**3,
                                  major=9, minor=0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    t, cuda, mod = doctor.check_torch()
    assert t.state == cuda.state == doctor.OK and mod is torch
    assert cuda.summary == "CUDA 12.8: NVIDIA H100 80GB HBM3, 80.0 GiB, compute capability 9.0"
    assert cuda.details["devices"][0]["capability"] == "9.0"
    report = doctor.Report([t, cuda])
    assert report.unmet(["cuda"]) == []
