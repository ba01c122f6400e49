"""Independent readers for the interoperability tests: Node.js packages installed by
``scripts/setup.sh`` into ``.node/`` (``.node/package.json`` pins them) and Debian's
``chromium``. A test that needs one skips with the reason when it is missing; CI installs
them (``make test`` runs ``scripts/setup.sh`` first)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = Path(os.environ.get("SPLATSTUDIO_NODE_DIR", ROOT / ".node"))
SPLAT_TRANSFORM = NODE_DIR / "node_modules" / "@playcanvas" / "splat-transform" / "bin" / "cli.mjs"
CESIUM = NODE_DIR / "node_modules" / "cesium" / "Build" / "Cesium" / "Cesium.js"
PUPPETEER = NODE_DIR / "node_modules" / "puppeteer-core"
CESIUM_SCRIPT = Path(__file__).with_name("cesium_render.mjs")
VALIDATOR = NODE_DIR / "node_modules" / "gltf-validator"
VALIDATE_SCRIPT = Path(__file__).with_name("gltf_validate.mjs")


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node (Node.js) is not installed: run scripts/setup.sh")
    return node


@pytest.fixture(scope="session")
def splat_transform():
    """A function ``run(src, dst)`` converting with PlayCanvas splat-transform (npm)."""
    node = _node()
    if not SPLAT_TRANSFORM.is_file():
        pytest.skip(f"{SPLAT_TRANSFORM} missing: run scripts/setup.sh (npm ci in .node/)")

    def run(src: Path, dst: Path) -> None:
        proc = subprocess.run([node, str(SPLAT_TRANSFORM), "-q", "-w", str(src), str(dst)],
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert proc.returncode == 0, f"splat-transform {src.name} -> {dst.name}: {proc.stderr}"

    return run


@pytest.fixture(scope="session")
def cesium():
    """A function ``render(job: dict) -> dict`` running CesiumJS in headless Chromium
    (``cesium_render.mjs``: see its header for the job and the result)."""
    node = _node()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (Debian package chromium): run scripts/setup.sh")
    if not CESIUM.is_file() or not PUPPETEER.is_dir():
        pytest.skip(f"cesium / puppeteer-core missing in {NODE_DIR}: run scripts/setup.sh")

    def render(job: dict, tmp: Path) -> dict:
        job = {"chromium": chromium, "timeout_s": 90, **job}
        path = tmp / "cesium_job.json"
        path.write_text(json.dumps(job))
        env = {**os.environ, "SPLATSTUDIO_NODE_DIR": str(NODE_DIR)}
        proc = subprocess.run([node, str(CESIUM_SCRIPT), str(path)], capture_output=True,
                              text=True, timeout=240, env=env)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    return render


@pytest.fixture(scope="session")
def gltf_validator():
    """A function ``validate(*paths) -> {path: issues}`` running the Khronos glTF-Validator."""
    node = _node()
    if not VALIDATOR.is_dir():
        pytest.skip(f"{VALIDATOR} missing: run scripts/setup.sh (npm ci in .node/)")

    def validate(*paths: Path) -> dict:
        proc = subprocess.run([node, str(VALIDATE_SCRIPT), *map(str, paths)],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "SPLATSTUDIO_NODE_DIR": str(NODE_DIR)})  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    return validate
