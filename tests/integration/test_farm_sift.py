"""SIFT on the farm equals SIFT here: two panoramas of the real walk (36 views) extracted by two
loopback workers, one frame per item, against the local extraction, keypoints and descriptors
compared byte for byte (FARM.md section 3.1)."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

pytest.importorskip("distributed")
pytest.importorskip("cryptography")
pycolmap = pytest.importorskip("pycolmap")

from splatstudio.config import ProjectConfig  # noqa: E402
from splatstudio.events import Emitter, null_emitter  # noqa: E402
from splatstudio.farm.dispatch import Dispatcher  # noqa: E402
from splatstudio.farm.host import FarmHost  # noqa: E402
from splatstudio.pipeline import sfm  # noqa: E402
from splatstudio.pipeline.runner import PipelineRunner  # noqa: E402
from splatstudio.project import Project  # noqa: E402

pytestmark = pytest.mark.slow


def _features(db_path):
    out = {}
    with pycolmap.Database.open(db_path) as db:
        cams = {c.camera_id: (c.model.name, c.width, c.height) for c in db.read_all_cameras()}
        for im in db.read_all_images():
            kp = db.read_keypoints(im.image_id)
            desc = db.read_descriptors(im.image_id).data
            out[im.name] = (hashlib.sha256(np.ascontiguousarray(kp).tobytes()).hexdigest(),
                            hashlib.sha256(np.ascontiguousarray(desc).tobytes()).hexdigest(),
                            len(kp), cams[im.camera_id])
        n_cams = len(cams)
    return out, n_cams


def test_farm_sift_equals_local_sift(tmp_path, panos_2048):
    src = tmp_path / "in"
    src.mkdir()
    for p in sorted(panos_2048.glob("*.jpg"))[:2]:
        shutil.copy(p, src / p.name)
    project = Project.create(tmp_path / "proj", src, ProjectConfig.from_preset("test"))
    assert PipelineRunner(project).run(until="reproject").ok
    frames, rig = sfm.load_inputs(project)
    config = project.config.sfm
    images, masks = sfm.prepare_images(project, frames, rig, config.ownership_mask)

    local = tmp_path / "local.db"
    sfm.extract(local, images, masks, frames, rig, config, null_emitter("sfm"))

    farm_db = tmp_path / "farm.db"
    logs = []
    events = Emitter("sfm", logs.append, min_interval_s=0)
    with FarmHost(loopback=True, workers=[[], []]) as host:
        client = host.client()
        host.wait_for_workers(client, 3)  # two MACHINE slots and the home slot
        record = project.root / "sfm" / "farm" / "items.json"
        got = sfm.farm_extract(farm_db, images, masks, frames, rig, config,
                               Dispatcher(client, project.root, events, record=record),
                               project.root, chunk_images=18)
        client.close()
    assert got == {"items": 2, "images": 36}
    items = json.loads(record.read_text())["items"]
    assert [v["state"] for v in items.values()] == ["done", "done"]
    # local extraction afterwards has nothing left to do, and adds no camera
    sfm.extract(farm_db, images, masks, frames, rig, config, null_emitter("sfm"))
    ours, n_ours = _features(farm_db)
    theirs, n_theirs = _features(local)
    assert len(theirs) == 36 and n_ours == n_theirs == 18
    assert ours == theirs  # per image: keypoint and descriptor hashes, counts, camera
    assert min(v[2] for v in ours.values()) > 0 and sum(v[2] for v in ours.values()) > 3600
