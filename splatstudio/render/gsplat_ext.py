"""gsplat's CUDA extension as a first-class step: probe it, build it ahead of time.

gsplat 1.5.3 ships no compiled kernels in its PyPI wheel: the first import of
``gsplat.cuda._backend`` compiles them with ``torch.utils.cpp_extension`` (ninja + nvcc, several
minutes) into ``$TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions/py<XY>_cu<ZZ>/gsplat_cuda``
and loads ``gsplat_cuda.so`` (``.pyd``/``.lib`` on Windows) from there on later runs. A wheel built
from source holds the kernels as ``gsplat/csrc*.so`` instead. When no CUDA toolkit is found, gsplat
prints one line to stdout and leaves its extension ``None``; the first render then fails with
``AttributeError: 'NoneType' object has no attribute 'CameraModelType'`` (gsplat issues #249,
#658). A failed build is not remembered by gsplat, so every later call compiles again.

This module answers the questions before any render does:

* :func:`probe` (cheap, never compiles): does torch see a CUDA GPU, which CUDA torch was built
  for, is gsplat installed, where is ``nvcc``, are the kernels already compiled, where is the
  cache, and -- when the rasterizer cannot run now -- why, in words for a user. ``load=True``
  imports gsplat's CUDA backend in this process (it may compile) and reports whether it loaded.
* :func:`build` compiles ahead of time in a child process (so it can be cancelled: the whole
  process group is killed), forwarding ninja's ``[k/n]`` lines to a progress callback, and
  remembers a failure (``gsplat_cuda.splatstudio-failed.json`` beside the cache folder) so that
  ``--device auto`` does not recompile on every run; a successful build removes the record.

Importing this module imports only the standard library; torch is imported by the functions.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

EXTENSION_NAME = "gsplat_cuda"
"""Name of gsplat's JIT extension (its cache folder and library file)."""

COMPILE_MESSAGE = "compiling gsplat CUDA kernels (first use, several minutes)"
"""The stage message shown while the kernels compile."""

FAILED_SUFFIX = ".splatstudio-failed.json"
"""Record of a failed build, beside the cache folder (``gsplat_cuda.splatstudio-failed.json``)."""

BUILD_DONE_TAG = "SPLATSTUDIO_GSPLAT_BUILD"
"""Prefix of the child process's last line (JSON: ok, error)."""

# The child process: import gsplat's backend (this compiles when nothing is cached) and say
# whether the extension loaded. gsplat's own messages and ninja's lines go to stdout.
_BUILD_SCRIPT = f"""
import json, sys, traceback
try:
    from gsplat.cuda._backend import _C
    ok = _C is not None and hasattr(_C, "CameraModelType")
    err = None if ok else "gsplat's CUDA extension did not load (gsplat printed why above)"
except BaseException as e:  # noqa: BLE001 - report any build failure to the parent
    traceback.print_exc(file=sys.stdout)
    ok, err = False, f"{{type(e).__name__}}: {{e}}".strip().splitlines()[-1][:500]
print("{BUILD_DONE_TAG} " + json.dumps({{"ok": ok, "error": err}}), flush=True)
sys.exit(0 if ok else 3)
"""


@dataclass(frozen=True)
class GsplatStatus:
    """What gsplat's CUDA rasterizer needs and whether it can run (see :func:`probe`).

    Attributes:
        torch_cuda: ``torch.cuda.is_available()``.
        torch_cuda_version: ``torch.version.cuda`` (the CUDA torch was built for; None for a
            CPU-only torch).
        gsplat_version: the installed gsplat's version, None when gsplat is not installed.
        nvcc: path of the ``nvcc`` found (``$CUDA_HOME/bin``, ``PATH`` or ``/usr/local/cuda``),
            None if missing.
        compiled: the CUDA extension is already built (a prebuilt ``gsplat.csrc`` or the JIT
            cache holds the library): no compile needed.
        usable: gsplat's CUDA rasterizer can run now (with ``load=False``: everything is in
            place and compiled; with ``load=True``: the extension was loaded).
        cache_dir: the folder where the compiled kernels are (or will be) cached.
        reason: when not usable, what is missing or what to do, in words for a user.
    """

    torch_cuda: bool
    torch_cuda_version: str | None
    gsplat_version: str | None
    nvcc: str | None
    compiled: bool
    usable: bool
    cache_dir: str | None
    reason: str | None

    @property
    def can_build(self) -> bool:
        """True when the kernels are not compiled yet but a build can be tried now: a CUDA GPU,
        gsplat, an ``nvcc`` whose major version matches torch's CUDA, and no recorded failure
        of a build with this same gsplat, torch and ``nvcc``."""
        return (
            self.torch_cuda
            and self.gsplat_version is not None
            and self.nvcc is not None
            and not self.compiled
            and _toolkit_mismatch(self.nvcc, self.torch_cuda_version) is None
            and last_build_error(self) is None
        )


# ---------------------------------------------------------------------------------------------
# Facts (small functions so tests can replace them)
# ---------------------------------------------------------------------------------------------
def _torch_cuda() -> tuple[bool, str | None, str]:
    """(torch.cuda.is_available(), torch.version.cuda, torch.__version__)."""
    import torch

    return bool(torch.cuda.is_available()), torch.version.cuda, str(torch.__version__)


def _gsplat_version() -> str | None:
    """The installed gsplat's version (package metadata; gsplat is not imported), or None."""
    from importlib import metadata

    try:
        return metadata.version("gsplat")
    except metadata.PackageNotFoundError:
        return None


def _gsplat_dir() -> Path | None:
    """gsplat's package folder without importing it, or None."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("gsplat")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _find_nvcc() -> str | None:
    """nvcc as gsplat's ``cuda_toolkit_available`` and torch's ``_find_cuda_home`` look for it:
    ``$CUDA_HOME``/``$CUDA_PATH``, else the ``nvcc`` on ``PATH``, else ``/usr/local/cuda`` (on
    Windows the newest ``CUDA/v*`` toolkit folder)."""
    exe = "nvcc.exe" if os.name == "nt" else "nvcc"
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home is None:
        on_path = shutil.which("nvcc")
        if on_path:
            return on_path
        if os.name == "nt":
            import glob

            homes = sorted(glob.glob("C:/Program Files/NVIDIA GPU Computing Toolkit/CUDA/v*.*"))
            home = homes[-1] if homes else None
        else:
            home = "/usr/local/cuda"
    if home and os.path.isfile(os.path.join(home, "bin", exe)):
        return os.path.join(home, "bin", exe)
    return shutil.which("nvcc")


@lru_cache(maxsize=8)
def _nvcc_version(nvcc: str) -> str | None:
    """The CUDA release of `nvcc` ("12.4") from ``nvcc --version``, None if it does not run."""
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"release (\d+\.\d+)", out)
    return m.group(1) if m else None


def _toolkit_mismatch(nvcc: str | None, torch_cuda_version: str | None) -> str | None:
    """Why `nvcc` cannot build for this torch (torch's cpp_extension refuses a different CUDA
    major version), or None."""
    if nvcc is None or torch_cuda_version is None:
        return None
    have = _nvcc_version(nvcc)
    if have is None:
        return f"nvcc at {nvcc} does not run (nvcc --version failed)"
    if have.split(".")[0] != torch_cuda_version.split(".")[0]:
        return (f"nvcc at {nvcc} is CUDA {have} but torch was built for CUDA "
                f"{torch_cuda_version}; install the CUDA {torch_cuda_version} toolkit (or a torch "
                f"built for CUDA {have}) and point CUDA_HOME at it")
    return None


def _cache_dir(torch_cuda_version: str | None) -> str:
    """gsplat's JIT cache folder, as torch's ``_get_build_directory`` names it (not created)."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    if root is None:
        from torch.utils.cpp_extension import get_default_build_root

        acc = "cpu" if torch_cuda_version is None else "cu" + torch_cuda_version.replace(".", "")
        py = f"py{sys.version_info.major}{sys.version_info.minor}{getattr(sys, 'abiflags', '')}"
        root = os.path.join(get_default_build_root(), f"{py}_{acc}")
    return os.path.join(root, EXTENSION_NAME)


def _is_compiled(cache_dir: str) -> bool:
    """A prebuilt ``gsplat/csrc*`` extension, or gsplat's own test for its JIT cache
    (``gsplat_cuda.so`` or ``.lib``; ``.pyd`` too)."""
    pkg = _gsplat_dir()
    if pkg is not None and (any(pkg.glob("csrc*.so")) or any(pkg.glob("csrc*.pyd"))):
        return True
    return any(os.path.exists(os.path.join(cache_dir, EXTENSION_NAME + ext))
               for ext in (".so", ".lib", ".pyd"))


def _failed_record(cache_dir: str) -> Path:
    return Path(cache_dir + FAILED_SUFFIX)


def _build_key(status: GsplatStatus) -> dict[str, str | None]:
    return {"gsplat": status.gsplat_version, "torch_cuda": status.torch_cuda_version,
            "nvcc": status.nvcc}


def last_build_error(status: GsplatStatus) -> str | None:
    """The error of the last failed build recorded for this gsplat, torch CUDA and nvcc (None
    when there is none, or the kernels are compiled, or the record is of other versions)."""
    if status.cache_dir is None or status.compiled:
        return None
    try:
        rec = json.loads(_failed_record(status.cache_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get("key") != _build_key(status):
        return None
    return str(rec.get("error") or "unknown error")


def _record_failure(status: GsplatStatus, error: str, log_tail: list[str]) -> None:
    if status.cache_dir is None:
        return
    path = _failed_record(status.cache_dir)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"key": _build_key(status), "error": error,
                                   "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                   "log_tail": log_tail[-40:]}, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


def _clear_failure(status: GsplatStatus) -> None:
    if status.cache_dir is not None:
        _failed_record(status.cache_dir).unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# probe, build
# ---------------------------------------------------------------------------------------------
def probe(load: bool = False) -> GsplatStatus:
    """Whether gsplat's CUDA rasterizer can run, and if not why.

    Args:
        load: False (default): cheap, never compiles and never imports gsplat (a few
            file-system checks and, when nvcc is found and nothing is compiled, one
            ``nvcc --version``). True: also import ``gsplat.cuda._backend`` in this process --
            which compiles the kernels when they are not cached yet (minutes; gsplat prints
            its own message to stdout) -- and report whether the extension loaded; a failed
            load is recorded like a failed :func:`build`.

    Returns:
        :class:`GsplatStatus`; ``reason`` names what is missing (a CUDA GPU, a CUDA build of
        torch, gsplat, ``nvcc`` and the CUDA version torch was built for, a compile) when
        ``usable`` is False.
    """
    cuda, cuda_version, torch_version = _torch_cuda()
    gs = _gsplat_version()
    nvcc = _find_nvcc()
    cache = _cache_dir(cuda_version)
    compiled = gs is not None and _is_compiled(cache)
    base = dict(torch_cuda=cuda, torch_cuda_version=cuda_version, gsplat_version=gs, nvcc=nvcc,
                compiled=compiled, cache_dir=cache)

    def status(usable: bool, reason: str | None) -> GsplatStatus:
        return GsplatStatus(usable=usable, reason=None if usable else reason, **base)

    if cuda_version is None:
        return status(False, f"this torch ({torch_version}) is a CPU-only build; install a CUDA "
                             "build of torch to train and render on an NVIDIA GPU")
    if not cuda:
        return status(False, f"torch (built for CUDA {cuda_version}) sees no CUDA GPU (no NVIDIA "
                             "GPU, or its driver is missing or older than that CUDA)")
    if gs is None:
        return status(False, "gsplat is not installed (pip install gsplat==1.5.3)")
    if not compiled:
        if nvcc is None:
            return status(False, "gsplat's CUDA kernels are not compiled and no CUDA compiler "
                                 f"(nvcc) was found: install the CUDA {cuda_version} toolkit "
                                 "(the version torch was built for) and set CUDA_HOME, or put "
                                 "nvcc on PATH")
        mismatch = _toolkit_mismatch(nvcc, cuda_version)
        if mismatch:
            return status(False, f"gsplat's CUDA kernels are not compiled and cannot be: {mismatch}")
        failed = last_build_error(status(False, None))
        if failed:
            return status(False, f"the last build of gsplat's CUDA kernels failed ({failed}); "
                                 "fix that and run `splatstudio doctor --build-gsplat` to retry")
        if not load:
            return status(False, "gsplat's CUDA kernels are not compiled yet: the first CUDA "
                                 "use compiles them (several minutes), or run "
                                 "`splatstudio doctor --build-gsplat` ahead of time")
    if not load:
        return status(True, None)
    ok, err = _load_in_process()
    st = GsplatStatus(**{**base, "compiled": _is_compiled(cache) or ok}, usable=ok,
                      reason=None if ok else f"gsplat's CUDA extension did not load: {err}")
    if not ok:
        _record_failure(st, err, [])
    return st


def _load_in_process() -> tuple[bool, str]:
    """Import ``gsplat.cuda._backend`` here: (loaded, error text)."""
    try:
        from gsplat.cuda import _backend
    except Exception as e:  # noqa: BLE001 - a compile error is a RuntimeError, an ABI one an ImportError
        return False, f"{type(e).__name__}: {str(e).strip()[-500:]}"
    c = getattr(_backend, "_C", None)
    if c is None or not hasattr(c, "CameraModelType"):
        return False, "gsplat found no CUDA toolkit or its extension is empty (see its output)"
    return True, ""


_NINJA = re.compile(r"^\[(\d+)/(\d+)\]\s*(.*)$")


def _short(line: str) -> str:
    """A ninja line ``[k/n] nvcc ... -c /x/y/Foo.cu -o Foo.cuda.o`` as ``k/n Foo.cu``."""
    m = _NINJA.match(line)
    if not m:
        return line[:200]
    srcs = re.findall(r"[\w.-]+\.(?:cu|cpp|so|pyd)\b", m.group(3))
    what = srcs[0] if srcs else m.group(3)[:80]
    return f"{m.group(1)}/{m.group(2)} {what}"


def _build_command() -> list[str]:
    """The child process that builds and loads the extension."""
    return [sys.executable, "-c", _BUILD_SCRIPT]


def _kill_tree(proc: subprocess.Popen) -> None:
    """End the build's process group (nvcc and ninja are its children)."""
    try:
        if os.name == "nt":
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)],
                           capture_output=True, check=False)
        else:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    except (OSError, ProcessLookupError):
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def build(
    progress: Callable[[str], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> GsplatStatus:
    """Compile (or verify) gsplat's CUDA kernels ahead of time, in a child process.

    The child imports ``gsplat.cuda._backend`` with ``VERBOSE=1`` (gsplat's switch that makes
    torch print ninja's ``[k/n] ...`` lines); every line goes to `progress` (ninja lines
    shortened to ``k/n File.cu``). `cancelled` is polled about five times a second; when it
    returns True the child's whole process group is killed and the status says so (gsplat
    removes the lock file an interrupted build leaves on its next start). A failed build is
    recorded beside the cache folder so that :func:`probe` reports it instead of recompiling
    on every run; a successful one removes that record. Already compiled kernels are only
    loaded (seconds). Prerequisites that are missing (GPU, CUDA torch, gsplat, nvcc) are
    reported without starting a child.

    Returns:
        :func:`probe`'s status after the build (``usable`` True when the extension loaded in
        the child); ``reason`` holds the error, or "build cancelled".
    """
    say = progress or (lambda line: None)
    st = probe()
    if not (st.torch_cuda and st.gsplat_version) or (not st.compiled and st.nvcc is None):
        say(st.reason or "nothing to build")
        return st
    if not st.compiled:
        mismatch = _toolkit_mismatch(st.nvcc, st.torch_cuda_version)
        if mismatch:
            say(mismatch)
            return probe()
    _clear_failure(st)
    say(f"{COMPILE_MESSAGE}: cache {st.cache_dir}" if not st.compiled
        else f"loading gsplat's compiled CUDA kernels from {st.cache_dir}")
    env = dict(os.environ, VERBOSE="1", PYTHONUNBUFFERED="1")
    kw: dict = {"start_new_session": True} if os.name != "nt" else {
        "creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    proc = subprocess.Popen(_build_command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True, errors="replace", env=env, **kw)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.put(raw.rstrip("\r\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True, name="gsplat-build-output").start()
    tail: list[str] = []
    result: dict | None = None
    eof = False
    while not eof:
        if cancelled is not None and cancelled():
            _kill_tree(proc)
            say("gsplat build cancelled")
            st = probe()
            return replace(st, usable=False, reason="build cancelled")
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        if line is None:
            eof = True
            break
        if line.startswith(BUILD_DONE_TAG):
            try:
                result = json.loads(line[len(BUILD_DONE_TAG):])
            except ValueError:
                result = None
            continue
        if line.strip():
            tail = (tail + [line])[-80:]
            say(_short(line))
    rc = proc.wait()
    ok = rc == 0 and bool(result and result.get("ok"))
    after = probe()
    if ok:
        _clear_failure(after)
        say("gsplat's CUDA kernels are ready")
        return replace(after, compiled=True, usable=True, reason=None)
    err = (result or {}).get("error") or (tail[-1] if tail else f"exit status {rc}")
    failed = replace(after, usable=False, reason=f"building gsplat's CUDA kernels failed: {err}")
    _record_failure(failed, str(err), tail)
    say(failed.reason or "")
    return failed
