"""Edited versions of a real splat: saved next to the trained one, exported by the export stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import tiny_project

from splatstudio.config import ExportConfig, update_config
from splatstudio.errors import ConfigError, InputError
from splatstudio.events import null_emitter
from splatstudio.pipeline.export import run_export
from splatstudio.pipeline.versions import list_versions, resolve_source, save_version
from splatstudio.splats import load_splats
from splatstudio.splats.edit import SplatEditor, select_opacity

SPLAT = (
    Path(__file__).resolve().parents[3] / "shared" / "data" / "splats" / "fruit_drops_minimal.ply"
)


@pytest.fixture
def project(tmp_path):
    if not SPLAT.exists():
        pytest.skip(f"{SPLAT} not present")
    return tiny_project.splat_project(tmp_path / "proj", SPLAT)


def test_save_version_keeps_the_original_and_export_takes_it(project):
    trained = project.root / "train" / "splat.ply"
    before = trained.read_bytes()
    s = load_splats(trained)
    ed = SplatEditor(s)
    ed.select(select_opacity(s.opacities, 0.0, 0.5))
    removed = ed.delete_selected()
    assert 0 < removed < s.n
    entry = save_version(project.root, ed.result(), removed=removed, steps=ed.undo_labels)
    assert entry["name"] == "v001" and entry["file"] == "edits/v001.ply"
    assert entry["gaussians"] == s.n - removed and entry["steps"] == ["select (replace)", "delete"]
    assert trained.read_bytes() == before  # the original is kept as it was
    second = save_version(project.root, s.subset(slice(0, 10)), note="ten")
    assert second["name"] == "v002" and [v["name"] for v in list_versions(project.root)] == [
        "v001", "v002"]
    with pytest.raises(ConfigError, match="new plain name"):
        save_version(project.root, s, name="v001")
    with pytest.raises(ConfigError, match="new plain name"):
        save_version(project.root, s, name="../x")
    assert resolve_source(project.root, "") == trained
    assert resolve_source(project.root, "edits/v002.ply") == project.root / "edits" / "v002.ply"
    with pytest.raises(InputError, match="no edited version 'v9'.*v001, v002"):
        resolve_source(project.root, "v9")

    cfg = update_config(ExportConfig(), {"formats": "ply", "source": "v001", "axes": "enu"})
    manifest = run_export(project, cfg, null_emitter())
    out = load_splats(project.root / "exports" / manifest["files"][0]["path"])
    kept = ~select_opacity(s.opacities, 0.0, 0.5)
    assert out.n == s.n - removed
    np.testing.assert_array_equal(out.means, s.means[kept])
    # the default exports the trained splat
    manifest = run_export(project, update_config(ExportConfig(), {"formats": "ply"}),
                          null_emitter())
    assert manifest["files"][0]["gaussians"] == s.n
    with pytest.raises(InputError, match="no edited version"):
        run_export(project, update_config(ExportConfig(), {"source": "nope"}), null_emitter())
