"""The farm's gate on loopback: mutual TLS with this installation's authority, nothing else.

A scheduler and a worker run as subprocesses (:class:`splatstudio.farm.host.FarmHost`); a member
runs a task, and every other way in is refused: a client or worker of another farm, a client
without a certificate, plain TCP; a member never joins another farm's scheduler; the HTTP server
listens on 127.0.0.1 only and serves ``/health`` only (FARM.md sections 2.1 and 5).
"""

from __future__ import annotations

import json
import operator
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

pytest.importorskip("distributed")
pytest.importorskip("cryptography")

from splatstudio.farm import FarmError  # noqa: E402
from splatstudio.farm.host import FarmHost, connect  # noqa: E402
from splatstudio.farm.pki import default_address, init_farm, load_join, parse_address  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def farm():
    with FarmHost(loopback=True, workers=[["--cpu-train"]]) as host:
        client = host.client()
        host.wait_for_workers(client, 2)  # the CPU slot and the home slot
        yield host, client
        client.close()


@pytest.fixture(scope="module")
def rogue(tmp_path_factory):
    """A join file of another farm (another authority)."""
    return load_join(init_farm(tmp_path_factory.mktemp("rogue"), "127.0.0.1:0")["join"])


def test_a_member_runs_a_task_where_its_resources_are(farm):
    host, client = farm
    names = {w["name"]: w["resources"] for w in client.scheduler_info(n_workers=-1)["workers"].values()}
    assert sorted(r for n in names for r in names[n]) == ["HOME", "MACHINE", "TRAIN"]
    # (a function importable on the workers: they run the same installation)
    assert client.submit(operator.add, 40, 2, resources={"TRAIN": 1}, pure=False).result(60) == 42


def test_clients_of_another_farm_without_a_certificate_or_in_plain_tcp_are_refused(farm, rogue):
    host, _ = farm
    t0 = time.monotonic()
    with pytest.raises(FarmError, match="no farm scheduler answers"):
        connect(rogue, host.address, timeout_s=5).close()
    assert time.monotonic() - t0 < 8
    ip, port = parse_address(host.address)
    # TLS with our authority but no client certificate: the server asks for one and ends it
    ctx = ssl.create_default_context(cadata=host.credentials.ca)
    ctx.check_hostname = False
    with socket.create_connection((ip, port), timeout=5) as raw:
        with ctx.wrap_socket(raw) as tls, pytest.raises((ssl.SSLError, ConnectionError)):
            tls.sendall(b"\0" * 16)
            assert tls.recv(16) == b""  # (an empty read is a closed connection too)
    # plain TCP speaking dask's framing: closed without an answer
    with socket.create_connection((ip, port), timeout=5) as raw:
        raw.sendall(b"\x00" * 64)
        try:
            assert raw.recv(1024)[:1] in (b"", b"\x15")  # nothing, or a TLS alert record
        except ConnectionResetError:
            pass


def _worker(join_path, scheduler, name, log):
    with open(log, "wb") as f:
        return subprocess.Popen([sys.executable, "-m", "splatstudio.farm.worker", "--join",
                                 str(join_path), "--scheduler", scheduler, "--name", name,
                                 "--cpu-train"], stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip


def test_no_foreign_worker_joins_and_no_member_joins_a_foreign_scheduler(farm, rogue, tmp_path):
    from splatstudio.lifeline import kill_process_tree

    host, client = farm
    with FarmHost(loopback=True, workers=[]) as other:  # another farm's scheduler
        procs = [_worker(rogue.path, host.address, "intruder", tmp_path / "intruder.log"),
                 _worker(host.dir / "coordinator.json", other.address, "lured", tmp_path / "lured.log")]
        try:
            time.sleep(20)  # a worker joins in ~5-10 s on this machine
            ours = [w["name"] for w in client.scheduler_info(n_workers=-1)["workers"].values()]
            other_client = other.client()
            theirs = other_client.scheduler_info(n_workers=-1)["workers"]
            other_client.close()
            assert not any(n.startswith("intruder") for n in ours), ours
            assert theirs == {}, theirs
            assert all(p.poll() is None for p in procs)  # they keep trying, harmlessly
        finally:
            for p in procs:
                kill_process_tree(p.pid)
    for name in ("intruder", "lured"):  # refused at the handshake, each trying again
        log = (tmp_path / f"{name}.log").read_text(errors="replace")
        assert "cannot join" in log and "ssl" in log.lower(), log[-2000:]


def test_the_http_server_is_on_loopback_with_health_only(tmp_path):
    import psutil

    try:
        lan = default_address()
    except FarmError as e:
        pytest.skip(str(e))
    if lan.startswith("127."):
        pytest.skip("this machine has no address besides loopback")
    init_farm(tmp_path / "farm", f"{lan}:0")
    with FarmHost(tmp_path / "farm", workers=[]) as host:
        assert parse_address(host.address)[0] == lan
        listening = [c.laddr for c in psutil.Process(host.scheduler.pid).net_connections("tcp")
                     if c.status == psutil.CONN_LISTEN]
        assert {a.ip for a in listening} == {lan, "127.0.0.1"}, listening
        http = [a.port for a in listening if a.ip == "127.0.0.1"]
        assert len(http) == 1
        with urllib.request.urlopen(f"http://127.0.0.1:{http[0]}/health", timeout=5) as r:
            assert r.status == 200
        for path in ("/info/main/workers.html", "/json/counts.json", "/status", "/metrics"):
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(f"http://127.0.0.1:{http[0]}{path}", timeout=5)
            assert e.value.code == 404, path
        state = json.loads((tmp_path / "farm" / "runtime.json").read_text())
        assert state["scheduler"]["pid"] == host.scheduler.pid
