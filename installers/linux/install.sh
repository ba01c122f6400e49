#!/usr/bin/env bash
# Install SplatStudio for the current user on Linux from a checkout of the repository: a private
# virtual environment in ~/.local/share/splatstudio, the `splatstudio` command in ~/.local/bin,
# a desktop entry and its icon. Not editable: the package (with its style sheet, icons and
# shaders) is copied into the environment, so the checkout can be deleted afterwards.
#
# Usage: bash installers/linux/install.sh [--gpu]      install (or update)
#        bash installers/linux/install.sh --uninstall  remove everything this script made
# --gpu keeps the torch that pip finds (install the CUDA build first, see README "GPU installs")
#       instead of the CPU-only torch pinned by constraints.txt.
# SPLATSTUDIO_PREFIX overrides the environment's folder; PYTHON the interpreter (python3, >= 3.11).
set -euo pipefail
SRC="$(cd "$(dirname "$0")/../.." && pwd)"
PREFIX="${SPLATSTUDIO_PREFIX:-$HOME/.local/share/splatstudio}"
BIN="$HOME/.local/bin"
APPS="$HOME/.local/share/applications"
ICONS="$HOME/.local/share/icons/hicolor/scalable/apps"

if [ "${1:-}" = "--uninstall" ]; then
  # Only what install.sh made: the environment (recognised by its splatstudio command), the
  # link, the desktop entry and the icon. Projects are never touched.
  if [ -e "$PREFIX" ] && [ ! -x "$PREFIX/bin/splatstudio" ]; then
    echo "uninstall: $PREFIX does not look like a SplatStudio environment; not removing it" >&2
    exit 1
  fi
  rm -rf "$PREFIX"
  [ -L "$BIN/splatstudio" ] && rm -f "$BIN/splatstudio"
  rm -f "$APPS/splatstudio.desktop" "$ICONS/splatstudio.svg"
  command -v update-desktop-database >/dev/null && update-desktop-database -q "$APPS" || true
  echo "uninstalled SplatStudio (projects are kept)"
  exit 0
fi

PY="${PYTHON:-python3}"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "install: $PY is older than Python 3.11" >&2; exit 1; }
"$PY" -m venv "$PREFIX"
"$PREFIX/bin/python" -m pip install -q --upgrade pip
if [ "${1:-}" = "--gpu" ]; then
  "$PREFIX/bin/python" -m pip install -q "$SRC[all]"
else
  "$PREFIX/bin/python" -m pip install -q -c "$SRC/constraints.txt" "$SRC[all]"
fi
mkdir -p "$BIN" "$APPS" "$ICONS"
ln -sf "$PREFIX/bin/splatstudio" "$BIN/splatstudio"
cp "$SRC/splatstudio/resources/icons/splatstudio.svg" "$ICONS/splatstudio.svg"
cat > "$APPS/splatstudio.desktop" <<DESKTOP
[Desktop Entry]
Type=Application
Name=SplatStudio
Comment=Georeferenced Gaussian splats from 360 degree captures
Exec=$PREFIX/bin/splatstudio %f
Icon=splatstudio
Terminal=false
Categories=Graphics;3DGraphics;
DESKTOP
command -v update-desktop-database >/dev/null && update-desktop-database -q "$APPS" || true
"$PREFIX/bin/splatstudio" --version
echo "installed: $BIN/splatstudio (make sure $BIN is on your PATH); check it with: splatstudio doctor"
