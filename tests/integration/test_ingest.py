"""Ingest on the real captures and on every kind of bad input."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import numpy as np
import pytest

from splatstudio.config import IngestConfig
from splatstudio.errors import InputError
from splatstudio.events import Emitter, Log
from splatstudio.pipeline.ingest import run_ingest
from splatstudio.project import Project


def _ingest(tmp_path, src, **cfg):
    project = Project.create(tmp_path / "proj", src)
    logs: list[Log] = []
    ev = Emitter("ingest", lambda e: logs.append(e) if isinstance(e, Log) else None)
    manifest = run_ingest(project, IngestConfig(**cfg), ev)
    on_disk = json.loads((project.root / "ingest" / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest))
    return manifest, [m.message for m in logs if m.level == "warning"], ev


def _tree_digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() or p.is_symlink():
            st = os.lstat(p)
            h.update(f"{p.relative_to(folder)}:{st.st_size}:{st.st_mtime_ns}".encode())
            if p.is_file():
                h.update(p.read_bytes())
    return h.hexdigest()


def test_real_panoramas(tmp_path, panos_2048):
    m, warnings, ev = _ingest(tmp_path, panos_2048)
    assert [i["file"] for i in m["images"]] == ["1.jpg", "2.jpg", "3.jpg", "4.jpg", "5.jpg"]
    assert all(i["kind"] == "equirect" and (i["width"], i["height"]) == (2048, 1024) for i in m["images"])
    assert m["origin"] == m["images"][0]["gps"]
    enu = np.array([i["enu_m"] for i in m["images"]])
    steps = np.linalg.norm(np.diff(enu[:, :2], axis=0), axis=1)
    # The data README: horizontal GPS steps of about 1.05, 3.11, 3.19, 2.11 m (9.5 m in all);
    # the GPS altitude wanders by about 1 m.
    assert np.allclose(steps, [1.05, 3.11, 3.19, 2.11], atol=0.01)
    assert np.abs(enu[:, 2]).max() < 1.5
    assert abs(ev.metrics["path_m"] - 9.5) < 0.2
    assert m["images"][0]["time"] == "2021-07-29T11:16:42"
    assert m["images"][0]["gpano"]["ProjectionType"] == "equirectangular"
    assert m["skipped"] == [{"file": "LICENSE", "reason": "not a JPEG or PNG image"}]
    assert any("LICENSE" in w for w in warnings)


def test_full_resolution_size_comes_from_pixels(tmp_path, panos_full):
    m, _, _ = _ingest(tmp_path, panos_full)
    assert {(i["width"], i["height"]) for i in m["images"]} == {(5760, 2880)}


def test_real_photos(tmp_path, lund):
    m, warnings, ev = _ingest(tmp_path, lund)
    assert len(m["images"]) == 29
    assert all(i["kind"] == "perspective" for i in m["images"])
    # EXIF 35 mm-equivalent focal length 35 mm on a 1024 px wide image
    assert m["images"][0]["focal_px"] == pytest.approx(35 / 36 * 1024)
    assert ev.metrics["with_gps"] == 29
    assert 150 < ev.metrics["path_m"] < 300  # a street sequence of about 200 m


def test_empty_folder_and_no_images(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="empty") as e:
        _ingest(tmp_path, empty)
    assert str(empty) in str(e.value)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("hello")
    (junk / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    with pytest.raises(InputError, match="no readable JPEG or PNG") as e:
        _ingest(tmp_path / "b", junk)
    assert str(junk) in str(e.value)
    with pytest.raises(InputError, match="not found"):
        _ingest(tmp_path / "c", tmp_path / "missing")


def test_bad_files_are_skipped_with_warnings_and_input_untouched(tmp_path, panos_2048, panos_full):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("1.jpg", "2.jpg", "3.jpg"):
        shutil.copy2(panos_2048 / name, src / name)
    shutil.copy2(panos_full / "4.jpg", src / "4_full.jpg")  # mixed sizes are fine
    data = (panos_2048 / "5.jpg").read_bytes()
    (src / "truncated.jpg").write_bytes(data[: len(data) * 2 // 3])
    (src / "dup_of_2.jpg").write_bytes((src / "2.jpg").read_bytes())
    (src / "readme.txt").write_text("not an image")
    os.symlink(src / "gone.jpg", src / "dangling.jpg")  # unreadable: target missing
    # a photo without GPS
    import cv2

    cv2.imwrite(str(src / "nogps.jpg"), np.full((300, 400, 3), 128, np.uint8))
    before = _tree_digest(src)

    m, warnings, ev = _ingest(tmp_path, src)

    files = [i["file"] for i in m["images"]]
    assert files == ["1.jpg", "2.jpg", "3.jpg", "4_full.jpg", "nogps.jpg"]
    reasons = {s["file"]: s["reason"] for s in m["skipped"]}
    assert "truncated" in reasons["truncated.jpg"]
    assert reasons["dup_of_2.jpg"] == "duplicate of 2.jpg (same content)"
    assert reasons["readme.txt"] == "not a JPEG or PNG image"
    assert "unreadable" in reasons["dangling.jpg"]
    for name in reasons:
        assert any(name in w for w in warnings)
    nogps = m["images"][-1]
    assert nogps["gps"] is None and nogps["enu_m"] is None and nogps["kind"] == "perspective"
    assert any("no GPS (nogps.jpg)" in w for w in warnings)
    sizes = {i["file"]: (i["width"], i["height"]) for i in m["images"]}
    assert sizes["4_full.jpg"] == (5760, 2880) and sizes["1.jpg"] == (2048, 1024)
    assert ev.metrics["skipped"] == 4
    assert _tree_digest(src) == before, "ingest must never modify the input folder"


def test_no_gps_at_all_means_no_origin(tmp_path):
    import cv2

    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "a.jpg"), np.zeros((100, 200, 3), np.uint8))
    cv2.imwrite(str(src / "b.png"), np.full((100, 200, 3), 9, np.uint8))
    m, warnings, _ = _ingest(tmp_path, src)
    assert m["origin"] is None and all(i["enu_m"] is None for i in m["images"])
    assert [i["kind"] for i in m["images"]] == ["equirect", "equirect"]
    assert any("2 of 2 images have no GPS" in w for w in warnings)


def test_forced_kind_and_recursive(tmp_path, panos_2048):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    shutil.copy2(panos_2048 / "1.jpg", src / "sub" / "1.jpg")
    shutil.copy2(panos_2048 / "2.jpg", src / "1.jpg")
    m, _, _ = _ingest(tmp_path, src, kind="perspective")
    assert [(i["file"], i["id"], i["kind"]) for i in m["images"]] == [
        ("1.jpg", "1", "perspective"),
        ("sub/1.jpg", "sub_1", "perspective"),
    ]
    m, _, _ = _ingest(tmp_path / "flat", src, recursive=False)
    assert [i["file"] for i in m["images"]] == ["1.jpg"]


def test_band_cropped_panoramas_are_named_as_photos(tmp_path, panos_2048):
    """GoPro MAX frames cropped to a band (3.05:1) without GPano metadata went into SfM as
    pinhole photos without a word; now ingest says what it took them for and why."""
    import cv2

    src = tmp_path / "in"
    src.mkdir()
    img = cv2.imread(str(panos_2048 / "1.jpg"))
    band = img[342:342 + 672, :]  # 2048 x 672: 3.05:1, no GPano (cv2 writes no XMP)
    cv2.imwrite(str(src / "band.jpg"), band)
    shutil.copy(panos_2048 / "2.jpg", src / "2.jpg")
    manifest, warnings, _ = _ingest(tmp_path, src)
    kinds = {e["file"]: e["kind"] for e in manifest["images"]}
    assert kinds == {"band.jpg": "perspective", "2.jpg": "equirect"}
    wide = [w for w in warnings if "wider than a camera photo" in w]
    assert len(wide) == 1 and "band.jpg (2048x672, 3.05:1)" in wide[0]
    # confirmed as photos: no warning
    _, warnings, _ = _ingest(tmp_path / "again", src, kind="perspective")
    assert not [w for w in warnings if "wider than a camera photo" in w]
