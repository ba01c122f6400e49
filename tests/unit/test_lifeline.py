"""A process tied to its parent ends when the parent is SIGKILLed (the stage worker's lifeline)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

CHILD = """
import sys, time
from splatstudio import lifeline
{tie}
print('ready', flush=True)
time.sleep(60)
"""

PARENT = """
import subprocess, sys
child = subprocess.Popen([sys.executable, '-c', {child!r}], stdout=sys.stdout)
print(child.pid, flush=True)
child.wait()
"""


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("tie", [
    "lifeline.tie_to_parent()",  # both mechanisms
    "lifeline.start_parent_watchdog()",  # the one that works on every platform
])
def test_child_dies_with_its_killed_parent(tie):
    child = CHILD.format(tie=tie)
    parent = subprocess.Popen([sys.executable, "-c", PARENT.format(child=child)],
                              stdout=subprocess.PIPE, text=True)
    try:
        child_pid = int(parent.stdout.readline())
        assert parent.stdout.readline().strip() == "ready"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(5)
        assert _gone_within(child_pid, 2.0)
    finally:
        parent.kill()


def test_untied_child_outlives_its_parent():
    """The control: without the lifeline the child lives on (what the issue measured)."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT.format(child=CHILD.format(tie=""))],
                              stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    assert parent.stdout.readline().strip() == "ready"
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(5)
    try:
        assert not _gone_within(child_pid, 1.0)
    finally:
        os.kill(child_pid, signal.SIGKILL)
