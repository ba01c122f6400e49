"""SIFT and matching on the farm equal SIFT and matching here, even when a worker dies mid-item;
a cancel ends every item process. Three panoramas of the real walk (54 views), one frame (SIFT)
or one frame pair (matching) per item, on loopback workers; keypoints and descriptors compared
byte for byte with the local extraction, matches and two-view geometries pair by pair
(FARM.md 3.1, 3.2, 2.4, 2.5)."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import threading
import time

import numpy as np
import pytest

pytest.importorskip("distributed")
pytest.importorskip("cryptography")
pycolmap = pytest.importorskip("pycolmap")

from splatstudio.config import ProjectConfig  # noqa: E402
from splatstudio.errors import Cancelled  # noqa: E402
from splatstudio.events import Emitter, null_emitter  # noqa: E402
from splatstudio.farm.dispatch import Dispatcher  # noqa: E402
from splatstudio.farm.host import FarmHost  # noqa: E402
from splatstudio.lifeline import kill_process_tree  # noqa: E402
from splatstudio.pipeline import sfm  # noqa: E402
from splatstudio.pipeline.artifacts import read_frames  # noqa: E402
from splatstudio.pipeline.runner import PipelineRunner  # noqa: E402
from splatstudio.project import Project  # noqa: E402

pytestmark = pytest.mark.slow


def _features(db_path):
    out = {}
    with pycolmap.Database.open(db_path) as db:
        cams = {c.camera_id: (c.model.name, c.width, c.height) for c in db.read_all_cameras()}
        for im in db.read_all_images():
            if not db.exists_keypoints(im.image_id):
                continue
            kp = db.read_keypoints(im.image_id)
            desc = db.read_descriptors(im.image_id).data
            out[im.name] = (hashlib.sha256(np.ascontiguousarray(kp).tobytes()).hexdigest(),
                            hashlib.sha256(np.ascontiguousarray(desc).tobytes()).hexdigest(),
                            len(kp), cams[im.camera_id])
        n_cams = len(cams)
    return out, n_cams


@pytest.fixture(scope="module")
def walk(tmp_path_factory, panos_2048):
    """Three reprojected panoramas, their SfM image layout, and the local SIFT."""
    tmp = tmp_path_factory.mktemp("farm_sift")
    src = tmp / "in"
    src.mkdir()
    for p in sorted(panos_2048.glob("*.jpg"))[:3]:
        shutil.copy(p, src / p.name)
    project = Project.create(tmp / "proj", src, ProjectConfig.from_preset("test"))
    assert PipelineRunner(project).run(until="reproject").ok
    inputs = read_frames(project.root)
    frames, rig = inputs.frames, inputs.rig
    config = project.config.sfm
    images, masks = sfm.prepare_images(project, frames, rig, config.ownership_mask)
    local = tmp / "local.db"
    sfm.extract(local, images, masks, frames, rig, config, null_emitter("sfm"))
    project.local_db = local  # type: ignore[attr-defined]
    return project, frames, rig, config, images, masks, _features(local)


@pytest.fixture(scope="module")
def farm():
    with FarmHost(loopback=True, workers=[[], []]) as host:
        client = host.client()
        host.wait_for_workers(client, 3)  # two MACHINE slots and the home slot
        yield host, client
        client.close()


def test_farm_sift_equals_local_sift(walk, farm, tmp_path):
    project, frames, rig, config, images, masks, (theirs, n_theirs) = walk
    host, client = farm
    farm_db = tmp_path / "farm.db"
    record = tmp_path / "items.json"
    got = sfm.farm_extract(farm_db, images, masks, frames, rig, config,
                           Dispatcher(client, project.root, null_emitter("sfm"), record=record),
                           project.root, chunk_images=18)
    assert got == {"items": 3, "images": 54}
    items = json.loads(record.read_text())["items"]
    assert [v["state"] for v in items.values()] == ["done"] * 3
    # local extraction afterwards has nothing left to do, and adds no camera
    sfm.extract(farm_db, images, masks, frames, rig, config, null_emitter("sfm"))
    ours, n_ours = _features(farm_db)
    assert len(theirs) == 54 and n_ours == n_theirs == 18
    assert ours == theirs  # per image: keypoint and descriptor hashes, counts, camera
    assert min(v[2] for v in ours.values()) > 0 and sum(v[2] for v in ours.values()) > 5400


def _processing_on(client, worker_name: str) -> list[str]:
    info = client.scheduler_info(n_workers=-1)["workers"]
    addr = [a for a, w in info.items() if str(w["name"]).startswith(worker_name)]
    return [str(k) for a in addr for k in client.processing().get(a, ())]


def _item_processes() -> list:
    import psutil

    return [p for p in psutil.process_iter(["cmdline"])
            if "splatstudio.farm.itemproc" in " ".join(p.info["cmdline"] or [])]


def test_a_worker_killed_mid_item_loses_nothing(walk, tmp_path, panos_2048):
    project, frames, rig, config, images, masks, (theirs, _) = walk
    with FarmHost(loopback=True, workers=[[], []]) as host:  # its own: one worker dies here
        client = host.client()
        host.wait_for_workers(client, 3)
        db = tmp_path / "farm.db"
        killed: list[str] = []

        def kill_when_busy() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not killed:
                peer = f"{socket.gethostname()}-1"  # FarmHost's second worker
                if any("sift" in k for k in _processing_on(client, peer)) and _item_processes():
                    time.sleep(1.0)  # well inside the item
                    kill_process_tree(host.workers[1].pid)  # the whole peer: nanny, worker, item
                    killed.append(peer)
                time.sleep(0.2)

        t = threading.Thread(target=kill_when_busy)
        t.start()
        got = sfm.farm_extract(db, images, masks, frames, rig, config,
                               Dispatcher(client, project.root, null_emitter("sfm")),
                               project.root, chunk_images=18)
        t.join()
        client.close()
    assert killed and got == {"items": 3, "images": 54}
    assert _features(db)[0] == theirs  # the killed item ran again elsewhere, same features


def test_cancel_ends_every_item_process(walk, farm, tmp_path):
    project, frames, rig, config, images, masks, _ = walk
    host, client = farm

    class Token:
        flag = False

        def is_set(self):
            return self.flag

    token = Token()
    events = Emitter("sfm", lambda e: None, cancel=token)

    def cancel_when_running() -> None:
        deadline = time.monotonic() + 120
        while not _item_processes() and time.monotonic() < deadline:
            time.sleep(0.2)
        token.flag = True

    t = threading.Thread(target=cancel_when_running)
    t.start()
    record = tmp_path / "items.json"
    with pytest.raises(Cancelled):
        sfm.farm_extract(tmp_path / "farm.db", images, masks, frames, rig, config,
                         Dispatcher(client, project.root, events, record=record),
                         project.root, chunk_images=18)
    t.join()
    t0 = time.monotonic()
    while _item_processes() and time.monotonic() - t0 < 20:  # grace 10 s, then killed
        time.sleep(0.2)
    assert not _item_processes()
    assert time.monotonic() - t0 < 15
    states = {v["state"] for v in json.loads(record.read_text())["items"].values()}
    assert states <= {"cancelled", "done"} and "cancelled" in states


def _matches(db_path):
    with pycolmap.Database.open(db_path) as db:
        ids, tvgs = db.read_two_view_geometries()
        out = {}
        for pid, g in zip(ids, tvgs, strict=True):
            inl = np.ascontiguousarray(g.inlier_matches)
            out[pid] = (int(g.config), len(inl), hashlib.sha256(inl.tobytes()).hexdigest())
        mids, ms = db.read_all_matches()
        raw = {pid: hashlib.sha256(np.ascontiguousarray(m).tobytes()).hexdigest()
               for pid, m in zip(mids, ms, strict=True)}
    return out, raw


def test_farm_matching_equals_local_matching(walk, farm, tmp_path):
    project, frames, rig, config, images, masks, _ = walk
    host, client = farm
    pairs = sfm.image_pairs(frames, rig, sfm.frame_pairs(frames))
    pairs_txt = tmp_path / "pairs.txt"
    pairs_txt.write_text("".join(f"{a} {b}\n" for a, b in pairs))
    dbs = {}
    for name in ("local", "farm"):
        dbs[name] = tmp_path / f"{name}.db"
        shutil.copyfile(project.local_db, dbs[name])
        sfm.setup_database(dbs[name], frames, rig, config.gps_priors)
    sfm.match(dbs["local"], pairs_txt, config, True, null_emitter("sfm"))
    got = sfm.farm_match(dbs["farm"], pairs, config, True,
                         Dispatcher(client, project.root, null_emitter("sfm")), project.root,
                         chunk_pairs=324)
    assert got["items"] == 3 and len(pairs) == 3 * 324
    sfm.match(dbs["farm"], pairs_txt, config, True, null_emitter("sfm"))  # nothing left to do
    ours, ours_raw = _matches(dbs["farm"])
    theirs, theirs_raw = _matches(dbs["local"])
    verified = sum(1 for v in theirs.values() if v[1] >= config.min_num_inliers)
    assert verified >= 20 and got["pairs"] == len(pairs)  # a row per pair, verified or not
    assert ours_raw == theirs_raw  # the putative matches, pair by pair
    assert ours == theirs  # the geometries: configuration, inliers, pair by pair
    assert not list((project.root / "sfm" / "farm").glob("match-*"))  # chunk files cleaned up


def test_farm_sift_and_matching_on_the_sfm_rig(farm, tmp_path, panos_2048):
    """SfM's own rig (reproject.sfm_rig): the farm items extract and match its views as here."""
    from splatstudio.config import update_config

    src = tmp_path / "in"
    src.mkdir()
    for p in sorted(panos_2048.glob("*.jpg"))[:2]:
        shutil.copy(p, src / p.name)
    cfg = ProjectConfig.from_preset("test")
    cfg.reproject = update_config(cfg.reproject, {"sfm_rig": "cube6", "sfm_size": 256})
    project = Project.create(tmp_path / "proj", src, cfg)
    assert PipelineRunner(project).run(until="reproject").ok
    frames, rig = sfm.sfm_views(read_frames(project.root))
    assert rig["layout"] == "cube6" and all(len(f["images"]) == 5 for f in frames)
    config = project.config.sfm
    images, masks = sfm.prepare_images(project, frames, rig, config.ownership_mask)
    host, client = farm
    dbs = {name: tmp_path / f"{name}.db" for name in ("local", "farm")}
    sfm.extract(dbs["local"], images, masks, frames, rig, config, null_emitter("sfm"))
    got = sfm.farm_extract(dbs["farm"], images, masks, frames, rig, config,
                           Dispatcher(client, project.root, null_emitter("sfm")),
                           project.root, chunk_images=5)
    assert got == {"items": 2, "images": 10}
    ours, _ = _features(dbs["farm"])
    theirs, _ = _features(dbs["local"])
    assert ours == theirs and {n.split("/")[0] for n in ours} == {f"s{i:02d}" for i in range(5)}
    pairs = sfm.image_pairs(frames, rig, sfm.frame_pairs(frames))
    pairs_txt = tmp_path / "pairs.txt"
    pairs_txt.write_text("".join(f"{a} {b}\n" for a, b in pairs))
    # matching from the same features and image ids (the farm's SIFT numbers images in
    # another order): a copy of the local database each
    shutil.copyfile(dbs["local"], dbs["farm"])
    for db in dbs.values():
        sfm.setup_database(db, frames, rig, config.gps_priors)
    sfm.match(dbs["local"], pairs_txt, config, True, null_emitter("sfm"))
    got = sfm.farm_match(dbs["farm"], pairs, config, True,
                         Dispatcher(client, project.root, null_emitter("sfm")), project.root,
                         chunk_pairs=25)
    assert got == {"items": 1, "pairs": 25}
    theirs = _matches(dbs["local"])
    assert _matches(dbs["farm"]) == theirs
    assert sum(1 for v in theirs[0].values() if v[1] >= config.min_num_inliers) >= 3
