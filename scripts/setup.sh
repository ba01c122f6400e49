#!/usr/bin/env bash
# Idempotent set-up of everything SplatStudio needs on a fresh Debian machine:
# the apt packages for headless Qt/OpenGL tests and open3d, a virtual environment in .venv,
# the package with all extras, torch pinned by constraints.txt, and the independent readers
# of the interoperability tests (tests/interop): Debian's chromium and Node.js, and the npm
# packages pinned by .node/package-lock.json (splat-transform, cesium, puppeteer-core,
# gltf-validator) in .node/.
# Re-running it is cheap: each step is skipped when already satisfied.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxkbcommon-x11-0 libusb-1.0-0 libgl1 libegl1 libgl1-mesa-dri chromium"
# Node.js: any install that provides node and npm will do (Debian's or NodeSource's).
command -v node >/dev/null && command -v npm >/dev/null || APT_PACKAGES="$APT_PACKAGES nodejs npm"
missing=""
for p in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup: installing apt packages:$missing"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi

# Reinstall only when the dependency declarations changed.
stamp=".venv/.splatstudio-deps"
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing Python packages (torch pinned by constraints.txt; a few minutes the first time)"
  export PIP_CONSTRAINT="$PWD/constraints.txt"   # also applies inside build environments
  quiet_pip() {  # pip warns about every empty local index; keep real errors visible
    .venv/bin/python -m pip "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  }
  quiet_pip install -q --upgrade pip
  quiet_pip install -q -c constraints.txt -e ".[all,dev]"
  echo "$want" > "$stamp"
fi
# npm packages of the interop tests, exactly as locked; re-installed when the lock changes.
node_stamp=".node/node_modules/.splatstudio-lock"
node_want="$(sha256sum .node/package-lock.json | cut -d' ' -f1)"
if [ ! -f "$node_stamp" ] || [ "$(cat "$node_stamp")" != "$node_want" ]; then
  echo "setup: installing npm packages into .node/ (splat-transform, cesium, puppeteer-core, gltf-validator)"
  (cd .node && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$node_want" > "$node_stamp"
fi
echo "setup: ready (.venv, .node)"
