"""Stage functions for runner tests, imported by spawned worker processes.

They behave like real stages (emit events, write into their folder, honour or ignore the cancel
token) so the runner's cancel, kill and resume logic is tested on real processes.
"""

from __future__ import annotations

import subprocess
import sys
import time


def cooperative(project, config, events):
    """Runs ~20 s in small steps, checking the cancel token between steps."""
    for i in range(200):
        events.check_cancelled()
        events.progress(i / 200, f"step {i}")
        time.sleep(0.1)


def stubborn(project, config, events):
    """Starts a child process and blocks like a native call that never looks at the token."""
    out = project.stage_dir("ingest") / "child.pid"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    out.write_text(str(child.pid))
    events.progress(0.1, "blocking")
    time.sleep(120)


def crashing(project, config, events):
    """Raises an unexpected exception (a bug)."""
    events.progress(0.5, "about to fail")
    raise ZeroDivisionError("boom")


def openmp_env(project, config, events):
    """Reports the worker's GOMP_SPINCOUNT (-1 if unset) and whether torch was already loaded
    when the stage started (the setting only counts if it was not)."""
    import os

    events.metric("gomp_spincount", float(os.environ.get("GOMP_SPINCOUNT", -1)))
    events.metric("torch_loaded", float("torch" in sys.modules))


def disk_full(project, config, events):
    """Writes part of its output, then fails as a full disk makes ``write`` fail."""
    import errno
    import os

    out = project.stage_dir("ingest") / "part.bin"
    out.write_bytes(b"x" * 1000)
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out))
