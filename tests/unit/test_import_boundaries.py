"""Core never imports Qt; importing splatstudio is cheap (DESIGN.md habit 1)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CORE = [
    "splatstudio",
    "splatstudio.cli",
    "splatstudio.config",
    "splatstudio.project",
    "splatstudio.events",
    "splatstudio.pipeline.runner",
    "splatstudio.pipeline.ingest",
    "splatstudio.pipeline.reproject",
    "splatstudio.geo.exif",
    "splatstudio.geo.enu",
    "splatstudio.pano.rig",
    "splatstudio.doctor",
    "splatstudio.resources",
]


def test_core_modules_do_not_import_qt_torch_or_pycolmap():
    code = (
        "import importlib, sys\n"
        f"for m in {CORE!r}: importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('PySide6', 'pyqtgraph', 'OpenGL', 'torch', 'pycolmap', 'gsplat', 'open3d'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_import_linter_contract():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "import-linter is a dev dependency"
    out = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Only splatstudio.gui imports Qt KEPT" in out.stdout
    assert "Layers: gui/cli -> pipeline" in out.stdout and "2 kept, 0 broken" in out.stdout


def test_every_core_package_is_under_the_contract():
    import pkgutil
    import tomllib

    import splatstudio

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contract = cfg["tool"]["importlinter"]["contracts"][0]
    listed = set(contract["source_modules"])
    names = {f"splatstudio.{m.name}" for m in pkgutil.iter_modules(splatstudio.__path__)}
    names -= {"splatstudio.gui", "splatstudio.__main__"}
    assert names <= listed, f"add {sorted(names - listed)} to the import-linter contract"


def test_contracts_check_indirect_imports_and_every_module_has_a_layer():
    import pkgutil
    import re
    import tomllib

    import splatstudio

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
        "contracts"]
    assert not any(c.get("allow_indirect_imports") for c in contracts)
    layers = next(c for c in contracts if c["type"] == "layers")["layers"]
    in_layers = {m for layer in layers for m in re.split(r"\s*[|:]\s*", layer)}
    names = {f"splatstudio.{m.name}" for m in pkgutil.iter_modules(splatstudio.__path__)}
    names -= {"splatstudio.__main__"}
    assert names <= in_layers, f"add {sorted(names - in_layers)} to the layers contract"
