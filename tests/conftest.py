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


def _need(path: Path) -> Path:
    if not path.exists():
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
