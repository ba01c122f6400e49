"""Non-editable installs find their style sheet, icons and shaders, and the Linux installer
works end to end (so the resources bug of issue 14 cannot come back):

- a wheel built by pip from this checkout, installed with ``pip install --no-deps --target``
  (its dependencies from the running environment): splatstudio and its resources load from the
  installed tree, and its viewer draws a splat under Xvfb;
- ``installers/linux/install.sh`` into a temporary HOME (a fresh virtual environment with
  ``pip install ".[all]"``, a couple of minutes): the installed ``splatstudio`` answers
  ``--version`` and ``doctor``, converts a splat file, opens the viewer under Xvfb; then
  ``--uninstall`` removes what it made.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_open_path import DONUT, centre_differs_from_background

pytestmark = [pytest.mark.gui, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def _clean_env(home: Path) -> dict:
    """The environment without this checkout on PYTHONPATH (the installed copy must win)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_DATA_HOME=str(home / ".local/share"))
    return env


def test_wheel_install_has_its_resources(tmp_path, xdisplay):
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", wheels,
                    ROOT], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("splatstudio-*.whl")
    subprocess.run([*pip, "install", "-q", "--no-deps", "--target", site, wheel], check=True,
                   capture_output=True, timeout=300)
    for rel in ("style.qss", "icons/splatstudio.svg", "shaders/splat.vert", "shaders/splat.frag"):
        assert (site / "splatstudio" / "resources" / rel).is_file(), rel
    home = tmp_path / "home"
    home.mkdir()
    env = {**_clean_env(home), "PYTHONPATH": str(site)}
    code = ("import json, splatstudio, splatstudio.resources as r; "
            "print(json.dumps([splatstudio.__file__, str(r.resources_dir())]))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=tmp_path)
    module, res = map(Path, json.loads(out.stdout))
    assert site in module.parents and res == site / "splatstudio" / "resources"
    if DONUT.exists():
        proc, st = _launch_env(env, [sys.executable, "-m", "splatstudio"],
                               [DONUT, "--screenshot", tmp_path / "v.png"], xdisplay, tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert st["gaussians"] == 45624 and st["error"] is None
        assert centre_differs_from_background(tmp_path / "v.png") > 60


def _launch_env(env: dict, exe: list, args: list, display: str, cwd: Path):
    full = {**env, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
    proc = subprocess.run([*map(str, exe), *map(str, args)], env=full, capture_output=True,
                          text=True, timeout=300, cwd=cwd)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    return proc, (json.loads(lines[-1]) if lines else {})


def test_linux_installer_then_uninstall(tmp_path, xdisplay):
    home = tmp_path / "home"
    home.mkdir()
    env = _clean_env(home)
    proc = subprocess.run(["bash", ROOT / "installers/linux/install.sh"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    prefix = home / ".local/share/splatstudio"
    exe = home / ".local/bin/splatstudio"
    desktop = home / ".local/share/applications/splatstudio.desktop"
    icon = home / ".local/share/icons/hicolor/scalable/apps/splatstudio.svg"
    assert exe.is_symlink() and desktop.is_file() and icon.is_file()
    entry = desktop.read_text()
    assert f"Exec={prefix}/bin/splatstudio %f" in entry and "Icon=splatstudio" in entry

    def cli(*args, timeout=300):
        return subprocess.run([exe, *map(str, args)], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=timeout)

    from splatstudio import __version__

    assert cli("--version").stdout.strip() == f"splatstudio {__version__}"
    out = cli("doctor", "--no-measure", "--json", "--require", "sfm,train,mesh")
    assert out.returncode == 0, out.stdout + out.stderr
    checks = {c["key"]: c for c in json.loads(out.stdout)["checks"]}
    assert Path(checks["resources"]["details"]["dir"]).is_relative_to(prefix)  # not the checkout
    assert not checks["python"]["details"]["executable"].startswith(str(ROOT))
    if DONUT.exists():
        out = cli("convert", DONUT, tmp_path / "d.spz")
        assert out.returncode == 0 and (tmp_path / "d.spz").stat().st_size > 0, out.stderr
        proc, st = _launch_env(env, [exe], [DONUT, "--screenshot", tmp_path / "v.png"],
                               xdisplay, tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert st["gaussians"] == 45624 and st["error"] is None
        assert centre_differs_from_background(tmp_path / "v.png") > 60

    keep = home / "SplatStudio Projects" / "mine"
    keep.mkdir(parents=True)
    proc = subprocess.run(["bash", ROOT / "installers/linux/install.sh", "--uninstall"], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert not prefix.exists() and not exe.exists() and not exe.is_symlink()
    assert not desktop.exists() and not icon.exists() and keep.is_dir()
