"""Work items: stable spec hashes, paths kept inside the project, outputs checked by hash."""

from __future__ import annotations

import pytest

from splatstudio.farm import FarmError
from splatstudio.farm.home import read_blob
from splatstudio.farm.items import (
    ItemFailed,
    OutputHashMismatch,
    WorkItem,
    sha256_bytes,
    verify_outputs,
)


def test_spec_hash_depends_on_what_the_result_depends_on():
    a = WorkItem("sift", "sift-000", {"frames": [1, 2], "b": 1}, {"sfm/images/a.jpg": "00"})
    b = WorkItem("sift", "sift-007", {"b": 1, "frames": [1, 2]}, {"sfm/images/a.jpg": "00"},
                 resources={"MACHINE": 1}, cost=3)
    assert a.spec_hash() == b.spec_hash()  # id, resources and cost do not change the result
    assert a.spec_hash() != WorkItem("sift", "x", {"frames": [2, 1], "b": 1},
                                     {"sfm/images/a.jpg": "00"}).spec_hash()
    assert a.spec_hash() != WorkItem("sift", "x", a.spec, {"sfm/images/a.jpg": "01"}).spec_hash()
    with pytest.raises(ValueError, match="unknown item kind"):
        WorkItem("render", "r", {})
    for bad in ("../etc/passwd", "/etc/passwd", "sfm/../../x", ""):
        with pytest.raises(FarmError, match="not a relative path inside"):
            WorkItem("sift", "s", {}, {bad: "00"})


def test_outputs_are_checked_before_use():
    files = {"kp/01/1.jpg.npy": b"abc", "desc/01/1.jpg.npy": b"xyz"}
    result = {"state": "done", "files": files, "sha256": {k: sha256_bytes(v) for k, v in files.items()}}
    assert verify_outputs(result) == files
    tampered = {**result, "files": {**files, "kp/01/1.jpg.npy": b"abd"}}
    with pytest.raises(OutputHashMismatch, match="kp/01/1.jpg.npy"):
        verify_outputs(tampered)
    with pytest.raises(OutputHashMismatch, match="differ"):
        verify_outputs({**result, "sha256": {}})
    with pytest.raises(ItemFailed, match="mask missing"):
        verify_outputs({"state": "failed", "error": "x.png: mask missing"})


def test_read_blob_serves_project_files_only_and_as_hashed(tmp_path):
    (tmp_path / "sfm").mkdir()
    (tmp_path / "sfm" / "a.jpg").write_bytes(b"pixels")
    assert read_blob(str(tmp_path), "sfm/a.jpg", sha256_bytes(b"pixels")) == b"pixels"
    with pytest.raises(FarmError, match="changed since"):
        read_blob(str(tmp_path), "sfm/a.jpg", sha256_bytes(b"other"))
    with pytest.raises(FarmError, match="inside the project"):
        read_blob(str(tmp_path), "../secret", "00")


def test_a_farm_of_other_versions_is_refused():
    from splatstudio.farm.host import SAME_VERSIONS, check_versions

    class Client:
        def __init__(self, error):
            self.error, self.asked = error, None

        def get_versions(self, check, packages):
            self.asked = (check, packages)
            if self.error:
                raise ValueError("Mismatched versions found\n| pycolmap | 4.2.1 | 4.3.0 |")

    ok = Client(None)
    check_versions(ok)
    assert ok.asked == (True, list(SAME_VERSIONS)) and "splatstudio" in SAME_VERSIONS
    with pytest.raises(FarmError, match="(?s)different versions.*pycolmap"):
        check_versions(Client(True))
