"""The Export dialog: options -> ExportConfig overrides, a real export run through the runner,
the written files, Open folder, and a failing stage shown instead of a crash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from splatstudio.config import ExportConfig
from splatstudio.project import Project
from splatstudio.status import StageState

pytestmark = pytest.mark.gui

SPLAT = Path(__file__).resolve().parents[3] / "shared" / "data" / "splats" / "fruit_drops_minimal.ply"


@pytest.fixture
def trained(tmp_path) -> Project:
    """A project whose stages up to train are done, with a real trained splat."""
    from helpers.tiny_project import mark_done, splat_project

    if not SPLAT.exists():
        pytest.skip(f"{SPLAT} not present")
    project = splat_project(tmp_path / "proj", SPLAT)
    mark_done(project, ["ingest", "reproject", "sfm", "georef", "train"])
    return project


def test_dialog_builds_the_config_overrides(window, trained, tmp_path, qtbot):
    from splatstudio.errors import ConfigError

    window.open_project(trained.root)
    dlg = window.export_dialog()
    qtbot.waitExposed(dlg)
    # defaults: the project's export config, destination = the project's exports/
    assert dlg.formats() == ["ply", "splat", "spz", "compressed_ply"]
    assert dlg.output_dir() == trained.root / "exports"
    o = dlg.overrides()
    assert o["output_dir"] == "" and o["crop_min"] is None and o["converter"] == ""
    assert not dlg.mesh_faces.isEnabled() and not dlg.floater_k.isEnabled()

    dlg.format_boxes["splat"].setChecked(False)
    dlg.format_boxes["compressed_ply"].setChecked(False)
    dlg.format_boxes["glb"].setChecked(True)
    assert not dlg.glb_spz.isEnabled() and not dlg.tiles_sh.isEnabled()
    dlg.format_boxes["glb_splat"].setChecked(True)
    dlg.glb_spz.setChecked(True)
    assert dlg.format_boxes["3dtiles"].isEnabled()  # the project has a GPS origin
    dlg.format_boxes["3dtiles"].setChecked(True)
    dlg.tiles_sh.setValue(1)
    assert dlg.glb_spz.isEnabled() and dlg.tiles_sh.isEnabled()
    dlg.spz_version.setCurrentIndex(dlg.spz_version.findData(3))
    assert dlg.axes.currentData() == "viewer"  # the default: upright in splat viewers
    dlg.axes.setCurrentIndex(dlg.axes.findData("enu"))
    dlg.crop.setChecked(True)
    for box, v in zip(dlg.crop_min + dlg.crop_max, (-5, -6, -1, 5, 6.5, 3), strict=True):
        box.setValue(v)
    dlg.min_opacity.setValue(0.1)
    dlg.remove_floaters.setChecked(True)
    dlg.floater_k.setValue(8)
    dlg.floater_std.setValue(2.5)
    dlg.max_sh.setValue(1)
    dlg.mesh_faces.setValue(5000)
    dlg.texture_size.setCurrentIndex(dlg.texture_size.findData(1024))
    dlg.converter.setText("mytool {glb} {out}")
    dlg.name.setText("street")
    dlg.dest.setText(str(tmp_path / "elsewhere"))
    assert dlg.mesh_faces.isEnabled() and dlg.floater_k.isEnabled()
    assert dlg.overrides() == {
        "formats": ("ply", "spz", "glb_splat", "3dtiles", "glb"),
        "output_dir": str(tmp_path / "elsewhere"),
        "name": "street",
        "axes": "enu",
        "source": "",
        "spz_version": 3,
        "glb_splat_spz": True,
        "tiles_sh_degree": 1,
        "crop_min": (-5.0, -6.0, -1.0),
        "crop_max": (5.0, 6.5, 3.0),
        "min_opacity": 0.1,
        "remove_floaters": True,
        "floater_k": 8,
        "floater_std_ratio": 2.5,
        "max_sh_degree": 1,
        "mesh_faces": 5000,
        "texture_size": 1024,
        "converter": "mytool {glb} {out}",
    }
    cfg = dlg.config()
    assert isinstance(cfg, ExportConfig) and cfg.formats == ("ply", "spz", "glb_splat", "3dtiles", "glb")
    assert cfg.bake_views == ExportConfig().bake_views  # fields the dialog has no widget for

    # a crop box turned inside out is refused before anything runs, with the stage's message
    dlg.crop_min[0].setValue(10)
    with pytest.raises(ConfigError):
        dlg.config()
    assert not dlg.start()
    assert dlg.error_label.isVisible() and "crop_min" in dlg.error_label.text()
    assert not window.model.is_running
    assert Project.open(trained.root).config.export.formats == ExportConfig().formats  # unsaved
    dlg.close()


def test_export_runs_and_lists_the_written_files(window, trained, tmp_path, qtbot, monkeypatch):
    from PySide6.QtGui import QDesktopServices

    window.open_project(trained.root)
    dlg = window.export_dialog()
    for fmt, box in dlg.format_boxes.items():
        box.setChecked(fmt in ("ply", "spz"))
    dlg.max_sh.setValue(1)
    dest = tmp_path / "my exports"
    dlg.dest.setText(str(dest))
    progress: list[int] = []
    dlg.progress.valueChanged.connect(progress.append)
    with qtbot.waitSignal(dlg.exportFinished, timeout=120_000) as sig:
        qtbot.mouseClick(dlg.export_button, Qt.MouseButton.LeftButton)
        assert not dlg.export_button.isEnabled()
    manifest = sig.args[0]
    assert manifest is not None, dlg.error
    assert progress and progress[-1] == 1000
    on_disk = json.loads((dest / "manifest.json").read_text())
    assert [f["format"] for f in on_disk["files"]] == ["ply", "spz"]
    # the options went through project.json to the stage
    saved = Project.open(trained.root).config.export
    assert saved.formats == ("ply", "spz") and saved.output_dir == str(dest) and saved.max_sh_degree == 1
    assert on_disk["filters"]["max_sh_degree"] == 1
    # the list: every file with its size, as on disk
    rows = {dlg.files.topLevelItem(i).text(0): dlg.files.topLevelItem(i)
            for i in range(dlg.files.topLevelItemCount())}
    assert set(rows) == {"scene.ply", "scene.ply.geo.json", "scene.spz", "scene.spz.geo.json"}
    assert "4,721 gaussians" in rows["scene.ply"].text(1)
    from splatstudio.gui.export_dialog import format_bytes

    for name, item in rows.items():
        assert item.text(2) == format_bytes((dest / name).stat().st_size)
    assert "Wrote 4 files" in dlg.message.text() and str(dest) in dlg.message.text()
    assert window.model.stages["export"].state == StageState.DONE
    opened: list = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    assert dlg.open_button.isEnabled()
    qtbot.mouseClick(dlg.open_button, Qt.MouseButton.LeftButton)
    assert [Path(u.toLocalFile()) for u in opened] == [dest]


def test_a_failing_export_shows_the_stage_message(window, trained, qtbot):
    window.open_project(trained.root)
    dlg = window.export_dialog()
    dlg.converter.setText("no-such-converter-xyz {ply}")
    with qtbot.waitSignal(dlg.exportFinished, timeout=120_000) as sig:
        assert dlg.start()
    assert sig.args[0] is None
    assert dlg.error_label.isVisible()
    assert "no-such-converter-xyz" in dlg.error_label.text() and "not found" in dlg.error_label.text()
    assert not dlg.open_button.isEnabled()
    assert window.model.stages["export"].state == StageState.FAILED
    qtbot.waitUntil(lambda: not window.model.is_running, timeout=10_000)
    assert dlg.export_button.isEnabled()  # the user can fix it and try again
    assert window.isVisible()


def test_manifest_rows_and_sizes():
    from splatstudio.gui.export_dialog import format_bytes, manifest_rows

    assert format_bytes(512) == "512 B" and format_bytes(1536) == "1.5 KB"
    assert format_bytes(3 * 1024**3) == "3.0 GB"
    rows = manifest_rows({"output_dir": "/nonexistent", "files": [
        {"format": "obj", "path": "s.obj", "bytes": 10, "faces": 1200, "sidecar": None,
         "files": [{"path": "s.mtl", "bytes": 2}, {"path": "s.png", "bytes": 30}]},
    ]})
    assert rows == [("s.obj", "obj, 1,200 faces", 10), ("s.mtl", "obj part", 2),
                    ("s.png", "obj part", 30)]
