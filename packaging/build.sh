#!/usr/bin/env bash
# `make package`: the self-contained one-folder Linux bundle of SplatStudio, built with
# PyInstaller from .venv (which torch goes in is the one installed there: the CPU wheel pinned by
# constraints.txt unless you installed a CUDA one, see packaging/README.md), then
#   dist/splatstudio/                                   the bundle (run dist/splatstudio/splatstudio)
#   dist/splatstudio-VERSION-linux-ARCH.tar.gz          the same folder, to download and unpack
# The bundle holds splatstudio.desktop, splatstudio.svg and install-desktop-entry.sh (adds the
# menu entry for the folder where it was unpacked).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
PY=.venv/bin/python

# PyInstaller from the 'package' extra, without reinstalling splatstudio itself.
reqs="$("$PY" -c 'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["package"]))')"
"$PY" -c 'import PyInstaller' 2>/dev/null || "$PY" -m pip install -q -c constraints.txt $reqs

VERSION="$("$PY" -c 'import sys; sys.path.insert(0, "."); import splatstudio; print(splatstudio.__version__)')"
ARCH="$(uname -m)"
echo "package: building the bundle with PyInstaller (several minutes)"
t0=$(date +%s)
PYTHONWARNINGS="ignore::DeprecationWarning" PYTHONPATH="$ROOT" "$PY" -m PyInstaller --noconfirm --log-level WARN \
  --workpath build/pyinstaller --distpath dist packaging/splatstudio.spec
t1=$(date +%s)

B=dist/splatstudio
cp splatstudio/resources/icons/splatstudio.svg "$B/splatstudio.svg"
cat > "$B/splatstudio.desktop" <<'DESKTOP'
[Desktop Entry]
Type=Application
Name=SplatStudio
Comment=Georeferenced Gaussian splats from 360 degree captures
Exec=splatstudio %f
Icon=splatstudio
Terminal=false
Categories=Graphics;3DGraphics;
DESKTOP
cat > "$B/install-desktop-entry.sh" <<'SH'
#!/usr/bin/env bash
# Add SplatStudio to the desktop's application menu and `splatstudio` to ~/.local/bin, for
# this unpacked folder. `--uninstall` removes both (the folder itself stays).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
APPS="$HOME/.local/share/applications"; ICONS="$HOME/.local/share/icons/hicolor/scalable/apps"
if [ "${1:-}" = "--uninstall" ]; then
  rm -f "$APPS/splatstudio.desktop" "$ICONS/splatstudio.svg"
  [ -L "$HOME/.local/bin/splatstudio" ] && rm -f "$HOME/.local/bin/splatstudio"
  echo "removed the menu entry and ~/.local/bin/splatstudio"; exit 0
fi
mkdir -p "$APPS" "$ICONS" "$HOME/.local/bin"
cp "$HERE/splatstudio.svg" "$ICONS/splatstudio.svg"
sed "s|^Exec=splatstudio|Exec=$HERE/splatstudio|" "$HERE/splatstudio.desktop" > "$APPS/splatstudio.desktop"
ln -sf "$HERE/splatstudio" "$HOME/.local/bin/splatstudio"
echo "added SplatStudio to the application menu and $HOME/.local/bin/splatstudio"
SH
chmod +x "$B/install-desktop-entry.sh"

TAR="dist/splatstudio-$VERSION-linux-$ARCH.tar.gz"
echo "package: writing $TAR"
tar -C dist -cf - splatstudio | gzip -6 > "$TAR"
t2=$(date +%s)
printf '{"pyinstaller_s": %d, "archive_s": %d, "archive": "%s"}\n' $((t1 - t0)) $((t2 - t1)) "$TAR" > dist/splatstudio-build.json
echo "package: bundle $(du -sh "$B" | cut -f1) in $B ($((t1 - t0)) s), archive $(du -sh "$TAR" | cut -f1) ($((t2 - t1)) s)"
echo "package: smoke test with: .venv/bin/python packaging/smoke_test.py"
