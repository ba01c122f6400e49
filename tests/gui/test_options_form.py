"""The stage options forms: built from the config metadata, saved to project.json."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QSpinBox

from splatstudio.config import STAGE_CONFIGS, STAGES, ExportFormat, options
from splatstudio.project import Project
from splatstudio.status import StageState

pytestmark = pytest.mark.gui


def _project(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    return Project.create(tmp_path / "p", inp)


def test_every_stage_has_a_form_from_its_metadata(window, tmp_path, qtbot):
    project = _project(tmp_path)
    window.open_project(project.root)
    window.stage_panel.options_button.click()
    dlg = window.options_dialog_window
    assert dlg is not None and dlg.tabs.count() == len(STAGES)
    for s in STAGES:
        form = dlg.forms[s]
        assert list(form.widgets) == [o.name for o in options(STAGE_CONFIGS[s])]
        for o in options(STAGE_CONFIGS[s]):
            w = form.widgets[o.name]
            assert o.help[:20].lower() in w.toolTip().lower(), (s, o.name)
            want = {bool: QCheckBox, int: QSpinBox, float: QDoubleSpinBox}.get(o.type)
            if o.is_enum or o.choices:
                want = QComboBox
            assert isinstance(w, want or QLineEdit), (s, o.name)
    train = dlg.forms["train"].widgets
    assert train["downscale"].minimum() == 1.0 and "Range: >= 1" in train["downscale"].toolTip()
    assert (train["sh_degree"].minimum(), train["sh_degree"].maximum()) == (0, 3)
    fov = dlg.forms["reproject"].widgets["fov_deg"]
    assert 0 < fov.minimum() <= 0.01 and 169.99 <= fov.maximum() < 170
    spz = dlg.forms["export"].widgets["spz_version"]
    assert [spz.itemData(i) for i in range(spz.count())] == [4, 3]
    assert dlg.forms["export"].widgets["formats"].text() == "ply,splat,spz,compressed_ply"
    dlg.close()


def test_saving_the_options_updates_project_json_and_marks_stages_stale(window, tmp_path, qtbot):
    from helpers.tiny_project import mark_done

    project = _project(tmp_path)
    mark_done(project, list(STAGES))
    window.open_project(project.root)
    dlg = window.options_dialog("export")
    assert dlg.tabs.currentIndex() == STAGES.index("export")
    forms = dlg.forms
    forms["export"].widgets["formats"].setText("ply,fbx")
    assert not dlg.save() and "unknown format 'fbx'" in dlg.error_label.text()
    assert Project.open(project.root).config.export.formats[0] == ExportFormat.PLY  # unsaved
    forms["export"].widgets["formats"].setText("ply, sog")
    forms["export"].widgets["crop_min"].setText("-1,-2,-3")
    forms["train"].widgets["steps"].setValue(123)
    forms["train"].widgets["allow_slow"].setChecked(True)
    assert dlg.save()
    saved = Project.open(project.root).config
    assert saved.export.formats == (ExportFormat.PLY, ExportFormat.SOG)
    assert saved.export.crop_min == (-1.0, -2.0, -3.0) and saved.train.steps == 123
    assert saved.reproject == project.config.reproject  # untouched stages keep their values
    summary = Project.open(project.root).summary()["stages"]
    assert summary["georef"]["state"] == StageState.DONE
    assert summary["train"]["stale"] and summary["export"]["stale"]
    assert window.stage_panel.rows["train"].state_label.text() == "stale: will re-run"
