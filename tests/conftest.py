"""Shared fixtures: paths of the real captures in ../shared/data and small helpers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "tests"))  # tests/helpers is importable in spawned workers too
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


REQUIRE_DATA = os.environ.get("SPLATSTUDIO_REQUIRE_DATA", "") not in ("", "0")
"""``SPLATSTUDIO_REQUIRE_DATA=1`` (set by ``.ci/run``): missing shared data fails the run
instead of skipping the tests that need it."""
REQUIRED = ("panos/geovisio-gopromax-2048", "panos/geovisio-gopromax", "photos/lund", "splats")
"""What the tests read from ../shared/data."""


def pytest_sessionstart(session: pytest.Session) -> None:
    if REQUIRE_DATA:
        missing = [str(DATA / r) for r in REQUIRED if not (DATA / r).exists()]
        if missing:
            raise pytest.UsageError(
                "SPLATSTUDIO_REQUIRE_DATA is set and the shared data the integration tests "
                f"need is missing: {', '.join(missing)} (see ../shared/data/README.md)")


def _need(path: Path) -> Path:
    if not path.exists():
        if REQUIRE_DATA:
            pytest.fail(f"real capture {path} not present (SPLATSTUDIO_REQUIRE_DATA is set)")
        pytest.skip(f"real capture {path} not present (see ../shared/data/README.md)")
    return path


@pytest.fixture(scope="session")
def panos_2048() -> Path:
    """5 GoPro MAX panoramas, 2048x1024, GPS in EXIF (../shared/data)."""
    return _need(DATA / "panos" / "geovisio-gopromax-2048")


@pytest.fixture(scope="session")
def panos_full() -> Path:
    """The same 5 panoramas at 5760x2880."""
    return _need(DATA / "panos" / "geovisio-gopromax")


@pytest.fixture(scope="session")
def lund() -> Path:
    """29 perspective photos with GPS (OpenSfM's Lund sequence)."""
    return _need(DATA / "photos" / "lund")
