#!/usr/bin/env bash
# Install SplatStudio for the current user on Linux: a private virtual environment in
# ~/.local/share/splatstudio, the `splatstudio` command in ~/.local/bin and a desktop entry.
# Usage: bash installers/linux/install.sh [--gpu]   (run from a checkout of the repository)
# --gpu keeps an already installed CUDA torch (see README, "GPU installs") instead of the CPU one.
set -euo pipefail
SRC="$(cd "$(dirname "$0")/../.." && pwd)"
PREFIX="${SPLATSTUDIO_PREFIX:-$HOME/.local/share/splatstudio}"
BIN="$HOME/.local/bin"
python3 -m venv "$PREFIX"
"$PREFIX/bin/python" -m pip install -q --upgrade pip
if [ "${1:-}" = "--gpu" ]; then
  "$PREFIX/bin/python" -m pip install -q "$SRC[all]"
else
  "$PREFIX/bin/python" -m pip install -q -c "$SRC/constraints.txt" "$SRC[all]"
fi
mkdir -p "$BIN" "$HOME/.local/share/applications"
ln -sf "$PREFIX/bin/splatstudio" "$BIN/splatstudio"
cat > "$HOME/.local/share/applications/splatstudio.desktop" <<DESKTOP
[Desktop Entry]
Type=Application
Name=SplatStudio
Comment=Georeferenced Gaussian splats from 360 degree captures
Exec=$PREFIX/bin/splatstudio
Terminal=false
Categories=Graphics;3DGraphics;
DESKTOP
echo "installed: $BIN/splatstudio (make sure $BIN is on your PATH)"
