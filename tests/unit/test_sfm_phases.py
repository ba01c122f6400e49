"""Phases of the sfm stage alone (:mod:`splatstudio.pipeline.sfm`), with a stand-in for
:func:`~splatstudio.pipeline.sfm.build_model` and a report dict: the automatic mapper's
fallback (``map_scene``) and the registered-fraction check (``check_registered``). The whole
stage on the real captures is ``tests/integration/test_sfm.py``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from splatstudio.config import Mapper, SfmConfig
from splatstudio.errors import StageError
from splatstudio.events import Emitter
from splatstudio.pipeline import sfm


class _Model:
    """Stands in for a pycolmap.Reconstruction: only what the phases ask of it."""

    def __init__(self, registered: int):
        self.registered = registered

    def num_reg_images(self) -> int:
        return self.registered


def _run(tmp_path: Path, got: list, **options) -> sfm.SfmRun:
    config = dataclasses.replace(SfmConfig(), **options)
    return sfm.SfmRun(
        project=None, config=config, events=Emitter("sfm", got.append, min_interval_s=0),
        inputs=None, frames=[{"id": str(i), "kind": "equirect"} for i in range(5)],
        rig={"views": []}, out=tmp_path, db_path=tmp_path / "database.db",
        state_path=tmp_path / "state.json", state={}, has_panos=True, has_photos=False,
        images=tmp_path / "images", n_images=90)


def _pairs(verified: int = 1000) -> sfm.MatchedPairs:
    return sfm.MatchedPairs([(0, 1)], [("00/0.jpg", "00/1.jpg")], None, verified)


@pytest.fixture
def calls(monkeypatch):
    """build_model replaced: the global mapper builds nothing (as COLMAP's does on some
    captures), the incremental one a model of 81 images; each call is recorded."""
    made: list[tuple] = []

    def build_model(mapper, config, db_path, images, work, has_panos, has_photos, n_images,
                    verified, n_frames, timings, events, label=""):
        made.append((mapper, config.mapper, work, label, n_images, verified, n_frames))
        if mapper == Mapper.GLOBAL:
            raise StageError("sfm: no model could be built from 5 frames")
        model = _Model(81)
        return {0: model}, 0, model

    monkeypatch.setattr(sfm, "build_model", build_model)
    return made


def test_auto_mapper_falls_back_to_incremental_when_global_builds_nothing(tmp_path, calls):
    got: list = []
    run = _run(tmp_path, got)
    (run.work / "stale").mkdir(parents=True)  # an earlier run's scratch: cleared first
    model = sfm.map_scene(run, _pairs(1234))
    assert not (run.work / "stale").exists()
    assert [c[0] for c in calls] == [Mapper.GLOBAL, Mapper.INCREMENTAL]
    assert calls[0][2:] == (tmp_path / "models.tmp", "", 90, 1234, 5)
    assert calls[1][2:4] == (tmp_path / "models.tmp" / "incremental", "_incremental")
    assert model.mapper == Mapper.INCREMENTAL and model.rec.num_reg_images() == 81
    assert model.recs == {0: model.rec} and model.best == 0 and model.sfm_rec is None
    assert model.gps_tries == [{"mapper": "global", "verdict": "no model",
                                "reason": "sfm: no model could be built from 5 frames"}]
    assert run.events.warnings == ["the global mapper built no model: trying the incremental "
                                   "mapper with the GPS positions as pose priors"]


def test_a_chosen_global_mapper_does_not_fall_back(tmp_path, calls):
    run = _run(tmp_path, [], mapper=Mapper.GLOBAL)
    with pytest.raises(StageError, match="no model could be built"):
        sfm.map_scene(run, _pairs())
    assert [c[0] for c in calls] == [Mapper.GLOBAL]


def _report(registered: int) -> dict:
    return {"images": 90, "registered_images": registered, "other_models": [["4"]],
            "frames": {"0": {"registered": True}, "1": {"registered": False},
                       "2": {"registered": True}, "3": {"registered": False},
                       "4": {"registered": False}}}


def test_too_few_registered_fails_naming_the_frames_and_clears_the_scratch(tmp_path):
    run = _run(tmp_path, [], min_registered_fraction=0.5)
    run.work.mkdir()
    with pytest.raises(StageError) as err:
        sfm.check_registered(run, _report(36))
    msg = str(err.value)
    assert msg.startswith("sfm: only 36/90 images (40%) registered; frames not in the model: "
                          "1, 3, 4; in separate models: [['4']]. Try more features")
    assert "sfm.mapper" in msg and "sfm/sfm.json" in msg
    assert not run.work.exists()


def test_enough_registered_warns_about_the_frames_left_out(tmp_path):
    run = _run(tmp_path, [], min_registered_fraction=0.5)
    run.work.mkdir()
    sfm.check_registered(run, _report(54))
    assert run.events.warnings == ["frames not registered: 1, 3, 4"]
    assert run.work.exists()  # write_model removes it once the model is written
