"""The splat format registry and its read-back check, on random and real splats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.splats import random_splats

from splatstudio.config import ExportFormat
from splatstudio.splats import load_splats, save_splats
from splatstudio.splats.formats import (
    FORMATS,
    READ_SUFFIXES,
    REGISTRY,
    ReadBackError,
    file_dialog_filter,
    splat_format,
    verify_readback,
)
from splatstudio.splats.io import format_from_name

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "splats"


def _spz_safe(n=400, seed=0, degree=3):
    """Values every format's quantisation covers (SPZ: sh0 within ±3, shN within ±0.95)."""
    return random_splats(n, degree, seed, means=("normal", 5.0), scales=(-6.0, 0.0), opacity_std=3.0,
                         sh0=("uniform", 2.5), shN=("uniform", 0.9))


def test_registry_is_the_one_list_of_splat_formats():
    assert FORMATS == ("ply", "splat", "spz", "compressed_ply", "sog", "glb_splat")
    assert set(FORMATS) <= {str(f) for f in ExportFormat}  # ExportConfig.formats names them
    assert len({f.suffix for f in REGISTRY.values()}) == len(REGISTRY)
    for f in REGISTRY.values():
        assert format_from_name(f"scene{f.suffix}") == f.name  # what export writes reads back
        assert f.axes in ("ENU", "RUB") and f.label
    assert file_dialog_filter() == "Splat files (*.ply *.splat *.spz *.sog *.glb);;All files (*)"
    assert ".compressed.ply" in READ_SUFFIXES
    with pytest.raises(ValueError, match="unknown splat format 'fbx'"):
        splat_format("fbx")


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_reads_back_within_its_tolerance_and_a_wrong_file_fails(tmp_path, fmt):
    # SOG's SH palette cannot hold i.i.d. random SH (real splats: the test below)
    s = _spz_safe(degree=0 if fmt == "sog" else 3)
    opts = {"coordinate_system": "ENU"} if fmt in ("spz", "glb_splat") else {}
    path = tmp_path / f"a{REGISTRY[fmt].suffix}"
    save_splats(s, path, format=fmt, **opts)
    check = verify_readback(path, fmt, s, coordinate_system="ENU")
    assert check["ok"] and check["gaussians"] == s.n and check["max_error"]
    if REGISTRY[fmt].lossless:
        assert all(v == 0.0 for v in check["max_error"].values())
    moved = s.transformed(np.eye(3))
    moved.means[7] += 0.5  # half a metre off: beyond every format's quantisation
    with pytest.raises(ReadBackError, match=rf"{path.name}.*means.*{fmt} quantisation"):
        verify_readback(path, fmt, moved, coordinate_system="ENU")
    with pytest.raises(ReadBackError, match="read back 400 gaussians, wrote 399"):
        verify_readback(path, fmt, s.subset(np.arange(399)), coordinate_system="ENU")


@pytest.mark.parametrize("name", ["fruit_drops_minimal.ply", "guitar.compressed.ply", "biker.spz"])
def test_real_splats_through_every_writer(tmp_path, name):
    src = DATA / name
    if not src.exists():
        pytest.skip(f"{src} missing (shared data not mounted)")
    s = load_splats(src)
    s = s.subset(np.arange(min(s.n, 3000)))
    for fmt in FORMATS:
        opts = {"coordinate_system": "RDF"} if fmt in ("spz", "glb_splat") else {}
        path = tmp_path / f"{fmt}{REGISTRY[fmt].suffix}"
        save_splats(s, path, format=fmt, **opts)
        assert verify_readback(path, fmt, s, coordinate_system="RDF")["ok"], fmt
