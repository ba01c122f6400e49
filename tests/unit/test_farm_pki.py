"""The farm's certificate authority, join files and slots (no network)."""

from __future__ import annotations

import json
import ssl

import pytest

pytest.importorskip("cryptography")

from splatstudio.farm import FarmError  # noqa: E402
from splatstudio.farm.pki import init_farm, load_join, parse_address  # noqa: E402
from splatstudio.farm.worker import plan_slots  # noqa: E402


def _handshake(server_join, client_join) -> None:
    """A TLS 1.3 handshake in memory between two members (mutual: both present certificates,
    each checks the other's against its own authority), as dask's TLS comm configures it."""
    import tempfile

    def ctx(join, purpose):
        c = ssl.create_default_context(purpose, cadata=join.ca)
        c.check_hostname = False
        c.verify_mode = ssl.CERT_REQUIRED
        c.minimum_version = ssl.TLSVersion.TLSv1_3
        with tempfile.NamedTemporaryFile("w", suffix=".pem") as f:
            f.write(join.cert + join.key)
            f.flush()
            c.load_cert_chain(f.name)
        return c

    s_ctx, c_ctx = ctx(server_join, ssl.Purpose.CLIENT_AUTH), ctx(client_join, ssl.Purpose.SERVER_AUTH)
    bio = [ssl.MemoryBIO() for _ in range(4)]
    server = s_ctx.wrap_bio(bio[0], bio[1], server_side=True)
    client = c_ctx.wrap_bio(bio[2], bio[3], server_side=False)
    for _ in range(10):
        for side in (client, server):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        bio[0].write(bio[3].read())
        bio[2].write(bio[1].read())
    # TLS 1.3: the server checks the client certificate after the client finished; a read
    # makes it report a failure
    server.write(b"x")
    bio[2].write(bio[1].read())
    assert client.read(1) == b"x"


def test_init_writes_private_files_and_a_join_file_that_loads(tmp_path):
    d = tmp_path / "farm"
    r = init_farm(d, "192.168.1.10")
    assert r["created"] and r["scheduler"] == ["tls://192.168.1.10:8786"]
    assert oct(d.stat().st_mode & 0o777) == "0o700"
    for name in ("ca-key.pem", "ca.pem", "coordinator.json", "join.json"):
        assert oct((d / name).stat().st_mode & 0o777) == "0o600", name
    join = load_join(r["join"])
    coord = load_join(r["coordinator"])
    assert join.farm_id == coord.farm_id == r["farm_id"] and len(join.farm_id) == 16
    assert join.scheduler == ("tls://192.168.1.10:8786",) and join.cert != coord.cert
    assert "ca-key" not in json.loads((d / "join.json").read_text())  # the CA key stays home
    assert "PRIVATE KEY" not in json.loads((d / "join.json").read_text())["ca"]
    sec = join.security()
    assert sec.require_encryption and sec.tls_min_version == ssl.TLSVersion.TLSv1_3
    _handshake(coord, join)  # members of one farm talk


def test_rotate_revokes_old_join_files_and_a_rerun_keeps_them(tmp_path):
    d = tmp_path / "farm"
    first = load_join(init_farm(d, "10.0.0.2")["join"])
    again = init_farm(d, "10.0.0.3:9000")
    assert not again["created"] and again["farm_id"] == first.farm_id
    _handshake(load_join(again["coordinator"]), first)  # same authority: still a member
    rotated = init_farm(d, "10.0.0.3", rotate=True)
    assert rotated["farm_id"] != first.farm_id
    with pytest.raises(ssl.SSLError):  # a revoked member cannot complete a handshake
        _handshake(load_join(rotated["coordinator"]), first)


def test_bad_join_files_name_the_file_and_the_fault(tmp_path):
    d = tmp_path / "farm"
    r = init_farm(d, "10.0.0.2")
    with pytest.raises(FarmError, match="no such join file"):
        load_join(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(FarmError, match="bad.json: not a readable join file"):
        load_join(bad)
    data = json.loads(open(r["join"]).read())
    other = load_join(init_farm(tmp_path / "other", "10.0.0.9")["join"])
    forged = dict(data, cert=other.cert, key=other.key)  # a member of another farm
    bad.write_text(json.dumps(forged))
    with pytest.raises(FarmError, match="not signed by its farm authority"):
        load_join(bad)
    bad.write_text(json.dumps(dict(data, key=other.key)))
    with pytest.raises(FarmError, match="key does not belong"):
        load_join(bad)
    bad.write_text(json.dumps(dict(data, farm_id="0" * 16)))
    with pytest.raises(FarmError, match="farm_id"):
        load_join(bad)
    bad.write_text(json.dumps(dict(data, scheduler=["tcp://10.0.0.2:8786"])))
    with pytest.raises(FarmError, match="tls://"):
        load_join(bad)


def test_addresses_are_one_ip_never_all_interfaces():
    assert parse_address("192.168.1.10") == ("192.168.1.10", 8786)
    assert parse_address("tls://10.1.2.3:9000") == ("10.1.2.3", 9000)
    assert parse_address("[::1]:8786") == ("::1", 8786)
    for bad, msg in (("0.0.0.0", "not on all interfaces"), ("myhost:8786", "IP address"),
                     ("10.0.0.1:x", "bad port"), ("10.0.0.1:70000", "out of range")):
        with pytest.raises(FarmError, match=msg):
            parse_address(bad)


def test_slots_one_per_gpu_and_the_cpu_otherwise():
    gpus = plan_slots("all", n_gpus=2, home=True)
    assert [s.name for s in gpus] == ["gpu0", "gpu1", "home"]
    assert gpus[0].resources == {"GPU": 1, "TRAIN": 1, "MACHINE": 1}
    assert gpus[1].resources == {"GPU": 1, "TRAIN": 1}
    assert gpus[1].env["CUDA_VISIBLE_DEVICES"] == "1" and gpus[2].resources == {"HOME": 1000}
    cpu = plan_slots("all", n_gpus=0)
    assert [(s.name, s.resources) for s in cpu] == [("cpu", {"MACHINE": 1})]
    assert plan_slots(0, n_gpus=1, cpu_train=True)[0].resources == {"MACHINE": 1, "TRAIN": 1}
    with pytest.raises(FarmError, match="has 1 NVIDIA GPU"):
        plan_slots(3, n_gpus=1)
    with pytest.raises(FarmError, match="a number or 'all'"):
        plan_slots("many", n_gpus=1)
