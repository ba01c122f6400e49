"""Config dataclasses, presets, project folder, atomic status and fingerprint invalidation."""

from __future__ import annotations

import json
import os
import socket

import pytest

from splatstudio.config import (
    STAGES,
    ProjectConfig,
    ReprojectConfig,
    RigLayout,
    config_hash,
    update_config,
)
from splatstudio.errors import ConfigError, ProjectError
from splatstudio.project import Project, write_json_atomic
from splatstudio.status import StageState, StageStatus


def test_presets_and_round_trip():
    cfg = ProjectConfig.from_preset("test")
    assert cfg.preset == "test" and cfg.reproject.max_size == 512
    again = ProjectConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    with pytest.raises(ConfigError, match="unknown preset"):
        ProjectConfig.from_preset("nope")


def test_update_config_coerces_and_rejects():
    cfg = update_config(ReprojectConfig(), {"rig": "colmap12", "max_size": "800", "nadir_mask": "no"})
    assert cfg.rig is RigLayout.COLMAP12 and cfg.max_size == 800 and cfg.nadir_mask is False
    with pytest.raises(ConfigError, match="no option 'maxsize'"):
        update_config(cfg, {"maxsize": 3})
    with pytest.raises(ConfigError, match="choose one of"):
        update_config(cfg, {"rig": "dodecahedron"})
    with pytest.raises(ConfigError, match="bad value"):
        update_config(cfg, {"max_size": 1.5})


def test_hash_ignores_worker_count():
    a = ReprojectConfig()
    assert config_hash(a) == config_hash(update_config(a, {"workers": 7}))
    assert config_hash(a) != config_hash(update_config(a, {"fov_deg": 80}))


def test_project_create_open_and_refusals(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    p = Project.create(tmp_path / "proj", inp)
    assert (tmp_path / "proj" / "project.json").exists()
    assert Project.open(tmp_path / "proj").input_dir == inp.resolve()
    with pytest.raises(ProjectError, match="already a project"):
        Project.create(tmp_path / "proj", inp)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ProjectError, match="not empty"):
        Project.create(tmp_path / "full", inp)
    with pytest.raises(ProjectError, match="not a SplatStudio project"):
        Project.open(tmp_path / "in")
    data = json.loads((p.root / "project.json").read_text())
    data["schema_version"] = 99
    (p.root / "project.json").write_text(json.dumps(data))
    with pytest.raises(ProjectError, match="schema_version 99"):
        Project.open(p.root)


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "s.json"
    write_json_atomic(target, {"a": 1})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_json_atomic(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 1}
    assert [f.name for f in tmp_path.iterdir()] == ["s.json"]


def _mark_done(project, stage):
    project.write_status(StageStatus(stage, StageState.DONE,
                                     fingerprint=project.fingerprints()[stage]))


def test_changed_config_invalidates_stage_and_downstream(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "a.jpg").write_bytes(b"x")
    p = Project.create(tmp_path / "proj", inp)
    for s in STAGES:
        _mark_done(p, s)
    assert all(p.is_done(s) for s in STAGES)
    p.config.reproject = update_config(p.config.reproject, {"fov_deg": 80})
    p.save()
    p = Project.open(p.root)
    assert p.is_done("ingest")
    assert not any(p.is_done(s) for s in STAGES[1:])
    summary = p.summary()["stages"]
    assert summary["reproject"]["state"] == StageState.PENDING and summary["reproject"]["stale"]
    # a changed input folder invalidates everything
    for s in STAGES:
        _mark_done(p, s)
    (inp / "b.jpg").write_bytes(b"y")
    assert not any(p.is_done(s) for s in STAGES)


def test_running_with_dead_pid_reads_as_failed(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    p = Project.create(tmp_path / "proj", inp)
    p.write_status(StageStatus("ingest", StageState.RUNNING, pid=2**22 + 12345,
                               host=socket.gethostname()))
    st = p.summary()["stages"]["ingest"]
    assert st["state"] == StageState.FAILED and "interrupted" in st["error"]
    assert set(p.summary()["stages"]) == set(STAGES)


def test_project_inside_its_input_folder_is_not_input(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "a.jpg").write_bytes(b"x")
    p = Project.create(inp / "proj", inp)
    before = p.input_signature()
    _mark_done(p, "ingest")
    (p.root / "ingest" / "more.json").write_text("{}")
    assert p.input_signature() == before and p.is_done("ingest")


def test_options_added_later_keep_fingerprints_at_their_default():
    """An option added after projects existed (metadata ``added``) counts in the stage's
    fingerprint only when set away from its default: upgrading does not re-run every stage."""
    from dataclasses import fields

    from splatstudio.config import GeorefConfig, config_hash, update_config

    added = [f.name for f in fields(GeorefConfig) if f.metadata.get("added")]
    assert "check" in added
    base = GeorefConfig()
    old = {f.name: getattr(base, f.name) for f in fields(GeorefConfig) if f.name not in added}
    # the hash of today's default config equals that of a config without those fields
    import hashlib
    import json

    from splatstudio.config import _plain

    blob = json.dumps({"type": "GeorefConfig", **{k: _plain(v) for k, v in old.items()}},
                      sort_keys=True)
    assert config_hash(base) == hashlib.sha256(blob.encode()).hexdigest()
    assert config_hash(update_config(base, {"check": False})) != config_hash(base)
