"""The project folder: `project.json` plus one folder per stage with an atomic status file.

Layout::

    PROJECT/
      project.json          schema_version, input_dir, config, created
      ingest/status.json    per stage: state, started, finished, seconds, metrics, artifacts,
      ingest/manifest.json  fingerprint, error, warnings ... and the stage's own artifacts
      reproject/...
      exports/...           (the export stage's folder)

Every JSON file is written atomically (write to a temporary file in the same folder, fsync,
rename), so a crash or a kill never leaves a half-written status. A stage is up to date when its
status says ``done`` and its stored fingerprint equals the one computed now from its config and its
predecessor's fingerprint (the input folder's listing for ingest): changing a stage's config
changes its fingerprint and, through the chain, those of every stage downstream (Meshroom's
parameter-hash node cache).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import socket
import tempfile
from pathlib import Path
from typing import IO, Any

from . import __version__
from .config import STAGES, ProjectConfig, config_hash
from .errors import DiskFullError, ProjectError, is_disk_full
from .status import StageState, StageStatus

SCHEMA_VERSION = 1
STAGE_DIRS = {s: s for s in STAGES} | {"export": "exports"}


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def now_iso() -> str:
    """Current UTC time, ISO 8601 with seconds."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write `data` as JSON to `path` by write-then-rename (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes 0600; give the usual permissions
            os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: str | Path) -> Any:
    """Read a JSON file; a malformed one raises ProjectError naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ProjectError(f"{path}: not valid JSON ({e})") from None


WORKER_LOCK = ".worker.lock"
"""Lock file of the stage worker (one writer of stage outputs per project at a time): held by
the worker process itself (:func:`splatstudio.pipeline.runner.hold_worker_lock`), so it stays
held while an orphaned worker lives on and is released by the kernel the moment that process
ends, however it ends."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed process nobody reaped yet (a container's init may never) is not running
        import psutil

        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except Exception:
        return True


def try_lock(f: IO[str]) -> bool:
    """Take an exclusive non-blocking lock on open file `f`: True when taken (or when the
    platform has no ``fcntl``), False when another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory lock; the status files' pids are checked instead
        return True
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def read_lock_owner(path: Path) -> dict[str, Any]:
    """What the holder of lock file `path` wrote in it (pid, host, since, stage), or {}."""
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def check_project_path(root: Path) -> None:
    """Refuse a project path that can never be a folder: it, or one of its parents, is a file.

    Raises:
        ProjectError: names the file in the way.
    """
    for p in (root, *root.parents):
        if p.exists():
            if not p.is_dir():
                what = "the project path" if p == root else f"{p}, a parent of the project path,"
                raise ProjectError(f"{root}: {what} is a file, not a folder; choose another "
                                   "project folder")
            return


class Project:
    """A SplatStudio project folder.

    Use :meth:`create` for a new one and :meth:`open` for an existing one.

    Attributes:
        root: the project folder (absolute).
        input_dir: the folder of panoramas/photos the project was made from (absolute).
        config: the :class:`ProjectConfig` saved in project.json.
    """

    def __init__(self, root: Path, input_dir: Path, config: ProjectConfig, created: str):
        self.root = root
        self.input_dir = input_dir
        self.config = config
        self.created = created

    # -- creation and loading -------------------------------------------------------------
    @classmethod
    def create(
        cls, root: str | Path, input_dir: str | Path, config: ProjectConfig | None = None
    ) -> Project:
        """Make a new project folder (or adopt an empty existing folder).

        Raises:
            ProjectError: `root` already holds a project or other files, or lies inside
                `input_dir`'s files in a way that would modify the input.
        """
        root = Path(root).resolve()
        input_dir = Path(input_dir).resolve()
        check_project_path(root)
        if (root / "project.json").exists():
            raise ProjectError(f"{root}: already a project; open it instead")
        if root.exists() and any(root.iterdir()):
            raise ProjectError(f"{root}: folder is not empty; choose a new or empty folder")
        if root == input_dir:
            raise ProjectError(f"{root}: the project folder cannot be the input folder")
        try:
            root.mkdir(parents=True, exist_ok=True)
            proj = cls(root, input_dir, config or ProjectConfig(), now_iso())
            proj.save()
        except OSError as e:
            if is_disk_full(e):
                raise DiskFullError.from_os_error(e, root) from None
            raise ProjectError(f"{root}: cannot create the project folder ({e.strerror or e}); "
                               "choose a folder you can write to") from None
        return proj

    @classmethod
    def open(cls, root: str | Path) -> Project:
        """Load an existing project.

        Raises:
            ProjectError: no project.json, or one from a newer schema.
        """
        root = Path(root).resolve()
        check_project_path(root)
        pj = root / "project.json"
        if not pj.exists():
            raise ProjectError(f"{root}: not a SplatStudio project (no project.json)")
        data = read_json(pj)
        version = data.get("schema_version")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ProjectError(
                f"{pj}: schema_version {version!r} is not supported by SplatStudio {__version__} "
                f"(supports up to {SCHEMA_VERSION}); update SplatStudio"
            )
        try:
            config = ProjectConfig.from_dict(data.get("config", {}))
        except Exception as e:  # ConfigError
            raise ProjectError(f"{pj}: {e}") from None
        return cls(root, Path(data["input_dir"]), config, data.get("created", ""))

    def save(self) -> None:
        """Write project.json atomically."""
        write_json_atomic(
            self.root / "project.json",
            {
                "schema_version": SCHEMA_VERSION,
                "app": f"splatstudio {__version__}",
                "created": self.created,
                "input_dir": str(self.input_dir),
                "config": self.config.to_dict(),
            },
        )

    # -- stage folders and status ---------------------------------------------------------
    def stage_dir(self, stage: str) -> Path:
        """The folder of `stage` (created on demand)."""
        if stage not in STAGE_DIRS:
            raise ValueError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
        d = self.root / STAGE_DIRS[stage]
        d.mkdir(parents=True, exist_ok=True)
        return d

    def status_path(self, stage: str) -> Path:
        return self.root / STAGE_DIRS[stage] / "status.json"

    def read_status(self, stage: str) -> StageStatus:
        """The stored status of `stage` (a pending record when it never ran).

        Raises:
            ProjectError: the status file is not valid JSON (names it).
        """
        p = self.status_path(stage)
        return StageStatus.from_dict(read_json(p) if p.exists() else {}, stage)

    def write_status(self, status: StageStatus) -> None:
        """Store `status` (of stage ``status.stage``) atomically."""
        self.stage_dir(status.stage)
        write_json_atomic(self.status_path(status.stage), status.to_dict())

    def live_worker(self) -> dict[str, Any] | None:
        """The stage worker that writes this project now (this run's or an earlier one's that
        outlived its runner), or None.

        Returns:
            {"pid", "host", "since", "stage"} of the process holding :data:`WORKER_LOCK`;
            without ``fcntl``, the first stage whose status says ``running`` with a live pid on
            this host.
        """
        try:
            import fcntl  # noqa: F401
        except ImportError:
            for stage in STAGES:
                st = self.read_status(stage)
                if (st.state == StageState.RUNNING and st.pid and st.host == socket.gethostname()
                        and _pid_alive(int(st.pid))):
                    return {"pid": st.pid, "host": st.host, "since": st.started, "stage": stage}
            return None
        path = self.root / WORKER_LOCK
        if not path.exists():
            return None
        with open(path, "a+", encoding="utf-8") as f:
            if try_lock(f):
                return None  # closing the file releases the probe's lock
        return read_lock_owner(path) or {"stage": None}

    def input_signature(self) -> str:
        """Hash of the input folder's listing (relative paths, sizes, modification times)."""
        h = hashlib.sha256()
        if self.input_dir.is_dir():
            for dirpath, dirnames, filenames in os.walk(self.input_dir):
                # a project folder inside its own input folder is not input
                dirnames[:] = sorted(n for n in dirnames if Path(dirpath) / n != self.root)
                for name in sorted(filenames):
                    p = Path(dirpath) / name
                    try:
                        st = p.stat()
                    except OSError:
                        continue
                    rel = p.relative_to(self.input_dir).as_posix()
                    h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return h.hexdigest()

    def fingerprints(self) -> dict[str, str]:
        """Fingerprint of every stage: hash(own config, predecessor fingerprint)."""
        out: dict[str, str] = {}
        prev = self.input_signature()
        for s in STAGES:
            prev = hashlib.sha256(f"{s}:{config_hash(self.config.stage(s))}:{prev}".encode()).hexdigest()
            out[s] = prev
        return out

    def stage_summary(self, stage: str, fingerprint: str | None = None) -> dict[str, Any]:
        """The status of `stage` as `status --json` shows it
        (:meth:`splatstudio.status.StageStatus.summary`: a running stage whose worker is gone
        reads as failed, a done stage whose `fingerprint` changed as pending and stale)."""
        return self.read_status(stage).summary(fingerprint, host=socket.gethostname(),
                                               pid_alive=_pid_alive)

    def summary(self) -> dict[str, Any]:
        """Everything `splatstudio status --json` prints (see README for the schema)."""
        fps = self.fingerprints()
        return {
            "project": str(self.root),
            "input_dir": str(self.input_dir),
            "preset": self.config.preset,
            "stages": {s: self.stage_summary(s, fps[s]) for s in STAGES},
        }

    def is_done(self, stage: str) -> bool:
        """True when `stage` finished and neither its inputs nor its config changed since."""
        return self.read_status(stage).is_current(self.fingerprints()[stage])
