"""gsplat's CUDA extension as a step (issue 18), on the CPU with the GPU, nvcc and gsplat's
extension faked: the probe's answers, ``--device auto`` falling back to the CPU, ``--device cuda``
stopping with what is missing, the build in a child process (progress, failure remembered,
cancel kills it) and the visible compile stage of training."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import threading
import time
import types

import pytest
import torch

from splatstudio.errors import Cancelled, StageError
from splatstudio.events import Emitter, Log, Progress
from splatstudio.render import gsplat_ext
from splatstudio.render.image import resolve_device

pytest.importorskip("gsplat")


@pytest.fixture
def gpu(monkeypatch, tmp_path):
    """A machine with a CUDA GPU, torch built for CUDA 12.4, nvcc 12.4, an empty kernel cache,
    and gsplat's backend module replaced (no real import: it would try to compile)."""
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    monkeypatch.setattr(gsplat_ext, "_torch_cuda", lambda: (True, "12.4", "2.13.0+cu124"))
    monkeypatch.setattr(gsplat_ext, "_find_nvcc", lambda: "/opt/cuda/bin/nvcc")
    monkeypatch.setattr(gsplat_ext, "_nvcc_version", lambda nvcc: "12.4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    backend = types.ModuleType("gsplat.cuda._backend")
    backend._C = None  # what gsplat 1.5.3 leaves when it finds no CUDA toolkit
    monkeypatch.setitem(sys.modules, "gsplat.cuda._backend", backend)
    import gsplat.cuda

    monkeypatch.setattr(gsplat.cuda, "_backend", backend, raising=False)
    monkeypatch.delenv("SPLATSTUDIO_DEVICE", raising=False)
    return backend


def _compiled(tmp_path):
    d = tmp_path / "ext" / gsplat_ext.EXTENSION_NAME
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{gsplat_ext.EXTENSION_NAME}.so").write_bytes(b"")


def _events(cancel=None):
    got: list = []
    return Emitter("train", got.append, cancel=cancel, min_interval_s=0.0), got


def test_probe_on_this_cpu_only_torch_never_imports_the_backend(monkeypatch):
    monkeypatch.delitem(sys.modules, "gsplat.cuda._backend", raising=False)
    st = gsplat_ext.probe()
    assert not st.usable and st.reason
    if torch.version.cuda is None:
        assert not st.torch_cuda and "CPU-only" in st.reason
    assert "gsplat.cuda._backend" not in sys.modules
    assert st.cache_dir and st.cache_dir.endswith(gsplat_ext.EXTENSION_NAME)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(RuntimeError, match="cannot run"):
        resolve_device("cuda")


def test_no_nvcc_auto_falls_back_and_cuda_names_what_is_missing(gpu, monkeypatch, tmp_path):
    monkeypatch.setattr(gsplat_ext, "_find_nvcc", lambda: None)
    st = gsplat_ext.probe()
    assert st.torch_cuda and st.gsplat_version and not st.compiled and not st.usable
    assert not st.can_build and "nvcc" in st.reason and "12.4" in st.reason
    warned: list[str] = []
    assert resolve_device("auto", warn=warned.append) == torch.device("cpu")
    assert len(warned) == 1 and "nvcc" in warned[0] and "CPU" in warned[0]
    with pytest.raises(RuntimeError, match=r"nvcc.*12\.4"):
        resolve_device("cuda")

    from splatstudio.pipeline.train import resolve_device as train_device

    events, got = _events()
    assert train_device(events) == torch.device("cpu")
    assert any("nvcc" in w for w in events.warnings)
    monkeypatch.setenv("SPLATSTUDIO_DEVICE", "cuda")
    with pytest.raises(StageError, match="nvcc"):
        train_device(events)


def test_extension_that_does_not_load_falls_back(gpu, tmp_path):
    # the kernels are "compiled", but gsplat's extension comes back None (#249, #658): the
    # first render would raise AttributeError 'NoneType' object has no attribute
    # 'CameraModelType'; auto now trains on the CPU instead
    _compiled(tmp_path)
    st = gsplat_ext.probe()
    assert st.compiled and st.usable  # the cheap probe cannot know
    st = gsplat_ext.probe(load=True)
    assert not st.usable and "did not load" in st.reason
    warned: list[str] = []
    assert resolve_device("auto", warn=warned.append) == torch.device("cpu")
    assert "did not load" in warned[0]
    with pytest.raises(RuntimeError, match="did not load"):
        resolve_device("cuda")
    gpu._C = types.SimpleNamespace(CameraModelType=object)  # an extension that loads
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("auto") == torch.device("cuda")


def test_toolkit_of_another_cuda_major_cannot_build(gpu, monkeypatch):
    monkeypatch.setattr(gsplat_ext, "_nvcc_version", lambda nvcc: "11.8")
    st = gsplat_ext.probe()
    assert not st.can_build and "11.8" in st.reason and "12.4" in st.reason


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _fake_build(monkeypatch, tmp_path, body: str):
    script = tmp_path / "fake_build.py"
    script.write_text(textwrap.dedent(body))
    monkeypatch.setattr(gsplat_ext, "_build_command", lambda: [sys.executable, str(script)])


def test_build_reports_progress_and_remembers_a_failure(gpu, monkeypatch, tmp_path):
    tag = gsplat_ext.BUILD_DONE_TAG
    _fake_build(monkeypatch, tmp_path, f"""
        import json
        print("[1/3] /opt/cuda/bin/nvcc -c /x/gsplat/cuda/csrc/Projection.cu -o Projection.cuda.o")
        print("[2/3] c++ -c /x/gsplat/cuda/ext.cpp -o ext.o")
        print("error: ptxas died")
        print("{tag} " + json.dumps({{"ok": False, "error": "RuntimeError: ptxas died"}}))
        raise SystemExit(3)
    """)
    lines: list[str] = []
    st = gsplat_ext.build(lines.append)
    assert "1/3 Projection.cu" in lines and "2/3 ext.cpp" in lines
    assert not st.usable and "ptxas died" in st.reason
    # remembered: auto does not recompile on every run, it falls back with the error
    again = gsplat_ext.probe()
    assert not again.can_build and "last build" in again.reason and "ptxas died" in again.reason
    warned: list[str] = []
    assert resolve_device("auto", warn=warned.append) == torch.device("cpu")
    assert "ptxas died" in warned[0]
    record = json.loads(open(st.cache_dir + gsplat_ext.FAILED_SUFFIX).read())
    assert record["key"]["nvcc"] == "/opt/cuda/bin/nvcc" and record["log_tail"]

    # a successful build (doctor --build-gsplat) clears the record
    _fake_build(monkeypatch, tmp_path, f"""
        import json, os
        d = os.path.join(os.environ["TORCH_EXTENSIONS_DIR"], "gsplat_cuda")
        os.makedirs(d, exist_ok=True)
        open(os.path.join(d, "gsplat_cuda.so"), "wb").close()
        print("[1/1] c++ gsplat_cuda.so")
        print("{tag} " + json.dumps({{"ok": True, "error": None}}))
    """)
    st = gsplat_ext.build(lines.append)
    assert st.usable and st.compiled and st.reason is None
    assert not os.path.exists(st.cache_dir + gsplat_ext.FAILED_SUFFIX)


def test_build_cancel_kills_the_compiler(gpu, monkeypatch, tmp_path):
    pid_file = tmp_path / "pid"
    _fake_build(monkeypatch, tmp_path, f"""
        import os, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        open({str(pid_file)!r}, "w").write(f"{{os.getpid()}} {{child.pid}}")
        print("[1/30] nvcc -c Rasterize.cu", flush=True)
        time.sleep(120)
    """)
    seen = threading.Event()

    def progress(line):
        if "1/30" in line:
            seen.set()

    t0 = time.monotonic()
    st = gsplat_ext.build(progress, cancelled=seen.is_set)
    assert time.monotonic() - t0 < 30
    assert not st.usable and st.reason == "build cancelled"
    pids = [int(p) for p in pid_file.read_text().split()]
    for pid in pids:  # the build and its compiler child are gone (or zombies nobody reaps)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(pid), pid


def test_training_shows_the_compile_and_honours_cancel(gpu, monkeypatch, tmp_path):
    from splatstudio.pipeline.train import resolve_device as train_device

    tag = gsplat_ext.BUILD_DONE_TAG
    _fake_build(monkeypatch, tmp_path, f"""
        import json, os
        print("[1/2] nvcc -c Rasterize.cu", flush=True)
        d = os.path.join(os.environ["TORCH_EXTENSIONS_DIR"], "gsplat_cuda")
        os.makedirs(d, exist_ok=True)
        open(os.path.join(d, "gsplat_cuda.so"), "wb").close()
        print("{tag} " + json.dumps({{"ok": True, "error": None}}))
    """)
    gpu._C = types.SimpleNamespace(CameraModelType=object)
    assert gsplat_ext.probe().can_build
    events, got = _events()
    assert train_device(events) == torch.device("cuda")
    messages = [e.message for e in got if isinstance(e, Progress)]
    assert messages[0] == gsplat_ext.COMPILE_MESSAGE
    assert f"{gsplat_ext.COMPILE_MESSAGE}: 1/2 Rasterize.cu" in messages
    assert any(isinstance(e, Log) and "compiled in" in e.message for e in got)

    # cancel during the compile: the stage stops (Cancelled), nothing is recorded as failed
    (tmp_path / "ext" / "gsplat_cuda" / "gsplat_cuda.so").unlink()
    _fake_build(monkeypatch, tmp_path, """
        import time
        print("[1/30] nvcc -c Rasterize.cu", flush=True)
        time.sleep(120)
    """)
    cancel = threading.Event()
    events, got = _events(cancel)
    events._sink = lambda e: (got.append(e), "1/30" in getattr(e, "message", "") and cancel.set())
    t0 = time.monotonic()
    with pytest.raises(Cancelled):
        train_device(events)
    assert time.monotonic() - t0 < 30
    assert gsplat_ext.probe().can_build  # a cancelled build is not a failed one
